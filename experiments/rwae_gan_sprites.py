"""R-WAE(GAN) on Sprites: experiments/rwae_sprites.py with the JS discriminator on s.

Prepare the data and train the judge once (see experiments/sprites.py), then:
    python -m experiments.main --config=experiments/rwae_gan_sprites.py --workdir=runs/rwae_gan

Variants `:default`, `:cpu`, `:smoke` as experiments/rwae_sprites.py, with its decoder (concat(s,
d_t) -> FC -> LSTM -> DCGAN frame decoder; --config.rwae.decoder_fusion=framewise for DSVAE's
frame-by-frame decoder, which runs made before the fusion used); D_gamma is the MLP
256-256-128-1 without spectral normalisation, with the gradient penalty of eq. (24)
(lambda = 10) at interpolates of prior and posterior samples.
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured, `:cpu` with the frame-by-frame decoder (2 CPU cores, alone): 2400 steps in 1024 s; fix
d and sample s keeps the judged action 41.7 +- 2.3 % (IS 3.39; R-WAE(MMD) 39.4 %, DSVAE 72.4 %);
reconstruction 650; details in docs/results.md ("DBSE and R-WAE").
"""

from __future__ import annotations

from experiments import rwae_sprites

VARIANTS = rwae_sprites.VARIANTS


def get_config(arg: str | None = None):
    return rwae_sprites.get_config(arg, divergence_static="gan")
