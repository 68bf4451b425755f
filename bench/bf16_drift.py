"""How far a bfloat16 training run drifts from float32: the same 200 steps, same init, same
batches, at the `:smoke` width, on real Sprites sequences.

    python bench/bf16_drift.py                          # dsvae and cdsvae, 200 steps
    python bench/bf16_drift.py --methods=dbse --steps=100 --characters=8
    python bench/bf16_drift.py --precisions=bf16_products

Each of --precisions (`configuration.PRECISIONS`) against float32: "bfloat16"
(`model.compute_dtype`) computes activations and matrix products in bf16 (products accumulated
in float32; BatchNorm statistics, the losses, parameters and Adam in float32); "bf16_products"
(`model.product_dtype`) keeps everything float32 but the frame convolutions' products.
Training data: every sequence of the first --characters LPC characters
(../shared/data/sprites_lpc, 9 sequences each), drawn in random minibatches of --batch (one
seeded order shared by all runs). Printed per method and precision: the loss at a few steps of
both runs and the relative difference of the mean loss over the last 20 steps; it exits 1 when
that exceeds --tolerance (default 5 %).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import cdsvae_sprites, dbse_sprites, sprites, spyl_sprites  # noqa: E402
from seqdis_jax import configuration, models, train  # noqa: E402
from seqdis_jax.data import sprites as sprites_data  # noqa: E402

CONFIGS = {"dsvae": sprites, "cdsvae": cdsvae_sprites, "spyl": spyl_sprites,
           "dbse": dbse_sprites}


def losses(method_name: str, dtype: str, video: np.ndarray, args) -> list[float]:
    config = CONFIGS[method_name].get_config("smoke")
    config.data.batch_size = args.batch
    configuration.set_precision(config, dtype)
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    shape = (args.batch,) + video.shape[1:]
    state = train.create_train_state(model, tx, jnp.zeros(shape), jax.random.PRNGKey(0))
    step = train.make_train_step(method, model, tx, config)
    order = np.random.default_rng(0)
    out = []
    for i in range(args.steps):
        idx = order.choice(len(video), args.batch, replace=False)
        state, metrics = step(state, {"video": video[idx]}, jax.random.PRNGKey(i))
        out.append(float(metrics["loss"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="dsvae,cdsvae")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--precisions", default="bfloat16,bf16_products",
                        help="compared with float32 (configuration.PRECISIONS)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--characters", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--sheets", default=os.path.join(ROOT, "..", "shared", "data",
                                                         "sprites_lpc"))
    args = parser.parse_args()
    video = sprites_data.generate(args.sheets, range(args.characters))["video"]
    worst = 0.0
    for name in args.methods.split(","):
        f32 = losses(name, "float32", video, args)
        for precision in args.precisions.split(","):
            low = losses(name, precision, video, args)
            tail32, tail_low = np.mean(f32[-20:]), np.mean(low[-20:])
            rel = abs(tail_low - tail32) / abs(tail32)
            worst = max(worst, rel)
            marks = sorted({0, args.steps // 4, args.steps // 2, args.steps - 1})
            print(json.dumps(dict(method=name, precision=precision, steps=args.steps,
                                  batch=args.batch,
                                  loss_float32={i: round(f32[i], 2) for i in marks},
                                  loss_low={i: round(low[i], 2) for i in marks},
                                  last20_mean_float32=round(float(tail32), 3),
                                  last20_mean_low=round(float(tail_low), 3),
                                  relative_difference=round(float(rel), 4))), flush=True)
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()
