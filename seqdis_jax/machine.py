"""What a result was measured on: the CPU model, the accelerators, the library versions.

Every training run appends `describe()` to `<workdir>/machine.jsonl` when it starts or resumes,
so a table built from the run (experiments/reproduce.py) can say which machine trained it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from typing import Any

import jax

MACHINE_FILE = "machine.jsonl"


def cpu_model() -> str:
    """`lscpu`'s model name (e.g. 'Intel(R) Xeon(R) Processor'), else the platform's."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Model name")), platform.processor() or "unknown CPU")


def describe() -> dict[str, Any]:
    devices = jax.devices()
    return dict(cpu=cpu_model(), cpu_cores=os.cpu_count(), platform=devices[0].platform,
                devices=len(devices), device_kind=devices[0].device_kind,
                jax=jax.__version__, date=time.strftime("%Y-%m-%d %H:%M:%S"))


def summary(record: dict[str, Any]) -> str:
    """One line: the accelerator where there is one, else the CPU and its cores."""
    if record.get("platform", "cpu") != "cpu":
        return f"{record['devices']} x {record['device_kind']}"
    return f"{record['cpu']} ({record['cpu_cores']} cores)"


def record_start(workdir: str, step: int) -> None:
    """Appends this machine, and the step the run starts or resumes from, to machine.jsonl."""
    if jax.process_index() != 0:
        return
    with open(os.path.join(workdir, MACHINE_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(describe() | {"start_step": step}) + "\n")


def read(workdir: str) -> list[dict[str, Any]]:
    """The machine.jsonl records of a run (oldest first; [] for runs from before it existed)."""
    path = os.path.join(workdir, MACHINE_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
