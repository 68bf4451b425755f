"""Dataset registry: `load(data_config, split)` -> a `Dataset` (source + label metadata)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from seqdis_jax.data import shapes
from seqdis_jax.data.pipeline import InMemorySource


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A random-access source of records plus what evaluators need to know about it."""

    source: Any
    video_shape: tuple[int, ...]  # (T, H, W, C) of the "video" feature
    static_factors: tuple[str, ...]
    dynamic_factors: tuple[str, ...]
    num_classes: dict[str, int]


def _load_shapes(config: Any, split: str) -> Dataset:
    arrays = shapes.load(
        split, num_train=config.num_train, num_test=config.num_test, seed=config.seed
    )
    return Dataset(
        source=InMemorySource(arrays),
        video_shape=tuple(arrays["video"].shape[1:]),
        static_factors=shapes.STATIC_FACTORS,
        dynamic_factors=shapes.DYNAMIC_FACTORS,
        num_classes=dict(shapes.NUM_CLASSES),
    )


DATASETS: dict[str, Callable[[Any, str], Dataset]] = {
    "shapes": _load_shapes,
}


def load(config: Any, split: str) -> Dataset:
    """Loads `split` ('train' or 'test') of the dataset named by `config.name`."""
    if config.name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {config.name!r}; config.data.name must be one of {sorted(DATASETS)}."
        )
    return DATASETS[config.name](config, split)
