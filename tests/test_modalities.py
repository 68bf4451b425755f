"""The speech and time-series networks (SPYL A.3, DBSE A.4) inside the DSVAE family: shapes,
the Gaussian likelihood against its closed form, and training lowering the loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments import base, fsdd
from seqdis_jax import configuration, errors, models, train
from seqdis_jax.models import dsvae

T, F = 12, 6


def synthetic_sequences(batch, steps=T, features=F, seed=0):
    """A per-sequence offset (static) plus a per-sequence phase of a sinusoid (dynamic)."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=(batch, 1, features))
    phase = rng.uniform(0, 2 * np.pi, size=(batch, 1, 1))
    t = np.arange(steps)[None, :, None]
    return (offset + np.sin(0.7 * t + phase + np.arange(features))).astype(np.float32)


def series_config(method):
    config = fsdd.get_config("smoke")  # a judge-free smoke config, re-set to the series model
    for section in ("cdsvae", "spyl", "dbse", "rwae"):
        if section in config:
            del config[section]
    settings = base.SeriesSettings(spyl_weights=(2.5, 5.0, 1.0, 0.1, 2.5), spyl_dims=(12, 4),
                                   spyl_batch=8, dbse_alpha=0.2, dbse_beta=2e-3, dbse_batch=8)
    base.set_series_method(config, method, settings)
    config.model.hidden_dim = 16
    config.data.num_features = F
    config.data.batch_size = 8
    configuration.validate(config)
    return config


def speech_config(method):
    config = fsdd.get_config("smoke" if method == "dsvae" else f"{method}_smoke")
    config.data.num_features = F
    config.data.batch_size = 8
    configuration.validate(config)
    return config


def test_gaussian_nll_matches_the_closed_form():
    rng = np.random.default_rng(0)
    x, mean, logvar = (rng.normal(size=(3, T, F)).astype(np.float32) for _ in range(3))
    expected = -stats.norm.logpdf(x, mean, np.exp(0.5 * logvar)).reshape(3, -1).sum(-1)
    got = dsvae.reconstruction_error_per_sequence(jnp.asarray(x), jnp.asarray(mean),
                                                  jnp.asarray(logvar))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(dsvae.reconstruction_error(x, mean, logvar), expected.mean(),
                               rtol=1e-5)
    # Without a variance it is the papers' summed squared error.
    np.testing.assert_allclose(dsvae.reconstruction_error(x, mean),
                               np.square(x - mean).reshape(3, -1).sum(-1).mean(), rtol=1e-5)


@pytest.mark.parametrize("modality", ["speech", "series"])
def test_networks_give_sequences_of_the_input_shape(modality):
    config = speech_config("dsvae") if modality == "speech" else series_config("dsvae")
    model = dsvae.build(config)
    x = jnp.asarray(synthetic_sequences(4))
    variables = model.init({"params": jax.random.PRNGKey(0), "sample": jax.random.PRNGKey(1)},
                           x, False)
    out = model.apply(variables, x, False, rngs={"sample": jax.random.PRNGKey(2)})
    assert out["reconstruction"].shape == x.shape
    assert out["s_mean"].shape == (4, config.model.static_dim)
    assert out["d_mean"].shape == (4, T, config.model.dynamic_dim)
    assert ("reconstruction_logvar" in out) == (modality == "series")
    if modality == "series":
        assert np.all(np.abs(out["reconstruction_logvar"]) <= 10.0)
    # Speech has no frame encoder (the features feed the LSTMs); series has GLR's MLP.
    assert ("encoder" in variables["params"]) == (modality == "series")


@pytest.mark.parametrize("modality,method", [
    ("speech", "dsvae"), ("speech", "spyl"), ("series", "dsvae"), ("series", "cdsvae"),
    ("series", "dbse")])
def test_training_lowers_the_loss(modality, method):
    config = speech_config(method) if modality == "speech" else series_config(method)
    config.train.learning_rate = 3e-3 if modality == "speech" else 1e-2
    method_module = models.get_method(config.method)
    model = method_module.build(config)
    tx = train.make_optimizer(config, method_module)
    batch = {"video": jnp.asarray(synthetic_sequences(config.data.batch_size))}
    state = train.create_train_state(model, tx, batch["video"], jax.random.PRNGKey(0))
    chex.clear_trace_counter()
    step = train.make_train_step(method_module, model, tx, config, max_traces=1)
    losses = []
    for i in range(60):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
        losses.append(float(metrics["reconstruction"]))
    assert np.isfinite(losses).all()
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    # At least 10 % lower (the series NLL can go negative, so measured on |first|).
    assert last < first - 0.1 * abs(first), losses


def test_cdsvae_refuses_the_video_motion_view_on_speech():
    config = fsdd.get_config("cdsvae_smoke")
    config.cdsvae.motion_augmentation = True
    with pytest.raises(errors.UserInputError, match="motion_augmentation"):
        configuration.validate(config)


def test_series_model_needs_a_feature_count():
    config = series_config("dsvae")
    config.data.num_features = 0
    with pytest.raises(errors.UserInputError, match="num_features"):
        configuration.validate(config)
