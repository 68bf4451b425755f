"""A tiny synthetic MUG release in the official layout, with its labels drawn in the pixels.

`write_fixture` writes ``<root>/subjects3/<subject>/<expression>/take<NNN>/img_<NNNN>.jpg``
for the six expressions (take k has ``frames[k % len(frames)]`` frames), and the layout's
variants: the last subject keeps its takes under ``session1/``, ``session2/`` (take k in
``session<k % 2 + 1>``); the first subject's ``surprise`` holds its frames directly (one take);
every subject has a ``neutral/`` take and each take a ``notes.txt`` (both ignored); the first
subject's ``anger`` has one more take of `SHORT_FRAMES` frames (skipped).

A frame (``size`` px square, drawn on a 96-px grid scaled to ``size``) shows:

* the subject: background ``(SUBJECT_STEP * int(subject), 100, 100)``;
* the expression: a white square at ``EXPRESSION_CELLS[expression index]``;
* the frame index ``i`` in its take: the top-left square, grey level ``FRAME_STEP * i``.

`read_frame_labels` reads (subject number, expression index, frame index) back from a 64x64
frame of the converted dataset (a full-frame centre crop).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np
from PIL import Image

from seqdis_jax.data import mug

SUBJECT_STEP = 50  # background red of subject "00s": 50 * s (s <= 5)
FRAME_STEP = 8  # grey level of frame i: 8 * i (i < 32)
SHORT_FRAMES = 10
CELL = 24  # px on the 96-px grid; 16 px in the 64x64 frames
COUNTER = (0, 0)  # (top, left) of the frame-index square on the 96-px grid
EXPRESSION_CELLS = ((36, 0), (36, 36), (36, 72), (72, 0), (72, 36), (72, 72))  # (top, left)


def frame_image(subject: str, expression: int, index: int, size: int = 96) -> Image.Image:
    """The fixture's frame ``index`` of a take of ``subject`` showing ``expression``."""
    number = int(subject)
    if not (1 <= number <= 5 and 0 <= index < 32):
        raise ValueError(f"the fixture draws subjects 001..005 and frames < 32, got {subject}")
    grid = np.empty((96, 96, 3), np.uint8)
    grid[:] = (SUBJECT_STEP * number, 100, 100)
    top, left = EXPRESSION_CELLS[expression]
    grid[top : top + CELL, left : left + CELL] = 255
    top, left = COUNTER
    grid[top : top + CELL, left : left + CELL] = FRAME_STEP * index
    image = Image.fromarray(grid)
    return image if size == 96 else image.resize((size, size), Image.Resampling.NEAREST)


def _cell(frame: np.ndarray, top: int, left: int) -> np.ndarray:
    """The inner half of a cell of the 96-px grid in a 64x64 frame (away from blurred edges)."""
    t, s = top * 2 // 3, CELL * 2 // 3
    left = left * 2 // 3
    return frame[t + s // 4 : t + 3 * s // 4, left + s // 4 : left + 3 * s // 4].astype(float)


def read_frame_labels(frame: np.ndarray) -> tuple[int, int, int]:
    """(subject number, expression index, frame index) drawn in a converted 64x64 frame."""
    assert frame.shape == (mug.SIZE, mug.SIZE, 3), frame.shape
    background = frame[4:12, 36:56, 0].astype(float).mean()  # right of the counter
    brightness = [_cell(frame, *cell)[..., 2].mean() for cell in EXPRESSION_CELLS]
    counter = _cell(frame, *COUNTER).mean()
    return (
        round(background / SUBJECT_STEP),
        int(np.argmax(brightness)),
        round(counter / FRAME_STEP),
    )


def _write_take(folder: str, subject: str, expression: int, num_frames: int, size: int) -> None:
    os.makedirs(folder, exist_ok=True)
    for i in range(num_frames):
        path = os.path.join(folder, f"img_{i:04d}.jpg")
        frame_image(subject, expression, i, size).save(path, quality=95)
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not a frame\n")


def write_fixture(
    root: str,
    subjects: Sequence[str] = ("001", "002", "003"),
    takes_per_expression: int = 2,
    frames: Sequence[int] = (18, 31),
    size: int = 96,
) -> str:
    """Writes the synthetic release under ``root`` and returns ``<root>/subjects3``."""
    release = os.path.join(root, mug.RELEASE_DIR)
    for s, subject in enumerate(subjects):
        sessions = s == len(subjects) - 1 and len(subjects) > 1
        for e, expression in enumerate(mug.EXPRESSIONS):
            if s == 0 and expression == "surprise":  # frames held directly: one take
                folder = os.path.join(release, subject, expression)
                _write_take(folder, subject, e, frames[0], size)
                continue
            for k in range(takes_per_expression):
                parts = [subject, f"session{k % 2 + 1}"] if sessions else [subject]
                folder = os.path.join(release, *parts, expression, f"take{k:03d}")
                _write_take(folder, subject, e, frames[k % len(frames)], size)
            if s == 0 and expression == "anger":
                folder = os.path.join(release, subject, expression, f"take{k + 1:03d}")
                _write_take(folder, subject, e, SHORT_FRAMES, size)
        _write_take(os.path.join(release, subject, "neutral", "take000"), subject, 0, 20, size)
    return release


def expected_videos(
    subjects: Sequence[str] = ("001", "002", "003"), takes_per_expression: int = 2
) -> int:
    """The number of usable takes `write_fixture` writes."""
    return len(subjects) * len(mug.EXPRESSIONS) * takes_per_expression - (takes_per_expression - 1)


def prepare_for_tests(data_dir: str) -> dict:
    """Writes the fixture in a temporary folder next to ``data_dir``, prepares it into
    ``data_dir`` and returns the config overrides that train on it."""
    from data_prep import mug as prep

    data_dir = os.path.abspath(data_dir)
    parent = os.path.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    source = tempfile.mkdtemp(prefix="mug_source-", dir=parent)
    try:
        prep.prepare(write_fixture(source), data_dir)
    finally:
        shutil.rmtree(source)
    return {"data.data_dir": data_dir}
