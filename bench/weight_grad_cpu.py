"""The convolutions' weight-gradient product a^T g (a long contraction into a small matrix)
on XLA:CPU: XLA's dot against OpenBLAS through the FFI handler (`nn.cpu_blas.at_b`) and
numpy's own call of the same OpenBLAS, each jitted alone, median of 9 calls after one.

    python bench/weight_grad_cpu.py
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax.nn import cpu_blas  # noqa: E402

# (K, M, N): the `:cpu` width's encoder conv2 / conv3 / conv4 at 256 frames, and one wider
SHAPES = ((65536, 256, 32), (16384, 512, 64), (4096, 1024, 128), (65536, 32, 256))


def median_ms(f, repeats: int = 9) -> float:
    jax.block_until_ready(f())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f())
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    assert cpu_blas.available(), cpu_blas._load()
    rng = np.random.default_rng(0)
    for k, m, n in SHAPES:
        a_np = rng.standard_normal((k, m), np.float32)
        g_np = rng.standard_normal((k, n), np.float32)
        a, g = jax.numpy.asarray(a_np), jax.numpy.asarray(g_np)
        xla = jax.jit(lambda a, g: jax.lax.dot_general(a, g, (((0,), (0,)), ((), ()))))
        ffi = jax.jit(cpu_blas.at_b)
        gflop = 2 * k * m * n / 1e9
        row = {"xla dot": median_ms(partial(xla, a, g)),
               "OpenBLAS (FFI)": median_ms(partial(ffi, a, g)),
               "numpy": median_ms(partial(np.matmul, a_np.T, g_np))}
        err = float(np.max(np.abs(xla(a, g) - ffi(a, g))) / np.max(np.abs(xla(a, g))))
        print(f"K={k} M={m} N={n}: " + ", ".join(
            f"{name} {t:.1f} ms ({gflop / t * 1e3:.0f} GFLOP/s)" for name, t in row.items())
            + f"; max rel diff {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
