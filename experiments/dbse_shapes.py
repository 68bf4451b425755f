"""DBSE on moving shapes, with the budget and network of the DSVAE Quickstart (shapes.py).

Run:
    python -m experiments.main --config=experiments/dbse_shapes.py --workdir=runs/dbse_shapes
Variants: `:default` (as experiments/shapes.py: the Quickstart's data, network and budget),
`:64px` (the earlier 64x64 form of experiments/shapes.py) and `:smoke` (tests).
The paper's model (s from x_1, d_1 := 0, h_t = h~_t - s~) with alpha = 0.2 (Table 5, Sprites)
and the Quickstart's KL weights beta = 0.1 on the per-sequence error (reduction "mean"), so it
differs from the DSVAE Quickstart only in its posterior and the anchor term. The paper's batch
sum: --config.dbse.reconstruction_reduction=sum.
Not yet measured on the current data and code (docs/results.md, "Not yet measured").
"""

from __future__ import annotations

from experiments import shapes
from experiments.base import use_method

VARIANTS = shapes.VARIANTS


def get_config(arg: str | None = None):
    config = shapes.get_config(arg)
    use_method(config, "dbse")
    config.dbse.anchor_weight = 0.2
    config.dbse.reconstruction_reduction = "mean"
    config.loss.kl_static_weight = 0.1
    config.loss.kl_dynamic_weight = 0.1
    return config
