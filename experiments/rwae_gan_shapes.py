"""R-WAE(GAN) on moving shapes: experiments/rwae_shapes.py with the JS discriminator on s.

Run:
    python -m experiments.main --config=experiments/rwae_gan_shapes.py --workdir=runs/rwae_gan
Variants: `:default`, `:64px` and `:smoke`, as experiments/rwae_shapes.py (its FC-LSTM decoder
input; --config.rwae.decoder_fusion=framewise for the frame-by-frame one). The discriminator
D_gamma is the MLP 256-256-128-1 without spectral normalisation, with the gradient penalty of
eq. (24) (lambda = 10) on interpolates of prior and posterior samples.
Not yet measured on the current data and code (docs/results.md, "Not yet measured").
"""

from __future__ import annotations

from experiments import rwae_shapes

VARIANTS = rwae_shapes.VARIANTS


def get_config(arg: str | None = None):
    return rwae_shapes.get_config(arg, divergence_static="gan")
