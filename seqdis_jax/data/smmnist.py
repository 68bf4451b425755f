"""Stochastic Moving MNIST (SM-MNIST), generated on the fly and deterministically from a seed.

Two MNIST digits move with random velocities on a black 64x64 grayscale canvas and bounce off
its borders, 15 frames per sequence (C-DSVAE App. C.1, after SVG (Denton & Fergus 2018) and
S3VAE). The static label ``digits`` is the digit pair in ascending order,
``10 * min(label_1, label_2) + max(label_1, label_2)`` (100 label values, 55 of them occur):
which digit was drawn first is not visible in the frames, so a judge could not recover an
order by drawing (the pair (3, 7) and (7, 3) are the same video). ``digit_1`` and ``digit_2``
keep the drawing order. There is no dynamic label (the motion is random, not a class).

Digit pools (`digit_pools`)
---------------------------
* With the full MNIST files in the source directory (``train-images-idx3-ubyte[.gz]`` and
  ``train-labels-idx1-ubyte[.gz]`` next to the ``t10k-*`` files) the train pool is the official
  60k training set and the test pool the official 10k test set.
* With only the ``t10k-*`` files (as in ``../shared/data/mnist``) the 10k test digits are split:
  indices ``[0, TEST_POOL_START)`` = [0, 8000) form the train pool and ``[8000, 10000)`` the test
  pool. The pools are disjoint, so no test sequence shows a digit image seen in training.
* Every digit is resized from 28x28 to ``DIGIT_SIZE`` = 32x32 with PIL's LANCZOS filter (as SVG).

Motion rule (SVG's stochastic moving MNIST), per digit, positions are top-left corners (y, x)
--------------------------------------------------------------------------------------------
* The digit image is drawn uniformly (with replacement) from the split's pool.
* Initial position: uniform integers in ``[0, SIZE - DIGIT_SIZE]`` = [0, 32] per coordinate; it
  is the position at frame 0.
* Velocity (dy, dx): uniform integers in [-4, 4] per component.
* Each step the position moves by the velocity. When a coordinate would leave [0, 32] it is
  clamped to that border and that velocity component is redrawn with magnitude uniform in
  [1, 4] pointing back into the canvas; the other component is kept. (A coordinate landing
  exactly on a border is inside, so it bounces on the following step, after a 0-pixel move.)
* Frame = the sum of the two digits pasted at their positions, clipped to 255 (uint8).

Record ``i`` of a split is generated from ``np.random.default_rng([seed, split_id, i])``
(split_id 0 = train, 1 = test), so it is the same whenever, wherever and in whatever order it
is read, and no sequences are stored.
"""

from __future__ import annotations

import functools
import gzip
import operator
import os
from typing import Any

import numpy as np
from PIL import Image

NUM_FRAMES = 15
SIZE = 64
DIGIT_SIZE = 32
NUM_DIGITS = 2
STATIC_FACTORS = ("digits",)
DYNAMIC_FACTORS = ()
NUM_CLASSES = {"digits": 100, "digit_1": 10, "digit_2": 10}
TEST_POOL_START = 8000

MAX_SPEED = 4  # velocity components are uniform integers in [-MAX_SPEED, MAX_SPEED]
SPLIT_IDS = {"train": 0, "test": 1}
_MAX_POS = SIZE - DIGIT_SIZE  # positions stay in [0, _MAX_POS]

# idx format: magic = 0x00 0x00 <type code> <ndim>, then ndim big-endian uint32 sizes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def read_idx(path: str) -> np.ndarray:
    """Reads an idx file (gzipped or plain, detected from its content) into a numpy array
    (native byte order); raises a ValueError naming the file when it is malformed."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e}).") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path}: not an idx file (bad magic number {raw[:4].hex() or '<empty>'}; "
            f"expected 0000 <type code> <ndim>)."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} bytes).")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: idx size mismatch: shape {shape} of {dtype} needs {expected} bytes, "
            f"the file holds {len(raw)}."
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(mnist_dir: str, name: str) -> str | None:
    for candidate in (name + ".gz", name):
        path = os.path.join(mnist_dir, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads an images/labels idx pair; images resized to DIGIT_SIZE (uint8 (N, 32, 32))."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}.")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"{labels_path}: expected {len(images)} labels (one per image of {images_path}), "
            f"got shape {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{labels_path}: labels outside [0, 9].")
    if images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
        images = np.stack([
            np.asarray(Image.fromarray(img).resize((DIGIT_SIZE, DIGIT_SIZE), Image.LANCZOS))
            for img in images
        ]) if len(images) else np.zeros((0, DIGIT_SIZE, DIGIT_SIZE), np.uint8)
    return images.astype(np.uint8), labels.astype(np.int32)


def digit_pools(mnist_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The digit pools {"train": (images, labels), "test": (images, labels)}: images uint8
    (N, 32, 32) (LANCZOS-resized from 28x28), labels int32 (N,).

    With the full MNIST files present (``train-images-idx3-ubyte`` + ``train-labels-idx1-ubyte``,
    gzipped or not) the train pool is the official 60k training set and the test pool the 10k
    test set. Otherwise (only ``t10k-*``, as in ../shared/data/mnist) the 10k test digits are
    split into disjoint pools: indices [0, TEST_POOL_START) = [0, 8000) train, [8000, 10000)
    test. Raises `registry.NotPreparedError` (a FileNotFoundError) when the directory or the
    t10k files are missing.
    """
    from seqdis_jax.data import registry  # lazily: generation itself needs numpy + PIL only

    test_paths = [_find(mnist_dir, name) for name in _TEST_FILES] if mnist_dir else [None] * 2
    if not mnist_dir or not os.path.isdir(mnist_dir) or None in test_paths:
        what = ("is not a directory" if not mnist_dir or not os.path.isdir(mnist_dir)
                else "lacks " + " / ".join(f"{n}[.gz]" for n, p in zip(_TEST_FILES, test_paths)
                                           if p is None))
        raise registry.NotPreparedError(
            f"SM-MNIST: the MNIST directory {mnist_dir!r} {what}. It needs the MNIST idx files "
            f"{_TEST_FILES[0]}.gz and {_TEST_FILES[1]}.gz (optionally also {_TRAIN_FILES[0]}.gz "
            f"and {_TRAIN_FILES[1]}.gz, then the official train set is the train pool; "
            f"un-gzipped copies work too). Fix: --config.data.source_dir=<dir with the MNIST idx "
            f"files>."
        )
    test = _read_pair(*test_paths)
    train_paths = [_find(mnist_dir, name) for name in _TRAIN_FILES]
    if None not in train_paths:
        return {"train": _read_pair(*train_paths), "test": test}
    images, labels = test
    if len(images) <= TEST_POOL_START:
        raise ValueError(
            f"{test_paths[0]}: {len(images)} digits; splitting the test set into train/test "
            f"pools at index {TEST_POOL_START} needs more (the MNIST test set has 10000)."
        )
    return {
        "train": (images[:TEST_POOL_START], labels[:TEST_POOL_START]),
        "test": (images[TEST_POOL_START:], labels[TEST_POOL_START:]),
    }


@functools.lru_cache(maxsize=4)
def _cached_pools(mnist_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pools = digit_pools(mnist_dir)
    for arrays in pools.values():
        for a in arrays:
            a.setflags(write=False)  # shared between every load of this directory
    return pools


def _trajectory(
    start: list[int], velocity: list[int], magnitude: list[list[int]]
) -> list[list[int]]:
    """Positions (NUM_FRAMES lists [y, x]) of one digit under the motion rule; ``magnitude[t][a]``
    is the speed in [1, 4] of a bounce of axis ``a`` at step ``t``."""
    pos, vel = list(start), list(velocity)
    out = [list(pos)]
    for t in range(NUM_FRAMES - 1):
        for a in range(2):
            p = pos[a] + vel[a]
            if p < 0:
                p, vel[a] = 0, magnitude[t][a]
            elif p > _MAX_POS:
                p, vel[a] = _MAX_POS, -magnitude[t][a]
            pos[a] = p
        out.append(list(pos))
    return out


def generate_sequence(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One SM-MNIST sequence from the digit pool (images uint8 (N, 32, 32), labels (N,)).

    Returns ``video`` uint8 (15, 64, 64, 1), int32 ``digits`` (= 10 * min + max of the two),
    ``digit_1``, ``digit_2``, ``digit_index`` (2,) (indices into the pool) and ``positions``
    (15, 2, 2) (frame, digit, (y, x) of the top-left corner).
    """
    index = rng.integers(0, len(images), NUM_DIGITS)
    start = rng.integers(0, _MAX_POS + 1, (NUM_DIGITS, 2)).tolist()
    velocity = rng.integers(-MAX_SPEED, MAX_SPEED + 1, (NUM_DIGITS, 2)).tolist()
    # Bounce speeds are drawn up front (one per digit, step and axis) and used when needed:
    # the same distribution as redrawing at the bounce, with a fixed number of draws.
    magnitude = rng.integers(1, MAX_SPEED + 1, (NUM_DIGITS, NUM_FRAMES - 1, 2)).tolist()
    positions = np.array(
        [_trajectory(start[d], velocity[d], magnitude[d]) for d in range(NUM_DIGITS)],
        dtype=np.int32,
    ).transpose(1, 0, 2)  # (T, digit, 2)

    canvas = np.zeros((NUM_FRAMES, SIZE, SIZE), np.uint16)
    for d in range(NUM_DIGITS):
        digit = images[index[d]]
        for t, (y, x) in enumerate(positions[:, d].tolist()):
            canvas[t, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE] += digit
    video = np.minimum(canvas, 255).astype(np.uint8)[..., None]
    first, second = int(labels[index[0]]), int(labels[index[1]])
    return {
        "video": video,
        "digits": np.int32(10 * min(first, second) + max(first, second)),
        "digit_1": np.int32(first),
        "digit_2": np.int32(second),
        "digit_index": index.astype(np.int32),
        "positions": positions,
    }


class SMMNISTSource:
    """Random-access source of ``num_sequences`` SM-MNIST sequences over a digit pool; record
    ``i`` comes from ``np.random.default_rng([seed, split_id, i])`` (train 0, test 1)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, num_sequences: int, seed: int, split: str
    ):
        if split not in SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
        if num_sequences < 1:
            raise ValueError(f"num_sequences must be positive, got {num_sequences}")
        if len(images) < 1 or len(images) != len(labels):
            raise ValueError(
                f"need a non-empty digit pool with one label per image, got {len(images)} images "
                f"and {len(labels)} labels")
        self.images, self.labels = images, labels
        self.num_sequences, self.seed, self.split = int(num_sequences), int(seed), split
        self._split_id = SPLIT_IDS[split]

    def __len__(self) -> int:
        return self.num_sequences

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        i = operator.index(index)
        if i < 0:
            i += self.num_sequences
        if not 0 <= i < self.num_sequences:
            raise IndexError(f"record {index} out of range [0, {self.num_sequences})")
        rng = np.random.default_rng([self.seed, self._split_id, i])
        return generate_sequence(self.images, self.labels, rng)

    def __getitems__(self, indices: Any) -> list[dict[str, np.ndarray]]:
        return [self[i] for i in indices]

    def __repr__(self) -> str:
        return (f"SMMNISTSource(split={self.split!r}, num_sequences={self.num_sequences}, "
                f"seed={self.seed}, pool={len(self.images)})")


def load(config: Any, split: str) -> Any:
    """`registry.Dataset` for `split` of SM-MNIST; ``config`` is ``config.data`` with
    ``source_dir`` (the MNIST folder), ``num_train``, ``num_test`` and ``seed``."""
    from seqdis_jax.data import registry

    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    source_dir = config.get("source_dir", None)
    source_dir = os.path.abspath(os.path.expanduser(source_dir)) if source_dir else ""
    images, labels = _cached_pools(source_dir)[split]
    num = config.num_train if split == "train" else config.num_test
    return registry.Dataset(
        source=SMMNISTSource(images, labels, num, config.seed, split),
        video_shape=(NUM_FRAMES, SIZE, SIZE, 1),
        static_factors=STATIC_FACTORS,
        dynamic_factors=DYNAMIC_FACTORS,
        num_classes=dict(NUM_CLASSES),
    )
