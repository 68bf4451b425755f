"""DSVAE loss, the jitted train step, and Orbax save/restore."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqdis_jax import checkpointing, models, train
from seqdis_jax.data import shapes
from seqdis_jax.errors import UserInputError
from seqdis_jax.models import LossInputs


@pytest.fixture(scope="module")
def compiled():
    """One model and one compiled step for the whole module (compiling is the slow part)."""
    from experiments import shapes as shapes_config

    config = shapes_config.get_config("smoke")
    config.train.learning_rate = 3e-3
    method = models.get_method("dsvae")
    model = method.build(config)
    tx = train.make_optimizer(config)
    chex.clear_trace_counter()
    step = train.make_train_step(method, model, tx, config, max_traces=1)
    return config, method, model, tx, step


@pytest.fixture
def setup(compiled):
    config, method, model, tx, step = compiled
    video = shapes.generate(config.data.batch_size, seed=5,
                            image_size=config.data.image_size)["video"]
    state = train.create_train_state(
        model, tx, jnp.zeros(video.shape, jnp.float32), jax.random.PRNGKey(0)
    )
    return config.copy_and_resolve_references(), method, model, tx, {"video": video}, state, step


def test_loss_terms_match_numpy(setup):
    config, method, model, _, batch, state, _ = setup
    config.loss.kl_static_weight = 0.7
    config.loss.kl_dynamic_weight = 1.3
    x = batch["video"].astype(np.float32) / 255.0
    rng = jax.random.PRNGKey(4)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    out = jax.device_get(model.apply(variables, x, False, rngs={"sample": rng}))
    loss, (metrics, _) = method.loss(LossInputs(
        model, state.params, state.batch_stats, {"x": x}, rng, config, train=False
    ))
    recon = np.mean(np.sum((out["reconstruction"] - x) ** 2, axis=(1, 2, 3, 4)))
    var_s = np.exp(out["s_logvar"])
    kl_s = np.mean(np.sum(0.5 * (var_s + out["s_mean"] ** 2 - 1 - out["s_logvar"]), -1))
    sq, sp = np.exp(0.5 * out["d_logvar"]), np.exp(0.5 * out["prior_logvar"])
    kl_d = np.log(sp / sq) + (sq**2 + (out["d_mean"] - out["prior_mean"]) ** 2) / (2 * sp**2) - 0.5
    kl_d = np.mean(np.sum(kl_d, axis=(1, 2)))
    np.testing.assert_allclose(float(metrics["reconstruction"]), recon, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["kl_static"]), kl_s, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["kl_dynamic"]), kl_d, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(loss), recon + 0.7 * kl_s + 1.3 * kl_d, rtol=1e-5)
    assert out["reconstruction"].shape == x.shape
    assert out["d"].shape == (x.shape[0], x.shape[1], config.model.dynamic_dim)


def test_train_step_is_traced_once_and_lowers_loss(setup):
    _, _, _, _, batch, state, step = setup
    rng = jax.random.PRNGKey(1)
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch, rng)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 30
    assert np.isfinite(losses).all()
    # Noise from sampling: compare averages of the first and last five steps.
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    # Compiled once for 30 steps (a second trace would also have raised: max_traces=1).
    assert step._cache_size() == 1


def test_train_step_retrace_is_an_error(setup):
    _, _, _, _, batch, state, step = setup
    state, _ = step(state, batch, jax.random.PRNGKey(0))
    smaller = {"video": batch["video"][:2]}
    with pytest.raises(AssertionError):
        step(state, smaller, jax.random.PRNGKey(0))


def test_wrong_batch_shape_is_refused_with_a_clear_message(setup):
    config, _, _, _, batch, _, _ = setup
    expected = (config.data.batch_size, 8, 64, 64, 3)
    train.check_batch(batch, expected)
    with pytest.raises(UserInputError, match=r"shape \(4, 8, 32, 32, 3\).*\(4, 8, 64, 64, 3\)"):
        train.check_batch({"video": np.zeros((4, 8, 32, 32, 3), np.uint8)}, expected)
    with pytest.raises(UserInputError, match="no 'video'"):
        train.check_batch({"frames": batch["video"]}, expected)


def test_checkpoint_roundtrip_gives_identical_params_and_next_loss(setup, tmp_path):
    _, _, model, tx, batch, state, step = setup
    rng = jax.random.PRNGKey(2)
    for _ in range(3):
        state, _ = step(state, batch, rng)
    manager = checkpointing.make_manager(str(tmp_path), save_every=1, keep=2)
    checkpointing.save(manager, int(state.step), state)
    manager.wait_until_finished()
    abstract = train.abstract_train_state(model, tx, batch["video"].shape)
    restored = checkpointing.restore(manager, abstract)
    manager.close()
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(state) == jax.tree.structure(restored)
    # The donated state must not be reused: copy before stepping both.
    original = jax.tree.map(jnp.copy, state)
    _, m1 = step(original, batch, rng)
    _, m2 = step(restored, batch, rng)
    assert float(m1["loss"]) == float(m2["loss"])
