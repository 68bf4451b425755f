"""Checks that need 8 devices; tests/test_parallel.py runs this file in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (the device count is fixed when JAX starts,
so it cannot be set inside the main pytest process). Not collected on its own (no test_ prefix).

* The O(B^2) terms (MWS's log-density matrix, the KL matrix, InfoNCE, MMD) computed on a batch
  sharded over 8 devices equal the single-device values: they see the global batch.
* DSVAE, C-DSVAE and SPYL trained 20 steps on 8 devices (and DSVAE on a 4 x 2 data x fsdp
  mesh) give the losses of 1 device on the same global batches within 1e-5 relative, compiling
  their step once.
* Evaluation on the 8-device mesh (batches split over it, a last partial batch padded and the
  padding dropped) gives the codes, validation losses and evaluator metrics of 1 device.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import etth1, shapes
from seqdis_jax import estimators, evaluators, fit, models, parallel, train
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data import shapes as shapes_data
from seqdis_jax.data.pipeline import RECORD_KEY, eval_batches

BATCH = 16
STEPS = 20


@pytest.fixture(autouse=True, scope="module")
def eight_devices():
    if jax.device_count() != 8:
        pytest.fail(f"run with XLA_FLAGS=--xla_force_host_platform_device_count=8 "
                    f"(found {jax.device_count()} devices)")


def _on(mesh, sharding_of, *arrays):
    return [jax.device_put(a, sharding_of(mesh)) for a in arrays]


def _sharded_and_single(fn, *arrays):
    """fn on arrays split over 8 devices along the batch axis, and on one device."""
    mesh8, mesh1 = parallel.make_mesh(8, 1), parallel.make_mesh(1, 1)
    sharded = _on(mesh8, parallel.batch_sharding, *arrays)
    assert sharded[0].sharding.num_devices == 8
    single = _on(mesh1, parallel.batch_sharding, *arrays)
    return np.asarray(jax.jit(fn)(*sharded)), np.asarray(jax.jit(fn)(*single))


def _normal(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("name,fn,shapes_", [
    ("mws_log_density_matrix", estimators.gaussian_log_density_matrix,
     [(BATCH, 6), (BATCH, 6), (BATCH, 6)]),
    ("kl_matrix", estimators.kl_matrix, [(BATCH, 6), (BATCH, 6)]),
    ("info_nce", estimators.paired_views_info_nce, [(BATCH, 6), (BATCH, 6)]),
    ("mmd", estimators.mmd_unbiased, [(BATCH, 6), (BATCH, 6)]),
])
def test_pairwise_terms_see_the_global_batch(name, fn, shapes_):
    arrays = [_normal(i, *shape) for i, shape in enumerate(shapes_)]
    sharded, single = _sharded_and_single(fn, *arrays)
    np.testing.assert_allclose(sharded, single, rtol=1e-6, atol=1e-6, err_msg=name)
    if sharded.ndim == 2:  # a full B x B matrix came back, not 8 diagonal blocks
        assert sharded.shape == (BATCH, BATCH)


def test_per_device_batches_would_give_another_info_nce():
    """The check above can fail: InfoNCE over each device's 2 sequences differs from the
    global-batch value."""
    u, v = _normal(0, BATCH, 6), _normal(1, BATCH, 6)
    global_value = estimators.paired_views_info_nce(u, v)
    local = np.mean([estimators.paired_views_info_nce(u[i:i + 2], v[i:i + 2])
                     for i in range(0, BATCH, 2)])
    assert abs(float(global_value) - float(local)) > 1e-3


def _train(config, mesh, batches):
    """Losses of STEPS jitted steps on `mesh`; asserts the step compiled once."""
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    shape = batches[0].shape
    _, state_sharding = train.sharded_restore_target(model, tx, shape, mesh)
    state = train.create_train_state(model, tx, jnp.zeros(shape, jnp.float32),
                                     jax.random.PRNGKey(0), out_shardings=state_sharding)
    batch_sharding = parallel.batch_sharding(mesh)
    step = train.make_train_step(method, model, tx, config, state_sharding=state_sharding,
                                 batch_sharding=batch_sharding)
    rng = jax.device_put(jax.random.PRNGKey(1), parallel.replicated(mesh))
    history = []
    for video in batches:
        state, metrics = step(state, {"video": jax.device_put(video, batch_sharding)}, rng)
        history.append(metrics)
    assert step._cache_size() == 1, "the step was compiled more than once"
    return jax.device_get(history), state


def _config(variant):
    """DSVAE on video (conv networks, BatchNorm over the global batch); the contrastive methods
    on the 7-channel ETTh1 series model, whose LSTMs compile and run fast on CPU."""
    config = shapes.get_config("smoke") if variant == "video" else etth1.get_config(variant)
    config.data.batch_size = BATCH
    return config


@functools.cache
def _batches(variant):
    if variant == "video":
        data = shapes_data.generate(BATCH * STEPS, seed=5)["video"]
    else:
        rng = np.random.default_rng(5)
        t = np.arange(24)[None, :, None]
        data = (rng.normal(size=(BATCH * STEPS, 1, 7))
                + np.sin(0.3 * t + rng.uniform(0, 6, size=(BATCH * STEPS, 1, 1)))
                ).astype(np.float32)
    return tuple(data[i * BATCH:(i + 1) * BATCH] for i in range(STEPS))


@functools.cache
def _one_device_history(variant):
    return _train(_config(variant), parallel.make_mesh(1, 1), _batches(variant))[0]


# DSVAE (BatchNorm over the global batch; also on a 4 x 2 data x fsdp mesh), C-DSVAE (InfoNCE)
# and SPYL (MWS and InfoNCE); DBSE's and R-WAE's pairwise terms are the estimator checks above.
# Only DSVAE on the 4 x 2 mesh runs in CI (its 20-minute budget): it splits the batch too,
# and the contrastive terms' global batch is test_pairwise_terms_see_the_global_batch above.
# The others are slow-marked (20-25 s each on 2 cores).
@pytest.mark.parametrize("variant,mesh_shape", [
    pytest.param("video", (8, 1), marks=pytest.mark.slow), ("video", (4, 2)),
    pytest.param("cdsvae_smoke", (8, 1), marks=pytest.mark.slow),
    pytest.param("spyl_smoke", (8, 1), marks=pytest.mark.slow),
], ids=["dsvae", "dsvae_fsdp", "cdsvae", "spyl"])
def test_eight_devices_train_like_one(variant, mesh_shape, monkeypatch):
    monkeypatch.setattr(parallel, "FSDP_MIN_SIZE", 64)  # shard the smoke model's weights too
    one = _one_device_history(variant)
    many, state = _train(_config(variant), parallel.make_mesh(*mesh_shape), _batches(variant))
    if mesh_shape[1] > 1:  # the weights really are split over 'fsdp'
        specs = {leaf.sharding.spec for leaf in jax.tree.leaves(state.params)}
        assert jax.sharding.PartitionSpec() in specs and len(specs) > 1
    assert len(one) == len(many) == STEPS
    for step, (a, b) in enumerate(zip(one, many)):
        # The loss within 1e-5 relative; its terms within 1e-5 of the loss (a term near 0,
        # e.g. a KL of 0.05 beside a loss of 300, differs in its 5th digit from summation
        # order alone).
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5, err_msg=f"step {step + 1}")
        for key in set(a) - {"grad_norm"}:  # the loss terms (a norm of 10^5 gradients is not)
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-5 * abs(a["loss"]),
                                       err_msg=f"step {step + 1}, {key}")



def _eval_setup(mesh, eval_batch_size):
    config = _config("video")
    config.data.num_test = 40
    config.eval.batch_size, config.eval.limit, config.eval.mi_batch_size = eval_batch_size, None, 16
    config.train.validation_batches, config.train.best_metric = 2, "loss"
    dataset = data_registry.load(config.data, "test")
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    shape = (BATCH,) + tuple(dataset.video_shape)
    target, state_sharding = train.sharded_restore_target(model, tx, shape, mesh)
    state = train.create_train_state(model, tx, jnp.zeros(shape, jnp.float32),
                                     jax.random.PRNGKey(0), out_shardings=state_sharding)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    codes = evaluators.encode_dataset(config, model, variables, dataset, jax.random.PRNGKey(2),
                                      keep_inputs=True, mesh=mesh)
    return config, dataset, method, model, target, state, variables, codes


def _evaluate(mesh):
    """(codes, validation losses, reconstruction and MI metrics) of one initialised DSVAE on
    `mesh`, over 40 test sequences in evaluation batches of 8 (one sequence per device)."""
    config, dataset, method, model, target, state, variables, codes = _eval_setup(mesh, 8)
    validate = fit.make_validation_fn(method, model, config, config.train, BATCH, dataset,
                                      (RECORD_KEY,), mesh, target)
    ctx = evaluators.EvalContext(config, "", model, variables, dataset, jax.random.PRNGKey(3),
                                 mesh=mesh)
    metrics = {**evaluators.EVALUATORS["reconstruction"].fn(ctx),
               **evaluators.EVALUATORS["mutual_information"].fn(ctx)}
    return codes, validate(state), metrics


def _assert_codes_equal(one, many):
    assert set(one) == set(many) and len(many["s_mean"]) == 40  # any padding dropped
    for key in one:
        np.testing.assert_allclose(many[key], one[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_evaluation_on_eight_devices_equals_one():
    mesh8 = parallel.mesh_from_config(_config("video"))
    assert mesh8.size == 8
    (codes1, validation1, metrics1), (codes8, validation8, metrics8) = (
        _evaluate(parallel.make_mesh(1, 1)), _evaluate(mesh8))
    _assert_codes_equal(codes1, codes8)
    assert set(validation1) == set(validation8) and set(metrics1) == set(metrics8)
    for key in validation1:
        np.testing.assert_allclose(validation8[key], validation1[key], rtol=1e-5,
                                   atol=1e-5 * abs(validation1["loss"]), err_msg=key)
    for key in metrics1:
        np.testing.assert_allclose(metrics8[key], metrics1[key], rtol=1e-5, atol=1e-5,
                                   err_msg=key)


def test_padded_evaluation_batches_split_and_drop_their_padding():
    """Batches of 12 on 8 devices: padded to 16 rows, 2 per device; the codes equal one
    device's. With the launcher's non-partitionable threefry a padded batch draws other
    posterior samples (the draw depends on the batch shape), so this compares with the
    partitionable generator, whose draws for a row do not depend on the rows after it."""
    mesh8 = parallel.mesh_from_config(_config("video"))
    batch = next(eval_batches(data_registry.load(_config("video").data, "test").source, 12,
                              multiple=8))
    assert len(batch["mask"]) == 16 and batch["mask"].sum() == 12
    placed = parallel.place_rows(batch[RECORD_KEY], mesh8)
    assert placed.sharding.num_devices == 8 and not placed.sharding.is_fully_replicated
    partitionable = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", True)
    try:
        one = _eval_setup(parallel.make_mesh(1, 1), 12)[-1]
        many = _eval_setup(mesh8, 12)[-1]
    finally:
        jax.config.update("jax_threefry_partitionable", partitionable)
    _assert_codes_equal(one, many)
