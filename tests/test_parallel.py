"""Meshes and shardings (seqdis_jax/parallel.py), the bfloat16 compute dtype, and, in a
subprocess with 8 simulated devices, sharded training against one device
(tests/multidevice_checks.py)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import method_testing
import numpy as np
import pytest

from experiments import shapes
from seqdis_jax import errors, parallel

HERE = os.path.dirname(os.path.abspath(__file__))


def test_default_mesh_takes_every_device_on_the_data_axis():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data", "fsdp")
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1}
    parallel.check_batch_size(4 * jax.device_count(), mesh)


@pytest.mark.parametrize("data,fsdp,message", [
    (1, 0, "config.mesh.fsdp must be >= 1"),
    (0, 1, "config.mesh.data must be >= 1 or -1"),
    (jax.device_count() + 1, 1, "only 1 are available"),
    (-1, jax.device_count() + 1, "does not divide"),
])
def test_impossible_meshes_are_refused_with_the_fix(data, fsdp, message):
    with pytest.raises(errors.MeshError, match=message):
        parallel.make_mesh(data, fsdp)


def test_fsdp_splits_the_largest_divisible_dimension_of_large_arrays():
    spec = parallel._leaf_spec
    P = jax.sharding.PartitionSpec
    assert spec((512, 256), 1) == P()  # no fsdp axis: replicated
    assert spec((512, 256), 4) == P("fsdp", None)
    assert spec((3, 3, 64, 128), 4) == P(None, None, None, "fsdp")
    assert spec((130, 255), 4) == P()  # nothing divisible
    assert spec((256,), 4) == P()  # too small to be worth gathering
    assert spec((), 4) == P()


def test_state_sharding_is_a_sharding_per_leaf():
    mesh = parallel.make_mesh(1, 1)
    tree = {"w": jax.ShapeDtypeStruct((256, 128), jnp.float32), "step": jnp.zeros((), jnp.int32)}
    shardings = parallel.state_sharding(mesh, tree)
    assert all(s.is_fully_replicated for s in jax.tree.leaves(shardings))
    target = parallel.with_sharding(tree, shardings)
    assert target["w"].sharding == shardings["w"]


def test_bfloat16_compute_keeps_float32_parameters_and_optimizer_state():
    config = method_testing.smoke_config(shapes, 4, model__compute_dtype="bfloat16")
    reference = method_testing.train_on_fixed_batch(
        method_testing.smoke_config(shapes, 4), 1)[0]
    method, model, tx, batch, state = method_testing.setup(config)
    float_leaves = [x for x in jax.tree.leaves((state.params, state.opt_state, state.batch_stats))
                    if jnp.issubdtype(x.dtype, jnp.floating)]
    assert {x.dtype for x in float_leaves} == {jnp.dtype(jnp.float32)}
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    out, intermediates = model.apply(
        variables, batch["video"].astype(jnp.float32) / 255.0, False,
        rngs={"sample": jax.random.PRNGKey(0)}, capture_intermediates=True)
    # The networks compute in bfloat16; their outputs, and so the losses, are float32.
    layers = intermediates["intermediates"]
    assert layers["encoder"]["conv1"]["__call__"][0].dtype == jnp.bfloat16
    assert layers["decoder"]["upconv2"]["__call__"][0].dtype == jnp.bfloat16
    assert {v.dtype for v in out.values()} == {jnp.dtype(jnp.float32)}
    history = method_testing.train_on_fixed_batch(config, 12)
    losses = np.array([float(m["loss"]) for m in history])
    assert np.isfinite(losses).all()
    # The first loss matches float32 to bfloat16's ~3 significant digits; training lowers it.
    np.testing.assert_allclose(losses[0], float(reference["loss"]), rtol=2e-2)
    assert losses[-3:].mean() < losses[:3].mean()


def test_eight_simulated_devices_train_like_one(request):
    """tests/multidevice_checks.py in a process started with 8 host-platform devices: sharded
    training and evaluation against one device (its tests selected by this run's -m)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                         + " --xla_force_host_platform_device_count=8").strip()}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-m", request.config.getoption("markexpr") or "",
         os.path.join(HERE, "multidevice_checks.py")],
        env=env, capture_output=True, text=True, cwd=os.path.dirname(HERE))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
