"""glibc malloc settings for XLA:CPU training: the step stops page-faulting its buffers in.

With glibc's default malloc, an XLA:CPU training step takes fresh pages from the kernel for its
buffers on every step: about 141,000 minor page faults and 0.4 s of system time per DSVAE
`:cpu` step on 2 cores, a third of the CPU time the step uses (485,000 and 1.3 s at paper
width, a fifth). With the `TUNABLES` below (at most 2 malloc arenas, no mmap-backed chunks,
freed memory kept instead of trimmed) the memory is reused and most faults vanish: the same
steps run 1.1-1.5x faster (docs/results.md, "The allocator", issue 20). The price is that the
process keeps its peak memory until it exits. A buffer above 64 MB that an XLA worker thread
allocates from the second arena is still mapped afresh each step (a non-main arena's heaps
are 64 MB; bench/malloc_thread_faults.py); arena_max=1 keeps it too, but the training loop
measured 6-9 % slower with it (bench/malloc_training.py), so it stays at 2.

glibc reads `GLIBC_TUNABLES` once, when the process starts (`mallopt` at run time, even before
`import jax`, did not remove the faults). So the launchers (`experiments.main`,
`experiments.reproduce`) call `reexec_if_wanted()` first thing: it restarts the same command
once with the variable set, where that helps (Linux with glibc, no GPU or TPU plugin
installed, or `JAX_PLATFORMS=cpu`) and the user has not set `GLIBC_TUNABLES` themselves.
`SEQDIS_JAX_MALLOC=default` keeps glibc's defaults.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys

ENV = "GLIBC_TUNABLES"
OPT_OUT = "SEQDIS_JAX_MALLOC"  # "default": leave malloc alone


def tunables(arena_max: int = 2, hugetlb: bool = False) -> str:
    """The `GLIBC_TUNABLES` string the launchers set, with `arena_max` and `hugetlb` exposed
    so the benches in bench/malloc_*.py can measure the alternatives from one definition."""
    parts = [
        f"glibc.malloc.arena_max={arena_max}",    # few arenas, so a freed buffer is reused
        "glibc.malloc.mmap_max=0",                # large buffers from the heap, not fresh mmaps
        f"glibc.malloc.trim_threshold={1 << 36}",  # and the heap is never handed back
    ]
    if hugetlb:
        parts.append("glibc.malloc.hugetlb=1")    # transparent huge pages for the heap
    return ":".join(parts)


TUNABLES = tunables()
_ACCELERATOR_PLUGIN = re.compile(r"^(jax[-_](cuda|rocm)\d*[-_](plugin|pjrt)|libtpu.*)$", re.I)


def _accelerator_plugin_installed() -> bool:
    return any(_ACCELERATOR_PLUGIN.match(d.metadata["Name"] or "")
               for d in importlib.metadata.distributions())


def wanted(environ: dict[str, str] | None = None) -> bool:
    """Whether `reexec_if_wanted` restarts the process with `TUNABLES` (see the module
    docstring for when)."""
    environ = os.environ if environ is None else environ
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if ENV in environ or environ.get(OPT_OUT, "tuned") == "default":
        return False
    if environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return True
    return not _accelerator_plugin_installed()


def active() -> bool:
    """Whether this process started with `TUNABLES` in effect."""
    return all(t in os.environ.get(ENV, "").split(":") for t in TUNABLES.split(":"))


def reexec_if_wanted() -> None:
    """Restarts this command (`sys.orig_argv`) with `TUNABLES` set, when `wanted()`; returns
    without doing anything otherwise. Call it before any work, as the first line under
    ``if __name__ == "__main__":``."""
    if not wanted() or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, {**os.environ, ENV: TUNABLES})
    except OSError as e:  # carry on with glibc's defaults: slower, not wrong
        print(f"Could not restart with {ENV}={TUNABLES} ({e}); the CPU step will be slower. "
              f"Set {OPT_OUT}=default to skip this.", file=sys.stderr)
