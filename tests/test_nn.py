"""Shapes and recurrence semantics of the building blocks."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_COMPILE

from seqdis_jax import errors
from seqdis_jax.nn import recurrent
from seqdis_jax.nn.video import FrameDecoder, FrameEncoder, scaled

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("width", [1.0, 0.125])
def test_frame_encoder_and_decoder_shapes(width):
    frames = jax.random.uniform(KEY, (3, 64, 64, 3))
    encoder = FrameEncoder(feature_dim=128, width=width)
    variables = encoder.init(KEY, frames, True)
    features, _ = encoder.apply(variables, frames, True, mutable=["batch_stats"])
    assert features.shape == (3, 128)
    assert float(jnp.max(jnp.abs(features))) <= 1.0  # tanh output
    kernels = [variables["params"][f"conv{i}"]["kernel"].shape for i in range(1, 6)]
    assert [k[-1] for k in kernels[:4]] == [scaled(c, width) for c in (64, 128, 256, 512)]
    assert kernels[0][:2] == (4, 4)

    decoder = FrameDecoder(out_channels=3, width=width)
    latents = jax.random.normal(KEY, (3, 40))
    dvars = decoder.init(KEY, latents, True)
    out, _ = decoder.apply(dvars, latents, True, mutable=["batch_stats"])
    assert out.shape == (3, 64, 64, 3)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0  # sigmoid output
    assert dvars["params"]["upconv1"]["kernel"].shape == (4, 4, 40, scaled(512, width))


def test_32x32_frames_take_the_first_three_blocks():
    """The Quickstart's 32x32 path: encoder 64-128-256 + the last layer, its decoder mirror."""
    frames = jax.random.uniform(KEY, (2, 32, 32, 3))
    encoder = FrameEncoder(feature_dim=16, width=0.25)
    variables = encoder.init(KEY, frames, True)
    features, _ = encoder.apply(variables, frames, True, mutable=["batch_stats"])
    assert features.shape == (2, 16)
    assert sorted(k for k in variables["params"] if k.startswith("conv")) == [
        "conv1", "conv2", "conv3", "conv4"]
    assert variables["params"]["conv3"]["kernel"].shape[-1] == scaled(256, 0.25)
    decoder = FrameDecoder(out_channels=3, width=0.25, image_size=32)
    latents = jax.random.normal(KEY, (2, 10))
    dvars = decoder.init(KEY, latents, True)
    out, _ = decoder.apply(dvars, latents, True, mutable=["batch_stats"])
    assert out.shape == (2, 32, 32, 3)
    assert dvars["params"]["upconv1"]["kernel"].shape == (4, 4, 10, scaled(256, 0.25))
    with pytest.raises(ValueError, match="64x64 frames .* or 32x32 frames, got 48x48"):
        encoder.init(KEY, jnp.zeros((1, 48, 48, 3)), True)
    with pytest.raises(ValueError, match="config.data.image_size to 64 or 32"):
        FrameDecoder(image_size=16).init(KEY, latents, True)


def test_encoder_conv_padding_is_pytorch_k4_s2_p1():
    """conv1 of the encoder equals a numpy correlation over the input zero-padded by 1 on every
    side (PyTorch Conv2d(k=4, s=2, p=1)), at the corners where padding matters."""
    frames = jax.random.uniform(KEY, (2, 64, 64, 3))
    encoder = FrameEncoder(feature_dim=8, width=0.125)
    variables = encoder.init(KEY, frames, True)
    _, state = encoder.apply(
        variables, frames, True, mutable=["batch_stats", "intermediates"],
        capture_intermediates=lambda mdl, _: mdl.name == "conv1",
    )
    got = np.asarray(state["intermediates"]["conv1"]["__call__"][0])
    assert got.shape == (2, 32, 32, 8)
    kernel = np.asarray(variables["params"]["conv1"]["kernel"])
    bias = np.asarray(variables["params"]["conv1"]["bias"])
    padded = np.pad(np.asarray(frames), ((0, 0), (1, 1), (1, 1), (0, 0)))
    for i, j in [(0, 0), (0, 31), (31, 0), (31, 31), (5, 17)]:
        patch = padded[:, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4, :]
        ref = np.einsum("bhwc,hwco->bo", patch, kernel) + bias
        np.testing.assert_allclose(got[:, i, j], ref, rtol=1e-4, atol=1e-6)


def _lstm_loop(cell_params, hidden, xs, reverse=False):
    """A Python loop over time applying one OptimizedLSTMCell: the reference for the scans."""
    cell = nn.OptimizedLSTMCell(hidden)
    carry = cell.initialize_carry(KEY, (xs.shape[0], hidden))
    order = range(xs.shape[1] - 1, -1, -1) if reverse else range(xs.shape[1])
    for t in order:
        carry, h = cell.apply({"params": cell_params}, carry, xs[:, t])
    return h


def test_static_posterior_equals_loop_of_cells():
    features = jax.random.normal(KEY, (3, 6, 5))
    module = recurrent.StaticPosterior(static_dim=4, hidden_dim=7)
    params = module.init(KEY, features)["params"]
    mean, logvar = module.apply({"params": params}, features)
    h_fwd = _lstm_loop(params["forward_lstm"], 7, features)
    h_bwd = _lstm_loop(params["backward_lstm"], 7, features, reverse=True)
    h = jnp.concatenate([h_fwd, h_bwd], -1)
    head = params["head"]
    np.testing.assert_allclose(
        np.asarray(mean), np.asarray(h @ head["mean"]["kernel"] + head["mean"]["bias"]),
        rtol=1e-5, atol=1e-6,
    )
    np.testing.assert_allclose(
        np.asarray(logvar), np.asarray(h @ head["logvar"]["kernel"] + head["logvar"]["bias"]),
        rtol=1e-5, atol=1e-6,
    )


def test_dynamic_posterior_scan_equals_step_loop():
    b, t, g, dd, hidden = 3, 6, 5, 2, 7
    features = jax.random.normal(KEY, (b, t, g))
    eps = jax.random.normal(jax.random.PRNGKey(1), (b, t, dd))
    module = recurrent.DynamicPosterior(dynamic_dim=dd, hidden_dim=hidden)
    params = module.init(KEY, features, eps)["params"]
    mean, logvar, sample = module.apply({"params": params}, features, eps)

    step = recurrent._PosteriorStep(dd, hidden)
    cell = nn.OptimizedLSTMCell(hidden)
    carry = (cell.initialize_carry(KEY, (b, hidden)), jnp.zeros((b, dd)))
    for i in range(t):
        carry, (m_i, lv_i, d_i) = step.apply(
            {"params": params["rnn"]}, carry, (features[:, i], eps[:, i])
        )
        np.testing.assert_allclose(np.asarray(mean[:, i]), np.asarray(m_i), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(sample[:, i]), np.asarray(d_i), rtol=1e-5, atol=1e-6)
        # The sample fed back is mean + sigma * eps (nested sampling).
        np.testing.assert_allclose(
            np.asarray(d_i), np.asarray(m_i + jnp.exp(0.5 * lv_i) * eps[:, i]), rtol=1e-5,
            atol=1e-6,
        )


def test_prior_teacher_forcing_and_free_running_agree():
    b, t, dd, hidden = 4, 7, 3, 9
    prior = recurrent.DynamicPrior(dynamic_dim=dd, hidden_dim=hidden, num_layers=2)
    d_post = jax.random.normal(KEY, (b, t, dd))
    params = prior.init(KEY, d_post)["params"]
    tf_mean, tf_logvar = prior.apply({"params": params}, d_post)
    assert tf_mean.shape == tf_logvar.shape == (b, t, dd)

    free_mean, free_sample = prior.apply(
        {"params": params}, b, t, method=prior.sample, rngs={"sample": jax.random.PRNGKey(3)}
    )
    # First step: both see d_0 = 0 and zero LSTM states.
    np.testing.assert_allclose(np.asarray(tf_mean[:, 0]), np.asarray(free_mean[:, 0]), atol=1e-6)
    # Teacher-forcing on the free-running samples reproduces its means at every step.
    refed_mean, _ = prior.apply({"params": params}, free_sample)
    np.testing.assert_allclose(np.asarray(refed_mean), np.asarray(free_mean), rtol=1e-5, atol=1e-6)
    # The input at t is d_{t-1}: changing d_post at the last step changes nothing.
    tf2, _ = prior.apply({"params": params}, d_post.at[:, -1].set(100.0))
    np.testing.assert_allclose(np.asarray(tf2), np.asarray(tf_mean), atol=1e-6)
    tf3, _ = prior.apply({"params": params}, d_post.at[:, 2].set(100.0))
    np.testing.assert_allclose(np.asarray(tf3[:, :3]), np.asarray(tf_mean[:, :3]), atol=1e-6)
    assert float(jnp.max(jnp.abs(tf3[:, 3] - tf_mean[:, 3]))) > 1e-3


# --- BatchNorm with PyTorch's semantics (issue 19) ---------------------------------------------


def test_torch_batch_norm_matches_numpy_reference():
    """Train mode normalises with the biased batch variance and puts the *unbiased* one
    (x n / (n - 1)) into the running average with PyTorch's momentum 0.1; eval mode uses the
    running averages. numpy reference of torch.nn.BatchNorm2d."""
    from seqdis_jax.nn.video import TorchBatchNorm

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6, 5, 4, 3)) * [1.0, 3.0, 0.2] + [0.0, 40.0, -2.0]).astype(np.float32)
    layer = TorchBatchNorm(use_running_average=False)
    variables = layer.init(KEY, x)
    assert jax.tree.map(np.shape, variables["batch_stats"]) == {"mean": (3,), "var": (3,)}
    params = {"scale": jnp.asarray([1.5, -0.5, 2.0]), "bias": jnp.asarray([0.1, 0.2, -0.3])}
    y, updates = layer.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                             mutable=["batch_stats"])
    flat = x.reshape(-1, 3).astype(np.float64)
    n = flat.shape[0]
    mean, biased = flat.mean(0), flat.var(0)
    expected = (x - mean) / np.sqrt(biased + 1e-5) * np.asarray(params["scale"]) + np.asarray(
        params["bias"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 + 0.1 * biased * n / (n - 1),
                               rtol=1e-5)
    # Flax's BatchNorm would have stored the biased variance: the two differ by n / (n - 1).
    assert not np.allclose(updates["batch_stats"]["var"], 0.9 + 0.1 * biased, rtol=1e-4)

    eval_layer = TorchBatchNorm(use_running_average=True)
    y_eval = eval_layer.apply({"params": params, "batch_stats": updates["batch_stats"]}, x)
    stats = updates["batch_stats"]
    np.testing.assert_allclose(
        y_eval, (x - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
        * np.asarray(params["scale"]) + np.asarray(params["bias"]), rtol=1e-5, atol=1e-5)


def test_frame_encoder_running_variance_is_unbiased():
    """The last encoder layer (n = B*T values per channel, small) shows the n / (n - 1)."""
    frames = jax.random.uniform(KEY, (4, 64, 64, 3))
    encoder = FrameEncoder(feature_dim=8, width=0.0625)
    variables = encoder.init(KEY, frames, False)
    captured = {}

    def capture(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.module.name == "bn5":
            captured["input"] = args[0]
        return out

    with nn.intercept_methods(capture):
        _, updates = encoder.apply(variables, frames, True, mutable=["batch_stats"])
    h = np.asarray(captured["input"]).reshape(-1, 8).astype(np.float64)
    n = h.shape[0]
    assert n == 4
    np.testing.assert_allclose(updates["batch_stats"]["bn5"]["var"],
                               0.9 + 0.1 * h.var(0) * n / (n - 1), rtol=1e-4)


def _gradient_errors(apply, params, batch_stats, inputs) -> float:
    """||g32 - g64|| / ||g64|| over every parameter of a train-mode pass, as
    bench/gradient_precision.py measures it."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                        "gradient_precision.py")
    spec = importlib.util.spec_from_file_location("bench_gradient_precision", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.relative_errors(apply, params, batch_stats, inputs)[2]


def _decoder_gradient_error(frames: int) -> float:
    latents = jax.random.normal(jax.random.PRNGKey(1), (frames, 24), jnp.float32)
    decoder = FrameDecoder(out_channels=3, width=0.25)
    variables = decoder.init(jax.random.PRNGKey(2), latents, False)
    return _gradient_errors(decoder.apply, variables["params"], variables["batch_stats"],
                            latents)


def test_video_networks_float32_gradients_match_float64():
    """float32 gradients of a full train-mode encoder and decoder pass (64 frames each) within
    1e-4 relative of float64, over every parameter.

    What limits the agreement was measured (bench/gradient_precision.py): LeakyReLU -- values
    within float32 rounding of 0 take the other branch in float64. At 256 frames the encoder
    sits ~1.5e-4 away with any BatchNorm, and with the kink smoothed (--smooth) every network
    and BatchNorm is within 1.2e-5. At 64 frames: encoder 3e-6, decoder 5e-7 (2026-12-06, AMD
    EPYC, the tests' fast compile). The 256-frame decoder check is the slow test below."""
    frames = jax.random.uniform(KEY, (64, 64, 64, 3), jnp.float32)
    encoder = FrameEncoder(feature_dim=16, width=0.25)
    variables = encoder.init(jax.random.PRNGKey(2), frames, False)
    assert _gradient_errors(encoder.apply, variables["params"], variables["batch_stats"],
                            frames) < 1e-4
    assert _decoder_gradient_error(64) < 1e-4


# Both depend on the CPU's float32 code: on `Intel(R) Xeon(R) Processor` (2026-12-05) our
# decoder sat within 1e-4 at 256 frames with XLA's optimised code and Flax's BatchNorm 2.4e-4
# away; on AMD EPYC (2026-12-06) ours sits 2.38e-4 away at both optimisation levels (128
# frames, fast compile: 3.2e-4). Why it differs between the CPUs is an open question.
_NEEDS_OPTIMISED_XLA = pytest.mark.skipif(
    FAST_COMPILE in os.environ.get("XLA_FLAGS", ""),
    reason="measured with XLA's optimised CPU code: run with SEQDIS_TEST_XLA_OPT=1")


@pytest.mark.slow
@_NEEDS_OPTIMISED_XLA
def test_decoder_float32_gradients_match_float64_at_256_frames():
    """The decoder at 256 frames: up to 262k values per BatchNorm channel, where a one-pass
    variance loses digits."""
    assert _decoder_gradient_error(256) < 1e-4


@pytest.mark.slow
@_NEEDS_OPTIMISED_XLA
def test_flax_batch_norm_would_fail_the_float64_gradient_check(monkeypatch):
    """Control of the test above: Flax's BatchNorm (one-pass variance E[x^2] - E[x]^2) puts
    the decoder's gradient 2.4e-4 away from float64, so 1e-4 can fail."""
    from seqdis_jax.nn import video

    monkeypatch.setattr(video, "_batch_norm", lambda train, dtype, name: nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name))
    assert _decoder_gradient_error(256) > 1e-4


def test_frame_encoder_gemm_lowering_equals_xla_convolutions(monkeypatch):
    """model.cpu_conv_lowering: the encoder with its convolutions as matrix products (the CPU
    default) computes what XLA's convolutions compute, outputs, running averages and every
    parameter gradient, in train mode.

    LeakyReLU(0.2) is smoothed here to 0.6 x + 0.4 x tanh(100 x) (the same slopes away from
    0), as `bench/gradient_precision.py --smooth` does: with the kink, one pre-activation
    within float32 rounding of 0 can take the other branch in one lowering, and its gradient
    jumps. On `AMD EPYC` family 25 model 1 (AVX2; 2026-12-07) that put the `xla` lowering's
    bn1 bias gradient 0.038 from float64 (gemm 1.6e-5) and failed this test; smoothed, both
    lowerings sat within 1e-5 of float64 relative to each gradient's largest value (a scratch
    float64 comparison, not kept)."""
    monkeypatch.setattr(nn, "leaky_relu",
                        lambda x, negative_slope: 0.6 * x + 0.4 * x * jnp.tanh(100.0 * x))
    frames = jax.random.uniform(jax.random.PRNGKey(0), (6, 64, 64, 3))
    outs = {}
    for lowering in ("gemm", "xla"):
        encoder = FrameEncoder(16, width=0.125, conv_lowering=lowering)
        variables = encoder.init(jax.random.PRNGKey(1), frames, True)

        def loss(params, encoder=encoder, variables=variables):
            y, updates = encoder.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                       frames, True, mutable=["batch_stats"])
            return jnp.sum(jnp.sin(3.0 * y)), updates

        outs[lowering] = jax.value_and_grad(loss, has_aux=True)(variables["params"])
    # Each conv bias feeds a BatchNorm, so its true gradient is 0 and both results are
    # rounding noise: compare every leaf on the scale of the largest value of its kind.
    (value, stats), grads = outs["xla"]
    (value_gemm, stats_gemm), grads_gemm = outs["gemm"]
    np.testing.assert_allclose(value_gemm, value, rtol=1e-5)
    for gemm, xla in ((stats_gemm, stats), (grads_gemm, grads)):
        scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(xla))
        for a, b in zip(jax.tree.leaves(gemm), jax.tree.leaves(xla)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_config_rejects_unknown_cpu_conv_lowering():
    from experiments import sprites
    from seqdis_jax import configuration

    config = sprites.get_config("smoke")
    config.model.cpu_conv_lowering = "im2col"
    with pytest.raises(errors.UserInputError, match="cpu_conv_lowering must be"):
        configuration.validate(config)


def test_config_rejects_unknown_product_dtype_and_precision():
    from experiments import sprites
    from seqdis_jax import configuration

    config = sprites.get_config("smoke")
    config.model.product_dtype = "float16"
    with pytest.raises(errors.UserInputError, match="product_dtype must be"):
        configuration.validate(config)
    with pytest.raises(errors.UserInputError, match="precision must be one of"):
        configuration.set_precision(config, "fp8")
    configuration.set_precision(config, "bf16_products")
    assert (config.model.compute_dtype, config.model.product_dtype) == ("float32", "bfloat16")
    configuration.validate(config)
