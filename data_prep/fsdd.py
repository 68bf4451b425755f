"""Prepare the Free Spoken Digit Dataset as a TFDS array_record dataset (no TensorFlow needed).

    python -m data_prep.fsdd --source_dir=<the FSDD recordings folder> [--data_dir=DIR]
        [--features=log_magnitude|log_mel] [--hop=10]

``--source_dir`` is the ``recordings`` folder of github.com/Jakobovski/free-spoken-digit-dataset
(``{digit}_{speaker}_{index}.wav``, 8 kHz mono 16-bit). Writes ``<data_dir>/fsdd/1.0.0``
(``--features=log_magnitude``, the default: 200-d frames) or ``<data_dir>/fsdd_mel/1.0.0``
(``--features=log_mel``: 80-d frames), with splits train (takes 5..49) and test (takes 0..4):
per 20-frame segment (a new one every ``--hop`` frames) a float32 ``video`` (20, F)
standardised with the train split's per-bin mean and std, the ClassLabels ``speaker`` and
``digit`` and int32 ``utterance``, ``take`` and ``segment``. The mean and std are stored in the
build's metadata (``normalisation``; `seqdis_jax.data.fsdd.read_normalisation`). Every rule is
in `seqdis_jax.data.fsdd` and `seqdis_jax.data.audio`. ``--data_dir`` defaults to
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

Two passes over the audio: the first reads every file (checking it) and gathers the train
statistics and segment counts, the second writes the standardised segments; nothing is written
when the first pass finds a bad file. A run is idempotent: the dataset's metadata holds a
fingerprint (sha256 of the protocol, the options and every WAV file's name and bytes); when the
prepared dataset has the same fingerprint, nothing is rewritten. Another ``--hop`` rebuilds the
same build in place. Bad inputs (missing folder, no WAV file, a ``.wav`` name not matching
``{digit}_{speaker}_{index}.wav``, an unreadable or non-16-bit-PCM or multi-channel WAV, a
sample rate differing between files, no train or no test take, bad options) exit with status 2
and one line ``error: ...``; a failed build leaves a previously prepared dataset as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from data_prep import common, speech
from data_prep.common import InputError, Progress, already_prepared, fingerprint
from seqdis_jax.data import array_record, audio, fsdd

# Bump whenever the file discovery, the features, the segments, the split, the standardisation
# or the record layout change: the fingerprint changes with it, so the next run rebuilds.
PROTOCOL = "fsdd-protocol-1"
HOMEPAGE = "https://github.com/Jakobovski/free-spoken-digit-dataset"
CITATION = """@misc{jackson2018fsdd,
  title = {Jakobovski/free-spoken-digit-dataset: v1.0.8},
  author = {Jackson, Zohar and Souza, C{\\'e}sar and Flaks, Jason and Pan, Yuxin and
            Nicolas, Hereman and Thite, Adhish},
  publisher = {Zenodo},
  doi = {10.5281/zenodo.1342401},
  year = {2018}
}"""


def options(features: str = fsdd.DEFAULT_FEATURES, hop: int = fsdd.DEFAULT_HOP) -> dict:
    """The options after validation (InputError for bad ones), as stored in the metadata."""
    return speech.check_options(features, hop)


def scan(source_dir: str) -> list[fsdd.Recording]:
    """The recordings, sorted (`fsdd.find_recordings`); reads no audio. Raises `InputError`
    for a missing folder, no WAV file, a bad file name, and a split without recordings."""
    try:
        recordings = fsdd.find_recordings(source_dir)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(str(e)) from e
    for split in ("train", "test"):
        if not any(r.split == split for r in recordings):
            takes = "0..4" if split == "test" else "5 or more"
            raise InputError(f"no {split} recording (takes {takes}) in {source_dir}")
    return recordings


def dataset_fingerprint(source_dir: str, recordings: Sequence[fsdd.Recording], opts: dict) -> str:
    """sha256 of the protocol, the version, the options and every WAV file's name and bytes."""
    header = f"{PROTOCOL}\n{fsdd.TFDS_VERSION}\n{json.dumps(opts, sort_keys=True)}\n"
    return fingerprint(header, [(r.name, os.path.join(source_dir, r.name)) for r in recordings])


def features(speakers: Sequence[str], kind: str) -> dict[str, array_record.Feature]:
    """The record layout: float32 video (20, F), ClassLabels speaker and digit, int32 ids."""
    return {
        "video": array_record.Feature("float32", (fsdd.SEGMENT_FRAMES, audio.FEATURE_KINDS[kind])),
        "speaker": array_record.Feature("int32", names=tuple(speakers)),
        "digit": array_record.Feature("int32", names=fsdd.DIGITS),
        "utterance": array_record.Feature("int32"),
        "take": array_record.Feature("int32"),
        "segment": array_record.Feature("int32"),
    }


def prepare(
    source_dir: str,
    data_dir: str,
    features_kind: str = fsdd.DEFAULT_FEATURES,
    hop: int = fsdd.DEFAULT_HOP,
) -> tuple[str, bool]:
    """Builds the dataset unless it is prepared with the same fingerprint.

    Returns (version directory, whether anything was written). Raises `InputError` for bad
    inputs (see the module docstring); nothing is written then.
    """
    opts = options(features_kind, hop)
    recordings = scan(source_dir)
    name = fsdd.tfds_name(features_kind)
    digest = dataset_fingerprint(source_dir, recordings, opts)
    final = array_record.version_dir(name, data_dir, fsdd.TFDS_VERSION)
    if already_prepared(name, data_dir, fsdd.TFDS_VERSION, digest):
        return final, False
    paths = [os.path.join(source_dir, r.name) for r in recordings]
    counts, rate, mean, std = speech.train_statistics(
        paths, [r.split == "train" for r in recordings], opts, name, "recordings")
    speakers = audio.speaker_names(recordings)
    splits = {
        split: [i for i, r in enumerate(recordings) if r.split == split]
        for split in ("train", "test")
    }
    progress = Progress(len(recordings), name, "recordings")
    array_record.write_dataset(
        name,
        data_dir,
        {
            split: speech.segment_records(
                paths, indices, opts, (rate, mean, std), progress,
                lambda i: {"speaker": np.int32(speakers.index(recordings[i].speaker)),
                           "digit": np.int32(recordings[i].digit),
                           "take": np.int32(recordings[i].take)})
            for split, indices in splits.items()
        },
        features(speakers, features_kind),
        version=fsdd.TFDS_VERSION,
        description=(
            f"Free Spoken Digit Dataset (Jackson et al.) as {features_kind} spectral segments "
            f"of 20 frames (25 ms Hamming windows, 10 ms shift, 400-point FFT, hop {hop} "
            "frames), standardised per bin with the train statistics; official split: takes "
            "0-4 test, 5-49 train. Static label speaker, dynamic label digit."
        ),
        homepage=HOMEPAGE,
        citation=CITATION,
        metadata={
            "protocol": PROTOCOL,
            "options": opts,
            "static_factors": list(fsdd.STATIC_FACTORS),
            "dynamic_factors": list(fsdd.DYNAMIC_FACTORS),
            "group": fsdd.GROUP,
            "sample_rate": int(rate),
            "num_utterances": {split: len(ix) for split, ix in splits.items()},
            "num_segments": {split: sum(counts[i] for i in ix) for split, ix in splits.items()},
            audio.NORMALISATION_KEY: audio.normalisation_metadata(mean, std),
        },
        fingerprint=digest,
        expected_sizes={split: sum(counts[i] for i in ix) for split, ix in splits.items()},
    )
    return final, True


if __name__ == "__main__":
    common.main(
        prepare,
        source_help="FSDD's recordings folder: {digit}_{speaker}_{index}.wav files.",
        source_required=(
            "--source_dir=<the FSDD recordings folder> is required (clone "
            f"{HOMEPAGE}; its recordings/ folder)"
        ),
        options=speech.command_line_options("fsdd", fsdd.DEFAULT_FEATURES, fsdd.DEFAULT_HOP),
    )
