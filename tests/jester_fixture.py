"""A tiny synthetic copy of 20BN-jester v1 in its published layout, for tests.

``<root>/20bn-jester-v1/<video id>/00001.jpg, ...`` (100x132 px JPEGs) and the four
``jester-v1-*.csv`` files. Each of SPYL's five gestures has 3 train and 2 validation videos;
"Thumb Up" and "Doing other things" videos (one with only 4 frames) must be ignored. Videos have
12..40 frames. The pixels say what a frame is, so that a converted frame can be read back:

* inside the central 100x100 square, an upper grey block of level ``20 + 5 * k`` (k = the
  frame's 0-based index in its video) and a lower grey block of level ``20 + 8 * g`` (g = the
  gesture's line in the labels CSV), on black;
* the margins that the center crop removes (16 px each side) are pure red.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from PIL import Image

# The 27 names of jester-v1-labels.csv, deliberately not in GESTURES' order.
LABELS = (
    "Swiping Left",
    "Swiping Right",
    "Swiping Down",
    "Swiping Up",
    "Sliding Two Fingers Right",
    "Pushing Hand Away",
    "Pulling Hand In",
    "Sliding Two Fingers Left",
    "Sliding Two Fingers Down",
    "Sliding Two Fingers Up",
    "Pushing Two Fingers Away",
    "Pulling Two Fingers In",
    "Rolling Hand Forward",
    "Rolling Hand Backward",
    "Turning Hand Clockwise",
    "Turning Hand Counterclockwise",
    "Zooming In With Full Hand",
    "Zooming Out With Full Hand",
    "Zooming In With Two Fingers",
    "Zooming Out With Two Fingers",
    "Thumb Up",
    "Thumb Down",
    "Shaking Hand",
    "Stop Sign",
    "Drumming Fingers",
    "No gesture",
    "Doing other things",
)
FIVE = (
    "Pushing Hand Away",
    "Rolling Hand Forward",
    "Shaking Hand",
    "Sliding Two Fingers Left",
    "Sliding Two Fingers Right",
)
HEIGHT, WIDTH = 100, 132
MARGIN = (WIDTH - HEIGHT) // 2  # what the center crop removes on each side
TRAIN_PER_GESTURE, VALIDATION_PER_GESTURE = 3, 2
SHORT_VIDEO_FRAMES = 4  # an ignored gesture's video: too short, yet no error


def frame_level(k: int) -> int:
    return 20 + 5 * k


def gesture_level(gesture: str) -> int:
    return 20 + 8 * LABELS.index(gesture)


def frame_pixels(k: int, gesture: str) -> np.ndarray:
    """The uint8 (100, 132, 3) frame ``k`` of a video of ``gesture``."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[:, :MARGIN] = pixels[:, WIDTH - MARGIN :] = (255, 0, 0)
    pixels[8:44, MARGIN + 8 : MARGIN + 92] = frame_level(k)
    pixels[56:92, MARGIN + 8 : MARGIN + 92] = gesture_level(gesture)
    return pixels


def decode_frame(frame: np.ndarray) -> tuple[int, str]:
    """(0-based frame index, gesture name) read back from a converted (64, 64, 3) frame: the
    blocks' centers land near rows 16.6 and 47.4, column 32 (scale 0.64)."""
    upper = frame[14:20, 28:37].astype(float).mean()
    lower = frame[45:51, 28:37].astype(float).mean()
    return round((upper - 20) / 5), LABELS[round((lower - 20) / 8)]


def _write_video(folder: str, num_frames: int, gesture: str) -> None:
    os.makedirs(folder)
    for k in range(num_frames):
        image = Image.fromarray(frame_pixels(k, gesture))
        image.save(os.path.join(folder, f"{k + 1:05d}.jpg"), quality=95, subsampling=0)


def write_fixture(root: str, seed: int = 0) -> dict[str, list[tuple[int, str, int]]]:
    """Writes the fixture under ``root`` and returns, per CSV ("train", "validation"), its rows
    in file order as (video id, gesture name, number of frames), ignored gestures included."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "validation": []}
    for gesture in FIVE:
        rows["train"] += [(gesture, int(rng.integers(12, 41))) for _ in range(TRAIN_PER_GESTURE)]
        rows["validation"] += [
            (gesture, int(rng.integers(12, 41))) for _ in range(VALIDATION_PER_GESTURE)
        ]
    rows["train"] += [("Thumb Up", 15), ("Doing other things", SHORT_VIDEO_FRAMES)]
    rows["validation"] += [("Thumb Up", 22)]
    videos_dir = os.path.join(root, "20bn-jester-v1")
    os.makedirs(videos_dir, exist_ok=True)
    listed: dict[str, list[tuple[int, str, int]]] = {}
    next_id = 1001
    for csv, csv_rows in rows.items():
        order = rng.permutation(len(csv_rows))
        listed[csv] = []
        for i in order:
            gesture, num_frames = csv_rows[i]
            _write_video(os.path.join(videos_dir, str(next_id)), num_frames, gesture)
            listed[csv].append((next_id, gesture, num_frames))
            next_id += 7
        with open(os.path.join(root, f"jester-v1-{csv}.csv"), "w") as f:
            f.writelines(f"{vid};{gesture}\n" for vid, gesture, _ in listed[csv])
    with open(os.path.join(root, "jester-v1-labels.csv"), "w") as f:
        f.writelines(f"{name}\n" for name in LABELS)
    with open(os.path.join(root, "jester-v1-test.csv"), "w") as f:
        f.write(f"{next_id}\n")  # ids only; its video is not shipped here
    return listed


def prepare_for_tests(data_dir: str) -> dict[str, str]:
    """Writes the fixture into a fresh folder next to ``data_dir``, prepares it into
    ``data_dir`` and returns the config overrides that point training at that build."""
    from data_prep import jester as prep

    data_dir = os.path.abspath(data_dir)
    parent = os.path.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    source = tempfile.mkdtemp(prefix="jester_source-", dir=parent)
    write_fixture(source)
    prep.prepare(source, data_dir)
    return {"data.data_dir": data_dir}
