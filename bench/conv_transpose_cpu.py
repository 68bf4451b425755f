"""Time fwd+bwd of one stride-2 transposed convolution: nn.ConvTranspose vs FastConvTranspose.

One 16x16x128 -> 32x32x64 layer (k4, stride 2, 'SAME'), `jax.value_and_grad` of a linear loss
w.r.t. input and kernel, jitted; median seconds over `--repeats` runs after one warm-up run.

    python bench/conv_transpose_cpu.py --batch 256
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqdis_jax.nn.conv import FastConvTranspose


def time_fn(fn: Callable, *args: Any, repeats: int) -> tuple[list[float], Any]:
    """Wall-clock seconds of `repeats` calls after one warm-up (compilation) call, and the
    warm-up call's output."""
    out = jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", help="compute dtype, e.g. bfloat16")
    parser.add_argument("--skip-plain", action="store_true", help="time FastConvTranspose only")
    args = parser.parse_args()

    dtype = jnp.dtype(args.dtype)
    kx, kc, kp = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (args.batch, 16, 16, 128), jnp.float32)
    layers = {
        "nn.ConvTranspose": nn.ConvTranspose(
            64, (4, 4), strides=(2, 2), padding="SAME", dtype=dtype
        ),
        "FastConvTranspose": FastConvTranspose(
            64, (4, 4), strides=(2, 2), padding="SAME", dtype=dtype
        ),
    }
    if args.skip_plain:
        del layers["nn.ConvTranspose"]
    params = FastConvTranspose(64, (4, 4), strides=(2, 2)).init(kp, x[:1])["params"]
    cot = jax.random.normal(kc, (args.batch, 32, 32, 64), jnp.float32)

    results: dict[str, dict[str, float]] = {}
    outputs = {}
    for name, layer in layers.items():

        def loss(
            x: jax.Array,
            kernel: jax.Array,
            bias: jax.Array,
            cot: jax.Array,
            layer: nn.Module = layer,
        ) -> jax.Array:
            # everything is an argument: closed-over arrays would be constant-folded by XLA
            y = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
            return jnp.vdot(y.astype(jnp.float32), cot)

        fwd = jax.jit(loss)
        fwd_bwd = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        inputs = (x, params["kernel"], params["bias"], cot)
        t_fwd, _ = time_fn(fwd, *inputs, repeats=args.repeats)
        t_step, outputs[name] = time_fn(fwd_bwd, *inputs, repeats=args.repeats)
        results[name] = {"fwd_s": statistics.median(t_fwd), "fwd_bwd_s": statistics.median(t_step)}
        print(
            f"{name:18s} fwd {results[name]['fwd_s']:8.3f} s   "
            f"fwd+bwd {results[name]['fwd_bwd_s']:8.3f} s   (median of {args.repeats})",
            flush=True,
        )

    summary = {
        "batch": args.batch,
        "dtype": str(dtype),
        "repeats": args.repeats,
        "backend": jax.default_backend(),
        "cpu": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "results": results,
    }
    if len(results) == 2:
        summary["speedup_fwd_bwd"] = (
            results["nn.ConvTranspose"]["fwd_bwd_s"] / results["FastConvTranspose"]["fwd_bwd_s"]
        )
        (v0, (dx0, dk0)), (v1, (dx1, dk1)) = outputs.values()
        summary["max_rel_diff"] = {
            name: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
            for name, a, b in (("loss", v0, v1), ("dx", dx0, dx1), ("dkernel", dk0, dk1))
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
