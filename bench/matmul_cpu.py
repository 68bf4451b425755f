"""XLA's own matrix product rate on this machine: a 2048² x 2048² `lax.dot` in float32, in
bfloat16 with float32 accumulation (`preferred_element_type`, what `nn.conv.conv2d_gemm` asks
for), and in plain bfloat16; GFLOP/s of the best of 5 calls after a compiling one, two rounds.

    python bench/matmul_cpu.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from jax import lax

N = 2048


def gflops(dtype, accumulate=None) -> float:
    a = jnp.ones((N, N), dtype)
    product = jax.jit(lambda a, b: lax.dot(a, b, preferred_element_type=accumulate))
    jax.block_until_ready(product(a, a))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        jax.block_until_ready(product(a, a))
        times.append(time.perf_counter() - start)
    return 2 * N**3 / min(times) / 1e9


def main() -> None:
    for round_ in range(2):
        print(f"round {round_ + 1}: float32 {gflops(jnp.float32):.0f}, bfloat16 -> float32 "
              f"{gflops(jnp.bfloat16, jnp.float32):.0f}, bfloat16 {gflops(jnp.bfloat16):.0f} "
              f"GFLOP/s ({jax.default_backend()}, jax {jax.__version__})", flush=True)


if __name__ == "__main__":
    main()
