"""Where the PyTorch reference's training step spends its time on the CPU: `torch.profiler`
over 3 steps (after 2 warm-up steps) of `torch_reference.make_step`, the operators with the
most self time, per step.

    python bench/profile_torch_cpu.py dsvae 0.25     # method, width (0.25: the :cpu width)
    python bench/profile_torch_cpu.py dsvae 1.0 32 2  # ... batch, threads

Needs the optional `bench` extra (torch). The profiler adds its own overhead: compare the
shares, not the totals, with `compare_torch.py`'s step times.
"""

from __future__ import annotations

import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch_reference  # noqa: E402

STEPS = 3


def main(method: str = "dsvae", width: str = "0.25", batch: str = "32", threads: str = "2",
         rows: int = 12) -> None:
    torch.set_num_threads(int(threads))
    step = torch_reference.make_step(method, int(batch), width=float(width))
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(STEPS):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{method} width {width} batch {batch}, {threads} threads: {total / STEPS / 1e3:.0f} ms "
          f"of operator self time per step (profiled)")
    for e in events[:rows]:
        share = e.self_cpu_time_total / total
        print(f"  {e.key:<40} {e.self_cpu_time_total / STEPS / 1e3:9.1f} ms  {share:6.1%}"
              f"  ({e.count // STEPS} calls)")
    convs = sum(e.self_cpu_time_total for e in events if "conv" in e.key)
    print(f"  operators with 'conv' in their name: {convs / STEPS / 1e3:.0f} ms per step, "
          f"{convs / total:.0%}")


if __name__ == "__main__":
    main(*sys.argv[1:])
