"""SPYL on moving shapes, with the budget and network of the DSVAE Quickstart (shapes.py).

Run:
    python -m experiments.main --config=experiments/spyl_shapes.py --workdir=runs/spyl_shapes
Variants: `:default` (1400 steps, eighth width, as experiments/shapes.py) and `:smoke` (tests).
Weights as the C-DSVAE shapes run, so the two differ only in their views: lambda_1 = 1 on the
per-sequence error (reduction "mean"), lambda_2 = lambda_3 = 0.1 (the Quickstart's KL weights),
lambda_4 = lambda_5 = 1.
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured (2 CPU cores, cores shared with another run): 1400 steps in 1310 s; test reconstruction
1365; fix d and sample s keeps the judged motion 95.7 % (IS 8.08, H(y|x) 0.098); SVC size from
s 0.94, motion from d 0.43 -- within noise of DSVAE on this budget (docs/results.md,
"Contrastive methods on shapes").
"""

from __future__ import annotations

from experiments import shapes
from experiments.base import add_spyl_fields

VARIANTS = shapes.VARIANTS


def get_config(arg: str | None = None):
    config = shapes.get_config(arg)
    add_spyl_fields(config)
    config.spyl.reconstruction_weight = 1.0
    config.spyl.reconstruction_reduction = "mean"
    config.spyl.contrastive_weight = 1.0
    config.spyl.mi_static_dynamic_weight = 1.0
    config.loss.kl_static_weight = 0.1
    config.loss.kl_dynamic_weight = 0.1
    return config
