"""Dataset registry: `load(data_config, split)` -> a `Dataset` (source + label metadata).

Two kinds of datasets:

* generated in memory from a seed (shapes) or from small source files on the fly (SM-MNIST,
  ETTh1, Air Quality);
* prepared once by a `python -m data_prep.<name>` converter into a TFDS array_record dataset
  under ``config.data_dir`` (Sprites, MUG, Jester, Letters, FSDD, TIMIT, PhysioNet). Their
  module in `seqdis_jax.data` defines a `PreparedSpec` named ``SPEC``; the module is imported
  only when the dataset is used.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from seqdis_jax import errors
from seqdis_jax.data import array_record, shapes, validation
from seqdis_jax.data.pipeline import InMemorySource

NotPreparedError = errors.NotPreparedError
BadDataError = errors.BadDataError  # a NotPreparedError: there, but unusable


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A random-access source of records plus what evaluators need to know about it."""

    source: Any
    # Shape of the "video" feature, the sequence x_1:T whatever the modality: (T, H, W, C)
    # frames, or (T, F) spectral frames / time steps.
    video_shape: tuple[int, ...]
    static_factors: tuple[str, ...]
    dynamic_factors: tuple[str, ...]
    num_classes: dict[str, int]
    # Labels of each frame, shape (T,) per record (Letters' letter per d_t): classified from
    # d_t and s by `latent_classification`, not judged.
    frame_factors: tuple[str, ...] = ()
    # Real-valued per-record targets of downstream tasks (Air Quality's daily rain, ETTh1's
    # future oil temperature): carried next to the codes, never classified.
    targets: tuple[str, ...] = ()
    # Record key naming the recording a segment was cut from (speech: the utterance). The
    # verification EER averages the codes of a recording's segments first (DSVAE protocol).
    group: str | None = None
    # A judged label that is a product of parts, as Sprites' motion = 3 * action + direction:
    # {factor: ((part, classes), ...)}, the last part varying fastest (mixed radix). The judge
    # evaluators also score each part (`factor_part_labels`), which separates, e.g., an action
    # carried by d from a facing direction carried by s.
    factor_parts: Mapping[str, tuple[tuple[str, int], ...]] = dataclasses.field(
        default_factory=dict)


def factor_part_labels(labels: np.ndarray, parts: tuple[tuple[str, int], ...]
                       ) -> dict[str, np.ndarray]:
    """The parts of product labels (any shape): {part: labels' digit of that part}."""
    out, rest = {}, np.asarray(labels)
    for name, classes in reversed(parts):
        out[name] = rest % classes
        rest = rest // classes
    return {name: out[name] for name, _ in parts}


@dataclasses.dataclass(frozen=True)
class PreparedSpec:
    """What the registry needs to know about a dataset written by a data_prep converter."""

    tfds_name: str  # the full dataset's TFDS name (config.data.tfds_name may pick another build)
    video_shape: tuple[int, ...]  # (T, H, W, C) of the full dataset
    static_factors: tuple[str, ...]
    dynamic_factors: tuple[str, ...]
    num_classes: Mapping[str, int]
    # The converter's command line without --data_dir, e.g.
    # "python -m data_prep.mug --source_dir=<the MUG release's subjects3 folder>".
    prepare_command: str
    # Builds named "<tfds_name>_subset_<n>" come from `prepare_command --<subset_flag>=<n>`.
    subset_flag: str | None = None
    # Other builds the converter can write: name suffix -> the flags that write it, e.g.
    # {"_mel": "--features=log_mel"} for "fsdd_mel".
    build_flags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    frame_factors: tuple[str, ...] = ()  # per-frame labels (T,), see `Dataset`
    targets: tuple[str, ...] = ()  # see `Dataset`
    group: str | None = None  # see `Dataset`
    factor_parts: Mapping[str, tuple[tuple[str, int], ...]] = dataclasses.field(
        default_factory=dict)  # see `Dataset`

    def prepare_hint(self, name: str, data_dir: str) -> str:
        command = f"{self.prepare_command} --data_dir={data_dir}"
        subset = name.removeprefix(f"{self.tfds_name}_subset_")
        if self.subset_flag and subset != name:
            command += f" --{self.subset_flag}={subset}"
        suffix = name.removeprefix(self.tfds_name)
        if suffix in self.build_flags:
            command += f" {self.build_flags[suffix]}"
        return command


def load_prepared(spec: PreparedSpec, config: Any, split: str) -> Dataset:
    """Split `split` of the build `config.tfds_name` (default: the full dataset) prepared in
    `config.data_dir` (default $TFDS_DATA_DIR, else ~/tensorflow_datasets). When it is not
    prepared, the `NotPreparedError` names the exact command that prepares it; when it is
    empty, damaged or holds unusable records (`validation.check_dataset`), the `BadDataError`
    names the command that prepares it again."""
    data_dir = config.get("data_dir", None) or array_record.default_data_dir()
    name = config.get("tfds_name", None) or spec.tfds_name
    fix = f"re-prepare it with: {spec.prepare_hint(name, data_dir)}"
    try:
        source = array_record.load_split(name, data_dir, split)
    except BadDataError as e:
        raise BadDataError(f"{e}; {fix}") from None
    except NotPreparedError as e:
        raise NotPreparedError(
            f"{e}. Prepare it with: {spec.prepare_hint(name, data_dir)}") from None
    except Exception as e:  # TFDS cannot read its dataset_info / features (any error type)
        raise BadDataError(
            f"dataset {name!r} in {data_dir} cannot be opened ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); {fix}") from e
    features = source.info.features
    num_classes = dict(spec.num_classes)
    for factor in (*spec.static_factors, *spec.dynamic_factors):
        # A build's own class list wins (e.g. the subjects a MUG copy actually holds).
        if factor in features and hasattr(features[factor], "num_classes"):
            num_classes[factor] = int(features[factor].num_classes)
    dataset = Dataset(
        source=source,
        video_shape=tuple(int(s) for s in features["video"].shape),  # may differ from the spec
        static_factors=tuple(spec.static_factors),
        dynamic_factors=tuple(spec.dynamic_factors),
        num_classes=num_classes,
        frame_factors=tuple(spec.frame_factors),
        targets=tuple(spec.targets),
        group=spec.group,
        factor_parts=dict(spec.factor_parts),
    )
    validation.check_dataset(dataset, split, name, fix)
    return dataset


def _load_shapes(config: Any, split: str) -> Dataset:
    motion_set = config.get("motion_set", "types")
    shape_names = tuple(config.get("shapes", shapes.SHAPES))
    arrays = shapes.load(
        split, num_train=config.num_train, num_test=config.num_test, seed=config.seed,
        image_size=config.get("image_size", 64), shape_scale=config.get("shape_scale", 1.0),
        motion_set=motion_set, shapes=shape_names,
    )
    dataset = Dataset(
        source=InMemorySource(arrays),
        video_shape=tuple(arrays["video"].shape[1:]),
        static_factors=shapes.STATIC_FACTORS,
        dynamic_factors=shapes.DYNAMIC_FACTORS,
        num_classes=dict(shapes.NUM_CLASSES, motion=len(shapes.MOTION_SETS[motion_set]),
                         shape=len(shape_names)),
    )
    validation.check_dataset(dataset, split, "shapes", "seqdis_jax/data/shapes.py generated "
                             "it: report this as a bug")
    return dataset


def _prepared(module_name: str) -> Callable[[Any, str], Dataset]:
    """The loader of a prepared dataset whose module defines ``SPEC`` (imported lazily)."""

    def load_split(config: Any, split: str) -> Dataset:
        spec = importlib.import_module(f"seqdis_jax.data.{module_name}").SPEC
        return load_prepared(spec, config, split)

    load_split.prepared = True  # read lazily from config.data_dir: `preflight` opens it
    return load_split


def _generated(module_name: str) -> Callable[[Any, str], Dataset]:
    """The loader of a dataset whose module generates it: ``module.load(config, split)``."""

    def load_split(config: Any, split: str) -> Dataset:
        dataset = importlib.import_module(f"seqdis_jax.data.{module_name}").load(config, split)
        validation.check_dataset(
            dataset, split, module_name,
            f"check the source files it is generated from (config.data.source_dir) against "
            f"seqdis_jax/data/{module_name}.py")
        return dataset

    return load_split


DATASETS: dict[str, Callable[[Any, str], Dataset]] = {
    "shapes": _load_shapes,
    "sprites": _prepared("sprites"),
    "mug": _prepared("mug"),
    "jester": _prepared("jester"),
    "letters": _prepared("letters"),
    "smmnist": _generated("smmnist"),
    "fsdd": _prepared("fsdd"),
    "timit": _prepared("timit"),
    "physionet": _prepared("physionet"),
    "etth1": _generated("etth1"),
    "air_quality": _generated("air_quality"),
}


def load(config: Any, split: str) -> Dataset:
    """Loads `split` ('train' or 'test') of the dataset named by `config.name`."""
    if config.name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {config.name!r}; config.data.name must be one of {sorted(DATASETS)}."
        )
    return DATASETS[config.name](config, split)


def preflight(config: Any, split: str) -> Dataset | None:
    """`load(config, split)` for a prepared dataset, which is read lazily (cheap: only a few
    records are read, by `validation.check_dataset`), so an empty, damaged or unusable split
    is refused before a run writes anything; None for a generated dataset, which is checked
    when the run generates it."""
    if not getattr(DATASETS.get(config.name), "prepared", False):
        return None
    return load(config, split)
