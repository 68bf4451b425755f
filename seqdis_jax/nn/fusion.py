"""R-WAE's decoder input (Han et al., ICLR 2021): the codes of every step, concat(z^c, z^m_t)
(and the action a of the weakly supervised model), pass through a fully connected layer and an
LSTM over time; the LSTM's hidden state h_t is what the frame decoder reads.

  Fig. 1(a): "concatenating them as input into an LSTM to get hidden state h_t for the decoder".
  App. G: "The latent content variable z^c and latent motion variable z^m_t are concatenated as
  input to an LSTM after an FC NN to output hidden state h_t for reconstructing x^_t using the
  decoder" (Fig. 8(d); with a: Fig. 8(e)).
  Fig. 9 (SM-MNIST, Sprites): "The dimensions of z^c, z^m_t, h_t are 120, 12 and 150";
  Fig. 10 (MUG): 150, 16, 180 (and a: 6); App. G (TIMIT): "The dimension of hidden states is
  256".

The paper gives no width and no activation for the FC layer: here it is a linear layer as wide
as h_t. Like every recurrence of the library the LSTM is a Flax scan (`nn.RNN`, a
`jax.lax.scan` underneath), started from a zero state.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqdis_jax.nn.recurrent import dense_init

Array = jax.Array


class FcLstmFusion(nn.Module):
    """(B, T, D) per-step codes -> (B, T, features) hidden states h_t: Dense(features) (linear,
    the authors' N(0, 0.01^2) init of Linear layers) -> LSTM(features) over time."""

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, z: Array) -> Array:
        h = nn.Dense(self.features, kernel_init=dense_init, dtype=self.dtype, name="fc")(
            z.astype(self.dtype or jnp.float32))
        lstm = nn.OptimizedLSTMCell(self.features, dtype=self.dtype, name="lstm")
        return nn.RNN(lstm)(h)  # its parameters: "lstm" (ii, if, ig, io, hi, hf, hg, ho)
