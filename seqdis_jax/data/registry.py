"""Dataset registry: `load(data_config, split)` -> a `Dataset` (source + label metadata)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from seqdis_jax.data import array_record, shapes, sprites
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


def _load_sprites(config: Any, split: str) -> Dataset:
    """Sprites (DSVAE) as prepared by `python -m data_prep.sprites` in `config.data_dir`
    (default $TFDS_DATA_DIR, else ~/tensorflow_datasets); `config.tfds_name` picks a subset
    build such as ``sprites_subset_20``."""
    data_dir = config.get("data_dir", None) or array_record.default_data_dir()
    name = config.get("tfds_name", None) or sprites.TFDS_NAME
    try:
        source = array_record.load_split(name, data_dir, split)
    except array_record.NotPreparedError as e:
        subset = name.removeprefix(f"{sprites.TFDS_NAME}_subset_")
        characters = f" --characters={subset}" if subset != name else ""
        raise array_record.NotPreparedError(
            f"{e}. Prepare it with: python -m data_prep.sprites "
            f"--source_dir=<path to the LPC sheets> --data_dir={data_dir}{characters}"
        ) from None
    return Dataset(
        source=source,
        video_shape=(sprites.NUM_FRAMES, sprites.CELL, sprites.CELL, 3),
        static_factors=sprites.STATIC_FACTORS,
        dynamic_factors=sprites.DYNAMIC_FACTORS,
        num_classes=dict(sprites.NUM_CLASSES),
    )


DATASETS: dict[str, Callable[[Any, str], Dataset]] = {
    "shapes": _load_shapes,
    "sprites": _load_sprites,
}


def load(config: Any, split: str) -> Dataset:
    """Loads `split` ('train' or 'test') of the dataset named by `config.name`."""
    if config.name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {config.name!r}; config.data.name must be one of {sorted(DATASETS)}."
        )
    return DATASETS[config.name](config, split)
