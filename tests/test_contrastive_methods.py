"""C-DSVAE and SPYL: single-trace jitted steps with finite gradients, training lowers the loss,
SPYL's stop-gradients and warm-up, and the configs' switches are checked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_testing import (
    contrastive_gradients,
    setup,
    smoke_config,
    squared_norm,
    train_on_fixed_batch,
)

from experiments import cdsvae_shapes, spyl_shapes
from seqdis_jax import configuration
from seqdis_jax.errors import UserInputError
from seqdis_jax.models import LossInputs


def _config(module, **overrides):
    return smoke_config(module, 6, **overrides)


@pytest.mark.parametrize("module,overrides", [
    (cdsvae_shapes, {}),
    (spyl_shapes, {}),
], ids=["cdsvae", "spyl_predictive"])
def test_training_lowers_the_loss_with_one_trace(module, overrides):
    config = _config(module, train__learning_rate=3e-3, **overrides)
    history = train_on_fixed_batch(config, 25)
    losses = [float(h["loss"]) for h in history]
    assert np.isfinite(losses).all()
    assert all(np.isfinite(float(h["grad_norm"])) for h in history)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    for h in history:  # InfoNCE estimates never exceed log(number of candidates)
        assert float(h["contrastive_mi_s_x"]) <= np.log(2 * 6 + 1) + 1e-5


@pytest.mark.parametrize("module,overrides", [
    (cdsvae_shapes, {"cdsvae__batch_norm_views": "joint"}),
    (cdsvae_shapes, {"cdsvae__motion_augmentation": False}),
    (spyl_shapes, {"spyl__views": "reparameterization", "spyl__negatives": "random"}),
    (spyl_shapes, {"spyl__views": "code", "spyl__bank_size": 8, "spyl__bank_negatives": 4,
                   "spyl__contrastive_warmup_steps": 1}),
], ids=["cdsvae_joint_bn", "cdsvae_no_motion", "spyl_reparameterization", "spyl_code_bank"])
def test_variants_are_single_jitted_steps_with_finite_gradients(module, overrides):
    history = train_on_fixed_batch(_config(module, **overrides), 2)
    for h in history:
        assert all(np.isfinite(float(v)) for v in h.values()), h
    if overrides.get("cdsvae__motion_augmentation") is False:
        assert float(history[0]["contrastive_mi_d_x"]) == 0.0


def test_predictive_views_train_the_encoder_not_the_decoder_or_prior():
    grads = contrastive_gradients(_config(spyl_shapes))
    assert squared_norm(grads["encoder"]) > 0
    assert squared_norm(grads["static_posterior"]) > 0
    assert squared_norm(grads["dynamic_posterior"]) > 0
    # The views are generated under stop-gradient: decoder and prior get nothing.
    assert squared_norm(grads["decoder"]) == 0.0
    assert squared_norm(grads["prior"]) == 0.0


def test_warmup_switches_the_contrastive_terms_on_at_the_given_step():
    config = _config(spyl_shapes, spyl__contrastive_warmup_steps=10)
    method, model, _, batch, state = setup(config)
    x = {"x": batch["video"].astype(np.float32) / 255.0}
    loss_at = lambda step: method.loss(LossInputs(model, state.params, state.batch_stats, x,
                                                  jax.random.PRNGKey(5), config, True,
                                                  jnp.array(step)))
    early, (m, _) = loss_at(9)
    late, _ = loss_at(10)
    c = config.spyl
    without = (c.reconstruction_weight * m["reconstruction"]
               + config.loss.kl_static_weight * m["kl_static"]
               + config.loss.kl_dynamic_weight * m["kl_dynamic"]
               + c.mi_static_dynamic_weight * m["mws_mi_s_d"])
    np.testing.assert_allclose(float(early), float(without), rtol=1e-6)
    with_terms = without - c.contrastive_weight * (m["contrastive_mi_s_x"]
                                                   + m["contrastive_mi_d_x"])
    np.testing.assert_allclose(float(late), float(with_terms), rtol=1e-6)


def test_batch_summed_reconstruction_scales_by_the_batch():
    config = _config(spyl_shapes)
    method, model, _, batch, state = setup(config)
    x = {"x": batch["video"].astype(np.float32) / 255.0}
    losses = {}
    for reduction in ("sum", "mean"):
        config.spyl.reconstruction_reduction = reduction
        losses[reduction], (m, _) = method.loss(LossInputs(
            model, state.params, state.batch_stats, x, jax.random.PRNGKey(5), config, False))
    extra = (6 - 1) * config.spyl.reconstruction_weight * m["reconstruction"]
    np.testing.assert_allclose(float(losses["sum"] - losses["mean"]), float(extra), rtol=1e-5)


@pytest.mark.parametrize("module,key,value,message", [
    (spyl_shapes, "spyl__views", "augment", "config.spyl.views must be one of"),
    (spyl_shapes, "spyl__negatives", "closest", "config.spyl.negatives must be one of"),
    (spyl_shapes, "data__batch_size", 2, "batch_size must be >= 3"),
    (spyl_shapes, "spyl__bank_negatives", 600, "bank_negatives"),
    (cdsvae_shapes, "cdsvae__batch_norm_views", "shared", "batch_norm_views must be one of"),
    (cdsvae_shapes, "cdsvae__temperature", 0.0, "temperature must be > 0"),
])
def test_bad_method_settings_are_refused_with_the_fix(module, key, value, message):
    config = module.get_config("smoke")
    section, field = key.split("__")
    config[section][field] = value
    with pytest.raises(UserInputError, match=message):
        configuration.validate(config)


def test_a_method_config_without_its_section_is_refused():
    config = spyl_shapes.get_config("smoke")
    del config["spyl"]
    with pytest.raises(UserInputError, match=r"get_method\('spyl'\)\.configure\(config\)"):
        configuration.validate(config)
