"""DCGAN-64 frame encoder and decoder shared by every video model (C-DSVAE App. C.2).

Layout and initialisation follow the authors' code (REFERENCE_FACTS.md section 1): Conv and
Linear weights ~ N(0, 0.01^2) with zero biases; transposed convolutions keep PyTorch's default
uniform(+-1/sqrt(fan_in)); BatchNorm as PyTorch's `BatchNorm2d` (`TorchBatchNorm`: momentum 0.1,
eps 1e-5, the unbiased batch variance in the running average, a two-pass variance). Frames are
processed as one (B*T) batch. `width` scales every channel count so CPU
configs can be small.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqdis_jax.nn.conv import FastConv, FastConvTranspose

Array = jax.Array

conv_init = nn.initializers.normal(stddev=0.01)
# PyTorch's ConvTranspose2d default: U(+-1/sqrt(fan_in)), fan_in = out_channels * kh * kw,
# which is Flax's fan_out for an (kh, kw, in, out) kernel.
conv_transpose_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def _torch_conv_transpose_bias_init(kernel_area: int):
    def init(key, shape, dtype=jnp.float32):
        bound = 1.0 / math.sqrt(shape[-1] * kernel_area)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def scaled(channels: int, width: float) -> int:
    """Channel count after the `width` multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


class TorchBatchNorm(nn.Module):
    """Batch normalisation over every axis but the last, with PyTorch's `BatchNorm2d` semantics
    (the authors' networks, REFERENCE_FACTS.md section 4):

      * train: normalise with the batch mean and the *biased* batch variance, and update the
        running averages as PyTorch does, `running = (1 - m) running + m stat` with m = 0.1,
        where the running variance takes the *unbiased* batch variance (x n / (n - 1),
        n = values per channel). `flax.linen.BatchNorm` averages the biased one.
      * eval: normalise with the running averages.
      * the variance in two passes, mean((x - mean)^2), as PyTorch; Flax's default
        (`use_fast_variance`) computes E[x^2] - E[x]^2, which loses digits when a channel's
        mean is large against its spread. Measured (bench/gradient_precision.py, 256 frames):
        float32 gradients of the decoder sit 1.4e-3 (worst parameter; 2.4e-4 over all) from
        float64 with Flax's BatchNorm and 8e-5 (1.5e-5) with this one. The error is
        LeakyReLU's: a value within float32 rounding of 0 takes the other branch in float64,
        and the one-pass variance's larger forward error moves more values across 0 -- with
        the kink smoothed (`--smooth`) every BatchNorm is within 1.2e-5.

    Variables keep Flax's names (params `scale`, `bias`; batch_stats `mean`, `var`), so the
    parameter trees of earlier checkpoints are unchanged. Statistics are at least float32
    whatever `dtype` the layer computes in.
    """

    use_running_average: bool
    momentum: float = 0.1  # PyTorch's convention: the weight of the new batch statistic
    epsilon: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        stat_dtype = jnp.promote_types(x.dtype, jnp.float32)  # float64 in precision tests
        x32 = x.astype(stat_dtype)
        if self.use_running_average:
            inv_std = jax.lax.rsqrt(ra_var.value + self.epsilon)
            y = (x32 - ra_mean.value) * (inv_std * scale) + bias
            return y.astype(self.dtype or stat_dtype)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x32, axis=axes)
        centred = x32 - mean
        var = jnp.mean(jnp.square(centred), axis=axes)  # two passes
        y = centred * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
        if not self.is_initializing():
            n = x.size // features
            m = self.momentum
            mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
            ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
            ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        return y.astype(self.dtype or stat_dtype)


def _batch_norm(train: bool, dtype: Any, name: str) -> TorchBatchNorm:
    return TorchBatchNorm(use_running_average=not train, dtype=dtype, name=name)


def apply_updating_batch_stats(
    model: nn.Module, params: Any, batch_stats: Any, x: Array, train: bool, **kwargs: Any
) -> tuple[Any, Any]:
    """model.apply on (x, train): in training the BatchNorm batch statistics are used and the
    running averages updated (returned); in evaluation the running averages are used."""
    variables = {"params": params, "batch_stats": batch_stats}
    if not train:
        return model.apply(variables, x, False, **kwargs), batch_stats
    out, updates = model.apply(variables, x, True, mutable=["batch_stats"], **kwargs)
    return out, updates["batch_stats"]


# Frame side -> channels of the stride-2 blocks (before width scaling). 64 is the papers'
# DCGAN-64 (C-DSVAE App. C.2); 32 drops its last (512-channel) block, for the Quickstart's
# CPU-sized shapes (a quarter of the pixels; this library's addition, no paper uses it).
BLOCK_CHANNELS = {64: (64, 128, 256, 512), 32: (64, 128, 256)}


def check_frame_size(size: int) -> tuple[int, ...]:
    """The encoder's block channels for square frames of side `size`; ValueError otherwise."""
    if size not in BLOCK_CHANNELS:
        raise ValueError(
            f"the DCGAN frame networks take 64x64 frames (the papers') or 32x32 frames, got "
            f"{size}x{size}; resize the dataset to 64x64 (data_prep does this) or set "
            f"config.data.image_size to 64 or 32.")
    return BLOCK_CHANNELS[size]


class FrameEncoder(nn.Module):
    """64x64 frame -> g-dim feature: 4 x [Conv(k4, s2, pad 1) + BN + LeakyReLU(0.2)] with
    channels 64-128-256-512, then Conv(k4, VALID) + BN + tanh (C-DSVAE App. C.2). A 32x32
    frame takes the first three blocks (64-128-256) and the same last layer."""

    feature_dim: int = 128
    width: float = 1.0
    dtype: Any = None
    # The authors' N(0, 0.01^2) for the VAEs; the judges use Flax's default (LeCun normal).
    # Behind BatchNorm only a kernel's direction matters, and an Adam step of size lr on a
    # 0.01-scale kernel changes it by ~lr/0.01 (20% at lr 2e-3); a judge with that init learned
    # shape slowly (docs/results.md).
    kernel_init: Any = conv_init
    # "gemm": on the CPU each convolution runs as one matrix product (`nn.conv.FastConv`, same
    # values); "xla": XLA's convolution everywhere. Other platforms always use their own.
    conv_lowering: str = "gemm"
    # None, or jnp.bfloat16: the convolutions' products in bf16 inside a float32 network
    # (`model.product_dtype`, `nn.conv.matrix_product`)
    product_dtype: Any = None

    @nn.compact
    def __call__(self, frames: Array, train: bool) -> Array:
        """frames: (N, S, S, C) in [0, 1], S = 64 or 32 -> (N, feature_dim)."""
        height, width = frames.shape[-3:-1]
        if height != width:
            raise ValueError(
                f"FrameEncoder expects square 64x64 (or 32x32) frames, got spatial shape "
                f"{frames.shape[-3:-1]}; resize the dataset to 64x64 (data_prep does this).")
        blocks = check_frame_size(height)
        h = frames.astype(self.dtype or jnp.float32)
        for i, channels in enumerate(blocks):
            # Explicit (1, 1) padding: 'SAME' would pad (1, 2) for k4/s2 and shift the output.
            h = FastConv(
                scaled(channels, self.width),
                (4, 4),
                strides=(2, 2),
                padding=((1, 1), (1, 1)),
                kernel_init=self.kernel_init,
                dtype=self.dtype,
                lowering=self.conv_lowering,
                product_dtype=self.product_dtype,
                name=f"conv{i + 1}",
            )(h)
            h = _batch_norm(train, self.dtype, f"bn{i + 1}")(h)
            h = nn.leaky_relu(h, 0.2)
        h = FastConv(
            self.feature_dim,
            (4, 4),
            padding="VALID",
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            lowering=self.conv_lowering,
            product_dtype=self.product_dtype,
            name=f"conv{len(blocks) + 1}",
        )(h)
        h = _batch_norm(train, self.dtype, "bn5")(h)
        return jnp.tanh(h).reshape(h.shape[0], self.feature_dim)


class FrameDecoder(nn.Module):
    """Latent vector -> 64x64 frame: ConvT(k4, s1) 1x1->4x4, three ConvT(k4, s2) blocks
    512-256-128-64 with BN + LeakyReLU(0.2), ConvT(k4, s2) to C channels + sigmoid. With
    `image_size=32`: 256 at 4x4, then 128-64 and the last layer (the encoder's mirror).

    The stride-2 layers use `FastConvTranspose` (values identical to `nn.ConvTranspose`): on
    the CPU it runs as matrix products (`conv_lowering="gemm"`) or with a custom backward pass
    that avoids XLA:CPU's slow kernel gradient for transposed convolutions ("xla").
    """

    out_channels: int = 3
    width: float = 1.0
    dtype: Any = None
    fast_conv_transpose: bool = True  # False: plain nn.ConvTranspose (for benchmarks)
    conv_lowering: str = "gemm"  # CPU: "gemm" or "xla", see `nn.conv.conv_transpose`
    image_size: int = 64  # 64 or 32 (BLOCK_CHANNELS)
    product_dtype: Any = None  # as FrameEncoder's (FastConvTranspose layers only)

    @nn.compact
    def __call__(self, latents: Array, train: bool) -> Array:
        """latents: (N, D) -> (N, S, S, out_channels) in [0, 1], S = image_size."""
        blocks = check_frame_size(self.image_size)
        if self.fast_conv_transpose:
            conv_transpose = partial(FastConvTranspose, lowering=self.conv_lowering,
                                     product_dtype=self.product_dtype)
        else:
            conv_transpose = nn.ConvTranspose
        h = latents.astype(self.dtype or jnp.float32)[:, None, None, :]
        mirrored = blocks[::-1]  # 512-256-128-64 at 64x64
        specs = [(mirrored[0], (1, 1), "VALID")] + [(c, (2, 2), "SAME") for c in mirrored[1:]]
        for i, (channels, strides, padding) in enumerate(specs):
            h = conv_transpose(
                scaled(channels, self.width),
                (4, 4),
                strides=strides,
                padding=padding,
                kernel_init=conv_transpose_init,
                bias_init=_torch_conv_transpose_bias_init(16),
                dtype=self.dtype,
                name=f"upconv{i + 1}",
            )(h)
            h = _batch_norm(train, self.dtype, f"bn{i + 1}")(h)
            h = nn.leaky_relu(h, 0.2)
        h = conv_transpose(
            self.out_channels,
            (4, 4),
            strides=(2, 2),
            padding="SAME",
            kernel_init=conv_transpose_init,
            bias_init=_torch_conv_transpose_bias_init(16),
            dtype=self.dtype,
            name=f"upconv{len(specs) + 1}",
        )(h)
        return nn.sigmoid(h.astype(jnp.float32))
