"""Metric logging behind one small class: JSON lines, TensorBoard events, console."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np


def _to_float(value: Any) -> float:
    return float(np.asarray(value))


METRICS_FILE = "metrics.jsonl"


def drop_records_after(path: str, step: int) -> int:
    """Removes the records of `path` (JSON lines) logged after `step`, and any line cut short
    by a killed run, by rewriting the file atomically (a temporary file, then a rename);
    returns how many lines went. Records at or before `step` stay as they were."""
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)
                and record["step"] > step):
            kept.append(line if line.endswith("\n") else line + "\n")
    dropped = len(lines) - len(kept)
    if dropped:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    return dropped


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files.

    Only process 0 should construct one with `enabled=True` in multi-host runs. A run that
    resumes at `resume_step` (0: starts afresh) first drops the records the interrupted run
    logged after it (`drop_records_after`; the count is `self.dropped`), so each step is logged
    once, and hides TensorBoard's events after it (tensorboardX's `purge_step`).
    """

    def __init__(self, workdir: str, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.dropped = 0
        self._jsonl = None
        self._tb = None
        if enabled:
            path = os.path.join(workdir, METRICS_FILE)
            if resume_step is not None:
                self.dropped = drop_records_after(path, resume_step)
            self._jsonl = open(path, "a", encoding="utf-8")
            try:
                from tensorboardX import SummaryWriter

                purge = {} if resume_step is None else {"purge_step": resume_step + 1}
                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), **purge)
            except ImportError:  # TensorBoard events are optional; JSON lines are not.
                self._tb = None

    def write(self, step: int, scalars: Mapping[str, Any] | None,
              prefix: str = "train") -> None:
        """One record of `scalars` at `step`; nothing for no scalars (a record without values
        would only say that nothing was measured)."""
        if not self.enabled or not scalars:
            return
        values = {k: _to_float(v) for k, v in scalars.items()}
        record = {"step": int(step), "split": prefix, **values}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{prefix}/{name}", value, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


class ProgressLine:
    """Console progress: step/total, percentage, steps/s, ETA and the latest loss terms."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool = True):
        self.total = total_steps
        self.enabled = enabled
        self._last_time = time.perf_counter()
        self._last_step = start_step

    def update(self, step: int, scalars: Mapping[str, Any]) -> float:
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        if self.enabled:
            eta = (self.total - step) / rate if rate > 0 else math.inf
            terms = " ".join(f"{k}={_to_float(v):.4g}" for k, v in scalars.items())
            print(
                f"[{step:>7d}/{self.total} {100.0 * step / max(self.total, 1):5.1f}%] "
                f"{rate:6.2f} steps/s eta {eta:6.0f}s | {terms}",
                file=sys.stderr,
                flush=True,
            )
        return rate
