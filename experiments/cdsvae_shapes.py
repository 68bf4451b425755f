"""C-DSVAE on moving shapes, with the budget and network of the DSVAE Quickstart (shapes.py).

Run:
    python -m experiments.main --config=experiments/cdsvae_shapes.py --workdir=runs/cdsvae_shapes
Variants: `:default` (1400 steps, eighth width, as experiments/shapes.py) and `:smoke` (tests).
The KL weights stay at the Quickstart's alpha = 0.1; beta = gamma = 1 (C-DSVAE App. A.5).
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured (2 CPU cores, cores shared with another run): 1400 steps in 928 s; test reconstruction
1362; fix d and sample s keeps the judged motion 97.6 % (IS 8.11, H(y|x) 0.092); SVC size from
s 0.95, motion from d 0.40 -- within noise of DSVAE on this budget (docs/results.md,
"Contrastive methods on shapes").
"""

from __future__ import annotations

from experiments import shapes
from experiments.base import add_cdsvae_fields

VARIANTS = shapes.VARIANTS


def get_config(arg: str | None = None):
    config = shapes.get_config(arg)
    add_cdsvae_fields(config)
    return config
