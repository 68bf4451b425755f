"""FSDD: the converter on a synthetic copy of the recordings folder (tests/fsdd_fixture.py:
labels read back from tone frequencies), the official split by take, the train
standardisation, idempotence, errors, the registry entry, and the real recordings when
present."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave

import ml_collections
import numpy as np
import pytest
from fsdd_fixture import (
    SHORT,
    SPEAKERS,
    decode,
    expected_segments,
    prepare_for_tests,
    samples_of,
    write_source,
    write_wav,
)

from data_prep import fsdd as prep
from seqdis_jax.data import array_record, audio, fsdd, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_RECORDINGS = os.path.join(ROOT, "..", "shared", "data", "fsdd", "recordings")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fsdd_source"))
    return root, write_source(root)


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    root, _ = source
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    path, written = prep.prepare(root, data_dir)
    assert written
    return data_dir, path


def _records(data_dir, split, name="fsdd"):
    source = array_record.load_split(name, data_dir, split)
    return [source[i] for i in range(len(source))]


def _run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_prep.fsdd", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- the converter on the fixture ----------------------------------------------------------


def test_counts_layout_and_split_by_take(source, prepared):
    _, files = source
    data_dir, path = prepared
    assert path == os.path.join(data_dir, "fsdd", "1.0.0")
    for split, takes in (("train", {5, 6, 7}), ("test", {0, 1})):
        records = _records(data_dir, split)
        used = [f for f in files if f[3] in takes]
        assert len(records) == sum(expected_segments(f[4]) for f in used)
        assert {int(r["take"]) for r in records} == takes
        record = records[0]
        assert set(record) == {"video", "speaker", "digit", "utterance", "take", "segment"}
        assert record["video"].shape == (20, 200) and record["video"].dtype == np.float32
        for key in ("speaker", "digit", "utterance", "take", "segment"):
            assert record[key].dtype == np.int32 and record[key].shape == ()
    info = array_record.load_split("fsdd", data_dir, "train").info
    assert info.features["speaker"].names == list(SPEAKERS)
    assert info.features["digit"].names == [str(d) for d in range(10)]
    metadata = info.metadata
    assert metadata["num_utterances"] == {"train": 180, "test": 120}
    assert metadata["sample_rate"] == 8000 and metadata["options"]["hop"] == 10


def test_labels_match_the_tones_and_the_file_names(source, prepared):
    _, files = source
    data_dir, _ = prepared
    mean, std = fsdd.read_normalisation(data_dir)
    seen = {}
    for split in ("train", "test"):
        for record in _records(data_dir, split):
            speaker, digit = SPEAKERS[record["speaker"]], int(record["digit"])
            # The label is what the audio says (read back in original units).
            assert decode(audio.destandardise(record["video"], mean, std)) == (speaker, digit)
            # utterance = position of the file in the (digit, speaker, take) order.
            name, f_digit, f_speaker, take, samples = files[record["utterance"]]
            assert (f_digit, f_speaker, take) == (digit, speaker, int(record["take"]))
            seen.setdefault(int(record["utterance"]), []).append(int(record["segment"]))
    assert sorted(seen) == list(range(len(files)))  # every recording, each its own utterance
    for utterance, segments in seen.items():  # segments numbered 0.. in order
        assert segments == list(range(expected_segments(files[utterance][4])))


def test_video_is_the_standardised_segments_of_the_file(source, prepared):
    root, files = source
    data_dir, _ = prepared
    mean, std = fsdd.read_normalisation(data_dir)
    records = _records(data_dir, "train")
    short = next(i for i, f in enumerate(files) if f[1:4] == SHORT)
    for utterance in (short, short - 1):  # takes 7 and 6: train
        name = files[utterance][0]
        samples, rate = audio.read_wav(os.path.join(root, name))
        features = audio.spectral_features(samples, rate, "log_magnitude")
        got = [r for r in records if r["utterance"] == utterance]
        assert len(got) == len(audio.segment(features, hop=10))
        for k, record in enumerate(got):
            expected = (features[k * 10 : k * 10 + 20] - mean) / std
            np.testing.assert_allclose(record["video"][: len(expected)], expected, atol=1e-5)
    # The 13-frame file: one segment whose last 7 frames repeat frame 12.
    (padded,) = [r["video"] for r in records if r["utterance"] == short]
    assert (padded[13:] == padded[12]).all() and not (padded[12] == padded[11]).all()


def test_train_frames_are_standardised_per_bin(prepared):
    data_dir, path = prepared
    train = np.stack([r["video"] for r in _records(data_dir, "train")]).reshape(-1, 200)
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-3)
    test = np.stack([r["video"] for r in _records(data_dir, "test")]).reshape(-1, 200)
    assert np.abs(test.mean(0)).max() > 1e-3  # the test split is not standardised on itself
    with open(os.path.join(path, "metadata.json")) as f:
        stored = json.load(f)["normalisation"]
    mean, std = fsdd.read_normalisation(data_dir)
    assert mean.shape == std.shape == (200,) and mean.dtype == np.float32
    np.testing.assert_array_equal(mean, np.float32(stored["mean"]))
    assert (std > 0).all()


def test_log_mel_build_coexists(source, prepared):
    root, _ = source
    data_dir, path = prepared
    mel_path, written = prep.prepare(root, data_dir, "log_mel")
    assert written and mel_path == os.path.join(data_dir, "fsdd_mel", "1.0.0")
    record = array_record.load_split("fsdd_mel", data_dir, "test")[0]
    assert record["video"].shape == (20, 80) and record["video"].dtype == np.float32
    assert fsdd.read_normalisation(data_dir, "log_mel")[0].shape == (80,)
    assert os.path.isfile(os.path.join(path, "dataset_info.json"))  # fsdd still there
    config = ml_collections.ConfigDict(
        {"name": "fsdd", "data_dir": data_dir, "tfds_name": "fsdd_mel"}
    )
    assert registry.load(config, "test").video_shape == (20, 80)


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
    root = str(tmp_path / "src")
    write_source(root)
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(prep.InputError, match="FSDD recordings folder not found: .*nowhere"):
        prep.prepare(str(tmp_path / "nowhere"), data_dir)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(prep.InputError, match="no .wav file in"):
        prep.prepare(str(tmp_path / "empty"), data_dir)
    with pytest.raises(prep.InputError, match="--features must be one of"):
        prep.prepare(root, data_dir, "mfcc")
    with pytest.raises(prep.InputError, match="--hop must be >= 1"):
        prep.prepare(root, data_dir, hop=0)

    bad_name = os.path.join(root, "3-theo-12.wav")
    shutil.copy(os.path.join(root, "3_theo_1.wav"), bad_name)
    with pytest.raises(prep.InputError, match=r"'3-theo-12.wav' does not match"):
        prep.prepare(root, data_dir)
    os.remove(bad_name)

    target = os.path.join(root, "4_lucas_6.wav")
    write_wav(target, np.zeros(3000, np.uint8))
    with pytest.raises(prep.InputError, match="4_lucas_6.wav: 8-bit WAV samples"):
        prep.prepare(root, data_dir)
    write_wav(target, np.zeros((3000, 2), np.int16), channels=2)
    with pytest.raises(prep.InputError, match="4_lucas_6.wav: 2 channels"):
        prep.prepare(root, data_dir)
    write_wav(target, samples_of(4, "lucas", 6), rate=16000)
    with pytest.raises(prep.InputError, match="4_lucas_6.wav has sample rate 16000 Hz"):
        prep.prepare(root, data_dir)
    with open(target, "wb") as f:
        f.write(b"not audio")
    with pytest.raises(prep.InputError, match="4_lucas_6.wav is neither RIFF/WAVE"):
        prep.prepare(root, data_dir)
    assert not os.path.exists(os.path.join(data_dir, "fsdd"))  # nothing written

    for take in (5, 6, 7):
        for f in os.listdir(root):
            if f.endswith(f"_{take}.wav"):
                os.remove(os.path.join(root, f))
    with pytest.raises(prep.InputError, match="no train recording"):
        prep.prepare(root, data_dir)

    for args, needle in (
        ((f"--source_dir={tmp_path / 'nowhere'}",), "FSDD recordings folder not found"),
        ((f"--source_dir={root}",), "no train recording (takes 5 or more) in"),
        ((f"--source_dir={root}", "--features=mfcc"), "--features must be one of"),
        ((), "--source_dir=<the FSDD recordings folder> is required"),
    ):
        result = _run_prep(*args, f"--data_dir={data_dir}")
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert needle in result.stderr


def test_a_failed_rebuild_keeps_the_old_dataset(tmp_path, monkeypatch):
    root = str(tmp_path / "src")
    write_source(root)
    data_dir = str(tmp_path / "tfds")
    path, _ = prep.prepare(root, data_dir)
    before = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in os.listdir(path)}
    old = _records(data_dir, "test")

    # A file that pass 1 rejects: nothing is written.
    target = os.path.join(root, "0_theo_0.wav")
    write_wav(target, np.zeros(3000, np.uint8))
    with pytest.raises(prep.InputError, match="8-bit"):
        prep.prepare(root, data_dir)
    # A file that fails while the new build is being written (it changed after pass 1).
    write_wav(target, samples_of(0, "theo", 0) // 2)
    calls = {"n": 0}
    real = audio.utterance_segments

    def failing(path, *args):
        calls["n"] += 1
        if calls["n"] > 300 + 100:  # pass 1 reads 300 files; fail within pass 2
            raise ValueError(f"{path}: vanished")
        return real(path, *args)

    monkeypatch.setattr(audio, "utterance_segments", failing)
    with pytest.raises(prep.InputError, match="vanished"):
        prep.prepare(root, data_dir)
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in os.listdir(path)} == before
    assert sorted(os.listdir(os.path.join(data_dir, "fsdd"))) == ["1.0.0"]  # no leftovers
    again = _records(data_dir, "test")
    assert all((a["video"] == b["video"]).all() for a, b in zip(old, again))


# ---- registry ------------------------------------------------------------------------------


def test_registry_loads_the_build(prepared):
    data_dir, _ = prepared
    dataset = registry.load(
        ml_collections.ConfigDict({"name": "fsdd", "data_dir": data_dir}), "train"
    )
    assert dataset.video_shape == (20, 200)
    assert dataset.static_factors == ("speaker",) and dataset.dynamic_factors == ("digit",)
    assert dataset.num_classes == {"speaker": 6, "digit": 10}
    assert dataset.group == "utterance"
    metadata = dataset.source.info.metadata  # the normalisation travels with the source
    np.testing.assert_array_equal(audio.normalisation(metadata)[1], fsdd.read_normalisation(
        data_dir)[1])


def test_registry_names_the_command_when_unprepared(tmp_path):
    config = ml_collections.ConfigDict({"name": "fsdd", "data_dir": str(tmp_path)})
    with pytest.raises(registry.NotPreparedError) as error:
        registry.load(config, "train")
    message = str(error.value)
    assert "python -m data_prep.fsdd --source_dir=<the FSDD recordings folder>" in message
    assert f"--data_dir={tmp_path}" in message


def test_prepare_for_tests_points_the_config_at_a_build(tmp_path):
    data_dir = str(tmp_path / "run" / "tfds")
    assert prepare_for_tests(data_dir) == {"data.data_dir": data_dir}
    config = ml_collections.ConfigDict({"name": "fsdd", "data_dir": data_dir})
    assert len(registry.load(config, "test").source) > 0
    assert [p for p in os.listdir(tmp_path / "run") if p != "tfds"][0].startswith("fsdd_source-")


# ---- the real recordings -------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir(REAL_RECORDINGS), reason="FSDD recordings not found")
def test_real_recordings(tmp_path):
    """The whole real folder (about 2 s here): counts from the WAV lengths, labels from the
    file names, the official split."""
    data_dir = str(tmp_path / "tfds")
    prep.prepare(REAL_RECORDINGS, data_dir)
    files = []  # (digit, speaker, take, samples) in the (digit, speaker, take) order
    for name in os.listdir(REAL_RECORDINGS):
        digit, speaker, take = name.removesuffix(".wav").split("_")
        with wave.open(os.path.join(REAL_RECORDINGS, name)) as f:
            assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (8000, 1, 2)
            files.append((int(digit), speaker, int(take), f.getnframes()))
    files.sort()
    assert len(files) == 3000
    for split, takes in (("train", set(range(5, 50))), ("test", set(range(5)))):
        source = array_record.load_split("fsdd", data_dir, split)
        records = source.__getitems__(range(len(source)))
        used = [i for i, f in enumerate(files) if f[2] in takes]
        assert len(used) == 10 * 6 * len(takes)
        assert len(records) == sum(expected_segments(files[i][3]) for i in used)
        assert {int(r["utterance"]) for r in records} == set(used)
        assert {int(r["take"]) for r in records} == takes
        speakers = source.info.features["speaker"].names
        assert speakers == list(SPEAKERS)
        for r in records:
            assert files[r["utterance"]][:3] == (
                int(r["digit"]), speakers[r["speaker"]], int(r["take"])
            )


def test_an_unprepared_mel_build_names_the_flag_that_writes_it(tmp_path):
    from seqdis_jax.data import registry

    config = ml_collections.ConfigDict(dict(name="fsdd", data_dir=str(tmp_path),
                                            tfds_name="fsdd_mel"))
    with pytest.raises(registry.NotPreparedError) as info:
        registry.load(config, "test")
    message = str(info.value)
    assert "python -m data_prep.fsdd" in message and message.endswith("--features=log_mel")
    config.tfds_name = ""
    with pytest.raises(registry.NotPreparedError, match=r"--data_dir=\S+$"):
        registry.load(config, "test")
