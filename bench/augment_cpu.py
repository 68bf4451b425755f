"""Times C-DSVAE's in-step views (seqdis_jax/data/augment.py) piece by piece, and the motion
view's Gaussian blur against its former form (dm_pix's depthwise convolutions, vmapped with one
sigma per sequence), on the current backend.

    python bench/augment_cpu.py                 # batch 32 x 8 frames of 64x64x3
    python bench/augment_cpu.py --batch=128 --repeats=9

Each piece is one jitted function over the batch (`jax.vmap` over sequences, as the step runs
it); the median and min of --repeats calls after one warm-up call, in ms, two rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax.data import augment as A  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cfg = A.MotionAugmentationConfig()
    shape = (args.batch, args.frames, 64, 64, 3)
    video = jnp.asarray(np.random.default_rng(0).random(shape, np.float32))

    def per_sequence(fn):
        return jax.jit(lambda k, v: jax.vmap(fn)(jax.random.split(k, v.shape[0]), v))

    pieces = {
        "crop and resize": per_sequence(lambda k, f: A._crop_and_resize(k, f, cfg.crop_min_scale)),
        "colour jitter": per_sequence(lambda k, f: A._color_jitter(k, f, cfg)),
        "blur (shifted sums)": per_sequence(lambda k, f: A._gaussian_blur(k, f, cfg)),
        "blur (dm_pix, before)": per_sequence(lambda k, f: A._gaussian_blur_dm_pix(k, f, cfg)),
        "noise": jax.jit(lambda k, v: v + cfg.noise_std * jax.random.normal(k, v.shape, v.dtype)),
        "motion view (all)": jax.jit(lambda k, v: A.motion_augmentation(k, v, cfg)),
        "content view": jax.jit(A.content_augmentation),
    }
    print(f"{args.batch} x {shape[1:]}, {jax.default_backend()}, jax {jax.__version__}")
    for round_ in range(2):
        for name, fn in pieces.items():
            jax.block_until_ready(fn(jax.random.PRNGKey(0), video))
            times = []
            for i in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(fn(jax.random.PRNGKey(i + 1), video))
                times.append(1000 * (time.perf_counter() - start))
            print(f"round {round_ + 1}  {name:22s} {np.median(times):7.1f} ms "
                  f"(min {min(times):.1f})", flush=True)


if __name__ == "__main__":
    main()
