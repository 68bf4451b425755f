"""Transposed convolution with a backward pass that is fast on XLA:CPU.

XLA:CPU differentiates a strided `lax.conv_transpose` (what `flax.linen.ConvTranspose` calls)
through an *input-dilated* convolution for the kernel gradient. Measured on a 2-core CPU, one
16x16x128 -> 32x32x64 stride-2 layer at batch 256 took 26.6 s for that kernel gradient against
0.39 s for the forward pass (bench/conv_transpose_cpu.py: fwd+bwd 17.7 s with
`nn.ConvTranspose`, 1.4 s with `FastConvTranspose`).

A stride-s transposed convolution ``T(x, K)`` is the linear transpose (input gradient) of the
strided convolution ``f(z, K)`` written out in `_strided_conv`. `conv_transpose` therefore
uses a `jax.custom_vjp` whose backward pass never runs an input-dilated convolution:

* input gradient  ``dx = f(g, K)`` (a strided convolution's forward pass),
* kernel gradient ``dK = d/dK <f(g, K), x>`` (the strided convolution's weight gradient,
  written out in `_strided_conv_kernel_grad` as one matrix product per kernel tap).

Values equal those of `flax.linen.ConvTranspose` up to float rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

Array = jax.Array
# What the CPU runs (`conv2d`, `conv_transpose`): matrix products, or XLA's convolutions
LOWERINGS = ("gemm", "xla")
PaddingLike = str | int | Sequence[int | tuple[int, int]]
Ints = Sequence[int]
Pads = Sequence[tuple[int, int]]

__all__ = ["LOWERINGS", "FastConv", "FastConvTranspose", "conv2d", "conv2d_gemm", "conv_transpose",
           "conv_transpose_padding"]


def _transpose_pad(k: int, s: int, padding: str) -> tuple[int, int]:
    """`lax.conv_transpose`'s padding (on the stride-dilated input) for 'SAME' / 'VALID'."""
    if padding == "SAME":
        pad_len = k + s - 2
        pad_lo = k - 1 if s > k - 1 else -(-pad_len // 2)
    elif padding == "VALID":
        pad_len = k + s - 2 + max(k - s, 0)
        pad_lo = k - 1
    else:
        raise ValueError(f"unsupported padding {padding!r}")
    return pad_lo, pad_len - pad_lo


def conv_transpose_padding(
    kernel_size: Sequence[int], strides: Sequence[int], padding: PaddingLike
) -> tuple[tuple[int, int], ...]:
    """Explicit (lo, hi) padding of the input-dilated convolution that `lax.conv_transpose`
    (and hence `nn.ConvTranspose`) runs for `padding` ('SAME', 'VALID', an int or pairs).

    Explicit pairs are used as they are, as `lax.conv_transpose` does by default.
    """
    nd = len(kernel_size)
    if isinstance(padding, str):
        if padding.upper() == "CIRCULAR":
            raise NotImplementedError("CIRCULAR padding is not supported; use nn.ConvTranspose")
        return tuple(_transpose_pad(k, s, padding.upper()) for k, s in zip(kernel_size, strides))
    pads = nn.linear.canonicalize_padding(padding, nd)  # int / ints / pairs -> pairs
    assert not isinstance(pads, str)
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def _dimension_numbers(nd: int) -> tuple[lax.ConvDimensionNumbers, lax.ConvDimensionNumbers]:
    """(lhs, rhs, out) specs for channels-last data and (*spatial, in, out) kernels."""
    sp = tuple(range(1, nd + 1))  # spatial axes of (N, *spatial, C) arrays
    ksp = tuple(range(nd))  # spatial axes of (*spatial, Cin, Cout) kernels
    data = (0, nd + 1) + sp
    # T(x, K): x (N, *S, Cin) * K[..., Cin, Cout] -> (N, *S', Cout); rhs spec is (O, I, *S).
    t_dn = lax.ConvDimensionNumbers(data, (nd + 1, nd) + ksp, data)
    # f(g, K): g (N, *S', Cout) * K[..., Cin, Cout] read as (O=Cin, I=Cout) -> (N, *S, Cin).
    f_dn = lax.ConvDimensionNumbers(data, (nd, nd + 1) + ksp, data)
    return t_dn, f_dn


def _f_padding(
    pads: Sequence[tuple[int, int]],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    in_spatial: Sequence[int],
    out_spatial: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """Padding of g for the strided convolution f that transposes T (may be negative)."""
    res = []
    for (lo, _), k, s, n_in, n_out in zip(pads, kernel_size, strides, in_spatial, out_spatial):
        p_lo = k - 1 - lo
        p_hi = (n_in - 1) * s + k - p_lo - n_out  # padded length (n_in - 1) * s + k
        res.append((p_lo, p_hi))
    return tuple(res)


def _transposed_conv(
    x: Array, kernel: Array, strides: Ints, pads: Pads, precision: lax.PrecisionLike,
    preferred_element_type: Any = None,
) -> Array:
    nd = x.ndim - 2
    t_dn, _ = _dimension_numbers(nd)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1,) * nd,
        padding=pads,
        lhs_dilation=strides,
        dimension_numbers=t_dn,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def _strided_conv(
    g: Array, kernel: Array, strides: Ints, f_pads: Pads, precision: lax.PrecisionLike
) -> Array:
    """f(g, K): the strided convolution whose linear transpose in g is T(., K)."""
    nd = g.ndim - 2
    _, f_dn = _dimension_numbers(nd)
    flipped = lax.rev(kernel, tuple(range(nd)))
    return lax.conv_general_dilated(
        g,
        flipped,
        window_strides=strides,
        padding=f_pads,
        dimension_numbers=f_dn,
        precision=precision,
    )


def _strided_conv_kernel_grad(
    g: Array, x: Array, kernel_size: Ints, strides: Ints, f_pads: Pads, precision: lax.PrecisionLike
) -> Array:
    """d/dK <f(g, K), x>, i.e. dK[k] = sum_{n, i} x[n, i] (x) g_pad[n, i * s + k_max - k].

    One (N * prod(spatial), Cin)^T @ (N * prod(spatial), Cout) matrix product per kernel tap
    on a strided slice of the padded cotangent. At batch 256 (16x16x128 -> 32x32x64, k4, s2)
    this took 0.6 s on XLA:CPU against 1.5 s for the same sum written as one convolution
    (batch <-> feature swapped, x dilated by the stride) or for `jax.vjp` of `f`, and 24 s
    for the autodiff kernel gradient of `lax.conv_transpose`.
    """
    nd = g.ndim - 2
    config = ((0, 0, 0), *((lo, hi, 0) for lo, hi in f_pads), (0, 0, 0))
    g_pad = lax.pad(g, jnp.zeros((), g.dtype), config)  # length (n_in - 1) * s + k, as for f
    n_in = x.shape[1:-1]
    contract = tuple(range(nd + 1))
    acc_dtype = jnp.promote_types(jnp.result_type(g, x), jnp.float32)
    taps = []
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        # flipped tap index k' = k_max - k reads g_pad at i * s + k'
        lo = [k - 1 - t for k, t in zip(kernel_size, tap)]
        hi = [st + (n - 1) * s + 1 for st, n, s in zip(lo, n_in, strides)]
        g_tap = lax.slice(g_pad, (0, *lo, 0), (g.shape[0], *hi, g.shape[-1]), (1, *strides, 1))
        dk_tap = lax.dot_general(
            x,
            g_tap,
            ((contract, contract), ((), ())),
            precision=precision,
            preferred_element_type=acc_dtype,
        )
        taps.append(dk_tap)
    return jnp.stack(taps).reshape(*kernel_size, x.shape[-1], g.shape[-1])


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_transpose_fast(
    x: Array, kernel: Array, strides: Ints, pads: Pads, precision: lax.PrecisionLike
) -> Array:
    return _transposed_conv(x, kernel, strides, pads, precision)


def _fwd(
    x: Array, kernel: Array, strides: Ints, pads: Pads, precision: lax.PrecisionLike
) -> tuple[Array, tuple[Array, Array]]:
    return _transposed_conv(x, kernel, strides, pads, precision), (x, kernel)


def _bwd(
    strides: Ints, pads: Pads, precision: lax.PrecisionLike, res: tuple[Array, Array], g: Array
) -> tuple[Array, Array]:
    x, kernel = res
    nd = x.ndim - 2
    kernel_size = kernel.shape[:nd]
    f_pads = _f_padding(pads, kernel_size, strides, x.shape[1:-1], g.shape[1:-1])
    g = g.astype(jnp.result_type(x, kernel))
    dx = _strided_conv(g, kernel, strides, f_pads, precision)
    dk = _strided_conv_kernel_grad(g, x, kernel_size, strides, f_pads, precision)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_conv_transpose_fast.defvjp(_fwd, _bwd)


def _check_lowering(lowering: str) -> None:
    if lowering not in LOWERINGS:
        raise ValueError(f"conv lowering must be one of {LOWERINGS}, got {lowering!r}.")


def conv_transpose(
    x: Array,
    kernel: Array,
    strides: Sequence[int],
    padding: PaddingLike = "SAME",
    precision: lax.PrecisionLike = None,
    lowering: str = "gemm",
    product_dtype: Any = None,
) -> Array:
    """`lax.conv_transpose(x, kernel, strides, padding)` (NHWC, kernel (*k, in, out),
    ``transpose_kernel=False``), fast on XLA:CPU for strides > 1.

    On the CPU (`lax.platform_dependent`, resolved when the program is lowered; GPUs and TPUs
    keep their vendor kernels):
      * ``lowering="gemm"`` (2-D, kernel size a multiple of the stride): the linear transpose of
        the strided convolution f that this op transposes, with f written as one matrix product
        (`conv2d_gemm`): x times the kernel matrix, then the transposes of f's slices
        (overlap-adds). Its autodiff is matrix products again. Other shapes use the next one.
      * ``lowering="xla"``: XLA's transposed convolution forward with a custom VJP that uses
        f's forward for the input gradient and f's weight gradient for the kernel gradient
        (XLA:CPU's own kernel gradient of a strided transposed convolution is very slow).
    With ``lowering="xla"``, stride 1 uses plain autodiff (no input dilation). With "gemm" it
    is one matrix product too: XLA:CPU computes the kernel gradient of a stride-1 transposed
    convolution of a 1x1 input (the decoder's first layer) as a convolution over the input
    padded to 7x7, 16x the FLOPs of the product (`python bench/product_dtypes.py`).

    ``product_dtype=jnp.bfloat16``: float32 operands are multiplied in bf16 and the result is
    float32 on every platform (accumulated in float32 where the lowering allows: "gemm" and
    the other platforms' kernels; ``lowering="xla"`` on the CPU rounds its output to bf16).
    """
    nd = x.ndim - 2
    strides = tuple(int(s) for s in strides)
    kernel_size = tuple(int(k) for k in kernel.shape[:nd])
    pads = conv_transpose_padding(kernel_size, strides, padding)
    _check_lowering(lowering)

    def plain(x, kernel):
        x, kernel, dtype = _product_operands(x, kernel, product_dtype)
        acc = jnp.promote_types(dtype, jnp.float32)
        return _transposed_conv(x, kernel, strides, pads, precision, acc).astype(dtype)

    def fast(x, kernel):
        x, kernel, dtype = _product_operands(x, kernel, product_dtype)
        return _conv_transpose_fast(x, kernel, strides, pads, precision).astype(dtype)

    stride_1 = all(s == 1 for s in strides)
    if stride_1 and lowering == "xla":
        return plain(x, kernel)
    cpu = plain if stride_1 else fast
    if lowering == "gemm" and nd == 2 and not any(k % s for k, s in zip(kernel_size, strides)):
        # T's output size: the stride-dilated input, padded, minus the kernel, plus one
        out_spatial = tuple((n - 1) * s + 1 + lo + hi - k + 1 for n, s, (lo, hi), k
                            in zip(x.shape[1:-1], strides, pads, kernel_size))
        f_pads = _f_padding(pads, kernel_size, strides, x.shape[1:-1], out_spatial)
        if all(lo >= 0 and hi >= 0 for lo, hi in f_pads):

            def cpu(x, kernel):
                return _conv_transpose_gemm(x, kernel, strides, f_pads, out_spatial,
                                            product_dtype)

    return lax.platform_dependent(x, kernel, cpu=cpu, default=plain)


def _conv_transpose_gemm(x: Array, kernel: Array, strides: Ints, f_pads: Pads,
                         out_spatial: Ints, product_dtype: Any = None) -> Array:
    """T(x, K), the linear transpose of z -> f(z, K) = P(z) W with P = `_patches` and W f's
    kernel matrix (K flipped, in <-> out): T(x) = P^T(x W^T), one matrix product and the
    transpose of P's data movement (its overlap-adds). `python bench/frame_networks_cpu.py`
    times the decoder with either lowering."""
    flipped = jnp.swapaxes(lax.rev(kernel, (0, 1)), 2, 3)  # (k, k, out, in): f's HWIO kernel
    z = jnp.zeros((x.shape[0], *out_spatial, kernel.shape[-1]), x.dtype)
    patches = matrix_product(x.reshape(-1, x.shape[-1]),
                             _transposed_copy(_kernel_matrix(flipped.astype(x.dtype), strides)),
                             product_dtype)
    (y,) = jax.linear_transpose(lambda z: _patches(z, kernel.shape[:2], strides, f_pads)[0],
                                z)(patches)
    return y


class _ConvLayer(nn.Module):
    """The fields `FastConv` and `FastConvTranspose` share with flax's Conv / ConvTranspose,
    plus `lowering`: the CPU program, "gemm" (matrix products) or "xla" (see `conv2d`,
    `conv_transpose`)."""

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = (1, 1)
    padding: PaddingLike = "SAME"
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32
    lowering: str = "gemm"
    # None: the products in the layer's dtype; jnp.bfloat16: float32 operands multiplied in
    # bf16 with float32 sums, the output float32 (`model.product_dtype`)
    product_dtype: Any = None


class FastConvTranspose(_ConvLayer):
    """Drop-in for `flax.linen.ConvTranspose` (same params, same outputs) whose backward pass
    is fast on XLA:CPU; see the module docstring and `conv_transpose`.

    Parameters are 'kernel' (*kernel_size, in, features) and 'bias' (features,), initialised
    like `nn.ConvTranspose`. CIRCULAR padding, kernel dilation, masks and
    ``transpose_kernel=True`` are not supported.
    """

    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """inputs (*batch, *spatial, in) -> (*batch, *spatial', features)."""
        kernel_size = (
            (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
        )
        nd = len(kernel_size)
        strides = (self.strides,) * nd if isinstance(self.strides, int) else tuple(self.strides)
        if len(strides) != nd:
            raise ValueError(f"strides {strides} do not match kernel_size {kernel_size}")

        batch_shape = inputs.shape[: inputs.ndim - (nd + 1)]
        if len(batch_shape) != 1:
            inputs = jnp.reshape(inputs, (-1,) + inputs.shape[len(batch_shape) :])

        in_features = inputs.shape[-1]
        kernel = self.param(
            "kernel",
            self.kernel_init,
            kernel_size + (in_features, self.features),
            self.param_dtype,
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)

        y = conv_transpose(inputs, kernel, strides, self.padding, precision=self.precision,
                           lowering=self.lowering, product_dtype=self.product_dtype)
        if bias is not None:
            y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        if len(batch_shape) != 1:
            y = jnp.reshape(y, batch_shape + y.shape[1:])
        return y


# --- Convolutions as one matrix product (CPU) ---------------------------------------------------
# XLA:CPU's gradients of a strided convolution are slow next to its dots
# (`python bench/frame_networks_cpu.py` times the frame networks with either lowering,
# bench/compare_torch.py --lowerings=gemm,xla the whole step). A convolution whose kernel size
# is a multiple of its stride is one matrix product after a space-to-depth rearrangement:
#   y[i, j] = sum_{ki, kj} x_pad[s i + ki, s j + kj] W[ki, kj]
#           = sum_{a, b < k/s} X[i + a, j + b] . W'[a, b]        (ki = s a + p, kj = s b + q),
# with X = space_to_depth(x_pad, s), whose channels are (p, q, c), and W' the kernel regrouped
# to match. The (k/s)^2 shifted views of X are concatenated along channels (an im2col of
# (k/s)^2 taps instead of k^2) and multiplied by W' as one (N*Ho*Wo, (k/s)^2 s^2 C) x
# ((k/s)^2 s^2 C, Cout) matrix product. Autodiff of that program is again matrix products plus
# the transposes of the slices; only the product itself has a custom VJP, and only in bfloat16
# (`matrix_product`).


def space_to_depth(x: Array, kernel_size: Ints, strides: Ints, padding: Pads
                   ) -> tuple[Array, tuple[int, int]]:
    """The input of a strided convolution's stride-1 form (module comment above): X =
    space_to_depth of the padded x, (N, H', W', s_h s_w C), and the output size (Ho, Wo), the
    top-left corner of X's VALID output. Needs kernel size % stride == 0 per axis."""
    n, h, w, c = x.shape
    kh, kw = kernel_size
    sh, sw = strides
    if kh % sh or kw % sw:
        raise ValueError(f"conv2d_gemm needs kernel size {tuple(kernel_size)} divisible by the "
                         f"strides {tuple(strides)}; use lax.conv_general_dilated.")
    (plo, phi), (qlo, qhi) = padding
    ho, wo = (h + plo + phi - kh) // sh + 1, (w + qlo + qhi - kw) // sw + 1
    # pad to whole s x s blocks covering every window (extra rows are zeros no window reads)
    hp, wp = -(-(h + plo + phi) // sh) * sh, -(-(w + qlo + qhi) // sw) * sw
    x = lax.pad(x, jnp.zeros((), x.dtype),
                ((0, 0, 0), (plo, hp - h - plo, 0), (qlo, wp - w - qlo, 0), (0, 0, 0)))
    blocks = x.reshape(n, hp // sh, sh, wp // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, hp // sh, wp // sw, sh * sw * c), (ho, wo)


def kernel_blocks(kernel: Array, strides: Ints) -> Array:
    """An HWIO kernel regrouped for `space_to_depth`'s X: (k_h/s_h, k_w/s_w, s_h s_w Cin, Cout),
    channels ordered (p, q, c) as X's."""
    kh, kw, c, c_out = kernel.shape
    sh, sw = strides
    w_blocks = kernel.reshape(kh // sh, sh, kw // sw, sw, c, c_out).transpose(0, 2, 1, 3, 4, 5)
    return w_blocks.reshape(kh // sh, kw // sw, sh * sw * c, c_out)


def _narrows_to_bfloat16(dtype: Any, product_dtype: Any) -> bool:
    """Whether operands of `dtype` are multiplied in bf16 under `product_dtype` (None: in their
    own dtype). Only bfloat16 is a product dtype; a wider one changes nothing."""
    if product_dtype is None or jnp.dtype(product_dtype) == jnp.dtype(dtype):
        return False
    if jnp.dtype(product_dtype) != jnp.bfloat16:
        raise ValueError(f"product_dtype must be None or bfloat16, got {product_dtype!r}.")
    return True


def _product_operands(x: Array, kernel: Array, product_dtype: Any
                      ) -> tuple[Array, Array, Any]:
    """(x, kernel) as XLA's own convolution multiplies them under `product_dtype`, and the
    dtype its float32-accumulated result is returned in (the operands' own)."""
    dtype = jnp.result_type(x, kernel)
    if _narrows_to_bfloat16(dtype, product_dtype):
        return x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), dtype
    return x, kernel, dtype


def _transposed_copy(x: Array) -> Array:
    """x (M, C) -> x^T (C, M), written out in memory. XLA:CPU's fast matrix kernel (YNNPACK)
    takes row-major operands whose contraction is the left one's last axis and the right one's
    first. A plain `x.T` feeding a dot is folded into the dot's dimension numbers instead, and
    XLA then runs a bf16 product in float32 with a slower kernel; this rank-3 transpose is not
    folded (`python bench/product_dtypes.py` lists the dtypes every product ran in)."""
    m, c = x.shape
    return x.reshape(m, 1, c).transpose(2, 0, 1).reshape(c, m)


@jax.custom_vjp
def _product(a: Array, b: Array) -> Array:
    """a (M, K) @ b (K, N) for bfloat16 operands, accumulated and returned in float32, with the
    backward pass `matrix_product` describes."""
    return lax.dot(a, b, preferred_element_type=jnp.float32)


def _product_fwd(a: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
    return _product(a, b), (a, b)


def _product_bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    a, b = res
    acc = g.dtype
    # With bf16 operands g is the transpose of the caller's cast of the product to bf16, and
    # casting it back loses nothing; under `product_dtype` (a float32 caller) it rounds the
    # float32 cotangent to bf16, as any bf16 product's backward does. Either way the products
    # below stay bf16 x bf16
    g = g.astype(a.dtype)
    da = lax.dot(g, _transposed_copy(b), preferred_element_type=acc)
    # Both products in the (row-major lhs, row-major rhs) form the fast kernel takes: b^T is
    # small; db = a^T g contracts the long M axis, so transpose the smaller of a and g
    if a.size <= g.size:
        db = lax.dot(_transposed_copy(a), g, preferred_element_type=acc)
    else:
        db = _transposed_copy(lax.dot(_transposed_copy(g), a, preferred_element_type=acc))
    return da.astype(a.dtype), db.astype(b.dtype)


_product.defvjp(_product_fwd, _product_bwd)


def matrix_product(a: Array, b: Array, product_dtype: Any = None) -> Array:
    """a (M, K) @ b (K, N) accumulated in at least float32, returned in the operands' (promoted)
    dtype.

    `product_dtype=jnp.bfloat16` with float32 operands multiplies them in bf16 (the operands
    rounded to bf16, the sums in float32) and returns float32: the mixed precision of
    `model.product_dtype`, where only the products reach the CPU's bf16 units and everything
    around them stays float32.

    bfloat16 operands go through `_product`, whose backward is bf16 x bf16 products in the form
    XLA:CPU's fast kernel takes, so they reach the CPU's bf16 units forward and backward.
    (Autodiff of a plain dot multiplies the float32 cotangent by a bf16 operand and contracts
    the weight gradient over its transposed long axis; XLA:CPU runs both in float32:
    `python bench/product_dtypes.py dsvae cpu bfloat16`.) float32 keeps plain autodiff, which
    measured faster in float32 than `_product`'s backward (docs/results.md, issue 20).
    """
    dtype = jnp.result_type(a, b)
    if _narrows_to_bfloat16(dtype, product_dtype):
        return _product(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)).astype(dtype)
    if dtype == jnp.bfloat16:
        return _product(a.astype(dtype), b.astype(dtype)).astype(dtype)
    acc = jnp.promote_types(dtype, jnp.float32)
    return lax.dot(a, b, preferred_element_type=acc).astype(dtype)


def _patches(x: Array, kernel_size: Ints, strides: Ints, padding: Pads
             ) -> tuple[Array, tuple[int, int]]:
    """The (N Ho Wo, (k/s)^2 s^2 C) matrix of the stride-1 form's (k/s)^2 shifted views (module
    comment above) and the output size (Ho, Wo). Pure data movement, linear in x."""
    blocks, (ho, wo) = space_to_depth(x, kernel_size, strides, padding)
    ta, tb = kernel_size[0] // strides[0], kernel_size[1] // strides[1]
    patches = jnp.concatenate(
        [blocks[:, a:a + ho, b:b + wo, :] for a in range(ta) for b in range(tb)], axis=-1)
    return patches.reshape(x.shape[0] * ho * wo, -1), (ho, wo)


def _kernel_matrix(kernel: Array, strides: Ints) -> Array:
    """The HWIO kernel as the ((k/s)^2 s^2 Cin, Cout) matrix that `_patches` multiplies."""
    return kernel_blocks(kernel, strides).reshape(-1, kernel.shape[-1])


def conv2d_gemm(x: Array, kernel: Array, strides: Sequence[int], padding: Pads,
                product_dtype: Any = None) -> Array:
    """`lax.conv_general_dilated(x, kernel, strides, padding)` for NHWC x and an HWIO kernel,
    written as space-to-depth + one matrix product. Needs kernel size % stride == 0 per axis.

    bfloat16 operands are multiplied with float32 accumulation, forward and backward
    (`matrix_product`); the result has the operands' dtype. `product_dtype=jnp.bfloat16` with
    float32 operands builds the patches in float32 and multiplies them in bf16.
    """
    dtype = jnp.result_type(x, kernel)
    patches, (ho, wo) = _patches(x.astype(dtype), kernel.shape[:2], strides, padding)
    y = matrix_product(patches, _kernel_matrix(kernel.astype(dtype), strides), product_dtype)
    return y.reshape(x.shape[0], ho, wo, kernel.shape[-1])


def conv2d(x: Array, kernel: Array, strides: Sequence[int], padding: PaddingLike,
           lowering: str = "gemm", product_dtype: Any = None) -> Array:
    """2-D convolution (NHWC, HWIO kernel) that runs as `conv2d_gemm` on the CPU and as XLA's
    own convolution elsewhere (`lax.platform_dependent`, resolved when the program is lowered:
    GPUs and TPUs keep their vendor kernels). `lowering="xla"` always uses `lax.conv`.
    `product_dtype=jnp.bfloat16`: float32 operands are multiplied in bf16, accumulated and
    returned in float32, on every platform."""
    strides = tuple(int(s) for s in strides)
    kernel_size = tuple(int(k) for k in kernel.shape[:2])
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(x.shape[1:3], kernel_size, strides, padding)
    else:
        pads = nn.linear.canonicalize_padding(padding, 2)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    acc = jnp.promote_types(jnp.result_type(x, kernel), jnp.float32)

    def plain(x, kernel):
        x, kernel, dtype = _product_operands(x, kernel, product_dtype)
        y = lax.conv_general_dilated(x, kernel, strides, pads,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     preferred_element_type=acc)
        return y.astype(dtype)

    def gemm(x, kernel):
        return conv2d_gemm(x, kernel, strides, pads, product_dtype)

    _check_lowering(lowering)
    if lowering == "xla" or any(k % s for k, s in zip(kernel_size, strides)):
        return plain(x, kernel)
    return lax.platform_dependent(x, kernel, cpu=gemm, default=plain)


class FastConv(_ConvLayer):
    """Drop-in for a 2-D `flax.linen.Conv` (same params 'kernel' (kh, kw, in, out) and 'bias',
    same outputs up to float rounding) that runs as one matrix product on XLA:CPU (`conv2d`).

    Kernel dilation, feature groups, masks and CIRCULAR padding are not supported.
    """

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """inputs (N, H, W, in) -> (N, H', W', features)."""
        ks = self.kernel_size
        kernel_size = (ks, ks) if isinstance(ks, int) else tuple(ks)
        strides = self.strides
        strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        kernel = self.param("kernel", self.kernel_init,
                            kernel_size + (inputs.shape[-1], self.features), self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = conv2d(inputs, kernel, strides, self.padding, self.lowering, self.product_dtype)
        return y if bias is None else y + bias
