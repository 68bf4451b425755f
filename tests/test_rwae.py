"""R-WAE: the alternating phases of Alg. 1-2 step exactly their groups, one backward pass gives
each player its own gradient, the epoch schedule, weak supervision's action code, and every
variant's step is traced once and lowers its loss on a fixed batch."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_testing import setup, smoke_config, train_on_fixed_batch

from experiments import rwae_gan_shapes, rwae_shapes
from seqdis_jax import configuration, optim, train
from seqdis_jax.errors import UserInputError
from seqdis_jax.models import LossInputs, rwae


def _config(module=rwae_shapes, **overrides):
    return smoke_config(module, 6, **overrides)


def _groups(tree):
    """{group: {submodule: subtree}} of a parameter tree."""
    return {g: {n: t for n, t in tree.items() if rwae.group_of(n) == g} for g in rwae.GROUPS}


def _changed(before, after):
    leaves = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after))
    return any(leaves)


@pytest.mark.parametrize("module,overrides", [
    (rwae_shapes, {}),
    (rwae_gan_shapes, {}),
    (rwae_shapes, {"rwae__num_actions": 3}),
], ids=["mmd", "gan", "mmd_weakly_supervised"])
def test_training_lowers_the_loss_with_one_trace(module, overrides):
    config = _config(module, train__learning_rate=3e-3, rwae__encoder_learning_rate=3e-3,
                     rwae__critic_learning_rate=1e-3, **overrides)
    history = train_on_fixed_batch(config, 48)  # 8 iterations of Alg. 1-2 (L = 5)
    losses = np.array([float(h["loss"]) for h in history])
    assert np.isfinite(losses).all()
    assert all(np.isfinite(float(h["grad_norm"])) for h in history)
    assert np.mean(losses[-6:]) < 0.85 * np.mean(losses[:6]), losses


@pytest.mark.parametrize("module", [rwae_shapes, rwae_gan_shapes], ids=["mmd", "gan"])
def test_phases_step_exactly_their_groups(module):
    config = _config(module)
    method, model, tx, batch, state = setup(config)
    step = train.make_train_step(method, model, tx, config)
    L = config.rwae.critic_steps
    for i in range(L + 1):
        before_params = jax.device_get(_groups(state.params))
        before_opt = jax.device_get(state.opt_state.inner_states)
        state, _ = step(state, batch, jax.random.PRNGKey(i))
        after_params = _groups(state.params)
        active = ("encoder", "critic") if i < L else ("decoder",)
        for group in rwae.GROUPS:
            moved = _changed(before_params[group], after_params[group])
            opt_moved = _changed(before_opt[group], state.opt_state.inner_states[group])
            assert moved == (group in active), (i, group)
            assert opt_moved == (group in active), (i, group)


def test_step_groups_equals_one_adam_per_group_on_its_own_subtree():
    """`optim.step_groups` on `optax.partition` gives bit for bit what separate per-group
    transformations on the groups' own subtrees give (the hand-written partition it
    replaced): the active groups' clipped Adam, scaled; the others' params and states kept."""
    config = _config(train__grad_clip_norm=0.5)
    transforms = rwae.group_transforms(config)
    rng = np.random.default_rng(0)
    names = ("critic", "decoder", "encoder", "fusion", "prior", "static_posterior")
    params = {n: {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
                  "b": jnp.asarray(rng.normal(size=(2,)), jnp.float32)} for n in names}
    tx = optax.partition(transforms, rwae.param_labels)
    state = tx.init(params)
    ref_params = params
    ref_states = {g: tx_g.init(_groups(params)[g]) for g, tx_g in transforms.items()}
    step = jax.jit(lambda active, *args: optim.step_groups(
        tx, rwae.param_labels(params), active, *args), static_argnums=0)

    @functools.partial(jax.jit, static_argnums=0)
    def reference(group, grads, state, params, scale):
        updates, state = transforms[group].update(grads, state, params)
        return optax.apply_updates(params, jax.tree.map(lambda u: scale * u, updates)), state

    phases = [("encoder", "critic")] * 2 + [("decoder",), ("encoder", "critic")]
    for i, active in enumerate(phases):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        scale = jnp.float32(0.5 if i == 3 else 1.0)
        params, state = step(active, grads, state, params, scale)
        ref_params = dict(ref_params)
        for g in active:
            group_params, ref_states[g] = reference(
                g, _groups(grads)[g], ref_states[g], _groups(ref_params)[g], scale)
            ref_params.update(group_params)
        chex.assert_trees_all_equal(params, ref_params)
        for g in rwae.GROUPS:
            chex.assert_trees_all_equal(jax.tree.leaves(state.inner_states[g]),
                                        jax.tree.leaves(ref_states[g]))


@pytest.mark.parametrize("module", [rwae_shapes, rwae_gan_shapes], ids=["mmd", "gan"])
def test_one_backward_pass_gives_each_player_its_own_gradient(module):
    """grad(model loss + critic loss) = (grad of the model loss for the encoder and decoder,
    -grad of the divergence (plus the GAN's penalty) for the critic)."""
    config = _config(module)
    _, model, _, batch, state = setup(config)
    batch = train.to_model_batch(batch, config.data.pixel_scale)
    rng = jax.random.PRNGKey(7)

    def parts(params):
        return rwae.objectives(LossInputs(model, params, state.batch_stats, batch, rng, config))

    grads = jax.jit(lambda p: (jax.grad(lambda q: parts(q)[0] + parts(q)[1])(p),
                               jax.grad(lambda q: parts(q)[0])(p),
                               jax.grad(lambda q: parts(q)[1])(p)))
    combined, model_only, critic_only = grads(state.params)
    for name in state.params:
        expected = critic_only[name] if name == "critic" else model_only[name]
        chex.assert_trees_all_close(combined[name], expected, atol=1e-6, rtol=1e-5)
    # The model's loss does not train the critic, the critic's loss does not train the model.
    assert not _changed(model_only["critic"], jax.tree.map(jnp.zeros_like, model_only["critic"]))
    for name in ("encoder", "decoder", "static_posterior", "prior"):
        assert not _changed(critic_only[name], jax.tree.map(jnp.zeros_like, critic_only[name]))


def test_learning_rates_decay_by_epochs_at_the_global_step():
    config = _config()
    epoch = config.data.num_train // config.data.batch_size
    decay = rwae.learning_rate_decay(config)
    np.testing.assert_allclose(
        [decay(0), decay(50 * epoch - 1), decay(50 * epoch + 1), decay(80 * epoch + 1)],
        [1.0, 1.0, 0.5, 0.1], rtol=1e-6)


def test_weak_supervision_appends_a_relaxed_action_to_the_dynamic_code():
    config = _config(rwae__num_actions=3)
    _, model, _, batch, state = setup(config)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    x = train.to_model_batch(batch, config.data.pixel_scale)["x"]
    out = model.apply(variables, x, False, rngs={"sample": jax.random.PRNGKey(1)},
                      method=model.encode)
    dd = config.model.dynamic_dim
    assert out["d"].shape[-1] == dd + 3
    action = np.asarray(out["d"][..., dd:])
    np.testing.assert_allclose(action.sum(-1), 1.0, rtol=1e-5)
    assert (action >= 0).all() and np.allclose(action, action[:, :1])  # one a per sequence
    _, sampled = model.apply(variables, 4, 5, rngs={"sample": jax.random.PRNGKey(2)},
                             method=model.sample_dynamics)
    assert sampled.shape == (4, 5, dd + 3)
    np.testing.assert_array_equal(np.sort(np.asarray(sampled[..., dd:]), -1)[..., -1], 1.0)


@pytest.mark.parametrize("key,value,message", [
    ("divergence_static", "wasserstein", "divergence_static"),
    ("critic_steps", 0, "critic_steps"),
    ("reconstruction", "l1", "reconstruction"),
    ("kernel_bandwidths", (0.0, 1.0), "kernel_bandwidths"),
])
def test_bad_settings_are_refused_with_the_fix(key, value, message):
    config = rwae_shapes.get_config("smoke")
    config.rwae[key] = value
    with pytest.raises(UserInputError, match=message):
        configuration.validate(config)
