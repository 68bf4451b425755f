"""Fields every experiment config has, with their defaults. Experiment files override them.

Not a runnable config itself: experiments/<name>.py calls `base_config()` and fills it in.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.method = "dsvae"
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "shapes"
    config.data.batch_size = 32
    config.data.num_train = 8000
    config.data.num_test = 1000
    config.data.seed = 0
    config.data.channels = 3
    config.data.pixel_scale = 255.0  # uint8 pixels / pixel_scale -> float input

    config.model = ml_collections.ConfigDict()
    config.model.static_dim = 256
    config.model.dynamic_dim = 32
    config.model.hidden_dim = 256
    config.model.feature_dim = 128  # g: the frame encoder's output size
    config.model.width = 1.0  # multiplier on every conv channel count
    config.model.prior_layers = 2
    config.model.compute_dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.kl_static_weight = 1.0
    config.loss.kl_dynamic_weight = 1.0

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 10_000
    config.train.learning_rate = 1e-3
    config.train.adam_b1 = 0.9
    config.train.adam_b2 = 0.999
    config.train.grad_clip_norm = 0.0  # 0 disables clipping
    config.train.log_every = 50
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 3

    config.eval = ml_collections.ConfigDict()
    config.eval.evaluators = ("reconstruction", "grids")
    config.eval.batch_size = 100
    config.eval.limit = 1000  # test sequences used by the metric evaluators (None: all)
    config.eval.grid_sequences = 8
    return config


def parse_variant(arg: str | None, variants: tuple[str, ...]) -> str:
    """The `:variant` suffix of --config=path.py:variant, checked against the known ones."""
    variant = arg or variants[0]
    if variant not in variants:
        raise ValueError(f"Unknown config variant {variant!r}; choose one of {list(variants)}.")
    return variant
