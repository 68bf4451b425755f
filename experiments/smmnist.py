"""Stochastic Moving MNIST (two digits, 64x64 grey, 15 frames) with C-DSVAE's settings.

Sequences are generated on the fly, deterministically from config.data.seed, from MNIST digits
in config.data.source_dir (default ../shared/data/mnist: the 10,000 test digits, split 8000 /
2000 into disjoint train / test pools; with the full MNIST files there, the official 60k / 10k
split). README "SM-MNIST" states the motion rule. Train the digit-pair judge once, then a run:
    python -m experiments.main --config=experiments/smmnist.py:cpu --mode=judge
    python -m experiments.main --config=experiments/smmnist.py:cpu --workdir=runs/smmnist_cpu

Variants:
  :default  C-DSVAE (App. C.2, SM-MNIST): ds = 256, dd = 32, alpha = 1, beta = 5, Adam 1e-3,
            batch 128, 60,000 training sequences, 100 epochs. Needs a GPU/TPU.
  :cpu      the same objective on the Sprites `:cpu` network (quarter width, ds 64, dd 16,
            LSTMs 128, batch 32, Adam 2e-3), 20,000 training sequences, 1000 test sequences
            scored; sized for a CPU session (docs/results.md has its runtime and scores).
  :smoke    a few steps at tiny width (tests).
The static label is the digit pair in ascending order (10 * low + high: which digit was drawn
first is invisible in the frames); there is no dynamic label, so the
generation metric is fix s and sample d_1:T ~ p(d): fix_static/digits/{accuracy, ...}
(C-DSVAE Table 3, after R-WAE Table 2: the judge must still read the same two digits).
Paper (C-DSVAE Table 3): Acc 97.84 %, IS 7.163, H(y|x) 0.145, H(y) 2.176.
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured, `:cpu` (2 CPU cores, alone): the judge reads the pair with 0.888 (3000 steps, 17 min);
C-DSVAE after 3000 steps (61 min; --config.train.num_steps=3000) keeps the judged pair 7.9 %
(IS 3.68, H(y|x) 1.02, H(y) 2.32) and reads it from s with 25 % (SVC; from d 2.4 %): a budget
far from the paper's; details in docs/results.md ("SM-MNIST: C-DSVAE `:cpu`").
"""

from __future__ import annotations

from experiments.base import (
    base_config,
    parse_variant,
    shrink_to_cpu,
    shrink_to_smoke,
    use_method,
)

VARIANTS = ("default", "cpu", "smoke")


def get_config(arg: str | None = None):
    variant = parse_variant(arg, VARIANTS)
    config = base_config()
    use_method(config, "cdsvae")
    config.data.name = "smmnist"
    config.data.source_dir = "../shared/data/mnist"
    config.data.channels = 1
    config.data.pixel_scale = 255.0
    config.data.num_train = 60_000
    config.data.num_test = 10_000  # R-WAE scores 10,000 test sequences
    config.data.batch_size = 128

    config.model.static_dim = 256
    config.model.dynamic_dim = 32
    config.model.hidden_dim = 256
    config.model.feature_dim = 128
    config.loss.kl_static_weight = config.loss.kl_dynamic_weight = 1.0  # alpha
    config.cdsvae.contrastive_weight = 5.0  # beta (App. C.2, SM-MNIST)
    config.train.learning_rate = 1e-3
    config.train.num_steps = 100 * config.data.num_train // config.data.batch_size
    config.eval.limit = None
    config.eval.mi_every = 0

    config.judge.workdir = "judges/smmnist"
    config.judge.batch_size = 64
    config.judge.train.num_steps = 5000

    if variant == "cpu":
        shrink_to_cpu(config)
        config.data.num_train = 20_000
        config.data.num_test = 2_000
        config.train.num_steps = 1000
        config.judge.workdir = "judges/smmnist_cpu"
        config.judge.train.num_steps = 3000
        # A quarter-width judge of the digit pairs on a CPU budget: 3000 steps (17 min) reach
        # 0.888 test accuracy (docs/results.md); a factor below this threshold is not scored.
        config.judge.min_accuracy = 0.85
    elif variant == "smoke":
        config.data.num_train = 64
        config.data.num_test = 32
        shrink_to_smoke(config, judge_batch_size=4)
    return config
