"""Batch estimators over diagonal-Gaussian posteriors: pairwise log-densities and the
minibatch-weighted-sampling (MWS) mutual information of C-DSVAE App. A.3.

Pure jnp functions of posterior parameters and samples; every [B, B] matrix is built with
matrix products over the latent dimension, so no [B, B, D] (or [T, B, B, D]) tensor exists.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density_matrix(z: Array, mean: Array, logvar: Array) -> Array:
    """log N(z_i; mean_j, diag(exp(logvar_j))) for every pair (i, j), summed over dimensions.

    z, mean, logvar: (..., B, D) -> (..., B, B). Leading axes (e.g. time) are batched.
    Expands -(z_i - mu_j)^2 / (2 var_j) into three matrix products, so the cost is a few
    (B, D) x (D, B) products and memory is O(B^2), never O(B^2 D).
    """
    precision = jnp.exp(-logvar)  # 1 / var_j
    hi = jax.lax.Precision.HIGHEST
    quad = (
        jnp.einsum("...id,...jd->...ij", jnp.square(z), precision, precision=hi)
        - 2.0 * jnp.einsum("...id,...jd->...ij", z, mean * precision, precision=hi)
        + jnp.sum(jnp.square(mean) * precision, axis=-1)[..., None, :]
    )
    log_norm = jnp.sum(logvar, axis=-1)[..., None, :] + z.shape[-1] * _LOG_2PI
    return -0.5 * (quad + log_norm)


def mws_mutual_information(
    s: Array,
    s_mean: Array,
    s_logvar: Array,
    d: Array,
    d_mean: Array,
    d_logvar: Array,
    dataset_size: int | None = None,
) -> dict[str, Array]:
    """I(s; d_1:T), I(s; x_1:T) and I(d_1:T; x_1:T) by minibatch weighted sampling.

    C-DSVAE App. A.3, eq. (13): the aggregate posterior q(s) = E_x q(s|x) at each sample s_i is
    estimated from the minibatch, log q(s_i) ~ logsumexp_j log q(s_i | x_j) - log M, and
    likewise for d_1:T (log q(d_i | x_j) = sum_t log q(d_t,i | x_j), a [T, B, B] block) and for
    the pair (s, d) (the sum of the two blocks). Then
        I(s; d) = H(s) + H(d) - H(s, d),   I(s; x) = H(s) - H(s|x),   I(d; x) = H(d) - H(d|x),
    with H(s|x) = -mean_i log q(s_i | x_i).

    Eq. (13) as printed subtracts log(N M) rather than log M (N = dataset size, after
    beta-TCVAE's MWS). That adds log N to every entropy, which does not cancel in the mutual
    informations (it biases each by +log N); pass `dataset_size=N` to reproduce it exactly.

    Args:
      s, s_mean, s_logvar: (B, Ds) sample of q(s|x_i) and its parameters.
      d, d_mean, d_logvar: (B, T, Dd) sampled trajectory of q(d_1:T|x_i) and its parameters.
    Returns scalars `mi_s_d`, `mi_s_x`, `mi_d_x` in nats (and the three entropies).
    """
    batch = s.shape[0]
    log_q_s = gaussian_log_density_matrix(s, s_mean, s_logvar)  # [B, B]
    to_time_major = lambda a: jnp.swapaxes(a, 0, 1)
    log_q_d = jnp.sum(  # [T, B, B] summed over time -> [B, B]
        gaussian_log_density_matrix(to_time_major(d), to_time_major(d_mean),
                                    to_time_major(d_logvar)),
        axis=0,
    )
    log_m = math.log(batch) + (math.log(dataset_size) if dataset_size else 0.0)

    def entropy(log_q):  # -E_i log q(z_i), q(z_i) = (1/M) sum_j q(z_i | x_j)
        return -jnp.mean(jax.scipy.special.logsumexp(log_q, axis=1) - log_m)

    h_s, h_d, h_sd = entropy(log_q_s), entropy(log_q_d), entropy(log_q_s + log_q_d)
    h_s_given_x = -jnp.mean(jnp.diagonal(log_q_s))
    h_d_given_x = -jnp.mean(jnp.diagonal(log_q_d))
    return dict(
        mi_s_d=h_s + h_d - h_sd,
        mi_s_x=h_s - h_s_given_x,
        mi_d_x=h_d - h_d_given_x,
        entropy_s=h_s,
        entropy_d=h_d,
        entropy_s_d=h_sd,
    )
