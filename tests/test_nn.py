"""Shapes and recurrence semantics of the building blocks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
