"""The latent critic of R-WAE (Han et al., ICLR 2021): the feature map f_gamma of R-WAE(MMD) and
the discriminator D_gamma of R-WAE(GAN) on the content code z^c.

R-WAE App. G: both are fully connected networks with layer sizes (256, 256, 128, 1). App. D:
"we apply spectral parametrization for the weight matrix (Miyato et al., 2018)".
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class LatentCritic(nn.Module):
    """MLP z (n, D) -> (n,): Dense(256) - Dense(256) - Dense(128) - Dense(1), leaky_relu(0.2)
    between layers (none after the last), one scalar per sample.

    With `spectral_norm` (default) every Dense is wrapped in `nn.SpectralNorm` (one power
    iteration per call; its `u` vector and `sigma` live in the 'batch_stats' collection).
    Call with `update_stats=True` and `mutable=['batch_stats']` in training steps so the power
    iteration converges across steps; `update_stats=False` (evaluation, the gradient-penalty
    `fn`) leaves the state untouched. Each normalised kernel then has spectral norm ~1 and
    leaky_relu is 1-Lipschitz, so the critic is (about) 1-Lipschitz in z.

    For one sample (the `fn` of `estimators.mean_gradient_sq_norm`) call it on a (1, D) batch,
    e.g. `lambda z: critic.apply(variables, z[None])[0]`.

    Initialisation: Flax's default (lecun_normal kernels, zero biases), not the library's
    `dense_init` = N(0, 0.01^2) of the Gaussian heads: with spectral normalisation the kernel
    scale cancels anyway, and without it a 0.01-std init would make the four-layer critic's
    output and input-gradient vanish (~1e-6), starving the MMD/GAN signal at the start.
    """

    hidden_dims: tuple[int, ...] = (256, 256, 128)
    spectral_norm: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, z: jax.Array, update_stats: bool = False) -> jax.Array:
        h = z
        sizes = tuple(self.hidden_dims) + (1,)
        for i, features in enumerate(sizes):
            dense = nn.Dense(features, dtype=self.dtype, name=f"dense_{i}")
            if self.spectral_norm:
                h = nn.SpectralNorm(dense, dtype=self.dtype, name=f"spectral_norm_{i}")(
                    h, update_stats=update_stats
                )
            else:
                h = dense(h)
            if i < len(sizes) - 1:
                h = nn.leaky_relu(h, negative_slope=0.2)
        return jnp.squeeze(h, axis=-1).astype(jnp.float32)
