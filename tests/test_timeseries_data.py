"""The time-series datasets of DBSE and SPYL: ETTh1 and Beijing Air Quality on the real files
in ../shared/data (checked against direct, pandas-free computations from the CSVs), and the
PhysioNet 2012 converter on a synthetic copy of the challenge's layout
(tests/physionet_fixture.py)."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest
from physionet_fixture import DESIGNED_ID, SILENT_ID, prepare_for_tests, write_fixture

from data_prep import physionet as prep
from seqdis_jax.data import air_quality, array_record, etth1, physionet, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
ETT_DIR = os.path.join(SHARED, "ett")
AQ_DIR = os.path.join(SHARED, "air_quality")


def _config(**fields) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(fields)


# ---- ETTh1 ---------------------------------------------------------------------------------

needs_ett = pytest.mark.skipif(
    not os.path.isfile(os.path.join(ETT_DIR, "ETTh1.csv")), reason="no ../shared/data/ett")


@pytest.fixture(scope="module")
def ett_csv():
    """(dates, values float64 (N, 7)) read with the csv module, independently of etth1."""
    with open(os.path.join(ETT_DIR, "ETTh1.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    return [r[0] for r in rows[1:]], np.array([[float(x) for x in r[1:]] for r in rows[1:]])


@pytest.fixture(scope="module")
def ett():
    return {split: registry.load(_config(name="etth1", source_dir=ETT_DIR), split)
            for split in ("train", "validation", "test")}


@needs_ett
def test_etth1_window_counts_follow_the_formula(ett):
    assert (etth1.WINDOW, etth1.STRIDE, etth1.HORIZON) == (24, 1, 24)
    expected = {"train": 8593, "validation": 2833, "test": 2833}
    for split, (begin, end) in etth1.SPLITS.items():
        n = (end - begin - etth1.WINDOW - etth1.HORIZON) // etth1.STRIDE + 1
        assert n == expected[split] == etth1.num_windows(end - begin) == len(ett[split].source)
        starts = ett[split].source.arrays["start"]
        assert starts[0] == begin and starts[-1] + etth1.WINDOW + etth1.HORIZON == end
    dataset = ett["train"]
    assert dataset.video_shape == (24, 7) and dataset.targets == ("oil_temperature_next_day",)
    assert dataset.static_factors == () and dataset.dynamic_factors == ()
    assert dataset.num_classes == {}
    record = dataset.source[0]
    assert record["video"].shape == (24, 7) and record["video"].dtype == np.float32
    assert record["oil_temperature_next_day"].dtype == np.float32


@needs_ett
def test_etth1_standardised_with_train_rows(ett, ett_csv):
    _, values = ett_csv
    train = values[:8640]
    mean, std = train.mean(axis=0), train.std(axis=0)
    # Every train row is the first step of a train window, or in the last window.
    arrays = ett["train"].source.arrays
    rows = np.concatenate([arrays["video"][:, 0], arrays["video"][-1, 1:]])
    assert len(rows) == 8640 - etth1.HORIZON
    np.testing.assert_allclose(rows.mean(axis=0), 0, atol=0.02)
    np.testing.assert_allclose(rows.std(axis=0), 1, atol=0.02)
    for split in ("train", "validation", "test"):
        arrays = ett[split].source.arrays
        for i in (0, 777, len(arrays["start"]) - 1):
            start = int(arrays["start"][i])
            expected = (values[start:start + 24] - mean) / std
            np.testing.assert_allclose(arrays["video"][i], expected, rtol=1e-5, atol=1e-5)


@needs_ett
def test_etth1_target_is_the_next_day_mean_oil_temperature(ett, ett_csv):
    dates, values = ett_csv
    for split in ("train", "validation", "test"):
        arrays = ett[split].source.arrays
        for i in (0, 1, 500, len(arrays["start"]) - 1):
            start = int(arrays["start"][i])
            ot = [values[r, 6] for r in range(start + 24, start + 48)]
            assert arrays["oil_temperature_next_day"][i] == pytest.approx(sum(ot) / 24, abs=1e-4)
            month, hour = int(dates[start][5:7]), int(dates[start][11:13])
            assert (arrays["month"][i], arrays["hour"][i]) == (month - 1, hour)


def test_etth1_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"--config\.data\.source_dir=<folder with ETTh1\.csv>"):
        etth1.load(_config(source_dir=str(tmp_path / "nowhere")), "train")
    with pytest.raises(registry.NotPreparedError, match="source_dir is not set"):
        etth1.load(_config(source_dir=""), "train")
    (tmp_path / "ETTh1.csv").write_text("date,HUFL,OT\n2016-07-01 00:00:00,1,2\n")
    with pytest.raises(ValueError, match=r"has columns \['date', 'HUFL', 'OT'\], expected"):
        etth1.load(_config(source_dir=str(tmp_path)), "train")
    with pytest.raises(ValueError, match="unknown ETTh1 split 'dev'"):
        etth1.load(_config(source_dir=str(tmp_path)), "dev")


# ---- Beijing Air Quality -------------------------------------------------------------------

needs_aq = pytest.mark.skipif(not os.path.isdir(AQ_DIR), reason="no ../shared/data/air_quality")


@pytest.fixture(scope="module")
def aq():
    air_quality.cached_source.cache_clear()
    start = time.perf_counter()
    datasets = {split: registry.load(_config(name="air_quality", source_dir=AQ_DIR), split)
                for split in ("train", "test")}
    seconds = time.perf_counter() - start
    print(f"Air Quality: 12 stations parsed and prepared in {seconds:.2f} s")
    assert seconds < 5
    return datasets


def _station_csv(station: str) -> list[dict[str, str]]:
    path = os.path.join(AQ_DIR, f"PRSA_Data_{station}_20130301-20170228.csv.gz")
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


@needs_aq
def test_air_quality_counts_and_labels(aq):
    data = air_quality.cached_source(os.path.abspath(AQ_DIR))
    train, test = aq["train"].source.arrays, aq["test"].source.arrays
    assert data.dropped == {"train": 514, "test": 52}
    assert len(aq["train"].source) == 1096 * 12 - 514 == 12638
    assert len(aq["test"].source) == 365 * 12 - 52 == 4328
    dataset = aq["train"]
    assert dataset.video_shape == (24, 10) and dataset.targets == ("rain",)
    assert dataset.static_factors == ("month", "station") and dataset.dynamic_factors == ()
    assert dataset.num_classes == {"month": 12, "station": 12}
    for arrays in (train, test):
        assert set(arrays["month"].tolist()) == set(range(12))  # every month in both splits
        assert set(arrays["station"].tolist()) == set(range(12))
        assert arrays["video"].dtype == np.float32 and np.isfinite(arrays["video"]).all()
        assert np.isfinite(arrays["rain"]).all() and (arrays["rain"] >= 0).all()
        np.testing.assert_array_equal(arrays["season"], ((arrays["month"] + 1) % 12) // 3)
        np.testing.assert_array_equal(arrays["month"], arrays["date"] // 100 % 100 - 1)
    assert train["date"].max() == 20160229 and test["date"].min() == 20160301
    assert test["date"].max() == 20170228
    flat = train["video"].reshape(-1, 10)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-3)


@needs_aq
def test_air_quality_records_match_the_csv(aq):
    station = "Wanliu"
    index = air_quality.STATIONS.index(station)
    rows = _station_csv(station)
    assert {r["station"] for r in rows} == {station}  # the label is the file's station
    days: dict[int, list[dict[str, str]]] = {}
    for r in rows:
        date = int(r["year"]) * 10000 + int(r["month"]) * 100 + int(r["day"])
        days.setdefault(date, []).append(r)
    data = air_quality.cached_source(os.path.abspath(AQ_DIR))
    train, test = aq["train"].source.arrays, aq["test"].source.arrays
    # Kept days: none of the 10 features and RAIN missing for all 24 hours.
    columns = (*air_quality.FEATURES, "RAIN")
    kept = sorted(d for d, hours in days.items()
                  if not any(all(r[c] == "NA" for r in hours) for c in columns))
    assert len(kept) < len(days) == 1461
    for arrays in (train, test):
        dates = arrays["date"][arrays["station"] == index].tolist()
        assert dates == [d for d in kept if (d >= 20160301) == (arrays is test)]
    # A rainy test day with no missing value at all.
    date = next(d for d, hours in sorted(days.items()) if d >= 20160301
                and all("NA" not in r.values() for r in hours)
                and sum(float(r["RAIN"]) for r in hours) > 5)
    (i,) = np.flatnonzero((test["station"] == index) & (test["date"] == date))
    hours = days[date]
    assert test["rain"][i] == pytest.approx(sum(float(r["RAIN"]) for r in hours) / 24, abs=1e-5)
    assert test["month"][i] == date // 100 % 100 - 1
    for j, name in enumerate(air_quality.FEATURES):
        raw = np.array([float(r[name]) for r in hours])
        if name in air_quality.LOG_FEATURES:
            raw = np.log1p(raw)
        expected = (raw - data.mean[j]) / data.std[j]
        np.testing.assert_allclose(test["video"][i, :, j], expected, rtol=1e-5, atol=1e-5)


def test_air_quality_fill_interpolates_and_keeps_edges():
    x = np.array([np.nan, 2.0, np.nan, np.nan, 8.0, np.nan])
    np.testing.assert_allclose(air_quality._fill(x), [2, 2, 4, 6, 8, 8])


def test_air_quality_errors_name_the_fix(tmp_path):
    hint = "--config.data.source_dir=<folder with the 12 PRSA_Data_"
    with pytest.raises(ValueError, match="is not a directory.*" + hint):
        air_quality.read_source(str(tmp_path / "nowhere"))
    with pytest.raises(registry.NotPreparedError, match="holds no station file.*" + hint):
        air_quality.read_source(str(tmp_path))
    header = '"No","year","month","day","hour","PM2.5"\n1,2013,3,1,0,4\n'
    for station in air_quality.STATIONS[:2]:
        with gzip.open(tmp_path / f"PRSA_Data_{station}_20130301-20170228.csv.gz", "wt") as f:
            f.write(header)
    with pytest.raises(ValueError, match="lacks the stations Dingling, Dongsi"):
        air_quality.read_source(str(tmp_path))
    if os.path.isdir(AQ_DIR):
        for station in air_quality.STATIONS[2:]:
            name = f"PRSA_Data_{station}_20130301-20170228.csv.gz"
            os.symlink(os.path.join(AQ_DIR, name), tmp_path / name)
        with pytest.raises(ValueError, match=r"Aotizhongxin.*has columns \['No', 'year'"):
            air_quality.read_source(str(tmp_path))
    with pytest.raises(ValueError, match="unknown Air Quality split 'validation'"):
        air_quality.load(_config(source_dir=str(tmp_path)), "validation")


# ---- PhysioNet 2012: the converter on the fixture ------------------------------------------


@pytest.fixture(scope="module")
def pn_source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("physionet_source"))
    return root, write_fixture(root)


@pytest.fixture(scope="module")
def pn_prepared(pn_source, tmp_path_factory):
    root, _ = pn_source
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    path, written = prep.prepare(root, data_dir)
    assert written
    return data_dir, path


def _run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_prep.physionet", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _bin_means(stay) -> np.ndarray:
    """Reference binning: NaN where a bin has no measurement (written independently)."""
    cells: dict[tuple[int, int], list[float]] = {}
    for clock, name, value in stay.measurements:
        if name in physionet.FEATURES and value != -1:
            b = min(int(clock.split(":")[0]), 47)  # the hour field; 48:00 -> 47
            cells.setdefault((b, physionet.FEATURES.index(name)), []).append(value)
    out = np.full((48, 10), np.nan)
    for (b, j), vs in cells.items():
        out[b, j] = sum(vs) / len(vs)
    return out


def _reference_fill(means: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    out = means.copy()
    for j in range(10):
        observed = [t for t in range(48) if not np.isnan(means[t, j])]
        for t in range(48):
            before = [s for s in observed if s <= t]
            out[t, j] = (means[before[-1], j] if before else
                         means[observed[0], j] if observed else fallback[j])
    return out


def _load(data_dir: str, split: str) -> array_record.ArrayRecordSource:
    return array_record.load_split("physionet", data_dir, split)


def test_physionet_time_bins():
    assert [physionet.time_bin(m) for m in (0, 59, 60, 119, 2879, 2880, 3000)] == [
        0, 0, 1, 1, 47, 47, 47]


def test_physionet_layout_split_and_labels(pn_source, pn_prepared):
    _, stays = pn_source
    data_dir, path = pn_prepared
    assert path == os.path.join(data_dir, "physionet", "1.0.0")
    for split in ("train", "test"):
        source = _load(data_dir, split)
        assert len(source) == len(stays[split])
        records = [source[i] for i in range(len(source))]
        assert set(records[0]) == {"video", "observed", "mortality", "icu_type", "record_id"}
        assert records[0]["video"].shape == (48, 10) and records[0]["video"].dtype == np.float32
        assert records[0]["observed"].dtype == np.uint8
        assert [int(r["record_id"]) for r in records] == [s.record_id for s in stays[split]]
        assert [int(r["mortality"]) for r in records] == [s.died for s in stays[split]]
        assert [int(r["icu_type"]) for r in records] == [s.icu_type - 1 for s in stays[split]]
        features = source.info.features
        assert features["mortality"].names == ["survived", "died"]
        assert features["icu_type"].names == list(physionet.ICU_TYPES)
    train = _load(data_dir, "train")
    assert sorted({int(train[i]["icu_type"]) for i in range(len(train))}) == [0, 1, 2, 3]


def test_physionet_binning_filling_and_standardisation(pn_source, pn_prepared):
    _, stays = pn_source
    data_dir, _ = pn_prepared
    metadata = _load(data_dir, "train").info.metadata
    mean, std = np.array(metadata["feature_mean"]), np.array(metadata["feature_std"])
    observed = np.concatenate([_bin_means(s).reshape(-1, 10) for s in stays["train"]])
    np.testing.assert_allclose(mean, np.nanmean(observed, axis=0))
    np.testing.assert_allclose(std, np.nanstd(observed, axis=0))
    for split in ("train", "test"):
        source = _load(data_dir, split)
        for i, stay in enumerate(stays[split]):
            means = _bin_means(stay)
            raw = source[i]["video"] * std + mean
            np.testing.assert_allclose(raw, _reference_fill(means, mean), rtol=1e-5, atol=1e-4)
            np.testing.assert_array_equal(source[i]["observed"], ~np.isnan(means))

    designed = _load(data_dir, "train")[0]
    assert int(designed["record_id"]) == DESIGNED_ID
    raw = designed["video"] * std + mean
    hr, sys_abp, temp, gcs = (physionet.FEATURES.index(n) for n in ("HR", "SysABP", "Temp", "GCS"))
    np.testing.assert_allclose(raw[:, hr], [90, 100, 100, 100, 100] + [70] * 42 + [70], atol=1e-4)
    assert designed["observed"][:, hr].nonzero()[0].tolist() == [0, 1, 5, 47]
    np.testing.assert_allclose(raw[:, temp], [37.5] * 20 + [38.5] * 28, atol=1e-4)
    assert designed["observed"][:, temp].nonzero()[0].tolist() == [3, 20]  # -1 at 20:50 ignored
    np.testing.assert_allclose(designed["video"][:, sys_abp], 0)  # only -1: the train mean
    assert not designed["observed"][:, sys_abp].any()
    np.testing.assert_allclose(raw[:, gcs], 15, atol=1e-4)
    silent = _load(data_dir, "train")[len(stays["train"]) - 1]
    assert int(silent["record_id"]) == SILENT_ID
    np.testing.assert_allclose(silent["video"], 0)
    assert not silent["observed"].any()


def test_physionet_second_run_rewrites_nothing(pn_source, pn_prepared):
    root, _ = pn_source
    data_dir, path = pn_prepared
    files = sorted(os.listdir(path))
    mtimes = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files}
    assert prep.prepare(root, data_dir) == (path, False)
    result = _run_prep(f"--source_dir={root}", f"--data_dir={data_dir}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped:")
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files} == mtimes


def test_physionet_bad_inputs_are_named_and_keep_the_old_build(pn_source, pn_prepared, tmp_path):
    data_dir, path = pn_prepared
    root = str(tmp_path / "src")
    shutil.copytree(pn_source[0], root)
    with pytest.raises(prep.InputError, match="PhysioNet 2012 folder not found: .*nowhere"):
        prep.prepare(str(tmp_path / "nowhere"), data_dir)

    outcomes = os.path.join(root, "Outcomes-b.txt")
    os.rename(outcomes, outcomes + ".bak")
    with pytest.raises(prep.InputError, match="missing PhysioNet outcomes file: .*Outcomes-b"):
        prep.prepare(root, data_dir)
    os.rename(outcomes + ".bak", outcomes)

    extra = os.path.join(root, "set-b", "150000.txt")
    shutil.copy(os.path.join(root, "set-b", "142020.txt"), extra)
    with pytest.raises(prep.InputError,
                       match=r"150000\.txt: RecordID 150000 has no line in .*Outcomes-b\.txt"):
        prep.prepare(root, data_dir)
    os.remove(extra)

    files = sorted(os.listdir(path))
    mtimes = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files}
    record = os.path.join(root, "set-a", f"{DESIGNED_ID}.txt")
    with open(record, "a") as f:
        f.write("12:00,HR,fast\n")
    with open(record) as f:
        lines = len(f.readlines())
    with pytest.raises(prep.InputError, match=f"{record} line {lines}: could not convert"):
        prep.prepare(root, data_dir)  # a changed source: a rebuild is attempted, and fails
    # The earlier build is untouched and still loads.
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files} == mtimes
    assert len(_load(data_dir, "train")) == 6

    result = _run_prep(f"--source_dir={root}", f"--data_dir={data_dir}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert f"{record} line {lines}" in result.stderr
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files} == mtimes


def test_physionet_registry(pn_prepared, tmp_path):
    data_dir, _ = pn_prepared
    dataset = registry.load(_config(name="physionet", data_dir=data_dir), "test")
    assert dataset.video_shape == (48, 10)
    assert dataset.static_factors == ("mortality", "icu_type") and dataset.dynamic_factors == ()
    assert dataset.num_classes == {"mortality": 2, "icu_type": 4}
    assert len(dataset.source) == 4
    with pytest.raises(registry.NotPreparedError) as error:
        registry.load(_config(name="physionet", data_dir=str(tmp_path)), "train")
    assert "python -m data_prep.physionet --source_dir=<folder holding set-a/, set-b/" in str(
        error.value)
    run_dir = str(tmp_path / "run" / "tfds")
    assert prepare_for_tests(run_dir) == {"data.data_dir": run_dir}
    assert len(registry.load(_config(name="physionet", data_dir=run_dir), "train").source) == 6
