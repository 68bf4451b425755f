"""DSVAE on the built-in moving-shapes dataset: the Quickstart job (CPU-sized).

Run (train, then evaluate into the workdir):
    python -m experiments.main --config=experiments/shapes.py --workdir=/tmp/shapes

Variants: `:default` (the Quickstart job) and `:smoke` (a few steps at tiny width, for tests).
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured (2 CPU cores, jax 0.10.2): 3 min 06 s for the whole job; test reconstruction 1363;
shape from s 0.45 (0.24 from d), size from s 0.96, colour from s 0.34, motion from d 0.41 (0.15
from s); verification EER static 0.184 / dynamic 0.495. The judge (`--mode=judge`, 22 min) scores
1.000 on every factor; fix d and sample s keeps the judged motion 96 %. The decoder renders grey
blobs in this budget (no colour yet). Details: docs/results.md.
"""

from __future__ import annotations

from experiments.base import base_config, parse_variant, shrink_to_smoke

VARIANTS = ("default", "smoke")


def get_config(arg: str | None = None):
    variant = parse_variant(arg, VARIANTS)
    config = base_config()
    config.method = "dsvae"
    config.data.name = "shapes"
    config.data.num_train = 12000  # the judge needs them for >= 99% on motion
    config.data.num_test = 500
    config.data.batch_size = 16

    # CPU-sized DSVAE: eighth-width convolutions, small latents and LSTMs.
    config.model.width = 0.125
    config.model.feature_dim = 64
    config.model.hidden_dim = 64
    config.model.static_dim = 16
    config.model.dynamic_dim = 4
    # beta = 0.1 on both KL terms: at weight 1 the dynamic posterior collapses within the
    # 5-minute budget (measured, docs/results.md); the weights are the paper's DSVAE otherwise.
    config.loss.kl_static_weight = 0.1
    config.loss.kl_dynamic_weight = 0.1
    config.train.learning_rate = 2e-3
    config.train.num_steps = 1400
    config.train.log_every = 50
    config.train.checkpoint_every = 700
    config.eval.limit = 500
    config.eval.mi_every = 350
    # The judge-scored metrics need `--mode=judge` first (see below); the Quickstart skips them.
    config.eval.evaluators = ("reconstruction", "grids", "latent_classification",
                              "verification_eer", "mutual_information", "tsne")

    # The shapes judge (quarter width; measured accuracy and runtime in docs/results.md).
    config.judge.workdir = "runs/judges/shapes"
    config.judge.width = 0.25
    config.judge.feature_dim = 64
    config.judge.hidden_dim = 64
    config.judge.head_dim = 64
    config.judge.batch_size = 32
    config.judge.train.learning_rate = 2e-3
    config.judge.train.num_steps = 6000
    config.judge.train.checkpoint_every = 1000

    if variant == "smoke":
        config.data.num_train = 64
        config.data.num_test = 16
        shrink_to_smoke(config, judge_batch_size=8)
    return config
