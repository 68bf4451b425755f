"""A tiny synthetic copy of the ISGL offline letters in the layout `data_prep.letters` reads.

``<root>/<subject id>/<letter>_<sample>.<ext>`` for subjects 2, 10 and 33 (all 26 letters, 2
samples each) and subject 61, which lacks some letters (as in the real release, it must be
excluded). The subjects differ in format so that the conversion is exercised on each: 2 is
grayscale PNG, 80x120 (portrait); 10 is RGB JPEG, 80x120; 33 is RGBA PNG, 120x80 (landscape),
on a transparent background. The pixels say what an image is: in the 120x120 white square
that padding makes of it, an upper block (rows 20..55, columns 25..95) of ink level
``30 + 8 * letter`` and a lower block (rows 65..100) of ink level
``40 + 100 * (sample - 1) + 25 * position of the subject in SUBJECTS`` (ink level = 255 - grey).
"""

from __future__ import annotations

import os
import string
import tempfile

import numpy as np
from PIL import Image

SUBJECTS = ("2", "10", "33", "61")  # numeric order differs from the string order
USED_SUBJECTS = ("2", "10", "33")
MISSING_61 = ("q_1", "x_2", "z_1", "z_2")
SIDE = 120  # the padded square, source px
LONG, SHORT = 120, 80


def letter_level(letter: str) -> int:
    return 30 + 8 * string.ascii_lowercase.index(letter)


def identity_level(subject: str, sample: int) -> int:
    return 40 + 100 * (sample - 1) + 25 * SUBJECTS.index(subject)


def letter_pixels(subject: str, letter: str, sample: int, landscape: bool) -> np.ndarray:
    """The uint8 grey image (white background) of one letter sample."""
    width, height = (LONG, SHORT) if landscape else (SHORT, LONG)
    pixels = np.full((height, width), 255, np.uint8)
    dx, dy = (width - SIDE) // 2, (height - SIDE) // 2  # square coordinates -> image
    pixels[20 + dy : 55 + dy, 25 + dx : 95 + dx] = 255 - letter_level(letter)
    pixels[65 + dy : 100 + dy, 25 + dx : 95 + dx] = 255 - identity_level(subject, sample)
    return pixels


def decode_frame(frame: np.ndarray) -> tuple[str, int, str]:
    """(letter, sample, subject) read back from a converted (64, 64, 1) frame: the blocks'
    centers land at rows 20 and 44, column 32 (scale 64/120)."""
    upper = frame[17:24, 28:37].astype(float).mean()
    lower = frame[41:48, 28:37].astype(float).mean()
    q = round((lower - 40) / 25)
    return string.ascii_lowercase[round((upper - 30) / 8)], 1 + q // 4, SUBJECTS[q % 4]


def _save(path_stem: str, subject: str, pixels: np.ndarray) -> None:
    if subject == "10":
        Image.fromarray(pixels).convert("RGB").save(path_stem + ".jpg", quality=95)
    elif subject == "33":
        rgba = np.zeros(pixels.shape + (4,), np.uint8)  # transparent black background
        ink = pixels < 255
        rgba[ink, :3] = pixels[ink, None]
        rgba[ink, 3] = 255
        Image.fromarray(rgba, "RGBA").save(path_stem + ".png")
    else:
        Image.fromarray(pixels, "L").save(path_stem + ".png")


def write_fixture(root: str) -> None:
    """Writes the fixture under ``root``."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "README.txt"), "w") as f:
        f.write("not a subject\n")
    for subject in SUBJECTS:
        folder = os.path.join(root, subject)
        os.makedirs(folder)
        for letter in string.ascii_lowercase:
            for sample in (1, 2):
                if subject == "61" and f"{letter}_{sample}" in MISSING_61:
                    continue
                pixels = letter_pixels(subject, letter, sample, landscape=subject == "33")
                _save(os.path.join(folder, f"{letter}_{sample}"), subject, pixels)


def prepare_for_tests(data_dir: str) -> dict[str, str]:
    """Writes the fixture into a fresh folder next to ``data_dir``, prepares it into
    ``data_dir`` and returns the config overrides that point training at that build."""
    from data_prep import letters as prep

    data_dir = os.path.abspath(data_dir)
    parent = os.path.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    source = tempfile.mkdtemp(prefix="letters_source-", dir=parent)
    write_fixture(source)
    prep.prepare(source, data_dir)
    return {"data.data_dir": data_dir}
