"""Jester hand gestures (20BN-jester v1): SPYL's five gestures, 10 frames, 64x64 RGB.

Jester is not on this machine: download it from the 20BN/Qualcomm site, then prepare it once
(README "Jester" has the layout and the frame rule) and train the gesture judge:
    python -m data_prep.jester --source_dir=<folder holding 20bn-jester-v1/ and the CSVs>
    python -m experiments.main --config=experiments/jester.py --mode=judge
    python -m experiments.main --config=experiments/jester.py --workdir=runs/jester_spyl

Variants:
  :spyl     SPYL (Table 6, Jesters): lambda_1..5 = 5, 1, 1, 1, 1; Adam 1e-3; batch 16;
            ds = 256, dd = 64; 600 epochs (A.4's maximum). Needs a GPU/TPU.
  :cdsvae   C-DSVAE with the same network, batch and learning rate (SPYL's Table 3 baseline;
            neither paper gives its Jester weights): beta = 1, alpha = 1.
  :smoke, :cdsvae_smoke   a few steps at tiny width on the fixture build (tests).
Jester labels only the gesture (dynamic); there is no static label, so the metrics are the
gesture's latent classification from s and d (SPYL Table 3: from d 27.70 %, C-DSVAE 21.88 %,
chance 20 %) and fix d / sample s judged on the gesture. Not measured here.
"""

from __future__ import annotations

from experiments.base import (
    base_config,
    parse_variant,
    set_spyl_weights,
    shrink_method_to_smoke,
    use_method,
)

VARIANTS = ("spyl", "cdsvae", "smoke", "cdsvae_smoke")
# About 4,400 training videos per gesture in the official train CSV; converts epochs to steps.
TRAIN_SEQUENCES = 22_000


def get_config(arg: str | None = None):
    variant = parse_variant(arg, VARIANTS)
    config = base_config()
    config.data.name = "jester"
    config.data.pixel_scale = 255.0
    config.data.num_train = TRAIN_SEQUENCES
    config.data.batch_size = 16
    config.model.static_dim = 256
    config.model.dynamic_dim = 64
    config.train.learning_rate = 1e-3
    config.train.num_steps = 600 * TRAIN_SEQUENCES // 16
    config.eval.limit = None
    config.eval.mi_every = 0
    config.judge.workdir = "judges/jester"
    config.judge.min_accuracy = 0.9
    if variant.startswith("cdsvae"):
        use_method(config, "cdsvae")
    else:  # Table 6, Jesters
        use_method(config, "spyl")
        set_spyl_weights(config, 5.0, 1.0, 1.0, 1.0, 1.0)  # lambda_1..5
    if variant.endswith("smoke"):
        shrink_method_to_smoke(config)
    return config
