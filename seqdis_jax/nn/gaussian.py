"""Diagonal-Gaussian helpers shared by every method: sampling and closed-form KLs."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def reparameterize(rng: Array, mean: Array, logvar: Array) -> Array:
    """Draws z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014)."""
    eps = jax.random.normal(rng, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


def kl_diag_gaussians(mean_q: Array, logvar_q: Array, mean_p: Array, logvar_p: Array) -> Array:
    """KL[N(mean_q, e^logvar_q) || N(mean_p, e^logvar_p)] per element (not summed).

    0.5 * (logvar_p - logvar_q + (e^logvar_q + (mean_q - mean_p)^2) / e^logvar_p - 1).
    """
    return 0.5 * (
        logvar_p
        - logvar_q
        + (jnp.exp(logvar_q) + jnp.square(mean_q - mean_p)) * jnp.exp(-logvar_p)
        - 1.0
    )


def kl_standard_normal(mean: Array, logvar: Array) -> Array:
    """KL[N(mean, e^logvar) || N(0, I)] per element (not summed)."""
    return 0.5 * (jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)
