"""R-WAE(MMD) on moving shapes, with the budget and network of the DSVAE Quickstart (shapes.py).

Run:
    python -m experiments.main --config=experiments/rwae_shapes.py --workdir=runs/rwae_shapes
Variants: `:default` (as experiments/shapes.py: the Quickstart's data, network and budget),
`:64px` (the earlier 64x64 form of experiments/shapes.py) and `:smoke` (tests).
R-WAE(GAN) on the same budget: experiments/rwae_gan_shapes.py.
beta_1 = 10, beta_2 = 60 and L = 5 as the paper's Sprites run (App. G); Adam(0.5, 0.9) with the
Quickstart's 2e-3 for the decoder and prior and a third of it for the encoder and the critic
(the paper's 3:1 ratio); the KL stabiliser on d at the Quickstart's 0.1. With L = 5 the
decoder is stepped on one batch in six. Decoder: the paper's concat(s, d_t) -> FC -> LSTM ->
frame decoder (`rwae.decoder_fusion = "fc_lstm"`, FC + LSTM of model.feature_dim = 64;
experiments/rwae_sprites.py); --config.rwae.decoder_fusion=framewise for DSVAE's
frame-by-frame decoder on concat(s, d_t).
Not yet measured on the current data and code (docs/results.md, "Not yet measured").
"""

from __future__ import annotations

from experiments import shapes
from experiments.base import use_method

VARIANTS = shapes.VARIANTS


def get_config(arg: str | None = None, divergence_static: str = "mmd"):
    config = shapes.get_config(arg)
    learning_rate = config.train.learning_rate
    use_method(config, "rwae", divergence_static=divergence_static)
    config.train.learning_rate = learning_rate
    config.rwae.encoder_learning_rate = learning_rate / 3
    config.rwae.critic_learning_rate = learning_rate / 3
    config.loss.kl_dynamic_weight = 0.1
    return config
