"""Each stride-2 convolution of the frame networks alone, per CPU lowering (issue 20).

    python bench/conv_layers_cpu.py 0.25 256     # width, frames (the :cpu width, 32 x 8 frames)

For every encoder layer c1..c4 (Conv k4 s2 p1) and decoder layer upconv2..5 (ConvT k4 s2
"SAME"), prints the minimum of 5 runs after compilation, in ms, of the forward pass and of the
forward + backward pass (`jax.value_and_grad` of sum(y * r); c1 takes no input gradient, as in
training where its input is data), for:
  * `xla`:  `lax.conv` (encoder) / the transposed convolution with `FastConvTranspose`'s custom
            backward (decoder), `cpu_conv_lowering="xla"`;
  * `gemm`: the library's default (`nn.conv.conv2d_gemm` and its linear transpose);
  * `s2d`:  (encoder only, tried and not adopted) space-to-depth, then XLA's stride-1 2x2
            convolution, so that autodiff yields undilated stride-1 gradients.
No BatchNorm or activation: `bench/frame_networks_cpu.py` times the whole networks.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from frame_networks_cpu import best_ms  # noqa: E402 (bench/ is sys.path[0])

from seqdis_jax.nn.conv import conv2d, conv_transpose, kernel_blocks, space_to_depth  # noqa: E402
from seqdis_jax.nn.video import BLOCK_CHANNELS, scaled  # noqa: E402

PADS = ((1, 1), (1, 1))


def conv2d_s2d(x, kernel):
    """Conv(k4, s2, p1) as `nn.conv.space_to_depth` + XLA's stride-1 2x2 convolution."""
    blocks, (ho, wo) = space_to_depth(x, kernel.shape[:2], (2, 2), PADS)
    y = lax.conv_general_dilated(blocks, kernel_blocks(kernel, (2, 2)), (1, 1), "VALID",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y[:, :ho, :wo]


def timed_row(label, convs, x, kernel, r, argnums):
    reference = convs["xla"](x, kernel)
    cells = []
    for name, conv in convs.items():
        error = float(jnp.max(jnp.abs(conv(x, kernel) - reference)))

        def value_and_grad(x, kernel, conv=conv):
            return jax.value_and_grad(lambda x, k: jnp.sum(conv(x, k) * r), argnums)(x, kernel)

        forward = best_ms(jax.jit(conv), x, kernel, digits=1)
        both = best_ms(jax.jit(value_and_grad), x, kernel, digits=1)
        cells.append(f"{name} {forward} / {both} (|diff| {error:.0e})")
    print(f"{label}: " + "; ".join(cells), flush=True)


def main() -> None:
    width = float(sys.argv[1]) if len(sys.argv) > 1 else 0.25
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    channels = [3] + [scaled(c, width) for c in BLOCK_CHANNELS[64]]
    key_x, key_k, key_r = jax.random.split(jax.random.PRNGKey(0), 3)
    print(f"width {width}, {frames} frames; ms forward / forward + backward", flush=True)
    for i in range(len(channels) - 1):
        side, c_in, c_out = 64 >> i, channels[i], channels[i + 1]
        x = jax.random.normal(key_x, (frames, side, side, c_in))
        kernel = 0.05 * jax.random.normal(key_k, (4, 4, c_in, c_out))
        r = jax.random.normal(key_r, (frames, side // 2, side // 2, c_out))
        convs = {lowering: (lambda x, k, lowering=lowering: conv2d(x, k, (2, 2), PADS, lowering))
                 for lowering in ("xla", "gemm")}
        convs["s2d"] = conv2d_s2d
        timed_row(f"encoder c{i + 1} {c_in}->{c_out} at {side}px", convs, x, kernel, r,
                  (1,) if i == 0 else (0, 1))
    mirrored = channels[::-1][:-1] + [3]
    for i in range(len(mirrored) - 1):
        side, c_in, c_out = 4 << i, mirrored[i], mirrored[i + 1]
        x = jax.random.normal(key_x, (frames, side, side, c_in))
        kernel = 0.05 * jax.random.normal(key_k, (4, 4, c_in, c_out))
        r = jax.random.normal(key_r, (frames, 2 * side, 2 * side, c_out))
        convs = {lowering: (lambda x, k, lowering=lowering:
                            conv_transpose(x, k, (2, 2), "SAME", lowering=lowering))
                 for lowering in ("xla", "gemm")}
        timed_row(f"decoder upconv{i + 2} {c_in}->{c_out} at {side}px", convs, x, kernel, r,
                  (0, 1))


if __name__ == "__main__":
    main()
