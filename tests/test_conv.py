"""FastConvTranspose / conv_transpose against flax.linen.ConvTranspose and lax.conv_transpose."""

from __future__ import annotations

import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from seqdis_jax.nn.conv import (
    FastConv,
    FastConvTranspose,
    conv2d,
    conv2d_gemm,
    conv_transpose,
    conv_transpose_padding,
)

# (input shape NHWC, features, kernel_size, strides, padding)
CASES = [
    pytest.param((2, 4, 4, 6), 5, (4, 4), (2, 2), "SAME", id="s2-same-k4"),
    pytest.param((3, 1, 1, 6), 4, (4, 4), (1, 1), "VALID", id="s1-valid-k4-1x1to4x4"),
    pytest.param((2, 3, 5, 3), 5, (4, 4), (2, 2), "VALID", id="odd-3x5-s2-valid-k4"),
    pytest.param((2, 3, 5, 3), 5, (3, 3), (2, 2), "SAME", id="odd-3x5-s2-same-k3"),
    pytest.param((2, 3, 5, 3), 5, (3, 2), (3, 2), "SAME", id="odd-3x5-s32-same-k32"),
    pytest.param((2, 3, 5, 3), 5, (4, 4), (2, 2), ((0, 1), (2, 3)), id="odd-explicit-pad"),
    pytest.param((2, 4, 4, 3), 2, (3, 3), (2, 2), ((4, 4), (0, 0)), id="pad-beyond-kernel"),
]


def _normal(shape, seed: int, dtype=np.float32) -> jax.Array:
    """Host-side random data (keeps the number of small XLA compilations down)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _params(layer: nn.Module, x: jax.Array, seed: int = 0):
    """Random (non-default, non-zero bias) params with the layer's structure."""
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)["params"]
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    return jax.tree_util.tree_unflatten(
        tree, [_normal(p.shape, seed + i, p.dtype) for i, p in enumerate(leaves)]
    )


def _layers(features, kernel_size, strides, padding, **kw):
    fast = FastConvTranspose(features, kernel_size, strides=strides, padding=padding, **kw)
    plain = nn.ConvTranspose(features, kernel_size, strides=strides, padding=padding, **kw)
    return fast, plain


def _outputs_and_grads(layers, params, x, cot):
    """(y, d/dparams, d/dx) of <layer(x), cot> for each layer, all in one jitted call."""

    def run(params, x, cot):
        res = []
        for layer in layers:
            y, vjp = jax.vjp(lambda p, x, layer=layer: layer.apply({"params": p}, x), params, x)
            res.append((y, *vjp(cot.astype(y.dtype))))
        return res

    return jax.jit(run)(params, x, cot)


def _close(a, b, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape,features,kernel_size,strides,padding", CASES)
def test_forward_and_grads_match_flax(shape, features, kernel_size, strides, padding):
    x = _normal(shape, 2)
    fast, plain = _layers(features, kernel_size, strides, padding)
    params = _params(fast, x)
    out_shape = jax.eval_shape(lambda: plain.apply({"params": params}, x)).shape
    cot = _normal(out_shape, 3)

    (y_fast, gp_fast, gx_fast), (y_plain, gp_plain, gx_plain) = _outputs_and_grads(
        (fast, plain), params, x, cot
    )
    assert y_fast.shape == y_plain.shape == out_shape
    _close(y_fast, y_plain, rtol=1e-5, atol=1e-6)
    _close(gx_fast, gx_plain)
    _close(gp_fast["kernel"], gp_plain["kernel"])
    _close(gp_fast["bias"], gp_plain["bias"])
    _close(gp_fast["bias"], cot.sum(axis=(0, 1, 2)))


def test_params_interchangeable_and_default_init_matches():
    x = jnp.ones((1, 4, 4, 3))
    fast, plain = _layers(7, (4, 4), (2, 2), "SAME")
    p_fast = fast.init(jax.random.key(0), x)
    p_plain = plain.init(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(p_fast) == jax.tree_util.tree_structure(p_plain)
    assert p_fast["params"]["kernel"].shape == (4, 4, 3, 7)
    assert p_fast["params"]["bias"].shape == (7,)
    # same initialisers and rng streams -> identical values
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), p_fast, p_plain)
    _close(fast.apply(p_plain, x), plain.apply(p_fast, x), rtol=1e-6, atol=1e-6)


def test_no_bias():
    x = _normal((2, 4, 4, 3), 0)
    fast, plain = _layers(4, (4, 4), (2, 2), "SAME", use_bias=False)
    params = _params(fast, x)
    assert set(params) == {"kernel"}
    _close(fast.apply({"params": params}, x), plain.apply({"params": params}, x), rtol=1e-5)


def test_input_gradient_is_linear_transpose():
    """conv_transpose's custom input gradient equals jax.linear_transpose of lax.conv_transpose."""
    x = _normal((2, 3, 5, 3), 0)
    k = _normal((4, 4, 3, 5), 1)
    y, vjp = jax.vjp(lambda x: conv_transpose(x, k, (2, 2), "SAME"), x)
    g = _normal(y.shape, 2)
    (lt,) = jax.linear_transpose(lambda x: lax.conv_transpose(x, k, (2, 2), "SAME"), x)(g)
    _close(vjp(g)[0], lt, rtol=1e-5, atol=1e-6)


def test_padding_matches_lax():
    assert conv_transpose_padding((4, 4), (2, 2), "SAME") == ((2, 2), (2, 2))
    assert conv_transpose_padding((4, 4), (1, 1), "VALID") == ((3, 3), (3, 3))
    assert conv_transpose_padding((3, 3), (1, 1), 1) == ((1, 1), (1, 1))
    with pytest.raises(NotImplementedError):
        conv_transpose_padding((4, 4), (2, 2), "CIRCULAR")


def test_vmap_over_leading_axis():
    x = _normal((3, 2, 4, 4, 6), 0)
    fast, plain = _layers(5, (4, 4), (2, 2), "SAME")
    params = _params(fast, x[0])
    cot = _normal((3, 2, 8, 8, 5), 1)

    def vloss(layer):
        def loss(params, x):
            y = jax.vmap(lambda xi: layer.apply({"params": params}, xi))(x)
            return jnp.vdot(y, cot), y

        return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))

    (gp_fast, gx_fast), y_fast = vloss(fast)(params, x)
    (gp_plain, gx_plain), y_plain = vloss(plain)(params, x)
    _close(y_fast, y_plain, rtol=1e-5, atol=1e-6)
    _close(gx_fast, gx_plain)
    _close(gp_fast["kernel"], gp_plain["kernel"])
    _close(gp_fast["bias"], gp_plain["bias"])


def test_extra_and_missing_batch_dims():
    fast, plain = _layers(5, (4, 4), (2, 2), "SAME")
    x = _normal((3, 2, 4, 4, 6), 0)
    params = {"params": _params(fast, x[0])}
    _close(fast.apply(params, x), plain.apply(params, x), rtol=1e-5, atol=1e-6)
    _close(fast.apply(params, x[0, 0]), plain.apply(params, x[0, 0]), rtol=1e-5, atol=1e-6)
    assert fast.apply(params, x[0, 0]).shape == (8, 8, 5)


def test_bfloat16_compute_dtype():
    x = _normal((2, 4, 4, 6), 0)
    fast, plain = _layers(5, (4, 4), (2, 2), "SAME", dtype=jnp.bfloat16)
    params = _params(fast, x)
    assert params["kernel"].dtype == jnp.float32
    y_fast = fast.apply({"params": params}, x)
    y_plain = plain.apply({"params": params}, x)
    assert y_fast.dtype == y_plain.dtype == jnp.bfloat16
    _close(y_fast.astype(jnp.float32), y_plain.astype(jnp.float32), rtol=2e-2, atol=2e-2)

    cot = _normal(y_plain.shape, 1, jnp.bfloat16)
    (_, gp_fast, gx_fast), (_, gp_plain, gx_plain) = _outputs_and_grads(
        (fast, plain), params, x, cot
    )
    assert gp_fast["kernel"].dtype == jnp.float32 and gx_fast.dtype == jnp.float32
    scale = float(jnp.abs(gp_plain["kernel"]).max())
    _close(gp_fast["kernel"], gp_plain["kernel"], rtol=5e-2, atol=2e-2 * scale)
    _close(gx_fast, gx_plain, rtol=5e-2, atol=2e-2 * float(jnp.abs(gx_plain).max()))


# --- FastConv: convolutions as space-to-depth + one matrix product on the CPU -------------------

CONV_CASES = [  # (input NHWC, features, kernel, strides, padding): the encoder's and odd ones
    pytest.param((2, 8, 8, 3), 4, (4, 4), (2, 2), ((1, 1), (1, 1)), id="encoder-k4-s2-p1"),
    pytest.param((3, 4, 4, 5), 6, (4, 4), (1, 1), "VALID", id="encoder-last-4x4-valid"),
    pytest.param((2, 9, 7, 3), 4, (4, 2), (2, 2), ((1, 2), (0, 1)), id="odd-sizes-uneven-pad"),
    pytest.param((2, 6, 6, 2), 3, (3, 3), (1, 1), "SAME", id="k3-s1-same"),
    pytest.param((2, 7, 7, 2), 3, (3, 3), (2, 2), "SAME", id="k3-s2-fallback"),
]


@pytest.mark.parametrize("shape,features,kernel_size,strides,padding", CONV_CASES)
def test_fast_conv_matches_lax_conv_forward_and_gradients(shape, features, kernel_size, strides,
                                                          padding):
    """The GEMM lowering (what the CPU runs) equals flax's nn.Conv / lax.conv, values and both
    gradients, within float32 tolerance; params are interchangeable."""
    x = _normal(shape, 1)
    fast = FastConv(features, kernel_size, strides, padding)
    ref = nn.Conv(features, kernel_size, strides, padding)
    params = _params(ref, x)
    assert jax.tree.structure(params) == jax.tree.structure(
        jax.eval_shape(fast.init, jax.random.key(0), x)["params"])
    cot = _normal(jax.eval_shape(ref.apply, {"params": params}, x).shape, 2)

    def loss(layer):
        return lambda p, x: jnp.sum(layer.apply({"params": p}, x) * cot)

    for layer_out, ref_out in zip(jax.value_and_grad(loss(fast), (0, 1))(params, x),
                                  jax.value_and_grad(loss(ref), (0, 1))(params, x)):
        for a, b in zip(jax.tree.leaves(layer_out), jax.tree.leaves(ref_out)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_conv2d_gemm_is_what_the_cpu_runs():
    """On the CPU `conv2d` lowers to a dot (no convolution in the compiled program); with
    lowering='xla' it keeps XLA's convolution."""
    x, w = _normal((2, 8, 8, 3), 0), _normal((4, 4, 3, 4), 1)
    pads = ((1, 1), (1, 1))
    hlo = jax.jit(lambda x, w: conv2d(x, w, (2, 2), pads)).lower(x, w).compile().as_text()
    assert "convolution(" not in hlo and "dot(" in hlo
    hlo = jax.jit(lambda x, w: conv2d(x, w, (2, 2), pads, "xla")).lower(x, w).compile().as_text()
    assert "convolution(" in hlo
    np.testing.assert_allclose(conv2d_gemm(x, w, (2, 2), pads),
                               lax.conv_general_dilated(x, w, (2, 2), pads,
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC")),
                               rtol=1e-5, atol=1e-5)


def test_conv2d_gemm_bfloat16_accumulates_in_float32():
    """bf16 operands: the product is accumulated in float32 (preferred_element_type), so the
    error is the inputs' rounding only: within 1e-2 relative of the float32 result."""
    x, w = _normal((2, 16, 16, 64), 0), _normal((4, 4, 64, 8), 1)
    pads = ((1, 1), (1, 1))
    y32 = conv2d_gemm(x, w, (2, 2), pads)
    y16 = conv2d_gemm(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (2, 2), pads)
    assert y16.dtype == jnp.bfloat16
    rel = float(jnp.linalg.norm(y16.astype(jnp.float32) - y32) / jnp.linalg.norm(y32))
    assert rel < 1e-2, rel


@pytest.fixture(scope="module")
def product_dtypes():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                        "product_dtypes.py")
    spec = importlib.util.spec_from_file_location("bench_product_dtypes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("layer", ["conv2d", "conv_transpose"])
def test_bfloat16_gemm_products_stay_bfloat16_forward_and_backward(layer, product_dtypes):
    """With bf16 operands every matrix product of the compiled forward + backward multiplies
    bf16 by bf16 (XLA:CPU runs a mixed float32 x bf16 product in float32), and the values and
    gradients stay within bf16 rounding of the float32 ones."""
    pads = ((1, 1), (1, 1))
    if layer == "conv2d":
        x, w = _normal((2, 16, 16, 8), 0), _normal((4, 4, 8, 16), 1)

        def f(x, w):
            return conv2d(x, w, (2, 2), pads)
    else:
        x, w = _normal((2, 8, 8, 16), 0), _normal((4, 4, 16, 8), 1)

        def f(x, w):
            return conv_transpose(x, w, (2, 2), "SAME")
    cot = _normal(jax.eval_shape(f, x, w).shape, 2)

    def loss(x, w):
        return jnp.sum(f(x, w).astype(jnp.float32) * cot)

    grad = jax.jit(jax.value_and_grad(loss, (0, 1)))
    x16, w16 = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    found = product_dtypes.products(grad.lower(x16, w16).compile().as_text())
    assert len(found) == 3, found  # the forward product and its two gradients
    assert all(p["dtypes"] == ("bf16", "bf16") for p in found), found
    for a16, a32 in zip(jax.tree.leaves(grad(x16, w16)), jax.tree.leaves(grad(x, w))):
        a16 = a16.astype(jnp.float32)
        assert float(jnp.linalg.norm(a16 - a32) / jnp.linalg.norm(a32)) < 2e-2


def _rounded(a: jax.Array) -> jax.Array:
    return a.astype(jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize("layer", ["conv2d", "conv_transpose"])
@pytest.mark.parametrize("lowering", ["gemm", "xla"])
def test_bf16_products_are_float32_convolutions_of_rounded_operands(layer, lowering,
                                                                     product_dtypes):
    """product_dtype=bfloat16 on float32 operands (`model.product_dtype`): the result and the
    gradients are float32, the forward equals the float32 convolution of the operands rounded
    to bf16 (sums in float32), the gradients stay within bf16 rounding of float32's, and with
    the "gemm" lowering every product of the compiled forward + backward is bf16 x bf16."""
    pads = ((1, 1), (1, 1))
    if layer == "conv2d":
        x, w = _normal((2, 16, 16, 8), 0), _normal((4, 4, 8, 16), 1)

        def f(x, w, product_dtype=jnp.bfloat16):
            return conv2d(x, w, (2, 2), pads, lowering, product_dtype)
    else:
        x, w = _normal((2, 8, 8, 16), 0), _normal((4, 4, 16, 8), 1)

        def f(x, w, product_dtype=jnp.bfloat16):
            return conv_transpose(x, w, (2, 2), "SAME", lowering=lowering,
                                  product_dtype=product_dtype)
    cot = _normal(jax.eval_shape(f, x, w).shape, 2)

    def loss(x, w, product_dtype=jnp.bfloat16):
        return jnp.sum(f(x, w, product_dtype) * cot)

    y = jax.jit(f)(x, w)
    assert y.dtype == jnp.float32
    # "xla" on the CPU rounds its transposed convolution's output to bf16 (conv_transpose)
    tol = 1e-2 if (layer, lowering) == ("conv_transpose", "xla") else 1e-5
    _close(y, jax.jit(f)(_rounded(x), _rounded(w), None), rtol=tol, atol=tol)
    grad = jax.jit(jax.value_and_grad(loss, (0, 1)))
    grads = grad(x, w)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    grads32 = jax.jit(jax.value_and_grad(lambda x, w: loss(x, w, None), (0, 1)))(x, w)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads32)):
        assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) < 2e-2
    if lowering == "gemm":
        found = product_dtypes.products(grad.lower(x, w).compile().as_text())
        assert len(found) == 3, found
        assert all(p["dtypes"] == ("bf16", "bf16") for p in found), found


def test_bf16_products_layers_keep_float32_params_and_outputs():
    """FastConv / FastConvTranspose with product_dtype=bfloat16: the same params as float32
    (float32 leaves) and float32 outputs within bf16 rounding of the float32 layer's."""
    x = _normal((2, 8, 8, 4), 0)
    for cls in (FastConv, FastConvTranspose):
        layer32 = cls(6, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
        layer16 = cls(6, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                      product_dtype=jnp.bfloat16)
        params = _params(layer32, x)
        assert jax.tree.structure(params) == jax.tree.structure(_params(layer16, x))
        y32, y16 = (layer.apply({"params": params}, x) for layer in (layer32, layer16))
        assert y16.dtype == jnp.float32
        assert float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32)) < 1e-2


def test_product_dtype_rejects_other_narrow_types():
    x, w = _normal((1, 4, 4, 2), 0), _normal((4, 4, 2, 3), 1)
    with pytest.raises(ValueError, match="product_dtype must be None or bfloat16"):
        conv2d(x, w, (2, 2), ((1, 1), (1, 1)), product_dtype=jnp.float16)


def test_conv2d_gemm_rejects_kernel_not_divisible_by_stride():
    with pytest.raises(ValueError, match="divisible by the strides"):
        conv2d_gemm(jnp.zeros((1, 7, 7, 1)), jnp.zeros((3, 3, 1, 1)), (2, 2), ((1, 1), (1, 1)))


@pytest.mark.parametrize("shape,features,kernel_size,strides,padding", CASES)
def test_conv_transpose_lowerings_agree(shape, features, kernel_size, strides, padding):
    """FastConvTranspose's two CPU lowerings ("gemm": the linear transpose of the GEMM
    convolution, where the kernel is a multiple of the stride; "xla": XLA's forward with the
    custom backward) give the same values and gradients."""
    x = _normal(shape, 3)
    layers = {lowering: FastConvTranspose(features, kernel_size, strides, padding,
                                          lowering=lowering) for lowering in ("gemm", "xla")}
    params = _params(layers["xla"], x)
    cot = _normal(jax.eval_shape(layers["xla"].apply, {"params": params}, x).shape, 4)
    results = {name: jax.value_and_grad(
        lambda p, x, layer=layer: jnp.sum(layer.apply({"params": p}, x) * cot), (0, 1))(params, x)
        for name, layer in layers.items()}
    for a, b in zip(jax.tree.leaves(results["gemm"]), jax.tree.leaves(results["xla"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_conv_transpose_gemm_is_what_the_cpu_runs():
    """The decoder's k4 s2 layer lowers to dots on the CPU: no convolution in the compiled
    forward and backward."""
    x, w = _normal((2, 4, 4, 3), 0), _normal((4, 4, 3, 5), 1)

    def loss(x, w):
        return jnp.sum(conv_transpose(x, w, (2, 2), "SAME") ** 2)

    hlo = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(x, w).compile().as_text()
    assert "convolution(" not in hlo and "dot(" in hlo
