"""R-WAE(GAN) on moving shapes: experiments/rwae_shapes.py with the JS discriminator on s.

Run:
    python -m experiments.main --config=experiments/rwae_gan_shapes.py --workdir=runs/rwae_gan
Variants: `:default` and `:smoke`, as experiments/rwae_shapes.py (its FC-LSTM decoder input;
--config.rwae.decoder_fusion=framewise for the frame-by-frame one). The discriminator D_gamma is
the MLP 256-256-128-1 without spectral normalisation, with the gradient penalty of eq. (24)
(lambda = 10) on interpolates of prior and posterior samples.
Measured at commit 37afe59, before issue 19 changed BatchNorm to PyTorch's semantics (a re-run
with the current code is pending, issue 21):
Measured with the frame-by-frame decoder (2 CPU cores): 1400 steps in 124 s; test reconstruction
1494; fix d and sample s keeps the judged motion 36.8 % (DSVAE 96.8 %); docs/results.md ("DBSE
and R-WAE").
"""

from __future__ import annotations

from experiments import rwae_shapes

VARIANTS = rwae_shapes.VARIANTS


def get_config(arg: str | None = None):
    return rwae_shapes.get_config(arg, divergence_static="gan")
