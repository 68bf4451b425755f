"""Speech frame networks: the DSVAE TIMIT architecture (SPYL App. A.3 "Audio Datasets"; C-DSVAE
App. C.2 "For the audio dataset, we use the same architecture as DSVAE").

"The only difference from the image architecture is the removal of the convolutions from the
encoder and the replacement of the decoder with two linear layers": the spectral frames
(B, T, F) go to the static and dynamic LSTMs as they are, and each frame is decoded from
[s, d_t] by Linear(256) + LeakyReLU + Linear(F).

SPYL A.3 also puts a LeakyReLU after the last layer. We leave it out: our features are
standardised per bin (`seqdis_jax.data.audio`), so half the targets are negative, and a
LeakyReLU output would need 1/slope-times larger weights to reach them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqdis_jax.nn.recurrent import dense_init

Array = jax.Array

SPEECH_DECODER_HIDDEN = 256  # DSVAE / SPYL A.3


class SpeechDecoder(nn.Module):
    """[s, d_t] (N, D) -> spectral frame (N, F): Linear(256) + LeakyReLU(0.2) + Linear(F)."""

    num_features: int
    hidden: int = SPEECH_DECODER_HIDDEN
    dtype: Any = None

    @nn.compact
    def __call__(self, latents: Array) -> Array:
        h = nn.Dense(self.hidden, kernel_init=dense_init, dtype=self.dtype, name="hidden")(
            latents.astype(self.dtype or jnp.float32))
        h = nn.leaky_relu(h, 0.2)
        out = nn.Dense(self.num_features, kernel_init=dense_init, dtype=self.dtype,
                       name="output")(h)
        return out.astype(jnp.float32)
