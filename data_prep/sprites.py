"""Prepare the Sprites benchmark as a TFDS array_record dataset (no TensorFlow needed).

    python -m data_prep.sprites --source_dir=<path to the LPC sheets> [--data_dir=DIR]
    python -m data_prep.sprites --download [--cache_dir=DIR] [--data_dir=DIR]
    python -m data_prep.sprites --source_dir=<path> --characters=20   # a quick subset build

Composes the 1296 characters from the LPC layer sheets as the DSVAE authors' scripts do (see
`seqdis_jax.data.sprites`) and writes ``<data_dir>/sprites/1.0.0``: train 9000 and test 2664
sequences (uint8 video (8, 64, 64, 3) and int32 labels action, direction, motion, skin, pants,
top, hair, character). ``--data_dir`` defaults to ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

``--characters=N`` builds only the first N characters of the authors' permutation (split in the
full set's proportion, at least one test character) under the name ``sprites_subset_N``, so it
is never read as the full dataset; train with it via ``--config.data.tfds_name=sprites_subset_N``.

The sheets come from ``--source_dir`` (a copy of github.com/YingzhenLi/Sprites) or, with
``--download``, from that repository into ``--cache_dir``. A run is idempotent: the dataset's
metadata holds a fingerprint (sha256 of the sheets used, the generation protocol and the
characters); when the prepared dataset has the same fingerprint, nothing is rewritten.
Bad inputs (missing directory or sheet, wrong sheet size) exit with status 2 and one line
``error: ...``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping

import numpy as np
from PIL import Image

from data_prep import common
from data_prep.common import InputError, Progress
from seqdis_jax.data import array_record, sprites

# Bump whenever composition, frame rules, split or the record layout change: the fingerprint
# changes with it, so the next run rebuilds instead of skipping.
PROTOCOL = "sprites-protocol-1"
# The authors' repository at a fixed commit, so a download always gives the same sheets.
SOURCE_URL = (
    "https://raw.githubusercontent.com/YingzhenLi/Sprites/3ce4048c5227802bd8f1888e293fd3afdba91c0c/"
)
CITATION = """@inproceedings{li2018disentangle,
  title = {Disentangled Sequential Autoencoder},
  author = {Li, Yingzhen and Mandt, Stephan},
  booktitle = {International Conference on Machine Learning},
  year = {2018}
}"""


def default_cache_dir() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache, "seqdis_jax", "sprites_lpc")


def download_sheets(cache_dir: str, base_url: str = SOURCE_URL) -> str:
    """Fetches the sheets a build needs into ``cache_dir`` (files already there are kept;
    each file appears only once complete) and returns ``cache_dir``."""
    for name in sprites.SHEET_FILES:
        path = os.path.join(cache_dir, name)
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        url = base_url.rstrip("/") + "/" + name
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:
                f.write(response.read())
            os.replace(tmp, path)
        except OSError as e:
            raise InputError(f"cannot download {url}: {e}") from e
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return cache_dir


def fingerprint(source_dir: str, characters: Mapping[str, np.ndarray]) -> str:
    """sha256 of everything the dataset's content depends on: the protocol, the characters of
    each split, and the bytes of every sheet used."""
    h = hashlib.sha256(f"{PROTOCOL}\n{sprites.TFDS_VERSION}\n".encode())
    for split, ids in sorted(characters.items()):
        h.update(f"{split}:{','.join(map(str, ids))}\n".encode())
    for name in sprites.SHEET_FILES:
        with open(os.path.join(source_dir, name), "rb") as f:
            h.update(f"{name}\n".encode() + hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def features() -> dict[str, array_record.Feature]:
    """The record layout: uint8 video and int32 labels (class names where they have them)."""
    names = {"action": sprites.ACTIONS, "direction": sprites.DIRECTIONS, "motion": sprites.MOTIONS}
    out = {"video": array_record.Feature("uint8", (sprites.NUM_FRAMES, 64, 64, 3))}
    for key in sprites.LABEL_KEYS:
        if key in sprites.NUM_CLASSES:
            label_names = names.get(key, tuple(map(str, range(sprites.NUM_CLASSES[key]))))
            out[key] = array_record.Feature("int32", names=label_names)
        else:  # character id
            out[key] = array_record.Feature("int32")
    return out


def _records(
    sheets: Mapping[str, Image.Image], characters: np.ndarray, progress: Progress
) -> Iterator[dict[str, np.ndarray]]:
    """The 9 sequences of each character in turn (composited once per character)."""
    for c in characters:
        sequences = sprites.character_sequences(sheets, int(c))
        for m in range(len(sprites.MOTIONS)):
            yield {k: v[m] for k, v in sequences.items()}
        progress.update()


def prepare(source_dir: str, data_dir: str, num_characters: int | None = None) -> tuple[str, bool]:
    """Builds the dataset unless it is prepared with the same fingerprint.

    Returns (version directory, whether anything was written). Raises `InputError` for a
    missing or malformed sheet and a bad ``num_characters``.
    """
    try:
        sheets = sprites.load_sheets(source_dir)
        if num_characters is None:
            train, test = sprites.split_characters()
        else:
            train, test = sprites.subset_characters(num_characters)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(str(e)) from e
    name = sprites.tfds_name(num_characters)
    characters = {"train": train, "test": test}
    digest = fingerprint(source_dir, characters)
    final = array_record.version_dir(name, data_dir, sprites.TFDS_VERSION)
    metadata = array_record.read_metadata(name, data_dir, sprites.TFDS_VERSION)
    if metadata is not None and metadata.get(array_record.FINGERPRINT_KEY) == digest:
        return final, False

    expected = {split: len(ids) * len(sprites.MOTIONS) for split, ids in characters.items()}
    if name == sprites.TFDS_NAME:  # the published sizes of the benchmark
        assert expected == {"train": 9000, "test": 2664}, expected
    progress = Progress(len(train) + len(test), name, "characters")
    array_record.write_dataset(
        name,
        data_dir,
        {split: _records(sheets, ids, progress) for split, ids in characters.items()},
        features(),
        version=sprites.TFDS_VERSION,
        description=(
            "Sprites (Li & Mandt, 2018): LPC characters composed as in "
            "github.com/YingzhenLi/Sprites; 8-frame 64x64 RGB sequences of 9 motions."
        ),
        homepage="https://github.com/YingzhenLi/Sprites",
        citation=CITATION,
        metadata={
            "protocol": PROTOCOL,
            "static_factors": list(sprites.STATIC_FACTORS),
            "dynamic_factors": list(sprites.DYNAMIC_FACTORS),
            "num_characters": {split: len(ids) for split, ids in characters.items()},
        },
        fingerprint=digest,
        expected_sizes=expected,
    )
    return final, True


def _prepare_from_flags(
    source_dir: str | None, data_dir: str, download: bool, cache_dir: str | None,
    characters: int | None,
) -> tuple[str, bool]:
    """`prepare` from the command line's flags: the sheets of --source_dir or --download."""
    if source_dir and download:
        raise InputError("pass either --source_dir or --download, not both")
    if download:
        source_dir = download_sheets(os.path.expanduser(cache_dir or default_cache_dir()))
    elif not source_dir:
        raise InputError(
            "--source_dir=<path to the LPC sheets> is required (a copy of "
            "github.com/YingzhenLi/Sprites), or pass --download to fetch them"
        )
    return prepare(source_dir, data_dir, characters)


if __name__ == "__main__":
    common.main(
        _prepare_from_flags,
        source_help="Directory with the LPC sheets (body/, bottomwear/, topwear/, ...).",
        source_required=None,  # or --download: _prepare_from_flags decides
        options=[
            common.Option(
                "download", False,
                "Without --source_dir: download the sheets into --cache_dir first.", kind="bool",
            ),
            common.Option(
                "cache_dir", None,
                "Where --download puts the sheets (default ~/.cache/seqdis_jax/sprites_lpc).",
            ),
            common.Option(
                "characters", None,
                "Build only this many characters, as dataset sprites_subset_<N>.", kind="integer",
            ),
        ],
    )
