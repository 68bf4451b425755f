"""Prepare SPYL's Letters benchmark as a TFDS array_record dataset (no TensorFlow needed).

    python -m data_prep.letters --source_dir=<the ISGL offline letters folder> [--data_dir=DIR]
        [--seed=0]

The ISGL character dataset (Ibrahim et al., 2019; data.mendeley.com/datasets/n7kmd7t7yx/1):
``--source_dir`` holds one folder per subject, ``<subject id>/<letter>_<sample>.png`` (or
``.jpg``), see `seqdis_jax.data.letters` for this assumed layout and the rules. Writes
``<data_dir>/letters/1.0.0``: for every subject but 61, the 100 words of the lexicon as 7-frame
sequences, 80 words in train and 20 in test per subject; uint8 video (7, 64, 64, 1), int32
``subject`` and ``word`` (class labels) and per-frame ``letters`` (7,). ``--seed`` picks the
letter samples (the split does not depend on it). ``--data_dir`` defaults to
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

A run is idempotent: the dataset's metadata holds a fingerprint (sha256 of the protocol, the
seed, the subjects and the bytes of every letter image they need); when the prepared dataset has
the same fingerprint, nothing is rewritten. Subject 61 is skipped with a warning. Bad inputs
(missing folder, no subject folder, a subject without an image the lexicon needs, an
unreadable image) exit with status 2 and one line ``error: ...``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from data_prep import common
from data_prep.common import InputError, Progress, already_prepared, fingerprint
from seqdis_jax.data import array_record, letters

# Bump whenever the lexicon, the sample draw, the image processing, the split or the record
# layout change: the fingerprint changes with it, so the next run rebuilds instead of skipping.
PROTOCOL = "letters-protocol-1"
CITATION = """@misc{ibrahim2019isgl,
  title = {{ISGL} Online and Offline Character Recognition Dataset},
  author = {Ibrahim, A. and Elijah, O. and Olusayo, F. and Omodolapo, B. and Opeyemi, D.},
  howpublished = {Mendeley Data, v1, https://data.mendeley.com/datasets/n7kmd7t7yx/1},
  year = {2019}
}"""


Images = Mapping[str, Mapping[tuple[str, int], str]]  # subject -> (letter, sample) -> path


def scan(source_dir: str) -> dict[str, dict[tuple[str, int], str]]:
    """The letter images of each subject used (subject ids in numeric order); reads no image.

    `letters.EXCLUDED_SUBJECTS` are skipped with a warning on stderr. Raises `InputError` for a
    missing folder, no subject folder, and a subject lacking an image the lexicon needs.
    """
    if not os.path.isdir(source_dir):
        raise InputError(f"ISGL letters folder not found: {source_dir}")
    subjects = letters.find_subjects(source_dir)
    if not subjects:
        raise InputError(
            f"no subject folder in {source_dir}: expected <subject id>/<letter>_<sample>.png"
        )
    images = {}
    for subject in subjects:
        found = letters.letter_images(os.path.join(source_dir, subject))
        missing = [f"{c}_{s}" for c, s in letters.needed_images() if (c, s) not in found]
        if subject in letters.EXCLUDED_SUBJECTS:
            why = f"; it lacks {', '.join(missing)}" if missing else ""
            print(
                f"warning: subject {subject} is excluded, as in SPYL (missing data){why}",
                file=sys.stderr,
            )
            continue
        if missing:
            raise InputError(
                f"subject {subject} lacks the letter images {', '.join(missing)} "
                f"(<letter>_<sample> in {os.path.join(source_dir, subject)})"
            )
        images[subject] = found
    if not images:
        raise InputError(f"no subject in {source_dir} besides {letters.EXCLUDED_SUBJECTS}")
    return images


def dataset_fingerprint(source_dir: str, images: Images, seed: int) -> str:
    """sha256 of the protocol, the seed, the lexicon, the subjects and the bytes of every
    letter image they need."""
    header = (
        f"{PROTOCOL}\n{letters.TFDS_VERSION}\nseed {seed}\nsplit seed {letters.SPLIT_SEED}\n"
        f"lexicon {','.join(letters.LEXICON)}\nsubjects {','.join(images)}\n"
    )
    files = [
        (os.path.relpath(path, source_dir), path)
        for subject_images in images.values()
        for path in subject_images.values()
    ]
    return fingerprint(header, files)


def features(subjects: Sequence[str]) -> dict[str, array_record.Feature]:
    """The record layout: uint8 video, subject and word class labels, per-frame letters."""
    shape = (letters.NUM_FRAMES, letters.FRAME_SIZE, letters.FRAME_SIZE, 1)
    return {
        "video": array_record.Feature("uint8", shape),
        "subject": array_record.Feature("int32", names=tuple(subjects)),
        "word": array_record.Feature("int32", names=letters.LEXICON),
        "letters": array_record.Feature("int32", (letters.NUM_FRAMES,)),
    }


def _records(
    images: Images,
    split: str,
    seed: int,
    cache: dict[str, np.ndarray],
    progress: Progress,
) -> Iterator[dict[str, np.ndarray]]:
    """The word sequences of ``split``: subjects in order, words in index order."""

    def frame(path: str) -> np.ndarray:
        if path not in cache:
            try:
                cache[path] = letters.load_letter(path)
            except ValueError as e:
                raise InputError(str(e)) from e
        return cache[path]

    for label, (subject, subject_images) in enumerate(images.items()):
        train, test = letters.split_words(int(subject))
        for w in train if split == "train" else test:
            word = letters.LEXICON[w]
            samples = letters.choose_samples(seed, int(subject), int(w))
            video = np.stack([frame(subject_images[c, s]) for c, s in zip(word, samples)])
            yield {
                "video": video,
                "subject": np.int32(label),
                "word": np.int32(w),
                "letters": letters.letter_indices(word),
            }
        progress.update()


def prepare(source_dir: str, data_dir: str, seed: int = 0) -> tuple[str, bool]:
    """Builds the dataset unless it is prepared with the same fingerprint.

    Returns (version directory, whether anything was written). Raises `InputError` for bad
    inputs (see the module docstring); nothing is written then.
    """
    images = scan(source_dir)
    digest = dataset_fingerprint(source_dir, images, seed)
    final = array_record.version_dir(letters.TFDS_NAME, data_dir, letters.TFDS_VERSION)
    if already_prepared(letters.TFDS_NAME, data_dir, letters.TFDS_VERSION, digest):
        return final, False
    splits = ("train", "test")
    progress = Progress(len(splits) * len(images), letters.TFDS_NAME, "subject splits")
    cache: dict[str, np.ndarray] = {}  # preprocessed letter images, by path
    num_test = letters.NUM_TEST_WORDS * len(images)
    array_record.write_dataset(
        letters.TFDS_NAME,
        data_dir,
        {split: _records(images, split, seed, cache, progress) for split in splits},
        features(list(images)),
        version=letters.TFDS_VERSION,
        description=(
            "Letters as in SPYL (Naiman et al., 2023) App. A.1: 100 seven-letter words written "
            "with each ISGL subject's offline handwritten letters (subject 61 excluded), "
            "64x64 grayscale, ink bright; 80 train and 20 test words per subject."
        ),
        homepage="https://data.mendeley.com/datasets/n7kmd7t7yx/1",
        citation=CITATION,
        metadata={
            "protocol": PROTOCOL,
            "static_factors": list(letters.STATIC_FACTORS),
            "dynamic_factors": list(letters.DYNAMIC_FACTORS),
            "seed": seed,
            "split_seed": letters.SPLIT_SEED,
            "subjects": list(images),
            "excluded_subjects": list(letters.EXCLUDED_SUBJECTS),
        },
        fingerprint=digest,
        expected_sizes={"train": len(letters.LEXICON) * len(images) - num_test, "test": num_test},
    )
    return final, True


if __name__ == "__main__":
    common.main(
        prepare,
        source_help="The ISGL offline letters folder: <subject id>/<letter>_<sample>.png.",
        source_required="--source_dir=<the ISGL offline letters folder> is required",
        options=[
            common.Option(
                "seed", 0, "Seed of the letter samples' draw (the split ignores it).",
                kind="integer",
            ),
        ],
    )
