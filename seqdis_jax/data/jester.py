"""The Jester gestures benchmark of SPYL (App. A.1), cut from 20BN-jester v1.

Published layout (20BN's release, as documented by e.g. the TSM and MMAction2 Jester notes),
``<root>`` being the folder passed as ``--source_dir``:

* ``<root>/20bn-jester-v1/<video id>/00001.jpg, 00002.jpg, ...``: one folder of JPEG frames per
  video (100 px high, variable width, ~12 fps, ~36 frames), numbered from 00001.
* ``<root>/jester-v1-labels.csv``: the 27 gesture names, one a line.
* ``<root>/jester-v1-train.csv``, ``<root>/jester-v1-validation.csv``: lines
  ``<video id>;<gesture name>``; ``jester-v1-test.csv`` lists ids only (unlabelled, unused).

Rules (SPYL App. A.1, "we used five gestures ... we extracted videos with 10 frames where the gap
between two frames has been selected by taking the total sequence length divided by 10"):

* Gestures `GESTURES` only, class index = position in `GESTURES`; every other gesture is ignored.
* A video of ``n`` frames (its ``*.jpg`` files in numeric order) gives the frames at 0-based
  indices ``i * (n // 10)`` for ``i = 0..9`` (`frame_indices`); fewer than 10 frames is an error.
* Each frame: RGB, center-cropped to a square of side ``min(H, W)``, resized to 64x64 with PIL
  LANCZOS (antialiased), kept as uint8.
* Splits: the official train CSV is ``train``; the official validation CSV is ``test`` (the test
  CSV has no labels). Records keep the CSV order. (SPYL states no split and its public code,
  github.com/azencot-group/SPYL, has no Jester loader.)

Only dynamic labels exist (the subjects are not labelled): ``gesture``; records also hold the
``video_id`` (the numeric folder name).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from seqdis_jax.data import images
from seqdis_jax.data.registry import PreparedSpec

TFDS_NAME = "jester"
TFDS_VERSION = "1.0.0"

GESTURES = (
    "Pushing Hand Away",
    "Rolling Hand Forward",
    "Shaking Hand",
    "Sliding Two Fingers Left",
    "Sliding Two Fingers Right",
)  # SPYL App. A.1; class index = position
NUM_FRAMES = 10
FRAME_SIZE = 64  # px, square
STATIC_FACTORS: tuple[str, ...] = ()
DYNAMIC_FACTORS = ("gesture",)
NUM_CLASSES = {"gesture": len(GESTURES)}

VIDEO_DIR = "20bn-jester-v1"
LABELS_CSV = "jester-v1-labels.csv"
SPLIT_CSVS = {"train": "jester-v1-train.csv", "test": "jester-v1-validation.csv"}
FRAME_EXTENSION = ".jpg"

SPEC = PreparedSpec(
    tfds_name=TFDS_NAME,
    video_shape=(NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3),
    static_factors=STATIC_FACTORS,
    dynamic_factors=DYNAMIC_FACTORS,
    num_classes=NUM_CLASSES,
    prepare_command=(
        "python -m data_prep.jester "
        "--source_dir=<folder holding 20bn-jester-v1/ and the jester-v1-*.csv files>"
    ),
)


def frame_indices(num_video_frames: int) -> np.ndarray:
    """0-based indices of the `NUM_FRAMES` frames kept from a video of ``num_video_frames``:
    ``i * (n // 10)`` (SPYL: the gap is the sequence length divided by 10)."""
    if num_video_frames < NUM_FRAMES:
        raise ValueError(f"a video needs at least {NUM_FRAMES} frames, got {num_video_frames}")
    return np.arange(NUM_FRAMES) * (num_video_frames // NUM_FRAMES)


def read_gesture_names(path: str) -> list[str]:
    """The gesture names of ``jester-v1-labels.csv`` (one a line; blank lines skipped)."""
    with open(path, encoding="utf-8-sig") as f:
        return [line.strip() for line in f if line.strip()]


def read_split_csv(path: str) -> list[tuple[int, str]]:
    """(video id, gesture name) of each line ``<video id>;<gesture name>`` of a split CSV.

    Raises ValueError naming the file and line of a malformed one.
    """
    entries = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            video_id, sep, gesture = line.strip().partition(";")
            if not sep or not video_id.strip().isdigit():
                raise ValueError(
                    f"{path} line {number}: expected '<video id>;<gesture name>', "
                    f"got {line.strip()!r}"
                )
            entries.append((int(video_id), gesture.strip()))
    return entries


def frame_files(video_dir: str) -> list[str]:
    """The frame file names of a video folder (``*.jpg``), in numeric order of their stems."""
    names = [n for n in os.listdir(video_dir) if n.lower().endswith(FRAME_EXTENSION)]

    def key(name: str) -> tuple[int, int | str]:
        stem = name[: -len(FRAME_EXTENSION)]
        return (0, int(stem)) if stem.isdigit() else (1, stem)

    return sorted(names, key=key)


def preprocess_frame(image: Image.Image) -> np.ndarray:
    """A frame as uint8 (64, 64, 3): RGB, center-cropped to a square of side min(H, W), resized
    with LANCZOS."""
    image = image.convert("RGB")
    square = image.crop(images.center_square(image.size))
    return np.asarray(images.resize(square, FRAME_SIZE), dtype=np.uint8)


def load_frame(path: str) -> np.ndarray:
    """`preprocess_frame` of the image at ``path``; ValueError naming it when unreadable."""
    return preprocess_frame(images.read_image(path, "RGB", "frame"))


def load_video(paths: list[str]) -> np.ndarray:
    """The `NUM_FRAMES` frames at ``paths`` (already selected), as uint8 (10, 64, 64, 3)."""
    return np.stack([load_frame(p) for p in paths])
