"""SPYL on moving shapes, with the budget and network of the DSVAE Quickstart (shapes.py).

Run:
    python -m experiments.main --config=experiments/spyl_shapes.py --workdir=runs/spyl_shapes
Variants: `:default` (as experiments/shapes.py: the Quickstart's data, network and budget),
`:64px` (the earlier 64x64 form of experiments/shapes.py) and `:smoke` (tests).
Weights as the C-DSVAE shapes run, so the two differ only in their views: lambda_1 = 1 on the
per-sequence error (reduction "mean"), lambda_2 = lambda_3 = 0.1 (the Quickstart's KL weights),
lambda_4 = lambda_5 = 1.
Not yet measured on the current data and code (docs/results.md, "Not yet measured").
"""

from __future__ import annotations

from experiments import shapes
from experiments.base import use_method

VARIANTS = shapes.VARIANTS


def get_config(arg: str | None = None):
    config = shapes.get_config(arg)
    use_method(config, "spyl")
    config.spyl.reconstruction_weight = 1.0
    config.spyl.reconstruction_reduction = "mean"
    config.spyl.contrastive_weight = 1.0
    config.spyl.mi_static_dynamic_weight = 1.0
    config.loss.kl_static_weight = 0.1
    config.loss.kl_dynamic_weight = 0.1
    return config
