"""Letters (SPYL App. A.1): the lexicon, the split and sample draws, the letter image
processing, the converter on a synthetic copy of the ISGL offline letters
(tests/letters_fixture.py: letter, sample and subject read back from pixels), idempotence,
errors and the registry entry."""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from letters_fixture import (
    MISSING_61,
    USED_SUBJECTS,
    decode_frame,
    prepare_for_tests,
    write_fixture,
)
from PIL import Image

from data_prep import letters as prep
from seqdis_jax.data import array_record, letters, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_SUBJECTS = [s for s in range(1, 67) if s != 61]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("letters_source"))
    write_fixture(root)
    return root


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    path, written = prep.prepare(source, data_dir)
    assert written
    return data_dir, path


def _records(data_dir: str, split: str) -> list[dict[str, np.ndarray]]:
    source = array_record.load_split("letters", data_dir, split)
    return [source[i] for i in range(len(source))]


def _run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_prep.letters", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- rules ---------------------------------------------------------------------------------


def test_lexicon():
    assert len(letters.LEXICON) == 100 and len(set(letters.LEXICON)) == 100
    for word in letters.LEXICON:
        assert len(word) == 7 and set(word) <= set(string.ascii_lowercase), word
    assert "science" in letters.LEXICON  # SPYL's example
    np.testing.assert_array_equal(letters.letter_indices("science"), [18, 2, 8, 4, 13, 2, 4])
    assert letters.letter_indices("quickly").dtype == np.int32


def test_split_is_seeded_per_subject():
    in_train = np.zeros(100, bool)
    for subject in REAL_SUBJECTS:
        train, test = letters.split_words(subject)
        assert len(train) == 80 and len(test) == 20
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(100))
        direct = np.random.default_rng([0, subject]).choice(100, 20, replace=False)
        np.testing.assert_array_equal(test, np.sort(direct))
        in_train[train] = True
    assert in_train.all()  # every word is in train for some subject
    assert not np.array_equal(letters.split_words(1)[1], letters.split_words(2)[1])


def test_sample_choice_is_reproducible():
    draws = np.stack([letters.choose_samples(0, 5, w) for w in range(100)])
    assert draws.shape == (100, 7) and draws.dtype == np.int32
    assert set(np.unique(draws)) == {1, 2}
    for w, k in ((0, 0), (37, 6), (99, 3)):
        assert draws[w, k] == 1 + np.random.default_rng([0, 5, w, k]).integers(2)
    np.testing.assert_array_equal(draws[12], letters.choose_samples(0, 5, 12))
    other_seed = np.stack([letters.choose_samples(1, 5, w) for w in range(100)])
    other_subject = np.stack([letters.choose_samples(0, 6, w) for w in range(100)])
    assert (other_seed != draws).any() and (other_subject != draws).any()


def test_letter_image_processing():
    # 20 x 40 (W x H) grey: a white page with one black stroke down the middle.
    pixels = np.full((40, 20), 255, np.uint8)
    pixels[:, 9:11] = 0
    frame = letters.preprocess_letter(Image.fromarray(pixels, "L"))
    assert frame.shape == (64, 64, 1) and frame.dtype == np.uint8
    frame = frame[..., 0].astype(int)
    assert (frame[:, :14] == 0).all() and (frame[:, -14:] == 0).all()  # white padding -> 0
    assert frame[:, 31:33].min() > 150  # ink is bright after inversion
    # = white square canvas, page pasted centered, LANCZOS to 64x64, inverted.
    canvas = Image.new("L", (40, 40), 255)
    canvas.paste(Image.fromarray(pixels, "L"), (10, 0))
    lanczos = canvas.resize((64, 64), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(frame, 255 - np.asarray(lanczos, int))
    assert not np.array_equal(frame, 255 - np.asarray(canvas.resize((64, 64)), int))
    # Transparency is composited on white; an RGB copy gives the same frame.
    rgba = np.zeros((40, 20, 4), np.uint8)
    rgba[:, 9:11, 3] = 255
    np.testing.assert_array_equal(
        letters.preprocess_letter(Image.fromarray(rgba, "RGBA"))[..., 0], frame
    )
    rgb = Image.fromarray(pixels, "L").convert("RGB")
    np.testing.assert_array_equal(letters.preprocess_letter(rgb)[..., 0], frame)


def test_layout_and_exclusion(source, capsys):
    assert letters.find_subjects(source) == ["2", "10", "33", "61"]  # numeric order
    found = letters.letter_images(os.path.join(source, "10"))
    assert len(found) == 52 and found["q", 2].endswith(os.path.join("10", "q_2.jpg"))
    images = prep.scan(source)
    assert list(images) == list(USED_SUBJECTS)
    warning = capsys.readouterr().err
    assert "subject 61 is excluded" in warning and ", ".join(MISSING_61) in warning


# ---- the converter on the fixture ----------------------------------------------------------


def test_counts_shapes_and_dtypes(prepared):
    data_dir, path = prepared
    assert path == os.path.join(data_dir, "letters", "1.0.0")
    for split, count in (("train", 3 * 80), ("test", 3 * 20)):
        source = array_record.load_split("letters", data_dir, split)
        assert len(source) == count
        record = source[count - 1]
        assert set(record) == {"video", "subject", "word", "letters"}
        assert record["video"].shape == (7, 64, 64, 1) and record["video"].dtype == np.uint8
        assert record["letters"].shape == (7,) and record["letters"].dtype == np.int32
        assert record["subject"].dtype == np.int32 and record["word"].dtype == np.int32
        assert source.info.features["subject"].names == ["2", "10", "33"]
        assert source.info.features["word"].names == list(letters.LEXICON)


@pytest.mark.parametrize("split", ["train", "test"])
def test_records_match_pixels_split_and_draws(prepared, split):
    data_dir, _ = prepared
    records = _records(data_dir, split)
    order = [(USED_SUBJECTS[r["subject"]], int(r["word"])) for r in records]
    expected = [
        (s, int(w))
        for s in USED_SUBJECTS
        for w in letters.split_words(int(s))[int(split == "test")]
    ]
    assert order == expected  # subjects in numeric order, each subject's words in index order
    for (subject, w), record in zip(order, records):
        word = letters.LEXICON[w]
        np.testing.assert_array_equal(record["letters"], letters.letter_indices(word))
        samples = letters.choose_samples(0, int(subject), w)
        decoded = [decode_frame(frame) for frame in record["video"]]
        assert decoded == [(c, int(s), subject) for c, s in zip(word, samples)]
        video = record["video"][..., 0]
        # Background and padding (white, even where subject 33 is transparent) are 0.
        assert video[:, :4].max() <= 2 and video[:, :, :4].max() <= 2


def test_frames_match_the_images(source, prepared):
    data_dir, _ = prepared
    record = _records(data_dir, "test")[-1]  # subject 33 (RGBA PNG)
    word = letters.LEXICON[record["word"]]
    samples = letters.choose_samples(0, 33, int(record["word"]))
    for k, (c, s) in enumerate(zip(word, samples)):
        with Image.open(os.path.join(source, "33", f"{c}_{s}.png")) as image:
            np.testing.assert_array_equal(record["video"][k], letters.preprocess_letter(image))


def test_second_run_rewrites_nothing_and_the_seed_counts(source, prepared, tmp_path):
    data_dir, path = prepared
    files = sorted(os.listdir(path))
    mtimes = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files}
    assert prep.prepare(source, data_dir) == (path, False)
    result = _run_prep(f"--source_dir={source}", f"--data_dir={data_dir}", "--seed=0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped:")
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files} == mtimes

    images = prep.scan(source)
    digest = prep.dataset_fingerprint(source, images, 0)
    assert prep.dataset_fingerprint(source, images, 1) != digest
    own_dir = str(tmp_path / "tfds")
    assert prep.prepare(source, own_dir, seed=1)[1] is True
    reseeded = _records(own_dir, "train")
    original = _records(data_dir, "train")
    assert [int(r["word"]) for r in reseeded] == [int(r["word"]) for r in original]  # same split
    assert any((a["video"] != b["video"]).any() for a, b in zip(reseeded, original))
    subject, w = USED_SUBJECTS[reseeded[0]["subject"]], int(reseeded[0]["word"])
    samples = letters.choose_samples(1, int(subject), w)
    assert [d[1] for d in map(decode_frame, reseeded[0]["video"])] == samples.tolist()


# ---- errors --------------------------------------------------------------------------------


def test_bad_inputs_are_named(tmp_path):
    root = str(tmp_path / "src")
    write_fixture(root)
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(prep.InputError, match="ISGL letters folder not found: .*nowhere"):
        prep.prepare(str(tmp_path / "nowhere"), data_dir)
    with pytest.raises(prep.InputError, match="no subject folder"):
        prep.prepare(str(tmp_path), data_dir)

    os.remove(os.path.join(root, "10", "k_2.jpg"))
    os.remove(os.path.join(root, "10", "z_1.jpg"))
    with pytest.raises(prep.InputError, match="subject 10 lacks the letter images k_2, z_1"):
        prep.prepare(root, data_dir)
    Image.new("L", (30, 50), 255).save(os.path.join(root, "10", "k_2.png"))  # png or jpg
    Image.new("L", (30, 50), 255).save(os.path.join(root, "10", "z_1.png"))

    bad = os.path.join(root, "33", "a_1.png")
    with open(bad, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(prep.InputError, match=re.escape(f"cannot read letter image {bad}")):
        prep.prepare(root, data_dir)
    assert not os.path.exists(os.path.join(data_dir, "letters", "1.0.0"))  # nothing written

    os.remove(os.path.join(root, "2", "e_1.png"))
    for args, needle in (
        ((f"--source_dir={tmp_path / 'nowhere'}",), "ISGL letters folder not found"),
        ((f"--source_dir={root}",), "subject 2 lacks the letter images e_1"),
    ):
        result = _run_prep(*args, f"--data_dir={data_dir}")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert lines[-1].startswith("error: ") and needle in lines[-1]
        assert [line for line in lines if not line.startswith("warning: ")] == lines[-1:]


# ---- registry ------------------------------------------------------------------------------


def test_registry_loads_the_build(prepared):
    data_dir, _ = prepared
    dataset = registry.load(
        ml_collections.ConfigDict({"name": "letters", "data_dir": data_dir}), "train"
    )
    assert dataset.video_shape == (7, 64, 64, 1)
    assert dataset.static_factors == ("subject",) and dataset.dynamic_factors == ("word",)
    assert dataset.frame_factors == ("letters",)
    assert dataset.num_classes == {"subject": 3, "word": 100}  # the build's subjects
    assert len(dataset.source) == 240
    assert letters.SPEC.num_classes == {"subject": 65, "word": 100}


def test_registry_names_the_command_when_unprepared(tmp_path):
    config = ml_collections.ConfigDict({"name": "letters", "data_dir": str(tmp_path)})
    with pytest.raises(registry.NotPreparedError) as error:
        registry.load(config, "train")
    message = str(error.value)
    assert "python -m data_prep.letters --source_dir=<the ISGL offline letters folder>" in message
    assert f"--data_dir={tmp_path}" in message


def test_prepare_for_tests_points_the_config_at_a_build(tmp_path):
    data_dir = str(tmp_path / "run" / "tfds")
    assert prepare_for_tests(data_dir) == {"data.data_dir": data_dir}
    config = ml_collections.ConfigDict({"name": "letters", "data_dir": data_dir})
    assert len(registry.load(config, "train").source) == 240
    assert [p for p in os.listdir(tmp_path / "run") if p != "tfds"][0].startswith("letters_source-")
