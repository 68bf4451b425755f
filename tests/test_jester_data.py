"""Jester (SPYL App. A.1): the frame rule, crop and resize, the converter on a synthetic copy of
20BN's layout (tests/jester_fixture.py: labels read back from pixels), idempotence, errors and
the registry entry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from jester_fixture import (
    FIVE,
    LABELS,
    decode_frame,
    frame_pixels,
    prepare_for_tests,
    write_fixture,
)
from PIL import Image

from data_prep import jester as prep
from seqdis_jax.data import array_record, jester, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("jester_source"))
    return root, write_fixture(root)


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    root, _ = source
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    path, written = prep.prepare(root, data_dir)
    assert written
    return data_dir, path


def _used(rows):
    return [(vid, gesture, n) for vid, gesture, n in rows if gesture in FIVE]


def _run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_prep.jester", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- rules ---------------------------------------------------------------------------------


def test_frame_rule_is_i_times_n_div_10():
    np.testing.assert_array_equal(jester.frame_indices(10), np.arange(10))
    np.testing.assert_array_equal(jester.frame_indices(19), np.arange(10))
    np.testing.assert_array_equal(jester.frame_indices(37), np.arange(0, 30, 3))
    np.testing.assert_array_equal(jester.frame_indices(40), np.arange(0, 40, 4))
    for n in range(10, 80):
        indices = jester.frame_indices(n)
        assert indices[-1] < n and (np.diff(indices) == n // 10).all()
    with pytest.raises(ValueError, match="at least 10"):
        jester.frame_indices(9)


@pytest.mark.parametrize("size", [(132, 100), (100, 150)])  # (W, H): landscape and portrait
def test_center_crop_then_lanczos(size):
    width, height = size
    side = min(size)
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[...] = (255, 0, 0)
    left, top = (width - side) // 2, (height - side) // 2
    pixels[top : top + side, left : left + side] = (90, 140, 200)
    frame = jester.preprocess_frame(Image.fromarray(pixels))
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    # Only the center square is kept: a uniform square stays exactly uniform.
    assert (frame == (90, 140, 200)).all()
    # LANCZOS (not nearest or box): a one-pixel line in the square is spread, not dropped.
    pixels[top + side // 2, left : left + side] = 255
    line = jester.preprocess_frame(Image.fromarray(pixels)).astype(int)
    assert len(np.unique(line[:, 32, 0])) > 3 and (line[:, 32, 0] < 90).any()  # ringing


def test_split_csv_parsing(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("12;Shaking Hand\n\n7; Thumb Up \n")
    assert jester.read_split_csv(str(path)) == [(12, "Shaking Hand"), (7, "Thumb Up")]
    path.write_text("12;Shaking Hand\nabc;Thumb Up\n")
    with pytest.raises(ValueError, match="line 2"):
        jester.read_split_csv(str(path))


# ---- the converter on the fixture ----------------------------------------------------------


def test_counts_shapes_and_dtypes(prepared):
    data_dir, path = prepared
    assert path == os.path.join(data_dir, "jester", "1.0.0")
    for split, count in (("train", 15), ("test", 10)):
        source = array_record.load_split("jester", data_dir, split)
        assert len(source) == count
        record = source[0]
        assert set(record) == {"video", "gesture", "video_id"}
        assert record["video"].shape == (10, 64, 64, 3) and record["video"].dtype == np.uint8
        assert record["gesture"].dtype == np.int32 and record["video_id"].dtype == np.int32
        assert source.info.features["gesture"].names == list(jester.GESTURES)


def test_records_follow_the_csvs_and_the_frame_rule(source, prepared):
    _, listed = source
    data_dir, _ = prepared
    for split, csv in (("train", "train"), ("test", "validation")):
        expected = _used(listed[csv])
        records = array_record.load_split("jester", data_dir, split)
        assert [int(records[i]["video_id"]) for i in range(len(records))] == [
            vid for vid, _, _ in expected
        ]
        for i, (_, gesture, n) in enumerate(expected):
            record = records[i]
            assert jester.GESTURES[record["gesture"]] == gesture  # index = GESTURES order
            decoded = [decode_frame(frame) for frame in record["video"]]
            assert [g for _, g in decoded] == [gesture] * 10  # the label matches the pixels
            assert [k for k, _ in decoded] == [i * (n // 10) for i in range(10)]
            # No red margin survives the center crop.
            video = record["video"].astype(int)
            assert np.abs(video[..., 0] - video[..., 1]).max() <= 3
    # Every gesture index is used; videos of other gestures (and the 4-frame one) are ignored.
    train = array_record.load_split("jester", data_dir, "train")
    assert sorted({int(train[i]["gesture"]) for i in range(len(train))}) == [0, 1, 2, 3, 4]


def test_frames_match_the_jpegs(source, prepared):
    root, listed = source
    data_dir, _ = prepared
    vid, _, n = _used(listed["validation"])[0]
    record = array_record.load_split("jester", data_dir, "test")[0]
    folder = os.path.join(root, "20bn-jester-v1", str(vid))
    for i, k in enumerate(jester.frame_indices(n)):
        with Image.open(os.path.join(folder, f"{k + 1:05d}.jpg")) as image:
            np.testing.assert_array_equal(record["video"][i], jester.preprocess_frame(image))


def test_second_run_rewrites_nothing(source, prepared):
    root, _ = source
    data_dir, path = prepared
    files = sorted(os.listdir(path))
    mtimes = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files}
    assert prep.prepare(root, data_dir) == (path, False)
    result = _run_prep(f"--source_dir={root}", f"--data_dir={data_dir}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped:")
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files} == mtimes


def test_fingerprint_follows_csvs_and_used_frames(tmp_path):
    root = str(tmp_path / "src")
    listed = write_fixture(root)
    digest = prep.dataset_fingerprint(root, prep.scan(root))
    vid, gesture, n = _used(listed["train"])[0]
    folder = os.path.join(root, "20bn-jester-v1", str(vid))
    unused = os.path.join(folder, f"{n:05d}.jpg")  # 9 * (n // 10) < n - 1 for n > 10
    with open(unused, "ab") as f:
        f.write(b"\0")
    assert prep.dataset_fingerprint(root, prep.scan(root)) == digest
    Image.fromarray(frame_pixels(0, gesture)).save(os.path.join(folder, "00001.jpg"), quality=50)
    changed = prep.dataset_fingerprint(root, prep.scan(root))
    assert changed != digest
    with open(os.path.join(root, "jester-v1-validation.csv"), "a") as f:
        f.write("\n")
    assert prep.dataset_fingerprint(root, prep.scan(root)) != changed


# ---- errors --------------------------------------------------------------------------------


def test_bad_inputs_are_named(tmp_path):
    root = str(tmp_path / "src")
    listed = write_fixture(root)
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(prep.InputError, match="Jester folder not found: .*nowhere"):
        prep.prepare(str(tmp_path / "nowhere"), data_dir)

    csv = os.path.join(root, "jester-v1-validation.csv")
    os.rename(csv, csv + ".bak")
    with pytest.raises(prep.InputError, match="missing Jester CSV: .*jester-v1-validation.csv"):
        prep.prepare(root, data_dir)
    os.rename(csv + ".bak", csv)

    labels = os.path.join(root, "jester-v1-labels.csv")
    kept = [name for name in LABELS if name not in ("Shaking Hand", "Rolling Hand Forward")]
    with open(labels, "w") as f:
        f.writelines(f"{name}\n" for name in kept)
    with pytest.raises(prep.InputError, match="'Rolling Hand Forward', 'Shaking Hand'"):
        prep.prepare(root, data_dir)
    with open(labels, "w") as f:
        f.writelines(f"{name}\n" for name in LABELS)

    (vid, _, n), (vid2, _, _) = _used(listed["train"])[:2]
    folder = os.path.join(root, "20bn-jester-v1", str(vid))
    os.rename(folder, folder + ".bak")
    with pytest.raises(
        prep.InputError, match=re.escape(f"{folder} (listed in jester-v1-train.csv) not")
    ):
        prep.prepare(root, data_dir)
    os.rename(folder + ".bak", folder)

    for k in range(9, n):
        os.remove(os.path.join(folder, f"{k + 1:05d}.jpg"))
    with pytest.raises(
        prep.InputError, match=re.escape(f"video {folder} has 9 frames; at least 10")
    ):
        prep.prepare(root, data_dir)
    shutil.rmtree(folder)
    shutil.copytree(os.path.join(root, "20bn-jester-v1", str(vid2)), folder)

    bad_frame = os.path.join(root, "20bn-jester-v1", str(vid2), "00001.jpg")
    with open(bad_frame, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(prep.InputError, match=re.escape(f"cannot read frame {bad_frame}")):
        prep.prepare(root, data_dir)
    assert not os.path.exists(os.path.join(data_dir, "jester", "1.0.0"))  # nothing written

    os.remove(csv)
    for args, needle in (
        ((f"--source_dir={tmp_path / 'nowhere'}",), "Jester folder not found"),
        ((f"--source_dir={root}",), f"missing Jester CSV: {csv}"),
    ):
        result = _run_prep(*args, f"--data_dir={data_dir}")
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert needle in result.stderr


# ---- registry ------------------------------------------------------------------------------


def test_registry_loads_the_build(prepared):
    data_dir, _ = prepared
    dataset = registry.load(
        ml_collections.ConfigDict({"name": "jester", "data_dir": data_dir}), "train"
    )
    assert dataset.video_shape == (10, 64, 64, 3)
    assert dataset.static_factors == () and dataset.dynamic_factors == ("gesture",)
    assert dataset.num_classes == {"gesture": 5}
    assert len(dataset.source) == 15


def test_registry_names_the_command_when_unprepared(tmp_path):
    config = ml_collections.ConfigDict({"name": "jester", "data_dir": str(tmp_path)})
    with pytest.raises(registry.NotPreparedError) as error:
        registry.load(config, "train")
    message = str(error.value)
    assert "python -m data_prep.jester --source_dir=<folder holding 20bn-jester-v1/" in message
    assert f"--data_dir={tmp_path}" in message


def test_prepare_for_tests_points_the_config_at_a_build(tmp_path):
    data_dir = str(tmp_path / "run" / "tfds")
    assert prepare_for_tests(data_dir) == {"data.data_dir": data_dir}
    config = ml_collections.ConfigDict({"name": "jester", "data_dir": data_dir})
    assert len(registry.load(config, "train").source) == 15
    assert [p for p in os.listdir(tmp_path / "run") if p != "tfds"][0].startswith("jester_source-")
