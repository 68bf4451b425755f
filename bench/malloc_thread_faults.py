"""Minor page faults per reuse of one large buffer that a non-main thread mallocs, writes and
frees, under several glibc tunables (each in a fresh process, since glibc reads them at start).

    python bench/malloc_thread_faults.py            # 128 MB, the launchers' tunables and more

XLA:CPU allocates a step's temporary buffer (about 560 MB for DBSE `:cpu` at batch 32) on
the worker thread that runs the executable. A non-main glibc arena grows in 64 MB heaps, so a
request above that is served by mmap even with `glibc.malloc.mmap_max=0`, and returned with
munmap on free: every reuse faults every page in again. Only the main arena (the brk heap)
keeps such a buffer, which `glibc.malloc.arena_max=1` gives every thread. One JSON line per
setting: faults per reuse (size / 4 KiB when nothing is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from seqdis_jax import cpu_malloc  # noqa: E402

SETTINGS = {
    "default": None,
    "arena2": cpu_malloc.tunables(arena_max=2),
    "arena1": cpu_malloc.tunables(arena_max=1),
}

CHILD = """
import ctypes, resource, sys, threading
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = int(sys.argv[1])
def touch():
    p = libc.malloc(size); ctypes.memset(p, 1, size); libc.free(p)
def reuse():
    touch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        touch()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
libc.free(libc.malloc(1 << 20))  # the main thread takes the main arena first
thread = threading.Thread(target=reuse)
thread.start()
thread.join()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=128)
    args = parser.parse_args()
    size = args.megabytes << 20
    for name, tunables in SETTINGS.items():
        env = {k: v for k, v in os.environ.items() if k != cpu_malloc.ENV}
        if tunables:
            env[cpu_malloc.ENV] = tunables
        out = subprocess.run([sys.executable, "-c", CHILD, str(size)], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        print(json.dumps({"setting": name, "tunables": tunables, "megabytes": args.megabytes,
                          "faults_per_reuse": float(out), "pages": size // 4096}))


if __name__ == "__main__":
    main()
