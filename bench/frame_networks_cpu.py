"""Forward and forward + backward time of the DCGAN frame encoder and decoder alone (train
mode, BatchNorm batch statistics), per `cpu_conv_lowering` and compute dtype.

    python bench/frame_networks_cpu.py 1.0 256     # width, frames (batch 32 x 8 frames)
    python bench/frame_networks_cpu.py 0.25 256    # the :cpu width
    python bench/frame_networks_cpu.py 0.25 256 xla,gemm float32   # lowerings, compute dtypes

Prints the minimum of 5 runs after compilation, in ms, one line per network and setting, and
the time of C-DSVAE's two views alone (`data.augment`: content and motion augmentation of
frames / 8 sequences of 8 frames, forward only, as inside the C-DSVAE step).
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax.data import augment  # noqa: E402
from seqdis_jax.nn.video import FrameDecoder, FrameEncoder  # noqa: E402


def best_ms(f, *args, repeats: int = 5, digits: int | None = None) -> float:
    """The fastest of `repeats` calls after a first (compiling) one, in ms rounded to `digits`."""
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return round(1e3 * min(times), digits)


def timed(module, inputs, target):
    variables = module.init(jax.random.PRNGKey(0), inputs, True)

    def loss(params, inputs):
        y, _ = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, inputs,
                            True, mutable=["batch_stats"])
        return jnp.sum((y.astype(jnp.float32) - target) ** 2)

    params = variables["params"]
    return best_ms(jax.jit(loss), params, inputs), best_ms(jax.jit(jax.grad(loss)), params,
                                                           inputs)


def main() -> None:
    width = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    x = jax.random.uniform(jax.random.PRNGKey(0), (frames, 64, 64, 3))
    z = jax.random.normal(jax.random.PRNGKey(1), (frames, 160))
    lowerings = sys.argv[3].split(",") if len(sys.argv) > 3 else ("xla", "gemm")
    dtypes = [None if d == "float32" else jnp.dtype(d)
              for d in (sys.argv[4].split(",") if len(sys.argv) > 4 else ("float32", "bfloat16"))]
    for lowering in lowerings:
        for dtype in dtypes:
            fwd, both = timed(FrameEncoder(128, width, dtype, conv_lowering=lowering), x, 0.0)
            print(f"encoder lowering={lowering} dtype={jnp.dtype(dtype or jnp.float32).name}: "
                  f"forward {fwd} ms, forward+backward {both} ms", flush=True)
    for lowering in lowerings:
        for dtype in dtypes:
            fwd, both = timed(FrameDecoder(3, width, dtype, conv_lowering=lowering), z, 0.5)
            print(f"decoder lowering={lowering} dtype={jnp.dtype(dtype or jnp.float32).name}: "
                  f"forward {fwd} ms, forward+backward {both} ms", flush=True)
    video = x.reshape(frames // 8, 8, 64, 64, 3)

    @jax.jit
    def views(rng, video):
        content_rng, motion_rng = jax.random.split(rng)
        return (augment.content_augmentation(content_rng, video),
                augment.motion_augmentation(motion_rng, video))

    print(f"C-DSVAE views (content + motion augmentation), {frames // 8} sequences: "
          f"{best_ms(views, jax.random.PRNGKey(2), video)} ms", flush=True)


if __name__ == "__main__":
    main()
