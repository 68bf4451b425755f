"""Time-series encoder and decoder of GLR (Tonekaboni et al. 2022), used by SPYL (App. A.3
"Time Series Datasets") and DBSE (App. A.4 "Time Series").

* Encoder, per time step: Linear(F -> 32) -> Linear(32 -> 64) -> Linear(64 -> 32), each with
  ReLU; the (B, T, 32) features then go to the usual static and dynamic LSTMs.
* Decoder, over the whole sequence: Linear([s, d_t] -> 32) + tanh -> LSTM(32) over time ->
  Linear(32 -> 64) + ReLU -> Linear(64 -> 32) + ReLU -> two linear heads, the mean and the
  log-variance of a diagonal Gaussian p(x_t | s, d_<=t). Its negative log-likelihood is the
  reconstruction term (`seqdis_jax.models.dsvae.reconstruction_error`).

The decoder's LSTM makes x_t depend on d_<=t, not only on d_t: the one place where a modality
changes DSVAE's factorisation p(x_t | s, d_t); the papers use it as GLR does.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

ENCODER_WIDTHS = (32, 64, 32)  # SPYL A.3 / DBSE A.4
DECODER_WIDTH = 32
DECODER_HIDDEN = (64, 32)
# Keeps the likelihood's variance in [e^-10, e^10]: an unbounded log-variance lets the NLL of a
# perfectly fitted constant feature run to minus infinity.
LOGVAR_BOUND = 10.0


class SeriesEncoder(nn.Module):
    """(B, T, F) -> (B, T, 32): the per-step MLP 32-64-32 with ReLU after each layer."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = x.astype(self.dtype or jnp.float32)
        for i, width in enumerate(ENCODER_WIDTHS):
            h = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"dense{i + 1}")(h))
        return h


class SeriesDecoder(nn.Module):
    """[s, d_t] (B, T, D) -> (mean, logvar) of p(x_t | .), each (B, T, F)."""

    num_features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, latents: Array) -> tuple[Array, Array]:
        h = jnp.tanh(nn.Dense(DECODER_WIDTH, dtype=self.dtype, name="project")(
            latents.astype(self.dtype or jnp.float32)))
        h = nn.RNN(nn.OptimizedLSTMCell(DECODER_WIDTH, dtype=self.dtype, name="lstm"))(h)
        for i, width in enumerate(DECODER_HIDDEN):
            h = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"dense{i + 1}")(h))
        mean = nn.Dense(self.num_features, dtype=self.dtype, name="mean")(h)
        logvar = nn.Dense(self.num_features, dtype=self.dtype, name="logvar")(h)
        logvar = LOGVAR_BOUND * jnp.tanh(logvar.astype(jnp.float32) / LOGVAR_BOUND)
        return mean.astype(jnp.float32), logvar
