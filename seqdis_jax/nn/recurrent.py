"""Recurrent posteriors and the learned dynamic prior of the DSVAE family.

Every recurrence is a `flax.linen` scan (a `jax.lax.scan` underneath): there is no Python
loop over time. Noise for the nested (ancestral) sampling is drawn once, outside the scan,
from the module's `'sample'` RNG stream, so a scan step is a pure function of its inputs.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# The authors' `init_weights` draws Linear/Conv weights from N(0, 0.01^2) with zero biases
# (REFERENCE_FACTS.md section 1); LSTMs keep their library defaults.
dense_init = nn.initializers.normal(stddev=0.01)


# Initialisation of the recurrent cells: `flax` (Flax's defaults: LeCun-normal input kernels,
# orthogonal recurrent kernels, zero biases) or `pytorch` (the authors' nn.LSTM / LSTMCell / RNN
# keep PyTorch's defaults, REFERENCE_FACTS.md section 1: every weight ~ U(+-1/sqrt(H)) and two
# such biases, b_ih + b_hh, which Flax's cells hold as one).
RECURRENT_INITS = ("flax", "pytorch")


def cell_init(kind: str, hidden_dim: int) -> dict[str, Any]:
    """Initialiser keywords for an `OptimizedLSTMCell` / `SimpleCell` of `hidden_dim` units."""
    if kind == "flax":
        return {}
    if kind != "pytorch":
        raise ValueError(f"recurrent_init must be one of {RECURRENT_INITS}, got {kind!r}.")
    bound = 1.0 / math.sqrt(hidden_dim)

    def uniform(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    def two_biases(key, shape, dtype=jnp.float32):  # b_ih + b_hh
        first, second = jax.random.split(key)
        return uniform(first, shape, dtype) + uniform(second, shape, dtype)

    return dict(kernel_init=uniform, recurrent_kernel_init=uniform, bias_init=two_biases)


class GaussianHead(nn.Module):
    """Two linear heads giving the mean and log-variance of a diagonal Gaussian."""

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, h: Array) -> tuple[Array, Array]:
        mean = nn.Dense(self.features, kernel_init=dense_init, dtype=self.dtype, name="mean")(h)
        logvar = nn.Dense(self.features, kernel_init=dense_init, dtype=self.dtype, name="logvar")(
            h
        )
        return mean.astype(jnp.float32), logvar.astype(jnp.float32)


STATIC_HEAD_ACTIVATIONS = ("linear", "leaky_relu")


class StaticPosterior(nn.Module):
    """q(s | x_1:T): a bidirectional LSTM over the frame features (C-DSVAE App. C.2).

    The mean and log-variance of s are read from the concatenation of the last forward
    state (t = T) and the last backward state (t = 1). `head_activation="leaky_relu"` puts a
    LeakyReLU(0.2) after both linear heads, as the C-DSVAE authors' `LinearUnit(2H, ds,
    batchnorm=False)` does (model.py); the paper's heads are linear. With `return_sequence`
    the bidirectional LSTM's whole output sequence (B, T, 2H) is returned as well, for the
    authors' dynamic posterior (`RNNDynamicPosterior`), which reads it.
    """

    static_dim: int
    hidden_dim: int = 256
    dtype: Any = None
    head_activation: str = "linear"  # one of STATIC_HEAD_ACTIVATIONS
    return_sequence: bool = False
    recurrent_init: str = "flax"  # one of RECURRENT_INITS

    @nn.compact
    def __call__(self, features: Array):
        outputs, summary = bidirectional_lstm(features, self.hidden_dim, self.dtype,
                                              self.recurrent_init)
        mean, logvar = GaussianHead(self.static_dim, self.dtype, name="head")(summary)
        if self.head_activation == "leaky_relu":
            mean, logvar = nn.leaky_relu(mean, 0.2), nn.leaky_relu(logvar, 0.2)
        elif self.head_activation != "linear":
            raise ValueError(f"head_activation must be one of {STATIC_HEAD_ACTIVATIONS}, got "
                             f"{self.head_activation!r}.")
        return (mean, logvar, outputs) if self.return_sequence else (mean, logvar)


def bidirectional_lstm(features: Array, hidden_dim: int, dtype: Any = None,
                       recurrent_init: str = "flax") -> tuple[Array, Array]:
    """(B, T, F) -> (outputs (B, T, 2H), summary (B, 2H)): per step the forward and backward
    LSTM outputs side by side (PyTorch's bidirectional `nn.LSTM` output), and the last forward
    state (t = T) concatenated with the last backward state (t = 1). Call inside a compact
    method: the two LSTMs ('forward_lstm', 'backward_lstm') become submodules of the caller
    (static posterior, judge)."""
    init = cell_init(recurrent_init, hidden_dim)
    cell = nn.OptimizedLSTMCell
    forward = nn.RNN(cell(hidden_dim, dtype=dtype, name="forward_lstm", **init))
    backward = nn.RNN(cell(hidden_dim, dtype=dtype, name="backward_lstm", **init))
    (_, h_fwd), out_fwd = forward(features, return_carry=True)
    (_, h_bwd), out_bwd = backward(features, return_carry=True, reverse=True, keep_order=True)
    outputs = jnp.concatenate([out_fwd, out_bwd], axis=-1)
    return outputs, jnp.concatenate([h_fwd, h_bwd], axis=-1)


def bidirectional_last_states(features: Array, hidden_dim: int, dtype: Any = None) -> Array:
    """The summary (B, 2H) of `bidirectional_lstm` (the judge's sequence feature)."""
    return bidirectional_lstm(features, hidden_dim, dtype)[1]


class RNNDynamicPosterior(nn.Module):
    """q(d_t | x_1:T) of the C-DSVAE authors' code (model.py `z_rnn`): a tanh RNN (PyTorch
    `nn.RNN(2H, H)`, h_0 = 0) over the static posterior's bidirectional LSTM output sequence,
    then linear mean and log-variance heads per step. No nested sampling: each d_t is drawn
    independently by the caller (the paper's posterior, C-DSVAE eq. 2, is `DynamicPosterior`).

    (B, T, 2H) -> per-step (mean, logvar), each (B, T, dd); a `lax.scan` over time.
    """

    dynamic_dim: int
    hidden_dim: int = 256
    dtype: Any = None
    recurrent_init: str = "flax"  # one of RECURRENT_INITS

    @nn.compact
    def __call__(self, bilstm_outputs: Array) -> tuple[Array, Array]:
        cell = nn.SimpleCell(self.hidden_dim, activation_fn=jnp.tanh, dtype=self.dtype,
                             name="rnn_cell", **cell_init(self.recurrent_init, self.hidden_dim))
        # h_0 = 0 in the compute dtype: SimpleCell returns its carry in `dtype`, and scan needs
        # the carry's dtype fixed (flax's default initial carry is float32)
        h0 = jnp.zeros(bilstm_outputs.shape[:1] + (self.hidden_dim,), self.dtype or jnp.float32)
        h = nn.RNN(cell, name="rnn")(bilstm_outputs, initial_carry=h0)
        return GaussianHead(self.dynamic_dim, self.dtype, name="head")(h)


class _PosteriorStep(nn.Module):
    """One step of q(d_t | d_<t, x_<=t): LSTM input is [g_t, d_{t-1}] (C-DSVAE eq. 2)."""

    dynamic_dim: int
    hidden_dim: int
    dtype: Any = None
    recurrent_init: str = "flax"

    @nn.compact
    def __call__(self, carry, inputs):
        lstm_carry, d_prev = carry
        # Optional per-step extras (DBSE): an offset subtracted from the LSTM output before the
        # head, and a skip flag (the step's d is 0 and the LSTM carry is held).
        feature_t, eps_t, offset_t, skip_t = (tuple(inputs) + (None, None))[:4]
        new_carry, h = nn.OptimizedLSTMCell(self.hidden_dim, dtype=self.dtype, name="lstm",
                                            **cell_init(self.recurrent_init, self.hidden_dim))(
            lstm_carry, jnp.concatenate([feature_t, d_prev.astype(feature_t.dtype)], axis=-1)
        )
        if offset_t is not None:
            h = h - offset_t.astype(h.dtype)  # DBSE eq. (8): h_t = h~_t - s~
        mean, logvar = GaussianHead(self.dynamic_dim, self.dtype, name="head")(h)
        d_t = mean + jnp.exp(0.5 * logvar) * eps_t
        if skip_t is not None:
            keep = lambda new, old: jnp.where(skip_t, old, new)
            new_carry = jax.tree.map(keep, new_carry, lstm_carry)
            mean, logvar, d_t = (jnp.where(skip_t, 0.0, a) for a in (mean, logvar, d_t))
        return (new_carry, d_t), (mean, logvar, d_t)


class DynamicPosterior(nn.Module):
    """q(d_1:T | x_1:T) = prod_t q(d_t | d_<t, x_<=t) with nested sampling (C-DSVAE eq. 2).

    A unidirectional LSTM scanned over time; the sample d_{t-1} is fed back as input at t,
    "a nested sampling procedure resembling that of the prior" (C-DSVAE Sec. 3.1).
    Returns per-step means, log-variances and reparameterised samples, each (B, T, dd).

    Optional (DBSE, defaults leave the C-DSVAE posterior unchanged): `hidden_offset` (B, H) is
    subtracted from the LSTM output of every step before the Gaussian head (the carry is not
    changed; DBSE eq. 8); `skip` (T,) bool marks steps whose d_t is set to 0 (mean 0, logvar
    0) with the LSTM carry held, so the next step reads d_{t-1} = 0 (DBSE eq. 4, d_a := 0).
    """

    dynamic_dim: int
    hidden_dim: int = 256
    dtype: Any = None
    recurrent_init: str = "flax"  # one of RECURRENT_INITS

    @nn.compact
    def __call__(self, features: Array, eps: Array, hidden_offset: Array | None = None,
                 skip: Array | None = None) -> tuple[Array, Array, Array]:
        batch, steps = features.shape[:2]
        inputs = (features, eps)
        if hidden_offset is not None or skip is not None:  # per-step copies for the scan
            offset = None if hidden_offset is None else jnp.broadcast_to(
                hidden_offset[:, None], (batch, steps, hidden_offset.shape[-1]))
            skip = None if skip is None else jnp.broadcast_to(
                jnp.asarray(skip, bool)[None, :, None], (batch, steps, 1))
            inputs = (features, eps, offset, skip)
        scan = nn.scan(
            _PosteriorStep,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        step = scan(self.dynamic_dim, self.hidden_dim, self.dtype, self.recurrent_init,
                    name="rnn")
        lstm_carry = nn.OptimizedLSTMCell(self.hidden_dim, parent=None).initialize_carry(
            jax.random.PRNGKey(0), (batch, self.hidden_dim)
        )
        d_0 = jnp.zeros((batch, self.dynamic_dim), jnp.float32)
        _, (mean, logvar, sample) = step((lstm_carry, d_0), inputs)
        return mean, logvar, sample


class _PriorStep(nn.Module):
    """p(d_t | d_<t): stacked LSTM cells on d_{t-1}, then mean/log-variance heads.

    Structure as the authors' code: LSTMCell(dd->H) -> LSTMCell(H->H) -> two Linear heads
    (REFERENCE_FACTS.md section 1, "Learned dynamic prior").
    """

    dynamic_dim: int
    hidden_dim: int
    num_layers: int
    dtype: Any = None
    recurrent_init: str = "flax"

    @nn.compact
    def __call__(self, carries, d_prev):
        h = d_prev
        new_carries = []
        for layer, carry in enumerate(carries):
            cell = nn.OptimizedLSTMCell(self.hidden_dim, dtype=self.dtype, name=f"lstm_{layer}",
                                        **cell_init(self.recurrent_init, self.hidden_dim))
            carry, h = cell(carry, h)
            new_carries.append(carry)
        mean, logvar = GaussianHead(self.dynamic_dim, self.dtype, name="head")(h)
        return tuple(new_carries), (mean, logvar)


def _teacher_forced_step(step: _PriorStep, carries, d_prev):
    return step(carries, d_prev)


def _ancestral_step(step: _PriorStep, carry, inputs):
    carries, d_prev = carry
    eps_t, zero_t = inputs if isinstance(inputs, tuple) else (inputs, None)
    carries, (mean, logvar) = step(carries, d_prev)
    d_t = mean + jnp.exp(0.5 * logvar) * eps_t
    if zero_t is not None:  # a clamped step: d_t := 0, and the next step is conditioned on it
        mean, d_t = jnp.where(zero_t, 0.0, mean), jnp.where(zero_t, 0.0, d_t)
    return (carries, d_t), (mean, logvar, d_t)


class DynamicPrior(nn.Module):
    """Learned prior p(d_1:T) = prod_t p(d_t | d_<t) (DSVAE; C-DSVAE eq. 1).

    `__call__(d_posterior)` is the teacher-forced mode used in training: the input at step t
    is the posterior sample d_{t-1} (d_0 = 0), and gradients flow into d_posterior.
    `sample(batch, T)` is free-running ancestral sampling from the `'sample'` RNG stream; it
    returns the means and the samples, as the authors' `sample_z` does. `zero_steps` (T,) bool,
    optional, clamps those steps' mean and sample to 0 inside the recursion, so the next step
    is conditioned on d_t = 0 (DBSE's anchor, d_a := 0).
    """

    dynamic_dim: int
    hidden_dim: int = 256
    num_layers: int = 2
    dtype: Any = None
    recurrent_init: str = "flax"  # one of RECURRENT_INITS

    def setup(self):
        self.step = _PriorStep(self.dynamic_dim, self.hidden_dim, self.num_layers, self.dtype,
                               self.recurrent_init)

    def _zero_carries(self, batch: int):
        cell = nn.OptimizedLSTMCell(self.hidden_dim, parent=None)
        carry = cell.initialize_carry(jax.random.PRNGKey(0), (batch, self.hidden_dim))
        return tuple(carry for _ in range(self.num_layers))

    def _scan(self, fn):
        return nn.scan(
            fn,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )

    def __call__(self, d_posterior: Array) -> tuple[Array, Array]:
        batch = d_posterior.shape[0]
        d_prev = jnp.concatenate(
            [jnp.zeros_like(d_posterior[:, :1]), d_posterior[:, :-1]], axis=1
        )
        _, (mean, logvar) = self._scan(_teacher_forced_step)(
            self.step, self._zero_carries(batch), d_prev
        )
        return mean, logvar

    def sample(self, batch: int, num_steps: int, zero_steps: Array | None = None
               ) -> tuple[Array, Array]:
        eps = jax.random.normal(self.make_rng("sample"), (batch, num_steps, self.dynamic_dim))
        inputs = eps
        if zero_steps is not None:
            zero = jnp.asarray(zero_steps, bool)[None, :, None]
            inputs = (eps, jnp.broadcast_to(zero, (batch, num_steps, 1)))
        d_0 = jnp.zeros((batch, self.dynamic_dim), jnp.float32)
        _, (mean, _, sample) = self._scan(_ancestral_step)(
            self.step, (self._zero_carries(batch), d_0), inputs
        )
        return mean, sample


class BidirectionalDynamicPosterior(nn.Module):
    """q(d_t | x_1:T) read per step from a stack of bidirectional LSTMs, no nested sampling:
    the dynamic posterior of the DBSE authors' code (`nn.LSTM(g, dd, 2, bidirectional=True)`,
    then Linear(2 dd -> dd) mean and log-variance heads on every output; `dbse_model.py`).

    (B, T, F) -> per-step (mean, logvar), each (B, T, dd); the caller draws the samples.
    """

    dynamic_dim: int
    hidden_dim: int
    num_layers: int = 2
    dtype: Any = None
    recurrent_init: str = "flax"  # one of RECURRENT_INITS

    @nn.compact
    def __call__(self, features: Array) -> tuple[Array, Array]:
        h = features
        init = cell_init(self.recurrent_init, self.hidden_dim)
        cell = lambda name: nn.OptimizedLSTMCell(self.hidden_dim, dtype=self.dtype, name=name,
                                                 **init)
        for layer in range(self.num_layers):
            forward = nn.RNN(cell(f"forward_lstm_{layer}"))
            backward = nn.RNN(cell(f"backward_lstm_{layer}"))
            h = jnp.concatenate([forward(h), backward(h, reverse=True, keep_order=True)], -1)
        return GaussianHead(self.dynamic_dim, self.dtype, name="head")(h)
