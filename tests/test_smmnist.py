"""Tests for Stochastic Moving MNIST: determinism, the motion rule, the digit pools, idx files."""

from __future__ import annotations

import copy
import gzip
import time
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from seqdis_jax.data import pipeline, registry
from seqdis_jax.data import smmnist as S

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = (ROOT.parent / "shared" / "data" / "mnist").resolve()
N_SEQ = 300
MAX_POS = S.SIZE - S.DIGIT_SIZE

needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"MNIST test split not found in {MNIST_DIR}",
)


def _write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    array = np.asarray(array)
    if array.dtype.itemsize > 1:
        array = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += np.array(array.shape, ">u4").tobytes()
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _resize(images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(i).resize((32, 32), Image.LANCZOS))
                     for i in images])


@pytest.fixture(scope="module")
def pools() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST test split not found in {MNIST_DIR}")
    return S._cached_pools(str(MNIST_DIR))  # shared with the registry.load test


@pytest.fixture(scope="module")
def records(pools) -> list[dict[str, np.ndarray]]:
    source = S.SMMNISTSource(*pools["train"], N_SEQ, seed=3, split="train")
    return [source[i] for i in range(N_SEQ)]


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_constants() -> None:
    assert (S.NUM_FRAMES, S.SIZE, S.DIGIT_SIZE, S.NUM_DIGITS) == (15, 64, 32, 2)
    assert S.STATIC_FACTORS == ("digits",) and S.DYNAMIC_FACTORS == ()
    assert S.NUM_CLASSES == {"digits": 100, "digit_1": 10, "digit_2": 10}
    assert S.TEST_POOL_START == 8000


def test_record_format(records) -> None:
    r = records[0]
    assert set(r) == {"video", "digits", "digit_1", "digit_2", "digit_index", "positions"}
    assert r["video"].shape == (15, 64, 64, 1) and r["video"].dtype == np.uint8
    assert r["positions"].shape == (15, 2, 2) and r["positions"].dtype == np.int32
    assert r["digit_index"].shape == (2,) and r["digit_index"].dtype == np.int32
    for key in ("digits", "digit_1", "digit_2"):
        assert np.asarray(r[key]).shape == () and np.asarray(r[key]).dtype == np.int32


def test_determinism_and_order(pools, records) -> None:
    images, labels = pools["train"]
    again = S.SMMNISTSource(images, labels, N_SEQ, seed=3, split="train")
    order = [17, 3, 250, 0, 3, 99]
    for i in order:  # a fresh source, out of order, repeated reads
        assert _equal(again[i], records[i])
    assert all(_equal(r, records[i]) for i, r in zip(order, again.__getitems__(order)))
    assert _equal(again[-1], records[-1])
    # A copy made through the pickling protocol, as a grain worker process receives it.
    assert _equal(copy.deepcopy(again)[42], records[42])
    assert not np.array_equal(records[0]["video"], records[1]["video"])
    other_seed = S.SMMNISTSource(images, labels, N_SEQ, seed=4, split="train")
    assert not np.array_equal(other_seed[0]["video"], records[0]["video"])
    as_test = S.SMMNISTSource(images, labels, N_SEQ, seed=3, split="test")  # split id in seed
    assert not np.array_equal(as_test[0]["positions"], records[0]["positions"])
    with pytest.raises(IndexError):
        again[N_SEQ]


def test_frames_are_the_clipped_sum_of_the_pasted_digits(pools, records) -> None:
    images, labels = pools["train"]
    clipped = 0
    for r in records[:40]:
        canvas = np.zeros((15, 64, 64), np.int32)
        for d, idx in enumerate(r["digit_index"]):
            for t, (y, x) in enumerate(r["positions"][:, d]):
                canvas[t, y:y + 32, x:x + 32] += images[idx]
        clipped += int((canvas > 255).sum())
        np.testing.assert_array_equal(r["video"][..., 0], np.minimum(canvas, 255))
        i, j = r["digit_index"]
        assert (r["digit_1"], r["digit_2"]) == (labels[i], labels[j])
        low, high = sorted((labels[i], labels[j]))
        assert r["digits"] == 10 * low + high  # the pair as seen: order of drawing is invisible
    assert clipped > 0  # overlapping strokes do saturate


def test_positions_inside_the_canvas_and_start_uniform(records) -> None:
    pos = np.stack([r["positions"] for r in records])  # (N, T, digit, 2)
    assert pos.min() == 0 and pos.max() == MAX_POS
    start = pos[:, 0].reshape(-1)
    assert set(np.unique(start)) == set(range(MAX_POS + 1))
    labels = np.array([r["digits"] for r in records])
    assert labels.min() >= 0 and labels.max() < 100 and len(np.unique(labels)) > 40
    assert np.all(labels // 10 <= labels % 10)  # ascending pairs only


def test_motion_rule_and_bounces(records) -> None:
    pos = np.stack([r["positions"] for r in records]).astype(int)  # (N, T, digit, 2)
    disp = np.diff(pos, axis=1)  # (N, T-1, digit, 2): displacement from frame t to t+1
    assert np.abs(disp).max() <= 4
    assert set(np.unique(disp[:, 0])) == set(range(-4, 5))  # initial velocities cover [-4, 4]
    p, before, after = pos[:, 1:-1], disp[:, :-1], disp[:, 1:]  # frames 1..T-2
    interior = (p > 0) & (p < MAX_POS)
    stays = interior & (pos[:, 2:] > 0) & (pos[:, 2:] < MAX_POS)  # no clamp in either step
    np.testing.assert_array_equal(after[stays], before[stays])  # velocity kept
    bounces = 0
    for n, t, d, a in zip(*np.nonzero(~interior)):
        v_in = before[n, t, d, a]
        towards = (v_in > 0) if p[n, t, d, a] == MAX_POS else (v_in < 0)
        if not towards:
            continue
        # Clamped at the border: the next move points back in; landing exactly on the border
        # moves 0 px once (clamped in place) and then back in.
        nxt = [int(v) for v in disp[n, t + 1:t + 3, d, a]]
        moving = [v for v in nxt if v != 0]
        if len(nxt) == 2:
            assert moving, (n, t, d, a, nxt)
        if moving:
            assert np.sign(moving[0]) == -np.sign(v_in), (n, t, d, a, nxt)
            assert 1 <= abs(moving[0]) <= 4
            bounces += 1
    assert bounces > 50


def test_disjoint_pools_from_the_test_split(pools) -> None:
    raw = S.read_idx(str(MNIST_DIR / "t10k-images-idx3-ubyte.gz"))
    raw_labels = S.read_idx(str(MNIST_DIR / "t10k-labels-idx1-ubyte.gz"))
    assert raw.shape == (10000, 28, 28) and raw_labels.shape == (10000,)
    (tr_img, tr_lab), (te_img, te_lab) = pools["train"], pools["test"]
    assert tr_img.shape == (8000, 32, 32) and te_img.shape == (2000, 32, 32)
    assert tr_img.dtype == te_img.dtype == np.uint8
    # The train pool is t10k digits [0, 8000), the test pool [8000, 10000): disjoint indices.
    np.testing.assert_array_equal(tr_lab, raw_labels[:8000])
    np.testing.assert_array_equal(te_lab, raw_labels[8000:])
    picks = [0, 1, 7999]
    np.testing.assert_array_equal(tr_img[picks], _resize(raw[picks]))
    np.testing.assert_array_equal(te_img[[0, 1999]], _resize(raw[[8000, 9999]]))
    test_source = S.SMMNISTSource(te_img, te_lab, 50, seed=0, split="test")
    assert max(int(test_source[i]["digit_index"].max()) for i in range(50)) < 2000


def test_full_mnist_files_are_used_when_present(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 2, 3, 4, 5], np.uint8), True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test)  # un-gzipped copies work too
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([7, 8, 9], np.uint8))
    pools = S.digit_pools(str(tmp_path))
    np.testing.assert_array_equal(pools["train"][0], _resize(train))
    np.testing.assert_array_equal(pools["train"][1], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(pools["test"][0], _resize(test))
    np.testing.assert_array_equal(pools["test"][1], [7, 8, 9])
    r = S.SMMNISTSource(*pools["train"], 4, seed=0, split="train")[2]
    assert r["video"].shape == (15, 64, 64, 1) and r["digit_index"].max() < 5
    # Without the train files a t10k set too small to split is an error, not a silent pool.
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).unlink()
    with pytest.raises(ValueError, match="8000"):
        S.digit_pools(str(tmp_path))


def test_read_idx_round_trip_and_errors(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    ints = np.array([-5, 0, 70000], np.int32)
    for gz in (False, True):
        out = S.read_idx(str(_write_idx(tmp_path / f"a{gz}", images, gz)))
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        np.testing.assert_array_equal(out, images)
        out = S.read_idx(str(_write_idx(tmp_path / f"b{gz}", ints, gz)))
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, ints)
    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"\x00\x01\x08\x01" + np.array([2], ">u4").tobytes() + b"\x00\x00")
    with pytest.raises(ValueError, match="bad-magic.*magic"):
        S.read_idx(str(bad))
    short = tmp_path / "short"
    short.write_bytes(_write_idx(tmp_path / "ok", images).read_bytes()[:-1])
    with pytest.raises(ValueError, match="short.*size"):
        S.read_idx(str(short))


def test_missing_directory_and_files(tmp_path: Path) -> None:
    missing = tmp_path / "no_mnist_here"
    with pytest.raises(registry.NotPreparedError) as info:
        S.digit_pools(str(missing))
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in message and "t10k-images-idx3-ubyte" in message
    assert "t10k-labels-idx1-ubyte" in message
    assert "--config.data.source_dir=<dir with the MNIST idx files>" in message
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8), True)
    with pytest.raises(registry.NotPreparedError, match="lacks t10k-labels-idx1-ubyte"):
        S.digit_pools(str(tmp_path))
    config = ml_collections.ConfigDict(
        dict(name="smmnist", source_dir=str(missing), num_train=4, num_test=4, seed=0))
    with pytest.raises(registry.NotPreparedError, match="source_dir"):
        registry.load(config, "train")


def test_registry_load(pools) -> None:
    config = ml_collections.ConfigDict(
        dict(name="smmnist", source_dir=str(MNIST_DIR), num_train=16, num_test=8, seed=0))
    test = registry.load(config, "test")
    assert isinstance(test, registry.Dataset)
    assert test.source[3]["video"].shape == (15, 64, 64, 1)
    assert len(test.source) == 8 and len(registry.load(config, "train").source) == 16
    assert test.video_shape == (15, 64, 64, 1)
    assert test.static_factors == ("digits",) and test.dynamic_factors == ()
    assert test.num_classes == {"digits": 100, "digit_1": 10, "digit_2": 10}
    assert test.source.images is pools["test"][0]  # the pools were read once
    batch = next(pipeline.eval_batches(test.source, 4))
    assert batch["video"].shape == (4, 15, 64, 64, 1) and batch["digits"].shape == (4,)


def test_generation_is_fast(pools) -> None:
    source = S.SMMNISTSource(*pools["train"], 200, seed=9, split="train")
    start = time.perf_counter()
    for i in range(200):
        source[i]
    assert time.perf_counter() - start < 2.0
