"""The grain training pipeline: determinism, per-epoch reshuffling, exact resume of the data
order from an Orbax checkpoint, disjoint per-process shards, and the host -> device step."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqdis_jax import checkpointing, errors, parallel
from seqdis_jax.data import pipeline

NUM_EXAMPLES = 24


def _source(n: int = NUM_EXAMPLES) -> pipeline.InMemorySource:
    return pipeline.InMemorySource({
        "index": np.arange(n, dtype=np.int32),
        "video": np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 3), np.uint8),
    })


def _indices(iterator, num_batches: int) -> list[list[int]]:
    return [next(iterator)["index"].tolist() for _ in range(num_batches)]


def test_same_seed_same_order_other_seed_other_order():
    first = _indices(pipeline.train_iterator(_source(), 4, seed=3), 12)
    again = _indices(pipeline.train_iterator(_source(), 4, seed=3), 12)
    other = _indices(pipeline.train_iterator(_source(), 4, seed=4), 12)
    assert first == again
    assert first != other


def test_every_epoch_is_a_new_permutation():
    batches = _indices(pipeline.train_iterator(_source(), 4, seed=0), 18)  # 3 epochs of 6
    epochs = [sum(batches[i:i + 6], []) for i in (0, 6, 12)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(NUM_EXAMPLES))  # each example exactly once
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]
    assert epochs[0] != list(range(NUM_EXAMPLES))  # actually shuffled


def test_resume_from_checkpoint_continues_the_same_order(tmp_path):
    uninterrupted = _indices(pipeline.train_iterator(_source(), 4, seed=7), 15)

    iterator = pipeline.train_iterator(_source(), 4, seed=7)
    seen = _indices(iterator, 8)  # stop mid-way through the second epoch
    manager = checkpointing.make_manager(str(tmp_path), save_every=1, keep=1)
    state = {"w": jnp.arange(3.0)}
    checkpointing.save(manager, 8, state, iterator, force=True)
    manager.wait_until_finished()
    manager.close()

    fresh = pipeline.train_iterator(_source(), 4, seed=7)  # a new process: starts at batch 0
    manager = checkpointing.make_manager(str(tmp_path), save_every=1, keep=1, create=False)
    restored = checkpointing.restore(manager, jax.eval_shape(lambda: state), fresh)
    manager.close()
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert seen + _indices(fresh, 7) == uninterrupted


def test_two_processes_read_disjoint_shards_covering_the_data():
    shards = [pipeline.train_iterator(_source(), 3, seed=1, shard_index=i, shard_count=2)
              for i in range(2)]
    epoch = [set(itertools.chain(*_indices(it, 4))) for it in shards]  # 4 x 3 = 12 = one epoch
    assert epoch[0].isdisjoint(epoch[1])
    assert epoch[0] | epoch[1] == set(range(NUM_EXAMPLES))
    assert epoch[0] == set(range(0, NUM_EXAMPLES, 2))


def test_bad_shard_and_batch_settings_are_refused():
    with pytest.raises(ValueError, match="shard_index 2"):
        pipeline.train_iterator(_source(), 4, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="lower config.data.batch_size"):
        pipeline.train_iterator(_source(), 13, seed=0, shard_index=0, shard_count=2)


def test_global_batch_is_assembled_and_sharded_over_the_data_axis():
    local_batch_size, index, count = pipeline.process_shard(8)
    assert (local_batch_size, index, count) == (8 // jax.process_count(), 0, 1)
    mesh = parallel.make_mesh()
    batch_sharding, replicated = parallel.batch_sharding(mesh), parallel.replicated(mesh)
    assert batch_sharding.mesh.axis_names == ("data", "fsdp")
    batch = next(pipeline.train_iterator(_source(), local_batch_size, seed=0))
    global_batch = pipeline.to_global_batch(batch, batch_sharding)
    assert global_batch["video"].shape == (8, 2, 3)
    assert global_batch["video"].sharding == batch_sharding
    np.testing.assert_array_equal(np.asarray(global_batch["index"]), batch["index"])
    assert replicated.is_fully_replicated


def test_batch_not_divisible_by_processes_or_devices_is_refused(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        pipeline.process_shard(8)
    mesh = jax.sharding.Mesh(np.array([jax.local_devices()[0]] * 3).reshape(3, 1),
                             parallel.MESH_AXES)
    with pytest.raises(errors.MeshError, match="not divisible by the 3 devices"):
        parallel.check_batch_size(8, mesh)
