"""Shared by the method tests: a smoke config with overrides, an initialised train state on a
fixed shapes batch, and single-trace training on that batch."""

import chex
import jax
import jax.numpy as jnp

from seqdis_jax import configuration, models, train, train_step
from seqdis_jax.data import shapes


def smoke_config(module, batch_size, **overrides):
    """`module`'s `:smoke` config at `batch_size`; overrides as section__field=value."""
    config = module.get_config("smoke")
    config.data.batch_size = batch_size
    for key, value in overrides.items():
        section, field = key.split("__")
        config[section][field] = value
    configuration.validate(config)
    return config


def setup(config):
    """(method, model, tx, fixed batch, initial state) for `config`."""
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    video = shapes.generate(config.data.batch_size, seed=3,
                            image_size=config.data.get("image_size", 64))["video"]
    state = train.create_train_state(model, tx, jnp.zeros(video.shape, jnp.float32),
                                     jax.random.PRNGKey(0))
    return method, model, tx, {"video": video}, state


def train_on_fixed_batch(config, steps):
    """The jitted step `steps` times on one batch; asserts one trace; the scalar metrics per
    step (the step's bool[B] `non_finite_rows` flags, all False here, are left out)."""
    method, model, tx, batch, state = setup(config)
    chex.clear_trace_counter()
    step = train.make_train_step(method, model, tx, config, max_traces=1)
    history = []
    for i in range(steps):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
        metrics = jax.device_get(metrics)
        assert not metrics.pop(train_step.NON_FINITE_ROWS).any()
        history.append(metrics)
    assert step._cache_size() == 1  # one executable for every step
    return history


def contrastive_gradients(config):
    """Gradient of SPYL's contrastive terms (I(s; x) + I(d; x)) w.r.t. every parameter, from
    one train-mode pass on the fixed batch (`spyl.contrastive_terms`, jitted)."""
    import numpy as np

    from seqdis_jax.models import spyl

    _, model, _, batch, state = setup(config)
    x = batch["video"].astype(np.float32) / 255.0

    def objective(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        out, stats = model.apply(variables, x, True, rngs={"sample": jax.random.PRNGKey(1)},
                                 mutable=["batch_stats"])
        mi_s, mi_d, _ = spyl.contrastive_terms(model, params, stats["batch_stats"], out,
                                               jax.random.PRNGKey(2), config, True)
        return mi_s + mi_d

    return jax.jit(jax.grad(objective))(state.params)


def squared_norm(tree):
    """Sum of squares of every leaf of a gradient tree, as a float."""
    return float(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree)))
