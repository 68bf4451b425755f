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

from seqdis_jax import cpu_malloc

MACHINE_FILE = "machine.jsonl"


# The CPU features that decide how fast XLA's and PyTorch's CPU kernels run here: two CPUs
# with the same model name can differ in them (`AMD EPYC` has come both with and without
# AVX-512 and bf16 units), so a time is tied to these too.
ISA_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16",
                "amx_bf16": "AMX-BF16"}


def _lscpu() -> str:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_lscpu(text: str) -> dict[str, Any]:
    """lscpu's output -> {cpu, cpu_arch, cpu_family, cpu_model_number, cpu_isa}; a field lscpu
    does not print is left out (cpu falls back to the platform's name), and cpu_isa (the
    `ISA_FEATURES` among the flags) is given for x86-64 only."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info: dict[str, Any] = {"cpu": fields.get("Model name") or platform.processor()
                            or "unknown CPU"}
    for key, name in (("Architecture", "cpu_arch"), ("CPU family", "cpu_family"),
                      ("Model", "cpu_model_number")):
        if key in fields:
            info[name] = fields[key]
    if info.get("cpu_arch") == "x86_64" and "Flags" in fields:
        flags = set(fields["Flags"].split())
        info["cpu_isa"] = [name for flag, name in ISA_FEATURES.items() if flag in flags]
    return info


def this_cpu() -> dict[str, Any]:
    """`parse_lscpu` of this machine."""
    return parse_lscpu(_lscpu())


def cpu_summary(info: dict[str, Any] | None = None) -> str:
    """'AMD EPYC (family 25 model 1; AVX2)': the model name with what tells apart CPUs that
    share it (`parse_lscpu`'s fields; this machine's by default)."""
    info = this_cpu() if info is None else info
    details = []
    if "cpu_family" in info and "cpu_model_number" in info:
        details.append(f"family {info['cpu_family']} model {info['cpu_model_number']}")
    if "cpu_isa" in info:
        details.append(", ".join(info["cpu_isa"]) or "no AVX2")
    return info["cpu"] + (f" ({'; '.join(details)})" if details else "")


def lacks_bf16_units(info: dict[str, Any] | None = None) -> bool:
    """Whether lscpu lists an x86-64 CPU's flags with neither AVX512-BF16 nor AMX-BF16 among
    them: there XLA:CPU (and PyTorch) emulate bf16 arithmetic, and a bf16 step is slower than a
    float32 one (docs/results.md, issue 20)."""
    info = this_cpu() if info is None else info
    return "cpu_isa" in info and not {"AVX512-BF16", "AMX-BF16"} & set(info["cpu_isa"])


def describe() -> dict[str, Any]:
    devices = jax.devices()
    return this_cpu() | dict(
        cpu_cores=os.cpu_count(), platform=devices[0].platform, devices=len(devices),
        device_kind=devices[0].device_kind, jax=jax.__version__,
        malloc_tuned=cpu_malloc.active(), date=time.strftime("%Y-%m-%d %H:%M:%S"))


def summary(record: dict[str, Any]) -> str:
    """One line: the accelerator where there is one, else the CPU and its cores."""
    if record.get("platform", "cpu") != "cpu":
        return f"{record['devices']} x {record['device_kind']}"
    return f"{cpu_summary(record)}, {record['cpu_cores']} cores"


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
