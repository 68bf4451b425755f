"""C-DSVAE on Sprites (Bai et al. 2021, Table 1), on the DSVAE network of experiments/sprites.py.

Prepare the data and train the judge once (see experiments/sprites.py), then:
    python -m experiments.main --config=experiments/cdsvae_sprites.py --workdir=runs/cdsvae

Variants:
  :default  the paper (App. C.2): ds = 256, dd = 32, alpha = 1.0, beta = 1, gamma = 1, Adam
            1.5e-3, batch 128, 100 epochs. Needs a GPU/TPU.
  :code     the authors' code (JunwenBai/C-DSVAE): run_cdsvae.sh's beta = 10 on both
            contrastive terms and Adam 1e-3, and their model: q(d | x) a tanh RNN over the
            static posterior's bidirectional LSTM outputs (model.dynamic_posterior=rnn_bilstm),
            LeakyReLU(0.2) after the static heads (model.static_head_activation=leaky_relu),
            PyTorch's initialisation of the LSTM / RNN cells (model.recurrent_init=pytorch),
            the per-frame MWS penalty with their density and + log(B N)
            (cdsvae.mws_estimator=per_frame_code). docs/results.md ("`:code` variants") lists
            what still differs from their code, and why.
  :cpu      the DSVAE `:cpu` network of experiments/sprites.py (quarter width, batch 32),
            alpha = 1, beta = 1, Adam 2e-3, 1200 steps (half the DSVAE `:cpu` run's).
  :smoke    a few steps at tiny width on a 2-character build (tests).
Paper (Table 1, C-DSVAE): Acc 99.49 %, IS 8.637, H(y|x) 0.041, H(y) 2.197.
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured, `:cpu` (2 CPU cores shared with another run): 1200 steps in 46 min; fix d and sample s
keeps the judged action 85.98 +- 1.09 % (IS 7.862, H(y|x) 0.125, H(y) 2.187; DSVAE `:cpu` with
2400 steps: 72.4 %); details in docs/results.md ("C-DSVAE and SPYL on Sprites").
"""

from __future__ import annotations

from experiments import sprites
from experiments.base import add_cdsvae_fields, parse_variant, set_cdsvae_code_posterior

VARIANTS = ("default", "code", "cpu", "smoke")


def get_config(arg: str | None = None):
    variant = parse_variant(arg, VARIANTS)
    config = sprites.get_config({"code": "default"}.get(variant, variant))
    config.data.num_train = sprites.TRAIN_SEQUENCES
    add_cdsvae_fields(config)
    if variant == "default":
        config.train.learning_rate = 1.5e-3
    elif variant == "code":
        config.cdsvae.contrastive_weight = 10.0
        config.train.learning_rate = 1e-3
        set_cdsvae_code_posterior(config)
        config.model.static_head_activation = "leaky_relu"
        config.cdsvae.mws_estimator = "per_frame_code"
    elif variant == "cpu":
        # A step costs 1.8-2.0x DSVAE's (bench/train_step_cpu.py, docs/results.md): half the
        # DSVAE `:cpu` steps, to fit a CPU session.
        config.train.num_steps = 1200
    return config
