"""seqdis_jax/cpu_malloc.py: when the launchers restart with glibc's tunables, that the restart
sets them, and that they stop large buffers from page-faulting in again on every reuse."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from seqdis_jax import cpu_malloc

glibc_only = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# Prints the tunables the process runs with after the launchers' first line
RESTART = ("from seqdis_jax import cpu_malloc; cpu_malloc.reexec_if_wanted(); import os; "
           "print(os.environ.get('GLIBC_TUNABLES'), cpu_malloc.active())")

# Minor page faults per reuse of a 64 MB buffer that glibc's malloc hands out and is written
# in full (ctypes, not numpy: numpy asks for huge pages on large arrays)
FAULTS = """
import ctypes, resource
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def touch():
    p = libc.malloc(1 << 26); ctypes.memset(p, 1, 1 << 26); libc.free(p)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (cpu_malloc.ENV, cpu_malloc.OPT_OUT)}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def _run(code: str, env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


@glibc_only
def test_wanted_on_cpu_unless_set_or_opted_out():
    assert cpu_malloc.wanted({"JAX_PLATFORMS": "cpu"})
    assert not cpu_malloc.wanted({"JAX_PLATFORMS": "cpu", cpu_malloc.ENV: "glibc.malloc.x=1"})
    assert not cpu_malloc.wanted({"JAX_PLATFORMS": "cpu", cpu_malloc.OPT_OUT: "default"})


@glibc_only
def test_restart_sets_the_tunables_once():
    out = _run(RESTART, _env(JAX_PLATFORMS="cpu"))
    assert out == f"{cpu_malloc.TUNABLES} True"
    # The user's own setting wins, and the opt-out restarts nothing
    assert _run(RESTART, _env(JAX_PLATFORMS="cpu", GLIBC_TUNABLES="glibc.malloc.arena_max=4")
                ) == "glibc.malloc.arena_max=4 False"
    assert _run(RESTART, _env(JAX_PLATFORMS="cpu", SEQDIS_JAX_MALLOC="default")) == "None False"


@glibc_only
def test_tunables_stop_the_page_faults_on_reuse():
    default = float(_run(FAULTS, _env()))
    tuned = float(_run(FAULTS, _env(GLIBC_TUNABLES=cpu_malloc.TUNABLES)))
    # glibc maps a fresh 64 MB region for every allocation (16,384 pages to fault in)
    assert default > 10_000, default
    assert tuned < 100, tuned


@glibc_only
def test_a_thread_reuses_a_buffer_above_64mb_only_in_the_main_arena():
    """Why the launchers' training runs still fault under `TUNABLES` (bench/
    malloc_thread_faults.py, docs/results.md "The allocator"): XLA's step buffer (~560 MB for
    DBSE :cpu) is allocated on a worker thread, and a non-main arena serves a request above
    its 64 MB heaps with mmap whatever mmap_max says; arena_max=1 keeps it."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))
    try:
        import malloc_thread_faults as bench
    finally:
        sys.path.pop(0)

    def faults(setting: str, megabytes: int) -> float:
        env = _env(GLIBC_TUNABLES=bench.SETTINGS[setting])
        return float(subprocess.run(
            [sys.executable, "-c", bench.CHILD, str(megabytes << 20)], env=env,
            capture_output=True, text=True, check=True, timeout=120).stdout.strip())

    assert faults("arena2", 32) < 100
    assert faults("arena2", 128) > 30_000  # all 32,768 pages, every reuse
    assert faults("arena1", 128) < 100


def test_tunables_builds_the_launchers_string_and_its_variants():
    assert cpu_malloc.TUNABLES == cpu_malloc.tunables()
    assert cpu_malloc.tunables(arena_max=1).startswith("glibc.malloc.arena_max=1:")
    assert cpu_malloc.tunables(arena_max=1).split(":")[1:] == cpu_malloc.TUNABLES.split(":")[1:]
    assert cpu_malloc.tunables(hugetlb=True) == cpu_malloc.TUNABLES + ":glibc.malloc.hugetlb=1"
