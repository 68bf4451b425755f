"""Device meshes and shardings: data parallelism, optionally with fully sharded parameters.

Every run builds one 2-D mesh with axes ('data', 'fsdp') from `config.mesh` (the same code on
one CPU, N GPUs, a TPU slice or several hosts):

* the batch is split along its first axis over both axes (data * fsdp shards);
* parameters, BatchNorm statistics and optimiser state are replicated over 'data' and, when
  `config.mesh.fsdp > 1`, each large array is split along one of its dimensions over 'fsdp'
  (ZeRO-3 / FSDP, as in maxtext): XLA all-gathers it for the forward pass and reduce-scatters
  its gradient.

Losses are written on the *global* batch: a jitted step sees logical arrays, so the O(B^2)
terms (the KL matrix of the MWS estimator, InfoNCE, MMD) compare every pair of sequences of
the global batch, whichever device holds them; XLA inserts the all-gathers of the small latent
tensors. tests/multidevice_checks.py verifies this on 8 simulated devices.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils

from seqdis_jax.errors import MeshError

MESH_AXES = ("data", "fsdp")
# Arrays with fewer elements stay replicated under FSDP: gathering them costs more than
# storing them (biases, LayerNorm scales, Adam's step counter).
FSDP_MIN_SIZE = 2**14



def make_mesh(data: int = -1, fsdp: int = 1, devices: list[Any] | None = None
              ) -> jax.sharding.Mesh:
    """A ('data', 'fsdp') mesh over the first data * fsdp of `devices` (default: all devices
    of all processes). `data=-1` takes every device the 'fsdp' axis leaves."""
    devices = list(jax.devices() if devices is None else devices)
    if fsdp < 1:
        raise MeshError(f"config.mesh.fsdp must be >= 1, got {fsdp}.")
    if data == -1:
        if len(devices) % fsdp:
            raise MeshError(
                f"config.mesh.fsdp={fsdp} does not divide the {len(devices)} devices; "
                f"choose a divisor of {len(devices)}.")
        data = len(devices) // fsdp
    if data < 1:
        raise MeshError(f"config.mesh.data must be >= 1 or -1 (all devices), got {data}.")
    size = data * fsdp
    if size > len(devices):
        raise MeshError(
            f"config.mesh.data * config.mesh.fsdp = {data} * {fsdp} = {size} devices, but only "
            f"{len(devices)} are available; use config.mesh.data=-1 to take them all.")
    if size < len(devices) and jax.process_count() > 1:
        raise MeshError(
            f"A multi-host mesh must use every device: {size} of {len(devices)} requested; "
            "set config.mesh.data=-1.")
    if size == len(devices):  # topology-aware order (TPU ICI rings), else the given order
        grid = mesh_utils.create_device_mesh((data, fsdp), devices)
    else:
        grid = np.array(devices[:size]).reshape(data, fsdp)
    return jax.sharding.Mesh(grid, MESH_AXES)


def mesh_from_config(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    """The mesh of `config.mesh` (data=-1, fsdp=1 when a config has no mesh section)."""
    mesh_config = config.get("mesh", ml_collections.ConfigDict())
    return make_mesh(mesh_config.get("data", -1), mesh_config.get("fsdp", 1))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Arrays split along their first (batch) axis over every device of the mesh."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(MESH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def host_array(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A global array laid out as `sharding` from a host array that every process holds whole
    (each process places only its own devices' slices, so it works across hosts too)."""
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def place_rows(x: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """A host batch that every process holds whole, on `mesh`: split along its first axis over
    the devices when they divide it (evaluation batches are padded so: `eval_batches`'
    `multiple`), else replicated."""
    x = np.asarray(x)
    return host_array(x, batch_sharding(mesh) if len(x) % mesh.size == 0 else replicated(mesh))


def gathered_jit(fn: Any, mesh: jax.sharding.Mesh) -> Any:
    """`jax.jit(fn)` whose outputs come back replicated on `mesh`, so that every process can
    read them (`jax.device_get`) however the inputs were split: the evaluators' model calls."""
    return jax.jit(fn, out_shardings=replicated(mesh))


def check_batch_size(global_batch_size: int, mesh: jax.sharding.Mesh) -> None:
    """Every device must get the same number of sequences."""
    if global_batch_size % mesh.size:
        raise MeshError(
            f"config.data.batch_size={global_batch_size} is not divisible by the {mesh.size} "
            f"devices of the mesh {dict(mesh.shape)}; choose a multiple of {mesh.size}.")


def _leaf_spec(shape: tuple[int, ...], fsdp: int) -> jax.sharding.PartitionSpec:
    """Splits the largest dimension that `fsdp` divides; small arrays stay replicated."""
    if fsdp == 1 or math.prod(shape) < FSDP_MIN_SIZE:
        return jax.sharding.PartitionSpec()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp == 0:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return jax.sharding.PartitionSpec(*spec)
    return jax.sharding.PartitionSpec()


def state_sharding(mesh: jax.sharding.Mesh, abstract_tree: Any) -> Any:
    """A NamedSharding per leaf of `abstract_tree` (arrays or ShapeDtypeStructs): replicated,
    or split over 'fsdp' when the mesh has that axis larger than 1."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(
        lambda leaf: jax.sharding.NamedSharding(mesh, _leaf_spec(tuple(leaf.shape), fsdp)),
        abstract_tree)


def with_sharding(abstract_tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying `shardings`: a restore target that Orbax fills in place."""
    return jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        abstract_tree, shardings)
