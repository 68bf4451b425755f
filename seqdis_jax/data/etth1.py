"""ETTh1 (Zhou et al., 2021, the Informer paper), the hourly electricity-transformer series of
the DBSE paper's time-series experiments, read directly from its CSV (no converter).

Source: ``<config.source_dir>/ETTh1.csv`` (github.com/zhouhaoyi/ETDataset), columns ``date,
HUFL, HULL, MUFL, MULL, LUFL, LULL, OT``: 17,420 hourly rows from 2016-07-01 00:00 to
2018-06-26 19:00; OT is the oil temperature in degrees C, the six others are loads.

Protocol. DBSE (App. A.1, "12/4/4-month split") and GLR (Tonekaboni et al., 2022), whose
ETTh1 task DBSE follows, state neither the window nor the horizon of their samples, so the
window, stride, horizon and target below are this project's own stated protocol:

* Split: the ETT benchmark's 12/4/4 months (Informer's borders, 30-day months): CSV rows
  ``[0, 8640)`` train, ``[8640, 11520)`` validation, ``[11520, 14400)`` test (`SPLITS`); rows
  from 14400 on are unused, as in Informer.
* Input: all 7 channels, each standardised with the mean and the (population, ddof=0)
  standard deviation of the train rows (`statistics`), as Informer's StandardScaler.
* Windows: ``WINDOW`` = 24 hours (T = 24, F = 7), starting every ``STRIDE`` = 1 hour. A window
  and its ``HORIZON`` = 24 following hours lie inside one split, so a split of n rows has
  ``(n - WINDOW - HORIZON) // STRIDE + 1`` windows: 8593 train, 2833 validation, 2833 test.
  Unlike Informer, validation and test windows do not reach back into the previous split.
* Target ``oil_temperature_next_day`` (`TARGETS`): the mean OT, in the CSV's original units
  (degrees C, not standardised), of the 24 hours after the window: rows
  ``[start + WINDOW, start + WINDOW + HORIZON)``. A downstream regressor on the codes is
  scored by its mean absolute error in degrees C.

Records (one per window, in time order): ``video`` float32 (24, 7) (the standardised window,
channels in CSV order `CHANNELS`), ``oil_temperature_next_day`` float32, and extras that are
not factors: ``month`` int32 (0 = January) and ``hour`` int32 (0..23) of the window's first
hour, ``start`` int32 (its CSV row, 0-based, header excluded). There are no class labels:
``static_factors`` and ``dynamic_factors`` are empty.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np

from seqdis_jax.data import registry
from seqdis_jax.data.pipeline import InMemorySource

FILE_NAME = "ETTh1.csv"
CHANNELS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
TARGET_CHANNEL = "OT"
WINDOW = 24  # hours per sample (T)
STRIDE = 1  # hours between the starts of consecutive windows
HORIZON = 24  # hours after the window whose mean OT is the target
TARGETS = ("oil_temperature_next_day",)
# ETT's 12/4/4-month split (Informer's borders, 30-day months of 24 rows): [begin, end) rows.
SPLITS = {"train": (0, 8640), "validation": (8640, 11520), "test": (11520, 14400)}
SOURCE_DIR_HINT = f"--config.data.source_dir=<folder with {FILE_NAME}>"


class DataSourceError(registry.NotPreparedError, ValueError):
    """The source folder or file is missing or malformed. A ValueError (a bad config value) and
    a `registry.NotPreparedError`, which the launcher reports as one line with exit status 2."""


@dataclasses.dataclass(frozen=True)
class Series:
    """The parsed CSV: ``values`` float64 (N, 7) in CSV units, ``times`` datetime64[h] (N,)."""

    values: np.ndarray
    times: np.ndarray


def num_windows(num_rows: int) -> int:
    """Windows (with their horizon) that fit in ``num_rows`` consecutive rows."""
    return max(0, (num_rows - WINDOW - HORIZON) // STRIDE + 1)


def read_csv(path: str) -> Series:
    """Parses ETTh1.csv; raises `DataSourceError` when it is missing or malformed."""
    if not os.path.isfile(path):
        raise DataSourceError(
            f"ETTh1: {path} not found. Fix: {SOURCE_DIR_HINT} (e.g. ../shared/data/ett).")
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    header = [c.strip() for c in lines[0].split(",")] if lines else []
    expected = ["date", *CHANNELS]
    if header != expected:
        raise DataSourceError(
            f"ETTh1: {path} has columns {header}, expected {expected} (the ETDataset release's "
            f"ETTh1.csv). Fix: {SOURCE_DIR_HINT}.")
    rows = [line for line in lines[1:] if line.strip()]
    try:
        times = np.array([line.split(",", 1)[0].strip() for line in rows], "datetime64[h]")
        values = np.loadtxt(rows, delimiter=",", usecols=range(1, 1 + len(CHANNELS)),
                            dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataSourceError(f"ETTh1: {path} is malformed ({e}).") from None
    end = max(b for _, b in SPLITS.values())
    if len(rows) < end:
        raise DataSourceError(
            f"ETTh1: {path} has {len(rows)} rows; the 12/4/4-month split needs {end}.")
    gaps = np.flatnonzero(np.diff(times[:end]) != np.timedelta64(1, "h"))
    if gaps.size:
        raise DataSourceError(
            f"ETTh1: {path} is not hourly: row {gaps[0] + 2} ({times[gaps[0]]}) is followed by "
            f"{times[gaps[0] + 1]}.")
    if not np.isfinite(values[:end]).all():
        raise DataSourceError(f"ETTh1: {path} has missing or non-finite values.")
    return Series(values, times)


@functools.lru_cache(maxsize=4)
def _cached_series(path: str) -> Series:
    series = read_csv(path)
    series.values.setflags(write=False)  # shared between every load of this file
    series.times.setflags(write=False)
    return series


def statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel over the train rows (ddof=0), float64 (7,)."""
    begin, end = SPLITS["train"]
    train = values[begin:end]
    return train.mean(axis=0), train.std(axis=0)


def windows(series: Series, split: str) -> dict[str, np.ndarray]:
    """The records of ``split`` as a dict of arrays (one row per window), see the docstring."""
    if split not in SPLITS:
        raise ValueError(f"unknown ETTh1 split {split!r}; expected one of {sorted(SPLITS)}")
    begin, end = SPLITS[split]
    mean, std = statistics(series.values)
    standardised = (series.values - mean) / std
    starts = begin + STRIDE * np.arange(num_windows(end - begin))
    steps = np.arange(WINDOW)
    video = standardised[starts[:, None] + steps].astype(np.float32)  # (N, WINDOW, 7)
    ot = series.values[:, CHANNELS.index(TARGET_CHANNEL)]
    future = ot[starts[:, None] + WINDOW + np.arange(HORIZON)]
    first = series.times[starts]
    months = first.astype("datetime64[M]").astype(np.int64) % 12  # 1970-01 is month 0
    hours = (first - first.astype("datetime64[D]")).astype(np.int64)
    return {
        "video": video,
        TARGETS[0]: future.mean(axis=1).astype(np.float32),
        "month": months.astype(np.int32),
        "hour": hours.astype(np.int32),
        "start": starts.astype(np.int32),
    }


def load(config: Any, split: str) -> registry.Dataset:
    """`registry.Dataset` for ``split`` ('train', 'validation' or 'test') of ETTh1;
    ``config`` is ``config.data`` with ``source_dir`` (the folder holding ETTh1.csv)."""
    if split not in SPLITS:
        raise ValueError(f"unknown ETTh1 split {split!r}; expected one of {sorted(SPLITS)}")
    source_dir = config.get("source_dir", None)
    if not source_dir:
        raise DataSourceError(f"ETTh1: config.data.source_dir is not set. Fix: {SOURCE_DIR_HINT}.")
    path = os.path.join(os.path.abspath(os.path.expanduser(source_dir)), FILE_NAME)
    arrays = windows(_cached_series(path), split)
    return registry.Dataset(
        source=InMemorySource(arrays),
        video_shape=(WINDOW, len(CHANNELS)),
        static_factors=(),
        dynamic_factors=(),
        num_classes={},
        targets=TARGETS,
    )
