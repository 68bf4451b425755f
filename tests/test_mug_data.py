"""MUG: the release layout, the clip / crop / split rules, the data_prep app (idempotence,
errors) and the registry entry, on the synthetic release of tests/mug_fixture.py (the real one
is licence-restricted)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
import zlib

import ml_collections
import numpy as np
import pytest
from PIL import Image

from data_prep import mug as prep
from seqdis_jax.data import array_record, mug, registry
from tests import mug_fixture as fx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBJECTS = ("001", "002", "003")
NUM_VIDEOS = fx.expected_videos(SUBJECTS)  # 3 * 6 * 2 - 1 (001/surprise holds one take)
NUM_TEST = len(SUBJECTS) * 6 - 1  # one of each pair; 001/surprise (a single take) is train


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The fixture release; its parent is what `prepared` passes as source_dir."""
    return fx.write_fixture(str(tmp_path_factory.mktemp("mug_release")), SUBJECTS)


@pytest.fixture(scope="module")
def videos(release):
    return mug.find_videos(release)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, release):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    path, written = prep.prepare(os.path.dirname(release), data_dir)
    assert written and path == os.path.join(data_dir, "mug", "1.0.0")
    return data_dir, path


def _records(data_dir: str, split: str) -> list[dict]:
    source = array_record.load_split("mug", data_dir, split)
    return [source[i] for i in range(len(source))]


def _mtimes(path: str) -> dict:
    return {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in sorted(os.listdir(path))}


def _run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_prep.mug", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_error_line(
    result: subprocess.CompletedProcess, needle: str, after_progress: bool = False
) -> None:
    """Exit status 2 and one line ``error: ...`` naming ``needle``: the only line of stderr,
    or (an error met during the build) the last one, after progress lines."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("error: ") and needle in lines[-1], result.stderr
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and (len(lines) == 1 or after_progress), result.stderr


def _small_release(tmp_path) -> str:
    """Two subjects, two 15-frame takes per expression: every frame is in the clip."""
    return fx.write_fixture(str(tmp_path / "src"), ("001", "002"), frames=(15,))


# ---- layout --------------------------------------------------------------------------------


def test_find_videos_reads_the_release_layout(release, videos):
    usable, short = videos
    assert len(usable) == NUM_VIDEOS
    assert [v.key for v in short] == ["001/anger/take002"]  # 10 frames
    keys = [v.key for v in usable]
    assert keys == sorted(keys)
    assert "001/surprise" in keys  # frames held directly in the expression folder
    assert "003/session1/anger/take000" in keys and "003/session2/anger/take001" in keys
    assert not any("neutral" in k for k in keys)
    assert {v.subject for v in usable} == set(SUBJECTS)
    assert {v.expression for v in usable} == set(mug.EXPRESSIONS)
    take = next(v for v in usable if v.key == "002/fear/take001")
    assert take.subject == "002" and take.expression == "fear" and len(take.frames) == 31
    assert [os.path.basename(f) for f in take.frames] == [f"img_{i:04d}.jpg" for i in range(31)]
    # source_dir may be subjects3 or its parent
    assert mug.find_videos(os.path.dirname(release)) == videos
    assert mug.subject_names(usable) == SUBJECTS


def test_frames_are_ordered_by_their_number(tmp_path):
    folder = tmp_path / "subjects3" / "007" / "happiness"
    folder.mkdir(parents=True)
    for i in range(16):  # img_0, img_1, ..., img_10, ...: not the lexicographic order
        fx.frame_image("001", 3, i, 8).save(folder / f"img_{i}.jpg")
    (folder / "Thumbs.db").write_bytes(b"x")
    usable, short = mug.find_videos(str(tmp_path))
    assert short == [] and [v.key for v in usable] == ["007/happiness"]
    names = [os.path.basename(f) for f in usable[0].frames]
    assert names == [f"img_{i}.jpg" for i in range(16)]


# ---- rules ---------------------------------------------------------------------------------


def test_split_is_stratified_by_subject_and_expression(videos):
    usable, _ = videos
    split = mug.split_videos(usable)
    assert len(split["train"]) == NUM_VIDEOS - NUM_TEST and len(split["test"]) == NUM_TEST
    assert sorted(split["train"] + split["test"]) == list(range(NUM_VIDEOS))
    groups = {}
    for i, v in enumerate(usable):
        groups.setdefault((v.subject, v.expression), []).append(i)
    for (subject, expression), members in groups.items():  # the rule, written out again
        n = len(members)
        n_test = 0 if n == 1 else max(1, round(mug.TEST_FRACTION * n))
        rng = np.random.default_rng([0, zlib.crc32(f"{subject}/{expression}".encode())])
        chosen = {members[j] for j in rng.choice(n, n_test, replace=False)}
        assert chosen == set(members) & set(split["test"]), (subject, expression)
    assert usable.index(next(v for v in usable if v.key == "001/surprise")) in split["train"]
    # A take's split does not depend on the other subjects.
    subset = [v for v in usable if v.subject != "002"]
    sub_split = mug.split_videos(subset)
    assert {subset[i].key for i in sub_split["test"]} == {
        usable[i].key for i in split["test"] if usable[i].subject != "002"
    }


def test_clip_rule(videos):
    usable, _ = videos
    for video in usable:
        n = len(video.frames)
        stride = mug.clip_stride(n)
        assert stride == max(1, n // 15)
        starts = mug.clip_starts(video, 3, seed=5)
        rng = [np.random.default_rng([5, zlib.crc32(video.key.encode()), k]) for k in range(3)]
        assert starts == [int(r.integers(0, n - 14 * stride)) for r in rng]
        assert all(0 <= s and s + 14 * stride <= n - 1 for s in starts)
        assert mug.clip_starts(video, 1, seed=5) == starts[:1]  # clip k ignores the count
    assert {mug.clip_stride(n) for n in (18, 31)} == {1, 2}
    seed0 = [mug.clip_starts(v)[0] for v in usable]
    assert seed0 == [mug.clip_starts(v)[0] for v in usable]  # reproducible
    assert seed0 != [mug.clip_starts(v, seed=1)[0] for v in usable]  # the seed matters
    assert len(set(seed0)) > 1


def test_center_crop_and_resize(videos):
    usable, _ = videos
    assert mug.crop_box((896, 896)) == (0, 0, 896, 896)
    assert mug.crop_box((120, 80), 0.5) == (40, 20, 80, 60)
    video = usable[3]
    record = mug.clip_records(video, 3, 0, crop_fraction=0.5)[0]
    start, stride = int(record["start"]), int(record["stride"])
    for j in (0, 14):
        with Image.open(video.frames[start + stride * j]) as image:
            expected = image.convert("RGB").crop((24, 24, 72, 72))
        expected = expected.resize((64, 64), Image.Resampling.LANCZOS)
        np.testing.assert_array_equal(record["video"][j], np.asarray(expected))
    assert not np.array_equal(record["video"], mug.clip_records(video, 3, 0)[0]["video"])


@pytest.mark.skipif(importlib.util.find_spec("cv2") is not None, reason="OpenCV is installed")
def test_haar_crop_without_opencv_is_a_clear_error(release, tmp_path):
    with pytest.raises(ImportError, match="pip install opencv-python-headless.*--crop=center"):
        mug.load_face_detector()
    with pytest.raises(prep.InputError, match="pip install opencv-python-headless"):
        prep.prepare(release, str(tmp_path / "tfds"), crop="haar")
    assert not os.path.exists(tmp_path / "tfds")


def test_haar_crop_uses_the_middle_frame_face(videos, monkeypatch):
    """With a stand-in for OpenCV: the largest face of the middle frame crops every frame."""
    seen, faces = [], []

    class Cascade:
        def __init__(self, path):
            assert path == os.path.join("/cascades", "haarcascade_frontalface_alt.xml")

        def empty(self):
            return False

        def detectMultiScale(self, gray, **kwargs):  # noqa: N802 (OpenCV's name)
            seen.append(gray)
            return np.array(faces, np.int32).reshape(-1, 4)

    cv2 = types.ModuleType("cv2")
    cv2.CascadeClassifier = Cascade
    cv2.data = types.SimpleNamespace(haarcascades="/cascades")
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    video = videos[0][5]
    detector = mug.load_face_detector()

    faces[:] = [(10, 20, 30, 30), (40, 30, 48, 48)]  # the larger one wins
    record = mug.clip_records(video, 5, 0, crop="haar", detector=detector)[0]
    start, stride = int(record["start"]), int(record["stride"])
    assert len(seen) == 1
    middle = np.asarray(mug.read_frame(video.frames[start + 7 * stride]).convert("L"))
    assert middle.shape == (96, 96)
    np.testing.assert_array_equal(seen[0], middle)
    for j in (0, 14):
        image = mug.read_frame(video.frames[start + stride * j]).crop((40, 30, 88, 78))
        expected = np.asarray(image.resize((64, 64), Image.Resampling.LANCZOS))
        np.testing.assert_array_equal(record["video"][j], expected)

    faces[:] = []  # no face: the centre crop
    fallback = mug.clip_records(video, 5, 0, crop="haar", detector=detector)[0]
    np.testing.assert_array_equal(fallback["video"], mug.clip_records(video, 5, 0)[0]["video"])


# ---- the prepared dataset ------------------------------------------------------------------


def test_counts_shapes_and_metadata(prepared, videos):
    data_dir, _ = prepared
    train, test = _records(data_dir, "train"), _records(data_dir, "test")
    assert len(train) == NUM_VIDEOS - NUM_TEST and len(test) == NUM_TEST
    for record in train[:2] + test[:2]:
        assert record["video"].shape == (15, 64, 64, 3) and record["video"].dtype == np.uint8
        for key in ("expression", "subject", "video_index", "start", "stride"):
            assert record[key].shape == () and record[key].dtype == np.int32, key
    source = array_record.load_split("mug", data_dir, "train")
    assert source.info.features["expression"].names == list(mug.EXPRESSIONS)
    assert source.info.features["subject"].names == list(SUBJECTS)
    metadata = array_record.read_metadata("mug", data_dir, "1.0.0")
    assert metadata["num_videos"] == {"train": NUM_VIDEOS - NUM_TEST, "test": NUM_TEST}
    assert metadata["skipped_short_takes"] == ["001/anger/take002"]
    assert metadata["options"] == {
        "clips_per_video": 1,
        "seed": 0,
        "crop": "center",
        "crop_fraction": 1.0,
    }
    assert metadata["protocol"] == prep.PROTOCOL


def test_labels_and_clips_match_the_pixels(prepared, videos):
    data_dir, _ = prepared
    usable, _ = videos
    split = mug.split_videos(usable)
    for name in ("train", "test"):
        records = _records(data_dir, name)
        assert [int(r["video_index"]) for r in records] == split[name]
        for record in records:
            video = usable[int(record["video_index"])]
            start, stride = int(record["start"]), int(record["stride"])
            assert start == mug.clip_starts(video)[0] and stride == mug.clip_stride(
                len(video.frames)
            )
            assert SUBJECTS[int(record["subject"])] == video.subject
            assert mug.EXPRESSIONS[int(record["expression"])] == video.expression
            drawn = [fx.read_frame_labels(frame) for frame in record["video"]]
            assert drawn == [
                (int(video.subject), int(record["expression"]), start + stride * j)
                for j in range(15)
            ], video.key


def test_two_clips_per_video_with_another_seed(tmp_path, release, videos, prepared):
    usable, _ = videos
    data_dir = str(tmp_path / "tfds")
    assert prep.prepare(release, data_dir, clips_per_video=2, seed=1)[1]
    train = _records(data_dir, "train")
    assert (
        len(train) == 2 * (NUM_VIDEOS - NUM_TEST)
        and len(_records(data_dir, "test")) == 2 * NUM_TEST
    )
    for first, second in zip(train[::2], train[1::2]):
        assert first["video_index"] == second["video_index"]
        video = usable[int(first["video_index"])]
        assert [int(first["start"]), int(second["start"])] == mug.clip_starts(video, 2, seed=1)
        for record in (first, second):
            start, stride = int(record["start"]), int(record["stride"])
            frames = [fx.read_frame_labels(f)[2] for f in record["video"]]
            assert frames == [start + stride * j for j in range(15)]
    seed0 = [int(r["start"]) for r in _records(prepared[0], "train")]
    assert seed0 != [int(r["start"]) for r in train[::2]]


def test_second_run_rewrites_nothing(prepared, release):
    data_dir, path = prepared
    before = _mtimes(path)
    assert prep.prepare(release, data_dir) == (path, False)  # subjects3 itself this time
    result = _run_prep(f"--source_dir={release}", f"--data_dir={data_dir}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped:")
    assert _mtimes(path) == before


def test_failed_rebuild_keeps_the_dataset_and_a_changed_frame_rebuilds(tmp_path):
    source = _small_release(tmp_path)
    data_dir = str(tmp_path / "tfds")
    path, written = prep.prepare(source, data_dir)
    assert written
    before = _mtimes(path)
    fingerprint = array_record.read_metadata("mug", data_dir, "1.0.0")["fingerprint"]
    frame = os.path.join(source, "001", "fear", "take001", "img_0007.jpg")
    with open(frame, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(prep.InputError, match=re.escape(f"cannot read frame {frame}")):
        prep.prepare(source, data_dir)
    _assert_one_error_line(
        _run_prep(f"--source_dir={source}", f"--data_dir={data_dir}"),
        f"cannot read frame {frame}",
        after_progress=True,
    )
    assert os.listdir(os.path.join(data_dir, "mug")) == ["1.0.0"]  # no staging dir left
    assert _mtimes(path) == before
    assert array_record.read_metadata("mug", data_dir, "1.0.0")["fingerprint"] == fingerprint
    assert len(_records(data_dir, "train")) == 12 and len(_records(data_dir, "test")) == 11

    fx.frame_image("001", 2, 7).save(frame, quality=50)  # readable, another size: rebuilt
    assert prep.prepare(source, data_dir)[1] is True
    assert array_record.read_metadata("mug", data_dir, "1.0.0")["fingerprint"] != fingerprint
    assert prep.prepare(source, data_dir)[1] is False


def test_bad_inputs_are_named(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"MUG source directory not found: {missing}")
    ):
        mug.find_videos(missing)
    (tmp_path / "empty" / "subjects3" / "readme").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no subject folders .* in .*empty/subjects3"):
        mug.find_videos(str(tmp_path / "empty"))
    source = _small_release(tmp_path)
    hollow = os.path.join(source, "001", "fear")
    shutil.rmtree(hollow)
    os.mkdir(hollow)
    with pytest.raises(ValueError, match=re.escape(f"empty expression folder {hollow}")):
        mug.find_videos(source)
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(prep.InputError, match=re.escape(f"empty expression folder {hollow}")):
        prep.prepare(source, data_dir)
    with pytest.raises(ValueError, match="cannot read frame .*notes.txt"):
        mug.read_frame(os.path.join(source, "001", "anger", "take000", "notes.txt"))
    for options, needle in (
        ({"clips_per_video": 0}, "clips_per_video"),
        ({"seed": -1}, "seed"),
        ({"crop_fraction": 0.0}, "crop_fraction"),
        ({"crop": "eyes"}, "crop must be one of"),
    ):
        with pytest.raises(prep.InputError, match=needle):
            prep.prepare(source, data_dir, **options)
    _assert_one_error_line(
        _run_prep(f"--source_dir={missing}", f"--data_dir={data_dir}"),
        f"MUG source directory not found: {missing}",
    )
    assert not os.path.exists(data_dir)  # nothing written on bad input


def test_prepare_for_tests(tmp_path):
    data_dir = str(tmp_path / "data" / "tfds")
    assert fx.prepare_for_tests(data_dir) == {"data.data_dir": data_dir}
    assert len(_records(data_dir, "test")) == NUM_TEST
    assert os.listdir(tmp_path / "data") == ["tfds"]  # the source folder is removed


# ---- registry ------------------------------------------------------------------------------


def test_registry_loads_the_prepared_dataset(prepared):
    data_dir, _ = prepared
    dataset = registry.load(
        ml_collections.ConfigDict({"name": "mug", "data_dir": data_dir}), "train"
    )
    assert dataset.video_shape == (15, 64, 64, 3) == mug.SPEC.video_shape
    assert dataset.static_factors == ("subject",) and dataset.dynamic_factors == ("expression",)
    assert dataset.num_classes == {"subject": len(SUBJECTS), "expression": 6}
    assert len(dataset.source) == NUM_VIDEOS - NUM_TEST


def test_registry_names_the_command_when_unprepared(tmp_path):
    config = ml_collections.ConfigDict({"name": "mug", "data_dir": str(tmp_path)})
    with pytest.raises(registry.NotPreparedError) as error:
        registry.load(config, "train")
    message = str(error.value)
    assert "python -m data_prep.mug --source_dir=" in message
    assert f"--data_dir={tmp_path}" in message
