"""The real training loop (`python -m experiments.main`) under several glibc malloc settings,
A B A B: steps/s and minor page faults per step, read from the running process.

    python bench/malloc_training.py --config=experiments/dbse_sprites.py:cpu \\
        --settings=arena2,arena1 --rounds=2 --steps=150 --judge_workdir=JUDGE_DIR

`bench/malloc_cpu.sh` times the jitted step called in a loop; this times the launcher's loop
itself (grain input pipeline, asynchronous dispatch, the executable run on XLA's worker
threads), where a buffer is allocated by whichever thread runs the step. Each run trains a
fresh workdir in a temporary folder until step `--steps`, then is stopped (SIGTERM: it
saves a checkpoint, which is deleted with the folder); the rate is measured from the first
logged step at or past `--skip` (compilation and warm-up excluded) to the last one logged.

Settings (the GLIBC_TUNABLES the launcher runs under; it keeps a user's own setting):
  default   glibc's defaults (SEQDIS_JAX_MALLOC=default)
  arena2    arena_max=2, mmap_max=0, trim_threshold=2^36 (the launchers' tunables)
  arena1    arena_max=1, mmap_max=0, trim_threshold=2^36
  arena2_thp  arena2 with hugetlb=1: glibc asks for transparent huge pages (madvise) on the
            memory it takes from the kernel
  launcher  whatever `seqdis_jax.cpu_malloc.TUNABLES` is now
Needs the config's dataset prepared (Sprites: `python -m data_prep.sprites`). One JSON line
per run on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from seqdis_jax import cpu_malloc  # noqa: E402

SETTINGS = {
    "default": None,
    "arena2": cpu_malloc.tunables(arena_max=2),
    "arena1": cpu_malloc.tunables(arena_max=1),
    "arena2_thp": cpu_malloc.tunables(arena_max=2, hugetlb=True),
    "launcher": cpu_malloc.TUNABLES,
}
PROGRESS = re.compile(r"\[\s*(\d+)/\d+")


def _minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])  # field 10: minflt


def run_once(config: str, setting: str, steps: int, skip: int, log_every: int,
             judge_workdir: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (cpu_malloc.ENV, cpu_malloc.OPT_OUT)}
    if SETTINGS[setting] is None:
        env[cpu_malloc.OPT_OUT] = "default"
    else:
        env[cpu_malloc.ENV] = SETTINGS[setting]
    with tempfile.TemporaryDirectory(prefix="malloc_training_") as workdir:
        command = [sys.executable, "-m", "experiments.main", f"--config={config}",
                   f"--workdir={workdir}/run", f"--config.train.log_every={log_every}",
                   f"--config.train.checkpoint_every={10 * steps}",
                   "--config.eval.judge_every=0"]  # no judged curve
        if judge_workdir:  # the launcher checks that the run's judge is there before training
            command.append(f"--config.judge.workdir={judge_workdir}")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        marks = []  # (step, time, minor faults) at each progress line from `skip` on
        try:
            for line in process.stdout:
                match = PROGRESS.search(line)
                if not match:
                    continue
                step = int(match.group(1))
                if step >= skip:
                    marks.append((step, time.perf_counter(), _minor_faults(process.pid)))
                if step >= steps:
                    break
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
    if len(marks) < 2:
        raise SystemExit(f"{setting}: the run logged fewer than two steps past {skip}; "
                         f"raise --steps (command: {' '.join(command)})")
    (s0, t0, f0), (s1, t1, f1) = marks[0], marks[-1]
    return {"config": config, "setting": setting, "tunables": SETTINGS[setting],
            "steps_timed": s1 - s0, "steps_per_s": (s1 - s0) / (t1 - t0),
            "minor_faults_per_step": (f1 - f0) / (s1 - s0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="experiments/dbse_sprites.py:cpu")
    parser.add_argument("--settings", default="arena2,arena1",
                        help=f"comma-separated, of {sorted(SETTINGS)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150, help="stop each run at this step")
    parser.add_argument("--skip", type=int, default=50, help="time from this step on")
    parser.add_argument("--log_every", type=int, default=25)
    parser.add_argument("--judge_workdir", default=None,
                        help="a trained judge of the config's dataset (read only)")
    args = parser.parse_args()
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {sorted(SETTINGS)}")
    if not args.log_every <= args.skip < args.steps:
        parser.error("need --log_every <= --skip < --steps")
    for _ in range(args.rounds):
        for setting in settings:
            print(json.dumps(run_once(args.config, setting, args.steps, args.skip,
                                      args.log_every, args.judge_workdir)), flush=True)


if __name__ == "__main__":
    main()
