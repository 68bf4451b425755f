"""Beijing Multi-Site Air Quality (Zhang et al., 2017; UCI), the multivariate series of the
DBSE and SPYL papers' time-series experiments, read directly from its CSVs (no converter).

Source: ``<config.source_dir>/PRSA_Data_<Station>_20130301-20170228.csv[.gz]``, one file per
station (`STATIONS`, all 12 required), hourly from 2013-03-01 00:00 to 2017-02-28 23:00 (35,064
rows each), columns ``No, year, month, day, hour, PM2.5, PM10, SO2, NO2, CO, O3, TEMP, PRES,
DEWP, RAIN, wd, WSPM, station``; missing values are ``NA``.

Protocol (GLR, Tonekaboni et al. 2022, and DBSE App. A.1: "samples from different stations
and months"; GLR states the daily sample, the exact preprocessing below is this project's):

* A sample is one station-day: T = 24 hourly steps (00:00..23:00) of F = 10 features
  `FEATURES` = PM2.5, PM10, SO2, NO2, CO, O3, TEMP, PRES, DEWP, WSPM. RAIN is not an input
  because the day's rain is the prediction target; ``wd`` (wind direction) is categorical and
  left out. (DBSE Fig. 5 plots one static code per day, hence a day per sample.)
* Missing values: per station and column (the 10 features and RAIN), linear interpolation in
  time over the whole 4-year series; leading and trailing gaps take the nearest observed value.
  A station-day in which some feature or RAIN was missing for all 24 hours before filling is
  dropped: 566 of the 17,532 station-days of the release (514 train, 52 test; see
  `AirQuality.dropped`), leaving 12,638 train and 4,328 test samples.
* The six pollutant concentrations (`LOG_FEATURES`) are log1p-transformed after filling: their
  heavy right tails (skewness of the observed hourly values 1.05 to 3.01 over the release)
  become near symmetric (-0.72 to 0.51); TEMP, PRES, DEWP and WSPM stay linear. Then every
  feature is standardised with the mean and (population, ddof=0) standard deviation of all
  hours of the kept train days of all stations (`AirQuality.mean`, `AirQuality.std`).
* Split by time, so that every month occurs in both: train = the days before 2016-03-01
  (2013-03-01..2016-02-29, 1096 days), test = 2016-03-01..2017-02-28 (365 days). There is no
  validation split.
* Labels: static factors ``month`` (0 = January .. 11) and ``station`` (index into
  `STATIONS`, alphabetical), 12 classes each; target ``rain`` = the day's mean hourly RAIN in mm
  (after filling; SPYL Table 2's "average daily rain", scored by MAE).

Records (station by station in `STATIONS` order, days in date order): ``video`` float32 (24, 10)
(features in `FEATURES` order), ``month`` int32, ``station`` int32, ``rain`` float32, and
extras that are not factors: ``season`` int32 (0 winter = Dec-Feb, 1 spring = Mar-May, 2 summer
= Jun-Aug, 3 autumn = Sep-Nov) and ``date`` int32 (YYYYMMDD).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import re
from typing import Any

import numpy as np

from seqdis_jax.data import registry
from seqdis_jax.data.pipeline import InMemorySource

STATIONS = (
    "Aotizhongxin", "Changping", "Dingling", "Dongsi", "Guanyuan", "Gucheng",
    "Huairou", "Nongzhanguan", "Shunyi", "Tiantan", "Wanliu", "Wanshouxigong",
)  # alphabetical; the station label is the index
FILE_PATTERN = "PRSA_Data_{station}_20130301-20170228.csv"  # also read gzipped (+ ".gz")
COLUMNS = (
    "No", "year", "month", "day", "hour", "PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP",
    "PRES", "DEWP", "RAIN", "wd", "WSPM", "station",
)
FEATURES = ("PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "WSPM")
LOG_FEATURES = ("PM2.5", "PM10", "SO2", "NO2", "CO", "O3")  # log1p before standardising
RAIN = "RAIN"
HOURS = 24  # T
STATIC_FACTORS = ("month", "station")
DYNAMIC_FACTORS: tuple[str, ...] = ()
NUM_CLASSES = {"month": 12, "station": len(STATIONS)}
TARGETS = ("rain",)
TEST_START = np.datetime64("2016-03-01")  # train: days before; test: from it on
SPLITS = ("train", "test")
SOURCE_DIR_HINT = (
    "--config.data.source_dir=<folder with the 12 PRSA_Data_<Station>_20130301-20170228.csv[.gz] "
    "files>")

# Columns parsed as numbers: year, month, day, hour, the 10 features and RAIN (not No, wd,
# station), in this order.
_NUMERIC = ("year", "month", "day", "hour", *COLUMNS[5:15], "WSPM")
_USECOLS = [COLUMNS.index(c) for c in _NUMERIC]
_SERIES = (*FEATURES, RAIN)  # the columns filled and kept, in this order
_NA = re.compile(r"(?<=,)NA(?=,|\r?$)", re.MULTILINE)


class DataSourceError(registry.NotPreparedError, ValueError):
    """The source folder or a file is missing or malformed. A ValueError (a bad config value)
    and a `registry.NotPreparedError`, which the launcher reports as one line with exit 2."""


@dataclasses.dataclass(frozen=True)
class Station:
    """One station's kept days: ``values`` float64 (days, 24, 11) in CSV units after filling
    (the 10 features, then RAIN), ``dates`` datetime64[D] (days,), ``dropped`` (days dropped
    per split)."""

    values: np.ndarray
    dates: np.ndarray
    dropped: dict[str, int]


@dataclasses.dataclass(frozen=True)
class AirQuality:
    """The prepared dataset: records per split (dicts of arrays), the train statistics of the
    transformed features (float64 (10,)) and the station-days dropped per split."""

    splits: dict[str, dict[str, np.ndarray]]
    mean: np.ndarray
    std: np.ndarray
    dropped: dict[str, int]


def station_file(source_dir: str, station: str) -> str | None:
    """The station's CSV in ``source_dir`` (gzipped preferred), or None."""
    name = os.path.join(source_dir, FILE_PATTERN.format(station=station))
    for path in (name + ".gz", name):
        if os.path.isfile(path):
            return path
    return None


def _fill(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over the NaNs of a 1-D series; edges take the nearest value. A
    series with no value at all stays NaN (all its days are dropped)."""
    observed = ~np.isnan(x)
    if observed.all() or not observed.any():
        return x
    index = np.arange(len(x))
    return np.interp(index, index[observed], x[observed])


def read_station(path: str) -> Station:
    """Parses, checks and fills one station's CSV; raises `DataSourceError` naming the file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataSourceError(f"Air Quality: cannot read {path} ({e}).") from None
    lines = text.splitlines()
    header = tuple(c.strip().strip('"') for c in lines[0].split(",")) if lines else ()
    if header != COLUMNS:
        raise DataSourceError(
            f"Air Quality: {path} has columns {list(header)}, expected {list(COLUMNS)} (the UCI "
            f"PRSA release). Fix: {SOURCE_DIR_HINT}.")
    rows = [line for line in _NA.sub("nan", "\n".join(lines[1:])).split("\n") if line.strip()]
    try:
        data = np.loadtxt(rows, delimiter=",", usecols=_USECOLS, quotechar='"',
                          dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataSourceError(f"Air Quality: {path} is malformed ({e}).") from None
    when = data[:, :4]
    if np.isnan(when).any() or len(data) == 0 or len(data) % HOURS:
        raise DataSourceError(
            f"Air Quality: {path}: {len(data)} rows with complete dates are needed in whole days "
            f"of {HOURS} hours.")
    year, month, day, hour = when.astype(np.int64).T
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    hours = (months.astype("datetime64[D]") + (day - 1)).astype("datetime64[h]") + hour
    if hour[0] != 0 or (np.diff(hours) != np.timedelta64(1, "h")).any():
        raise DataSourceError(
            f"Air Quality: {path} is not one row per hour from 00:00 of its first day on.")
    series = data[:, len(_NUMERIC) - len(_SERIES):]  # (hours, 11) in _SERIES order
    series = series[:, [_NUMERIC[4:].index(c) for c in _SERIES]]
    days = series.reshape(-1, HOURS, len(_SERIES))
    keep = ~np.isnan(days).all(axis=1).any(axis=1)  # no column missing for the whole day
    filled = np.stack([_fill(series[:, j]) for j in range(len(_SERIES))], axis=1)
    dates = hours[::HOURS].astype("datetime64[D]")
    test = dates >= TEST_START
    return Station(
        values=filled.reshape(days.shape)[keep],
        dates=dates[keep],
        dropped={"train": int((~keep & ~test).sum()), "test": int((~keep & test).sum())},
    )


def transform(values: np.ndarray) -> np.ndarray:
    """The 10 input features (..., 10) in CSV units with log1p applied to `LOG_FEATURES`."""
    out = np.array(values, dtype=np.float64)
    for name in LOG_FEATURES:
        j = FEATURES.index(name)
        out[..., j] = np.log1p(out[..., j])
    return out


def _seasons(months: np.ndarray) -> np.ndarray:
    """0 winter (Dec-Feb), 1 spring (Mar-May), 2 summer (Jun-Aug), 3 autumn (Sep-Nov)."""
    return ((months + 1) % 12) // 3


def read_source(source_dir: str) -> AirQuality:
    """Reads the 12 station files of ``source_dir`` and builds both splits (see docstring)."""
    if not os.path.isdir(source_dir):
        raise DataSourceError(
            f"Air Quality: {source_dir!r} is not a directory. Fix: {SOURCE_DIR_HINT} (e.g. "
            "../shared/data/air_quality).")
    paths = {s: station_file(source_dir, s) for s in STATIONS}
    missing = [s for s, p in paths.items() if p is None]
    if missing:
        what = ("holds no station file" if len(missing) == len(STATIONS)
                else "lacks the stations " + ", ".join(missing))
        raise DataSourceError(
            f"Air Quality: {source_dir} {what} (files "
            f"{FILE_PATTERN.format(station='<Station>')}[.gz]). Fix: {SOURCE_DIR_HINT}.")
    stations = [read_station(paths[s]) for s in STATIONS]
    parts: dict[str, list[dict[str, np.ndarray]]] = {split: [] for split in SPLITS}
    for index, station in enumerate(stations):
        test = station.dates >= TEST_START
        for split, mask in (("train", ~test), ("test", test)):
            dates = station.dates[mask]
            months = dates.astype("datetime64[M]").astype(np.int64) % 12
            ymd = [int(str(d).replace("-", "")) for d in dates]
            values = station.values[mask]
            parts[split].append({
                "video": transform(values[..., :len(FEATURES)]),
                "month": months.astype(np.int32),
                "station": np.full(len(dates), index, np.int32),
                "rain": values[..., len(FEATURES)].mean(axis=1).astype(np.float32),
                "season": _seasons(months).astype(np.int32),
                "date": np.array(ymd, np.int32),
            })
    splits = {split: {k: np.concatenate([p[k] for p in ps]) for k in ps[0]}
              for split, ps in parts.items()}
    train = splits["train"]["video"].reshape(-1, len(FEATURES))
    mean, std = train.mean(axis=0), train.std(axis=0)
    for arrays in splits.values():
        arrays["video"] = ((arrays["video"] - mean) / std).astype(np.float32)
    dropped = {split: sum(s.dropped[split] for s in stations) for split in SPLITS}
    return AirQuality(splits=splits, mean=mean, std=std, dropped=dropped)


@functools.lru_cache(maxsize=4)
def cached_source(source_dir: str) -> AirQuality:
    """`read_source` of a resolved folder, parsed once per process; arrays are read-only."""
    data = read_source(source_dir)
    for arrays in data.splits.values():
        for a in arrays.values():
            a.setflags(write=False)  # shared between every load of this folder
    return data


def load(config: Any, split: str) -> registry.Dataset:
    """`registry.Dataset` for ``split`` ('train' or 'test') of Beijing Air Quality; ``config``
    is ``config.data`` with ``source_dir`` (the folder holding the 12 station CSVs)."""
    if split not in SPLITS:
        raise ValueError(f"unknown Air Quality split {split!r}; expected one of {list(SPLITS)}")
    source_dir = config.get("source_dir", None)
    if not source_dir:
        raise DataSourceError(
            f"Air Quality: config.data.source_dir is not set. Fix: {SOURCE_DIR_HINT}.")
    data = cached_source(os.path.abspath(os.path.expanduser(source_dir)))
    return registry.Dataset(
        source=InMemorySource(data.splits[split]),
        video_shape=(HOURS, len(FEATURES)),
        static_factors=STATIC_FACTORS,
        dynamic_factors=DYNAMIC_FACTORS,
        num_classes=dict(NUM_CLASSES),
        targets=TARGETS,
    )
