"""TIMIT: the converter on a synthetic copy of LDC's layout (tests/timit_fixture.py: SPHERE in
both byte orders, RIFF copies, lower-case folders; speakers read back from tone frequencies),
the SI/SX selection, the core test set, the train standardisation, idempotence, errors and the
registry entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from timit_fixture import (
    ALL_SPEAKERS,
    CORE,
    DUPLICATED,
    OTHER_TEST,
    SHORT,
    decode_speaker,
    expected_segments,
    prepare_for_tests,
    sphere_bytes,
    write_source,
)

from data_prep import timit as prep
from seqdis_jax.data import array_record, audio, registry, timit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE_SPEAKERS = sorted(s for speakers in CORE.values() for s in speakers)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("timit_source"))
    return root, write_source(root)


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    root, _ = source
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    path, written = prep.prepare(root, data_dir)
    assert written
    return data_dir, path


def _records(data_dir, split, name="timit"):
    source = array_record.load_split(name, data_dir, split)
    return source, source.__getitems__(range(len(source)))


def _used(written, split, core_only=True):
    part = "TRAIN" if split == "train" else "TEST"
    return [
        w for w in written
        if w["part"] == part and w["sentence"][:2] in ("SI", "SX")
        and not (core_only and part == "TEST" and w["speaker"] not in CORE_SPEAKERS)
    ]


def _run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_prep.timit", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- discovery -----------------------------------------------------------------------------


def test_discovery_keeps_si_sx_and_the_core_test_set(source):
    root, written = source
    found_root, utterances, skipped = timit.find_utterances(root)
    assert found_root == root
    assert skipped == sum(w["sentence"].startswith("SA") for w in written)  # 4 x 2 + 1
    keys = [u.key for u in utterances]
    assert keys == sorted(keys)
    expected = {
        (w["part"], w["dialect"], w["speaker"], w["sentence"]): w["path"]
        for split in ("train", "test") for w in _used(written, split)
    }
    assert {(timit.PARTS[u.split], u.dialect, u.speaker, u.sentence): u.path
            for u in utterances} == expected
    # The RIFF copy of a doubly stored utterance is read; lower-case names are found.
    assert all(u.path.endswith(".WAV.wav") for u in utterances if u.speaker == DUPLICATED)
    assert any(u.path == os.path.join("TEST", "dr8", "mjln0", u.sentence.lower() + ".wav")
               for u in utterances)
    assert {u.speaker for u in utterances if u.split == "test"} == set(CORE_SPEAKERS)
    assert timit.core_test_speakers() == tuple(s for ss in CORE.values() for s in ss)
    _, everyone, _ = timit.find_utterances(root, "all")
    assert {u.speaker for u in everyone if u.split == "test"} == {*CORE_SPEAKERS, OTHER_TEST[1]}


# ---- the converter on the fixture ----------------------------------------------------------


def test_counts_layout_and_labels(source, prepared):
    _, written = source
    data_dir, path = prepared
    assert path == os.path.join(data_dir, "timit", "1.0.0")
    for split in ("train", "test"):
        used = _used(written, split)
        source_, records = _records(data_dir, split)
        assert len(records) == sum(expected_segments(w["num_samples"]) for w in used)
        assert set(records[0]) == {
            "video", "speaker", "sex", "dialect", "utterance", "sentence", "segment"
        }
        assert records[0]["video"].shape == (20, 200) and records[0]["video"].dtype == np.float32
        features = source_.info.features
        speakers = features["speaker"].names
        assert features["sex"].names == ["F", "M"]
        assert features["dialect"].names == [f"DR{i}" for i in range(1, 9)]
        mean, std = timit.read_normalisation(data_dir)
        by_utterance = {}
        for r in records:
            speaker = speakers[r["speaker"]]
            # The speaker label is what the audio says (read back in original units).
            assert decode_speaker(audio.destandardise(r["video"], mean, std)) == speaker
            assert features["sex"].names[r["sex"]] == speaker[0]
            by_utterance.setdefault(int(r["utterance"]), []).append(r)
        # Each utterance is one file: its sentence number, dialect and segment positions.
        assert len(by_utterance) == len(used)
        expected = {(w["speaker"], int(w["sentence"][2:])): w for w in used}
        for segments in by_utterance.values():
            first = segments[0]
            w = expected[speakers[first["speaker"]], int(first["sentence"])]
            assert features["dialect"].names[first["dialect"]] == w["dialect"]
            assert [int(s["segment"]) for s in segments] == list(
                range(expected_segments(w["num_samples"]))
            )
    _, train = _records(data_dir, "train")
    _, test = _records(data_dir, "test")
    train_speakers = {int(r["speaker"]) for r in train}
    test_speakers = {int(r["speaker"]) for r in test}
    assert not train_speakers & test_speakers  # unseen test speakers
    assert len(speakers) == len(train_speakers | test_speakers) == 4 + 24
    assert speakers == sorted(speakers) and set(speakers) <= set(ALL_SPEAKERS)
    assert {int(r["utterance"]) for r in train + test} == set(range(len(train_speakers) * 3
                                                                     + 24 * 2))


def test_video_is_the_standardised_segments_of_the_file(source, prepared):
    root, written = source
    data_dir, _ = prepared
    mean, std = timit.read_normalisation(data_dir)
    source_, records = _records(data_dir, "test")
    speakers = source_.info.features["speaker"].names
    for w in _used(written, "test"):
        if w["speaker"] not in (SHORT[0], "MJLN0"):
            continue
        got = [r["video"] for r in records if speakers[r["speaker"]] == w["speaker"]
               and int(r["sentence"]) == int(w["sentence"][2:])]
        features = audio.spectral_features(w["samples"] / 32768, 16000, "log_magnitude")
        segments = audio.segment(features, hop=20)
        assert len(got) == len(segments)
        np.testing.assert_allclose(np.stack(got), (segments - mean) / std, atol=1e-4)
        if w["num_samples"] == 1600:  # 8 frames: one segment repeating its last frame
            assert (got[0][8:] == got[0][7]).all()


def test_train_frames_are_standardised_per_bin(prepared):
    data_dir, _ = prepared
    _, train = _records(data_dir, "train")
    frames = np.stack([r["video"] for r in train]).reshape(-1, 200)
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(frames.std(0), 1, atol=1e-3)
    mean, std = timit.read_normalisation(data_dir)
    assert mean.shape == std.shape == (200,) and (std > 0).all()


def test_options_all_test_speakers_log_mel_and_hop(source, tmp_path):
    root, written = source
    data_dir = str(tmp_path / "tfds")
    path, written_now = prep.prepare(root, data_dir, "log_mel", hop=5, test_speakers="all")
    assert written_now and path == os.path.join(data_dir, "timit_mel", "1.0.0")
    source_, test = _records(data_dir, "test", "timit_mel")
    assert test[0]["video"].shape == (20, 80)
    speakers = source_.info.features["speaker"].names
    assert {speakers[r["speaker"]] for r in test} == {*CORE_SPEAKERS, OTHER_TEST[1]}
    used = _used(written, "test", core_only=False)
    assert len(test) == sum(expected_segments(w["num_samples"], hop=5) for w in used)
    assert source_.info.metadata["options"] == {
        "features": "log_mel", "hop": 5, "segment_frames": 20, "test_speakers": "all"
    }


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


# ---- errors --------------------------------------------------------------------------------


def test_bad_inputs_are_named(tmp_path):
    outer = tmp_path / "timit"
    root = str(outer / "TIMIT")  # --source_dir may be the folder above the release
    write_source(root)
    data_dir = str(tmp_path / "tfds")
    assert timit.release_root(str(outer)) == root
    with pytest.raises(prep.InputError, match="TIMIT folder not found: .*nowhere"):
        prep.prepare(str(tmp_path / "nowhere"), data_dir)
    with pytest.raises(prep.InputError, match="no TRAIN/ and TEST/ folders in"):
        prep.prepare(os.path.join(root, "TRAIN"), data_dir)
    with pytest.raises(prep.InputError, match="--test_speakers must be one of core, all"):
        prep.prepare(root, data_dir, test_speakers="some")

    # A missing core test speaker is named; --test_speakers=all accepts the folder.
    shutil.move(os.path.join(root, "TEST", "DR3", "MLNT0"), str(tmp_path / "MLNT0"))
    with pytest.raises(prep.InputError, match=r"1 of the 24 core test speakers .*: MLNT0 \(use"):
        prep.prepare(root, data_dir)
    assert timit.find_utterances(root, "all")[1]

    # A shorten-compressed SPHERE file: convert with sph2pipe.
    target = os.path.join(root, "TEST", "DR1", "MDAB0", "SI700.WAV")
    assert os.path.exists(target)
    with open(target, "wb") as f:
        f.write(sphere_bytes(np.zeros(4000, np.int16), coding="pcm,embedded-shorten-v2.00"))
    with pytest.raises(prep.InputError, match=r"compressed SPHERE file .*sph2pipe"):
        prep.prepare(root, data_dir, test_speakers="all")
    with open(target, "wb") as f:
        f.write(sphere_bytes(np.zeros(4000, np.int16), rate=8000))
    with pytest.raises(prep.InputError, match="SI700.WAV has sample rate 8000 Hz"):
        prep.prepare(root, data_dir, test_speakers="all")
    os.makedirs(os.path.join(root, "TRAIN", "DR9"))
    with pytest.raises(prep.InputError, match=r"DR9: not a dialect region folder"):
        prep.prepare(root, data_dir, test_speakers="all")
    os.rmdir(os.path.join(root, "TRAIN", "DR9"))
    os.makedirs(os.path.join(root, "TRAIN", "DR1", "XYZ0"))
    with pytest.raises(prep.InputError, match="XYZ0: a TIMIT speaker folder's name starts"):
        prep.prepare(root, data_dir, test_speakers="all")
    os.rmdir(os.path.join(root, "TRAIN", "DR1", "XYZ0"))
    shutil.copytree(os.path.join(root, "TRAIN", "DR1", "FCJF0"),
                    os.path.join(root, "TRAIN", "DR2", "FCJF0"))
    with pytest.raises(prep.InputError, match="speaker FCJF0 appears twice"):
        prep.prepare(root, data_dir, test_speakers="all")
    assert not os.path.exists(os.path.join(data_dir, "timit"))  # nothing written

    for args, needle in (
        ((f"--source_dir={tmp_path / 'nowhere'}",), "TIMIT folder not found"),
        ((f"--source_dir={root}",), "speaker FCJF0 appears twice: TRAIN/DR1/FCJF0 and"),
        ((), "--source_dir=<the TIMIT folder holding TRAIN/ and TEST/> is required"),
    ):
        result = _run_prep(*args, f"--data_dir={data_dir}")
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert needle in result.stderr


def test_a_failed_rebuild_keeps_the_old_dataset(tmp_path):
    root = str(tmp_path / "src")
    written = write_source(root)
    data_dir = str(tmp_path / "tfds")
    path, _ = prep.prepare(root, data_dir)
    before = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in os.listdir(path)}
    target = _used(written, "train")[-1]["path"]
    with open(os.path.join(root, target), "wb") as f:
        f.write(b"NIST_1A\n   1024\ngarbage")
    with pytest.raises(prep.InputError, match=f"{target}: SPHERE header size 1024 exceeds"):
        prep.prepare(root, data_dir)
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in os.listdir(path)} == before
    assert sorted(os.listdir(os.path.join(data_dir, "timit"))) == ["1.0.0"]
    assert len(array_record.load_split("timit", data_dir, "test")) > 0


# ---- registry ------------------------------------------------------------------------------


def test_registry_loads_the_build(prepared):
    data_dir, _ = prepared
    dataset = registry.load(
        ml_collections.ConfigDict({"name": "timit", "data_dir": data_dir}), "test"
    )
    assert dataset.video_shape == (20, 200)
    assert dataset.static_factors == ("speaker", "sex", "dialect")
    assert dataset.dynamic_factors == ()
    assert dataset.num_classes == {"speaker": 28, "sex": 2, "dialect": 8}
    assert dataset.group == "utterance"


def test_registry_names_the_command_when_unprepared(tmp_path):
    config = ml_collections.ConfigDict({"name": "timit", "data_dir": str(tmp_path)})
    with pytest.raises(registry.NotPreparedError) as error:
        registry.load(config, "train")
    message = str(error.value)
    assert "python -m data_prep.timit --source_dir=<the TIMIT folder holding TRAIN/" in message
    assert f"--data_dir={tmp_path}" in message


def test_prepare_for_tests_points_the_config_at_a_build(tmp_path):
    data_dir = str(tmp_path / "run" / "tfds")
    assert prepare_for_tests(data_dir) == {"data.data_dir": data_dir}
    config = ml_collections.ConfigDict({"name": "timit", "data_dir": data_dir})
    assert len(registry.load(config, "test").source) > 0
    assert [p for p in os.listdir(tmp_path / "run") if p != "tfds"][0].startswith("timit_source-")
