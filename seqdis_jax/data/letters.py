"""The Letters benchmark of SPYL (App. A.1): seven-letter words written with the ISGL offline
handwritten letters (Ibrahim et al., 2019, data.mendeley.com/datasets/n7kmd7t7yx/1).

SPYL: "small English letters (a-z) from the offline subset ... a lexicon of 100 words, each
consisting of seven letters ... We excluded subject number '61' due to missing data and generated
100 word sequences using the handwriting of the remaining 65 subjects. Each subject has two
samples for each letter, which were randomly selected." SPYL's code (github.com/azencot-group/
SPYL) has a Sprites loader only: its lexicon and draws are unpublished, so the ones below are
this project's, fixed here.

Layout read (assumed, not confirmed: the release's offline file naming could not be checked
here; its online part is ``ICRGL/ONLINE/CHARACTERS/{LOWER,CAPITAL,NUMBER}``), ``<root>`` being
the folder passed as ``--source_dir``: ``<root>/<subject id>/<letter>_<sample>.<ext>``, subject
ids ``1``..``66`` (folders whose name is a number; anything else is ignored), letters ``a``..``z``,
samples ``1`` and ``2``, ``<ext>`` one of `IMAGE_EXTENSIONS` (any image PIL reads; where several
exist for one letter and sample, the first in that order is used).

Rules:

* `LEXICON`: 100 distinct common seven-letter English words; a word is a 7-frame sequence, frame
  k showing the subject's image of the word's k-th letter.
* The sample (1 or 2) of frame k of word w by subject s is ``1 + integers(2)`` of
  ``np.random.default_rng([seed, s, w, k])`` (`choose_samples`; ``--seed``, default 0).
* A letter image: grayscale (transparency composited on white), padded to a square with white
  (centered), resized to 64x64 with PIL LANCZOS, inverted so ink is bright: uint8 (64, 64, 1).
* Subjects: every numbered folder but `EXCLUDED_SUBJECTS` ("61"); ``subject`` labels are the
  subject ids sorted numerically. Each subject writes all 100 words.
* Split: per subject s, the 20 words ``np.random.default_rng([SPLIT_SEED, s]).choice(100, 20,
  replace=False)`` are test, the other 80 train (`split_words`), so every subject (and, for the
  65 subjects, every word) appears in train. Records: split by split, subjects in order, words
  in index order.

Labels: static ``subject``, dynamic ``word`` (index into `LEXICON`), per-frame ``letters``
(a = 0 .. z = 25; `FRAME_FACTORS`: SPYL B.9 predicts each d_t's letter).
"""

from __future__ import annotations

import os
import string

import numpy as np
from PIL import Image

from seqdis_jax.data import images
from seqdis_jax.data.registry import PreparedSpec

TFDS_NAME = "letters"
TFDS_VERSION = "1.0.0"

# 100 distinct seven-letter words, a-z only (together they use all 26 letters).
LEXICON = (
    "science", "example", "machine", "picture", "student", "teacher", "history", "kitchen",
    "freedom", "weather", "morning", "evening", "country", "village", "library", "company",
    "program", "problem", "project", "network", "balance", "chicken", "captain", "culture",
    "another", "because", "between", "through", "nothing", "already", "believe", "brother",
    "certain", "college", "comfort", "concert", "control", "correct", "curtain", "dolphin",
    "factory", "fashion", "feeling", "finally", "foreign", "forward", "general", "harvest",
    "healthy", "holiday", "husband", "imagine", "journey", "justice", "kingdom", "leather",
    "lecture", "message", "million", "monster", "mystery", "natural", "nervous", "officer",
    "package", "painter", "partner", "pattern", "perfect", "plastic", "popular", "present",
    "printer", "private", "quarter", "rainbow", "request", "respect", "sunrise", "horizon",
    "diamond", "freight", "vehicle", "welcome", "younger", "squeeze", "quickly", "javelin",
    "address", "airport", "article", "battery", "bedroom", "cabinet", "channel", "chapter",
    "climate", "counter", "digital", "display",
)  # fmt: skip
ALPHABET = string.ascii_lowercase  # letter label = index
NUM_FRAMES = 7  # letters per word
FRAME_SIZE = 64  # px, square
SAMPLES = (1, 2)  # each subject's samples of a letter
EXCLUDED_SUBJECTS = ("61",)  # SPYL: "due to missing data"
NUM_TEST_WORDS = 20  # per subject
SPLIT_SEED = 0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

STATIC_FACTORS = ("subject",)
DYNAMIC_FACTORS = ("word",)
FRAME_FACTORS = ("letters",)  # per-frame labels, (7,) per record (SPYL B.9: d_t -> letter)
NUM_CLASSES = {"subject": 65, "word": len(LEXICON)}

SPEC = PreparedSpec(
    tfds_name=TFDS_NAME,
    video_shape=(NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 1),
    static_factors=STATIC_FACTORS,
    dynamic_factors=DYNAMIC_FACTORS,
    num_classes=NUM_CLASSES,
    frame_factors=FRAME_FACTORS,
    prepare_command="python -m data_prep.letters --source_dir=<the ISGL offline letters folder>",
)


def letter_indices(word: str) -> np.ndarray:
    """The per-frame letter labels of ``word``: int32 (7,), a = 0 .. z = 25."""
    return np.array([ALPHABET.index(c) for c in word], np.int32)


def needed_images() -> list[tuple[str, int]]:
    """(letter, sample) of every image a subject must have: both samples of each letter the
    lexicon uses, in alphabetical order."""
    letters = sorted(set("".join(LEXICON)))
    return [(letter, sample) for letter in letters for sample in SAMPLES]


def choose_samples(seed: int, subject: int, word_index: int) -> np.ndarray:
    """The sample (1 or 2) of each frame of word ``word_index`` written by ``subject``: int32
    (7,); frame k draws from ``np.random.default_rng([seed, subject, word_index, k])``."""
    return np.array(
        [
            SAMPLES[int(np.random.default_rng([seed, subject, word_index, k]).integers(2))]
            for k in range(NUM_FRAMES)
        ],
        np.int32,
    )


def split_words(subject: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) word indices of ``subject``, each sorted: 20 test words drawn by
    ``np.random.default_rng([SPLIT_SEED, subject])``, the other 80 train."""
    rng = np.random.default_rng([SPLIT_SEED, subject])
    test = np.sort(rng.choice(len(LEXICON), NUM_TEST_WORDS, replace=False))
    return np.setdiff1d(np.arange(len(LEXICON)), test), test


def find_subjects(source_dir: str) -> list[str]:
    """The subject folders' names (numbers) under ``source_dir``, sorted numerically."""
    names = [n for n in os.listdir(source_dir) if os.path.isdir(os.path.join(source_dir, n))]
    names = [n for n in names if n.isdigit()]
    return sorted(names, key=int)


def letter_images(subject_dir: str) -> dict[tuple[str, int], str]:
    """(letter, sample) -> path of the ``<letter>_<sample>.<ext>`` images of a subject folder
    (lowercase letters and samples 1, 2 only; extensions in `IMAGE_EXTENSIONS` order)."""
    found: dict[tuple[str, int], tuple[int, str]] = {}
    for name in os.listdir(subject_dir):
        stem, ext = os.path.splitext(name)
        letter, sep, sample = stem.partition("_")
        if (
            ext.lower() not in IMAGE_EXTENSIONS
            or not sep
            or len(letter) != 1
            or letter not in ALPHABET
            or not sample.isdigit()
            or int(sample) not in SAMPLES
        ):
            continue
        rank = IMAGE_EXTENSIONS.index(ext.lower())
        key = (letter, int(sample))
        if key not in found or rank < found[key][0]:
            found[key] = (rank, os.path.join(subject_dir, name))
    return {key: path for key, (_, path) in sorted(found.items())}


def preprocess_letter(image: Image.Image) -> np.ndarray:
    """A letter image as uint8 (64, 64, 1): grayscale on white, padded to a centered square
    with white, resized with LANCZOS and inverted (ink bright, background 0)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = image.convert("L")
    width, height = gray.size
    side = max(width, height)
    square = Image.new("L", (side, side), 255)
    square.paste(gray, ((side - width) // 2, (side - height) // 2))
    resized = images.resize(square, FRAME_SIZE)
    return (255 - np.asarray(resized, dtype=np.uint8))[..., None]


def load_letter(path: str) -> np.ndarray:
    """`preprocess_letter` of the image at ``path``; ValueError naming it when unreadable."""
    return preprocess_letter(images.read_image(path, "RGBA", "letter image"))
