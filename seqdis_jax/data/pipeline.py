"""grain input pipelines over in-memory or ArrayRecord sources.

A dataset is a random-access source of dict records (numpy arrays). Training streams
`source -> this process's shard -> seed -> shuffle (per epoch) -> repeat -> batch` as a grain
`IterDataset` whose state Orbax checkpoints, so a resumed run continues with the same data
order. Each process reads a disjoint strided shard and batches `global batch / processes`
examples; `to_global_batch` assembles the per-process batches into one global `jax.Array`
sharded over the mesh (seqdis_jax/parallel.py) with `jax.make_array_from_process_local_data`.

Records keep the sequence x_1:T under the key "video" for every modality (the prepared
datasets' feature name); `model_inputs` is the one place it becomes the model's float input
"x", on the host or inside a jitted step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import grain
import jax
import numpy as np

RECORD_KEY = "video"  # the records' sequence x_1:T, whatever the modality (stored features)
MODEL_KEY = "x"  # the same sequence as the models read it: float32, scaled


def model_inputs(batch: Mapping[str, Any], pixel_scale: float) -> dict[str, Any]:
    """A batch of records -> the model's batch: the sequences under "x" as float32, stored
    integers divided by `pixel_scale` (config.data.pixel_scale; floats are stored ready), the
    other entries (labels, mask) as they are. numpy stays numpy (host), jax arrays stay jax
    (inside a jitted step, where uint8 crosses to the device 4x smaller)."""
    batch = dict(batch)
    x = batch.pop(RECORD_KEY)
    integer = np.issubdtype(x.dtype, np.integer)
    x = x.astype(np.float32)
    return {**batch, MODEL_KEY: x / np.float32(pixel_scale) if integer else x}


class InMemorySource:
    """Random-access source over a dict of equally long numpy arrays (one record per row)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"All arrays need the same length, got {lengths}.")
        self._arrays = dict(arrays)
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self._arrays.items()}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return self._arrays


def train_iterator(
    source: Any,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.DatasetIterator:
    """Endless batches of `batch_size` examples of shard `shard_index` of `shard_count`
    (examples shard_index, shard_index + shard_count, ...), reshuffled every epoch with a
    permutation derived from `seed` and the epoch; checkpointable with `grain.checkpoint`."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} is not in [0, shard_count={shard_count}).")
    if batch_size > len(source) // shard_count:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(source)} training examples "
            f"(per process); lower config.data.batch_size."
        )
    dataset = grain.MapDataset.source(source)[shard_index::shard_count]
    dataset = dataset.seed(seed).shuffle().repeat().batch(batch_size, drop_remainder=True)
    return iter(dataset.to_iter_dataset())


def process_shard(global_batch_size: int) -> tuple[int, int, int]:
    """(per-process batch size, shard index, shard count) for this JAX process."""
    count = jax.process_count()
    if global_batch_size % count:
        raise ValueError(
            f"config.data.batch_size={global_batch_size} is not divisible by the "
            f"{count} processes; choose a multiple of {count}.")
    return global_batch_size // count, jax.process_index(), count


def to_global_batch(
    local_batch: Mapping[str, np.ndarray], sharding: jax.sharding.Sharding
) -> dict[str, jax.Array]:
    """Host -> device: every process's batch becomes its slice of one global array, split
    along the batch axis as `sharding` says (one call per array, no gather on the host)."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


def eval_batches(
    source: Any, batch_size: int, limit: int | None = None, multiple: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Ordered batches of `batch_size` over the first `limit` examples, each padded by
    repetition to a multiple of `multiple` rows (the devices of a mesh) and the last to the
    same size, with a boolean `mask` of the real rows so every batch has the same shape."""
    n = len(source) if limit is None else min(limit, len(source))
    rows = -(-batch_size // multiple) * multiple
    for start in range(0, n, batch_size):
        index = np.arange(start, start + rows)
        mask = (index < n) & (index < start + batch_size)
        index = np.where(mask, index, start)
        records = [source[int(i)] for i in index]
        batch = {k: np.stack([r[k] for r in records]) for k in records[0]}
        batch["mask"] = mask
        yield batch
