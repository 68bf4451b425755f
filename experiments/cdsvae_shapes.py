"""C-DSVAE on moving shapes, with the budget and network of the DSVAE Quickstart (shapes.py).

Run:
    python -m experiments.main --config=experiments/cdsvae_shapes.py --workdir=runs/cdsvae_shapes
Variants: `:default` (as experiments/shapes.py: the Quickstart's data, network and budget),
`:64px` (the earlier 64x64 form of experiments/shapes.py) and `:smoke` (tests).
The KL weights stay at the Quickstart's alpha = 0.1; beta = gamma = 1 (C-DSVAE App. A.5).
Not yet measured on the current data and code (docs/results.md, "Not yet measured").
"""

from __future__ import annotations

from experiments import shapes
from experiments.base import use_method

VARIANTS = shapes.VARIANTS


def get_config(arg: str | None = None):
    config = shapes.get_config(arg)
    use_method(config, "cdsvae")
    return config
