"""Sprites: composition and frame rules of the authors' scripts, the TF-free TFDS ArrayRecord
writer/reader, the data_prep app (idempotence, errors) and the registry entry.

Uses the real LPC sheets in ../shared/data/sprites_lpc (skipped when absent).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import grain
import ml_collections
import numpy as np
import pytest
from PIL import Image

from data_prep import sprites as prep
from seqdis_jax.data import array_record, registry, sprites

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHEETS = os.path.join(ROOT, "..", "shared", "data", "sprites_lpc")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(SHEETS), reason=f"LPC sheets not found at {SHEETS}"
)

CHARACTER = 1116  # perm[0] of the authors' split: a training character
LABELS_1116 = {"skin": 5, "pants": 1, "top": 0, "hair": 0}  # 1116 = 5*216 + 1*36


def _cell(composite: np.ndarray, row: int, col: int) -> np.ndarray:
    return composite[row * 64 : (row + 1) * 64, col * 64 : (col + 1) * 64]


def _motion(action: str, direction: str) -> int:
    return 3 * sprites.ACTIONS.index(action) + sprites.DIRECTIONS.index(direction)


@pytest.fixture(scope="module")
def sheets():
    return sprites.load_sheets(SHEETS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 2-character build (1116 train, one test character) in a fresh data dir."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    path, written = prep.prepare(SHEETS, data_dir, num_characters=2)
    assert written
    return data_dir, path


def _copy_sheets(tmp_path) -> str:
    source = tmp_path / "sheets"
    for name in sprites.SHEET_FILES:
        os.makedirs(source / os.path.dirname(name), exist_ok=True)
        shutil.copy(os.path.join(SHEETS, name), source / name)
    return str(source)


def _run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_prep.sprites", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---- protocol ----------------------------------------------------------------------------


def test_split_is_the_authors_permutation():
    train, test = sprites.split_characters()
    np.random.seed(423)  # frame_to_npy.py, verbatim
    perm = np.random.permutation(1296)
    np.testing.assert_array_equal(train, perm[:1000])
    np.testing.assert_array_equal(test, perm[1000:])
    assert train[0] == CHARACTER and len(test) == 296
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(1296))
    assert sprites.character_labels(CHARACTER) == LABELS_1116
    sub_train, sub_test = sprites.subset_characters(2)
    assert sub_train.tolist() == [CHARACTER] and sub_test.tolist() == [test[0]]


def test_composite_is_alpha_over_black(sheets):
    composite = sprites.compose_character(sheets, CHARACTER)
    assert composite.shape == (1344, 832, 3) and composite.dtype == np.uint8
    layers = [np.asarray(sheets[n]) for n in ("body/5.png", "bottomwear/1.png", "topwear/0.png")]
    layers += [np.asarray(sheets[n]) for n in ("hair/0.png", "shoes/1.png")]
    alpha = np.stack([layer[..., 3] for layer in layers])
    # Where no layer covers a pixel it is black; where the top (shoes) layer is opaque, it wins.
    assert (alpha == 0).all(0).any() and (composite[(alpha == 0).all(0)] == 0).all()
    opaque_shoes = alpha[-1] == 255
    assert opaque_shoes.any()
    np.testing.assert_array_equal(composite[opaque_shoes], layers[-1][..., :3][opaque_shoes])
    # Where only the body is opaque and nothing above it is drawn: the body's colour.
    body_only = (alpha[0] == 255) & (alpha[1:] == 0).all(0)
    np.testing.assert_array_equal(composite[body_only], layers[0][..., :3][body_only])


def test_frame_rules(sheets):
    composite = sprites.compose_character(sheets, CHARACTER)
    video = sprites.character_sequences(sheets, CHARACTER)["video"]
    assert video.shape == (9, 8, 64, 64, 3) and video.dtype == np.uint8
    walk_left = video[_motion("walk", "left")]
    np.testing.assert_array_equal(walk_left[0], _cell(composite, 9, 8))  # standing pose first
    np.testing.assert_array_equal(walk_left[1], _cell(composite, 9, 1))
    np.testing.assert_array_equal(video[_motion("walk", "front"), 7], _cell(composite, 10, 7))
    np.testing.assert_array_equal(video[_motion("walk", "right"), 0], _cell(composite, 11, 8))
    assert not np.array_equal(walk_left[0], walk_left[1])  # the frames do differ
    for direction, row in (("left", 1), ("front", 2), ("right", 3)):
        spell = video[_motion("spellcast", direction)]
        np.testing.assert_array_equal(spell[6], spell[4])
        np.testing.assert_array_equal(spell[5], _cell(composite, row, 5))
        np.testing.assert_array_equal(spell[7], _cell(composite, row, 6))
    for direction, row in (("left", 13), ("front", 14), ("right", 15)):
        slash = video[_motion("slash", direction)]
        np.testing.assert_array_equal(slash[7], slash[0])
        np.testing.assert_array_equal(slash[6], slash[4])
        np.testing.assert_array_equal(slash[0], _cell(composite, row, 0))
        np.testing.assert_array_equal(slash[5], _cell(composite, row, 5))


def test_labels_and_generate():
    train, test = sprites.subset_characters(2)
    data = sprites.generate(SHEETS, [CHARACTER, int(test[0])])
    assert data["video"].shape == (18, 8, 64, 64, 3) and data["video"].dtype == np.uint8
    for key in sprites.LABEL_KEYS:
        assert data[key].shape == (18,) and data[key].dtype == np.int32, key
    np.testing.assert_array_equal(data["motion"], np.tile(np.arange(9), 2))
    np.testing.assert_array_equal(data["action"], data["motion"] // 3)
    np.testing.assert_array_equal(data["direction"], data["motion"] % 3)
    assert sprites.MOTIONS[4] == "spellcast_left"
    for key, value in LABELS_1116.items():
        assert (data[key][:9] == value).all(), key
    other = sprites.character_labels(int(test[0]))
    assert [data[k][9] for k in sprites.STATIC_FACTORS] == [
        other[k] for k in sprites.STATIC_FACTORS
    ]
    np.testing.assert_array_equal(data["character"], [CHARACTER] * 9 + [test[0]] * 9)


# ---- writer / reader -----------------------------------------------------------------------


def test_round_trip_is_bit_exact(prepared):
    data_dir, path = prepared
    assert path == os.path.join(data_dir, "sprites_subset_2", "1.0.0")
    for split, ids in zip(("train", "test"), sprites.subset_characters(2)):
        expected = sprites.generate(SHEETS, ids)
        source = array_record.load_split("sprites_subset_2", data_dir, split)
        assert len(source) == 9
        for i in range(len(source)):
            record = source[i]
            assert set(record) == set(expected)
            for key, value in record.items():
                assert value.dtype == expected[key].dtype, key
                np.testing.assert_array_equal(value, expected[key][i], err_msg=key)
    assert importlib.util.find_spec("tensorflow") is None
    assert "tensorflow" not in sys.modules


def test_generic_round_trip_and_grain(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.normal(size=(5, 3, 2)).astype(np.float32),
        "label": np.array([0, 2, 1, 1, 0], np.int32),
        "id": np.arange(5, dtype=np.int64) * 10**12,
    }
    features = {
        "x": array_record.Feature("float32", (3, 2)),
        "label": array_record.Feature("int32", names=("a", "b", "c")),
        "id": array_record.Feature("int64"),
    }
    array_record.write_dataset("toy", tmp_path, {"train": arrays}, features, fingerprint="f1")
    source = array_record.load_split("toy", tmp_path, "train")
    for i in range(5):
        for key in arrays:
            assert source[i][key].dtype == arrays[key].dtype
            np.testing.assert_array_equal(source[i][key], arrays[key][i])
    pair = source.__getitems__([4, 1])
    assert pair[0]["id"] == arrays["id"][4] and pair[1]["label"].dtype == np.int32
    assert source.info.features["label"].names == ["a", "b", "c"]
    assert array_record.read_metadata("toy", tmp_path, "1.0.0")["fingerprint"] == "f1"
    batch = grain.MapDataset.source(source).batch(5)[0]
    np.testing.assert_array_equal(batch["x"], arrays["x"])
    with pytest.raises(ValueError, match="splits"):
        array_record.load_split("toy", tmp_path, "test")


def test_records_decode_without_protobuf_as_tfds_decodes_them(tmp_path):
    """`ArrayRecordSource` reads the tf.train.Example wire format itself (protobuf's upb
    messages call malloc_trim(0) when freed): every record equals TFDS's own decoding, for
    byte tensors of several dtypes, class labels and scalars (negative int64 included)."""
    rng = np.random.default_rng(1)
    n = 7
    arrays = {
        "video": rng.integers(0, 256, size=(n, 2, 4, 4, 3), dtype=np.uint8),
        "features": rng.normal(size=(n, 3, 5)).astype(np.float32),
        "wide": rng.normal(size=(n, 2)).astype(np.float64),
        "count": rng.integers(-5, 5, size=(n, 4)).astype(np.int16),
        "label": rng.integers(0, 3, size=n).astype(np.int32),
        "id": np.array([-(2**40), -1, 0, 1, 2**62, 300, 127], np.int64),
        "level": rng.normal(size=n).astype(np.float32),
    }
    features = {
        "video": array_record.Feature("uint8", (2, 4, 4, 3)),
        "features": array_record.Feature("float32", (3, 5)),
        "wide": array_record.Feature("float64", (2,)),
        "count": array_record.Feature("int16", (4,)),
        "label": array_record.Feature("int32", names=("a", "b", "c")),
        "id": array_record.Feature("int64"),
        "level": array_record.Feature("float32"),
    }
    array_record.write_dataset("wire", tmp_path, {"train": arrays}, features)
    source = array_record.load_split("wire", tmp_path, "train")
    assert source.decoder == "wire"  # the default wherever it can read every feature
    ours = [source[i] for i in range(n)] + source.__getitems__([6, 0])
    source.decoder = "tfds"
    with pytest.raises(ValueError, match="'wire' or 'tfds'"):
        source.decoder = "protobuf"
    theirs = [source[i] for i in range(n)] + source.__getitems__([6, 0])
    for mine, tfds_record in zip(ours, theirs):
        assert mine.keys() == tfds_record.keys() == arrays.keys()
        for key in mine:
            assert mine[key].dtype == tfds_record[key].dtype == arrays[key].dtype, key
            np.testing.assert_array_equal(mine[key], tfds_record[key])
    for i in range(n):
        for key in arrays:
            np.testing.assert_array_equal(ours[i][key], arrays[key][i])


def test_malformed_records_are_refused():
    shapes, dtypes = {"v": (2,)}, {"v": np.dtype(np.uint8)}
    # Example{features{feature{key: "v", value{bytes_list{value: b"\\x01\\x02"}}}}}
    good = bytes([0x0A, 0x0D, 0x0A, 0x0B, 0x0A, 0x01, 0x76, 0x12, 0x06, 0x0A, 0x04, 0x0A, 0x02,
                  0x01, 0x02])
    np.testing.assert_array_equal(array_record.decode_example(good, shapes, dtypes)["v"], [1, 2])
    with pytest.raises(ValueError, match="runs past"):
        array_record.decode_example(good[:-1], shapes, dtypes)
    with pytest.raises(ValueError, match="no feature"):
        array_record.decode_example(b"", shapes, dtypes)
    with pytest.raises(ValueError, match="cannot reshape"):
        array_record.decode_example(good, {"v": (3,)}, dtypes)


def test_failed_write_keeps_the_prepared_dataset(tmp_path):
    features = {"v": array_record.Feature("uint8", (2,))}
    good = {"train": {"v": np.ones((3, 2), np.uint8)}}
    path = array_record.write_dataset("keep", tmp_path, good, features, fingerprint="old")
    before = {f: os.path.getmtime(os.path.join(path, f)) for f in os.listdir(path)}

    def failing():
        yield {"v": np.zeros(2, np.uint8)}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        array_record.write_dataset("keep", tmp_path, {"train": failing()}, features)
    with pytest.raises(ValueError, match="feature 'v' needs uint8"):
        array_record.write_dataset("keep", tmp_path, {"train": [{"v": np.zeros(2)}]}, features)
    with pytest.raises(ValueError, match="expected"):
        array_record.write_dataset("keep", tmp_path, good, features, expected_sizes={"train": 4})
    assert os.listdir(tmp_path / "keep") == ["1.0.0"]  # no staging directory left behind
    assert {f: os.path.getmtime(os.path.join(path, f)) for f in os.listdir(path)} == before
    assert array_record.read_metadata("keep", tmp_path, "1.0.0")["fingerprint"] == "old"
    np.testing.assert_array_equal(array_record.load_split("keep", tmp_path, "train")[2]["v"], 1)


# ---- data_prep -----------------------------------------------------------------------------


def test_second_run_rewrites_nothing(prepared):
    data_dir, path = prepared
    files = sorted(os.listdir(path))
    mtimes = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files}
    assert prep.prepare(SHEETS, data_dir, num_characters=2) == (path, False)
    result = _run_prep(f"--source_dir={SHEETS}", f"--data_dir={data_dir}", "--characters=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped:")
    assert sorted(os.listdir(path)) == files
    assert {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in files} == mtimes


def test_changed_sheet_rebuilds(tmp_path, prepared):
    data_dir, _ = prepared
    source = _copy_sheets(tmp_path)
    own_dir = str(tmp_path / "tfds")
    shutil.copytree(data_dir, own_dir)
    assert prep.prepare(source, own_dir, num_characters=2)[1] is False  # same bytes: skipped
    image = Image.open(os.path.join(source, "shoes/1.png")).convert("RGBA")
    Image.new("RGBA", image.size, (0, 0, 0, 0)).save(os.path.join(source, "shoes/1.png"))
    assert prep.prepare(source, own_dir, num_characters=2)[1] is True  # new fingerprint
    assert sorted(os.listdir(os.path.join(own_dir, "sprites_subset_2"))) == ["1.0.0"]


def test_bad_inputs_are_named(tmp_path, sheets):
    missing_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        sprites.load_sheets(missing_dir)
    source = _copy_sheets(tmp_path)
    os.remove(os.path.join(source, "hair", "3.png"))
    with pytest.raises(FileNotFoundError, match="hair/3.png"):
        sprites.load_sheets(source)
    sheets["hair/0.png"].save(os.path.join(source, "hair", "3.png"))
    Image.new("RGBA", (64, 128)).save(os.path.join(source, "topwear", "2.png"))
    with pytest.raises(ValueError, match=r"topwear/2.png is 64x128"):
        sprites.load_sheets(source)
    with pytest.raises(prep.InputError, match="num_characters"):
        prep.prepare(SHEETS, str(tmp_path / "tfds"), num_characters=1)

    data_dir = f"--data_dir={tmp_path / 'tfds'}"
    for args, needle in (
        ((f"--source_dir={missing_dir}",), missing_dir),
        ((f"--source_dir={source}",), os.path.join(source, "topwear", "2.png") + " is 64x128"),
        ((), "--source_dir=<path to the LPC sheets> is required"),
    ):
        result = _run_prep(*args, data_dir)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert needle in result.stderr
    assert not os.path.exists(tmp_path / "tfds")  # nothing written on bad input


def test_download_from_a_mirror(tmp_path):
    cache = str(tmp_path / "cache")
    assert prep.download_sheets(cache, base_url="file://" + os.path.abspath(SHEETS)) == cache
    for name in sprites.SHEET_FILES:
        with (
            open(os.path.join(cache, name), "rb") as a,
            open(os.path.join(SHEETS, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    mtime = os.stat(os.path.join(cache, "shoes", "1.png")).st_mtime_ns
    prep.download_sheets(cache, base_url="file:///nonexistent")  # all cached: nothing fetched
    assert os.stat(os.path.join(cache, "shoes", "1.png")).st_mtime_ns == mtime
    with pytest.raises(prep.InputError, match="cannot download file:///nonexistent/body/0.png"):
        prep.download_sheets(str(tmp_path / "other"), base_url="file:///nonexistent")


# ---- registry ------------------------------------------------------------------------------


def test_registry_loads_a_prepared_build(prepared):
    data_dir, _ = prepared
    config = ml_collections.ConfigDict(
        {"name": "sprites", "data_dir": data_dir, "tfds_name": "sprites_subset_2"}
    )
    dataset = registry.load(config, "test")
    assert dataset.video_shape == (8, 64, 64, 3)
    assert dataset.static_factors == ("skin", "pants", "top", "hair")
    assert dataset.dynamic_factors == ("motion",)
    assert dataset.num_classes["motion"] == 9 and dataset.num_classes["hair"] == 6
    assert len(dataset.source) == 9 and dataset.source[3]["video"].shape == (8, 64, 64, 3)


def test_registry_names_the_command_when_unprepared(tmp_path):
    config = ml_collections.ConfigDict({"name": "sprites", "data_dir": str(tmp_path)})
    with pytest.raises(FileNotFoundError) as error:
        registry.load(config, "train")
    message = str(error.value)
    assert "python -m data_prep.sprites --source_dir=<path to the LPC sheets>" in message
    assert f"--data_dir={tmp_path}" in message
