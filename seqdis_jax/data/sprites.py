"""The Sprites benchmark (DSVAE, Li & Mandt 2018), composed from the LPC layer sheets.

Follows the authors' generation scripts (github.com/YingzhenLi/Sprites: `random_character.py`,
`frame_to_npy.py`, `load_sprites.py`), pure numpy + PIL:

* A sheet is 832x1344 px = 13 columns x 21 rows of 64x64 cells (cell index = row * 13 + col).
* Character ``c`` in [0, 1296) wears ``body/{b}``, ``bottomwear/{p}``, ``topwear/{t}``,
  ``hair/{h}`` with ``(b, p, t, h)`` = the base-6 digits of ``c`` (most significant first), and
  ``shoes/1``; the layers are alpha-composited ("over", `Image.alpha_composite`) in that order on
  an opaque black background, then alpha is dropped. Labels: skin = b, pants = p, top = t,
  hair = h.
* 9 motions = 3 actions (walk, spellcast, slash) x 3 directions (front, left, right),
  ``motion = 3 * action + direction``, 8 frames each, cut from the rows/columns in
  `FRAME_COLUMNS` / `ACTION_ROWS` (the scripts' frame renumbering: walk starts on the standing
  pose, spellcast repeats column 4 as frame 6, slash repeats columns 4 and 0 as frames 6, 7).
* Split: ``np.random.seed(423); perm = np.random.permutation(1296)``; characters ``perm[:1000]``
  train (9000 sequences), ``perm[1000:]`` test (2664 sequences).

Pixels are kept as uint8 RGB; the papers feed ``png / 256`` to the models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from seqdis_jax.data.registry import PreparedSpec

TFDS_NAME = "sprites"  # the full dataset; `tfds_name(n)` names a subset build
TFDS_VERSION = "1.0.0"

ACTIONS = ("walk", "spellcast", "slash")
DIRECTIONS = ("front", "left", "right")
MOTIONS = tuple(f"{a}_{d}" for a in ACTIONS for d in DIRECTIONS)  # index = 3 * action + dir
# Sheet row of each (action, direction); random_character.py, cell index // 13.
ACTION_ROWS = {
    "walk": {"left": 9, "front": 10, "right": 11},
    "spellcast": {"left": 1, "front": 2, "right": 3},
    "slash": {"left": 13, "front": 14, "right": 15},
}
# Sheet column of frames 0..7; random_character.py's renumbering `k` of the cells of a row.
FRAME_COLUMNS = {
    "walk": (8, 1, 2, 3, 4, 5, 6, 7),
    "spellcast": (0, 1, 2, 3, 4, 5, 4, 6),
    "slash": (0, 1, 2, 3, 4, 5, 4, 0),
}

LAYERS = ("body", "bottomwear", "topwear", "hair")  # composited in this order, then SHOES
SHOES = "shoes/1.png"
STATIC_FACTORS = ("skin", "pants", "top", "hair")  # labels of LAYERS' indices
DYNAMIC_FACTORS = ("motion",)
NUM_CLASSES = {
    "action": 3,
    "direction": 3,
    "motion": 9,
    "skin": 6,
    "pants": 6,
    "top": 6,
    "hair": 6,
}

NUM_OPTIONS = 6  # choices per layer
NUM_CHARACTERS = NUM_OPTIONS ** len(LAYERS)  # 1296
NUM_TRAIN_CHARACTERS = 1000
SPLIT_SEED = 423  # frame_to_npy.py
NUM_FRAMES = 8
CELL = 64  # px
SHEET_SIZE = (832, 1344)  # (width, height) = 13 x 21 cells
SHEET_FILES = tuple(f"{layer}/{i}.png" for layer in LAYERS for i in range(NUM_OPTIONS)) + (SHOES,)
LABEL_KEYS = ("action", "direction", "motion", *STATIC_FACTORS, "character")

SPEC = PreparedSpec(
    tfds_name=TFDS_NAME,
    video_shape=(NUM_FRAMES, CELL, CELL, 3),
    static_factors=STATIC_FACTORS,
    dynamic_factors=DYNAMIC_FACTORS,
    num_classes=NUM_CLASSES,
    prepare_command="python -m data_prep.sprites --source_dir=<path to the LPC sheets>",
    subset_flag="characters",
    factor_parts={"motion": (("action", len(ACTIONS)), ("direction", len(DIRECTIONS)))},
)


def character_labels(c: int) -> dict[str, int]:
    """(skin, pants, top, hair) of character ``c``: its base-6 digits (random_character.py)."""
    if not 0 <= c < NUM_CHARACTERS:
        raise ValueError(f"character must be in [0, {NUM_CHARACTERS}), got {c}")
    return {
        "skin": c // 216,
        "pants": (c % 216) // 36,
        "top": (c % 36) // 6,
        "hair": c % 6,
    }


def tfds_name(num_characters: int | None = None) -> str:
    """``sprites`` for all characters, ``sprites_subset_<n>`` for a subset (`subset_characters`),
    so that a quick build can never pass for the full dataset."""
    if num_characters is None or num_characters == NUM_CHARACTERS:
        return TFDS_NAME
    return f"{TFDS_NAME}_subset_{num_characters}"


def split_characters() -> tuple[np.ndarray, np.ndarray]:
    """(train_ids, test_ids): the authors' permutation of the 1296 characters, cut at 1000."""
    perm = np.random.RandomState(SPLIT_SEED).permutation(NUM_CHARACTERS)  # = np.random.seed(423)
    return perm[:NUM_TRAIN_CHARACTERS], perm[NUM_TRAIN_CHARACTERS:]


def subset_characters(num_characters: int) -> tuple[np.ndarray, np.ndarray]:
    """The first characters of each split, ``num_characters`` in all, in the full split's
    proportion (at least one each), so a subset's splits are prefixes of the full ones."""
    train, test = split_characters()
    if not 2 <= num_characters <= NUM_CHARACTERS:
        raise ValueError(f"num_characters must be in [2, {NUM_CHARACTERS}], got {num_characters}")
    num_train = round(num_characters * NUM_TRAIN_CHARACTERS / NUM_CHARACTERS)
    num_train = min(max(num_train, 1), num_characters - 1)
    return train[:num_train], test[: num_characters - num_train]


def load_sheets(source_dir: str) -> dict[str, Image.Image]:
    """The sheets a character needs (`SHEET_FILES`), as RGBA images keyed by relative path.

    Raises FileNotFoundError naming the missing directory or file, ValueError naming a sheet
    that is not 832x1344 or cannot be decoded.
    """
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(f"LPC sheet directory not found: {source_dir}")
    sheets = {}
    for name in SHEET_FILES:
        path = os.path.join(source_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"missing LPC sheet: {path}")
        try:
            with Image.open(path) as image:
                if image.size != SHEET_SIZE:
                    raise ValueError(
                        f"LPC sheet {path} is {image.size[0]}x{image.size[1]} px; expected "
                        f"{SHEET_SIZE[0]}x{SHEET_SIZE[1]} (13 x 21 cells of 64x64)"
                    )
                sheets[name] = image.convert("RGBA")
        except OSError as e:  # PIL.UnidentifiedImageError and truncated files
            raise ValueError(f"cannot read LPC sheet {path}: {e}") from e
    return sheets


def compose_character(sheets: Mapping[str, Image.Image], c: int) -> np.ndarray:
    """The full composited sheet of character ``c``: uint8 RGB (1344, 832, 3)."""
    labels = character_labels(c)
    indices = [labels[f] for f in STATIC_FACTORS]
    canvas = Image.new("RGBA", SHEET_SIZE, "black")
    for name in [f"{layer}/{i}.png" for layer, i in zip(LAYERS, indices)] + [SHOES]:
        canvas = Image.alpha_composite(canvas, sheets[name])
    return np.asarray(canvas)[..., :3]


def cut_sequence(composite: np.ndarray, action: str, direction: str) -> np.ndarray:
    """The 8 frames (8, 64, 64, 3) of one motion, cut from a composited sheet."""
    row = ACTION_ROWS[action][direction]
    cells = composite[row * CELL : (row + 1) * CELL].reshape(CELL, -1, CELL, 3)
    return cells[:, list(FRAME_COLUMNS[action])].transpose(1, 0, 2, 3)


def character_sequences(sheets: Mapping[str, Image.Image], c: int) -> dict[str, np.ndarray]:
    """The 9 sequences of character ``c`` (composited once), in `MOTIONS` order: ``video``
    uint8 (9, 8, 64, 64, 3) and int32 (9,) arrays for every key of `LABEL_KEYS`."""
    composite = compose_character(sheets, c)
    video = np.stack([cut_sequence(composite, a, d) for a in ACTIONS for d in DIRECTIONS])
    motion = np.arange(len(MOTIONS), dtype=np.int32)
    out = {"video": video, "action": motion // 3, "direction": motion % 3, "motion": motion}
    for name, value in {**character_labels(c), "character": c}.items():
        out[name] = np.full(len(MOTIONS), value, np.int32)
    return out


def generate(source_dir: str, characters: Sequence[int]) -> dict[str, np.ndarray]:
    """All sequences of ``characters`` (in that order, 9 motions each): ``video`` uint8
    (N, 8, 64, 64, 3) and int32 (N,) labels (`LABEL_KEYS`), N = 9 * len(characters)."""
    sheets = load_sheets(source_dir)
    per_character = [character_sequences(sheets, int(c)) for c in characters]
    if not per_character:
        raise ValueError("characters is empty")
    return {k: np.concatenate([p[k] for p in per_character]) for k in per_character[0]}
