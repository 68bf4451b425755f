"""grain input pipelines over in-memory or ArrayRecord sources.

A dataset is a random-access source of dict records (numpy arrays). Training streams
`source -> seed -> shuffle (per epoch) -> repeat -> batch` as a grain `IterDataset` whose
state Orbax checkpoints, so a resumed run continues with the same data order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import grain
import numpy as np


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
    """Endless, per-epoch reshuffled batches; checkpointable with `grain.checkpoint`."""
    if batch_size > len(source) // shard_count:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(source)} training examples "
            f"(per process); lower config.data.batch_size."
        )
    dataset = grain.MapDataset.source(source)[shard_index::shard_count]
    dataset = dataset.seed(seed).shuffle().repeat().batch(batch_size, drop_remainder=True)
    return iter(dataset.to_iter_dataset())


def eval_batches(
    source: Any, batch_size: int, limit: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Ordered batches over the first `limit` examples; the last batch is padded by
    repetition and carries a boolean `mask` so every batch has the same shape."""
    n = len(source) if limit is None else min(limit, len(source))
    for start in range(0, n, batch_size):
        index = np.arange(start, start + batch_size)
        mask = index < n
        index = np.where(mask, index, start)
        records = [source[int(i)] for i in index]
        batch = {k: np.stack([r[k] for r in records]) for k in records[0]}
        batch["mask"] = mask
        yield batch
