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


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files.

    Only process 0 should construct one with `enabled=True` in multi-host runs.
    """

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if enabled:
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:  # TensorBoard events are optional; JSON lines are not.
                self._tb = None

    def write(self, step: int, scalars: Mapping[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
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
