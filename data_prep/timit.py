"""Prepare TIMIT as a TFDS array_record dataset of speech segments (no TensorFlow needed).

    python -m data_prep.timit --source_dir=<the TIMIT folder holding TRAIN/ and TEST/>
        [--data_dir=DIR] [--features=log_magnitude|log_mel] [--hop=20] [--test_speakers=core]

TIMIT is licence-restricted (LDC93S1, from the Linguistic Data Consortium); ``--source_dir`` is
the release folder ``TRAIN/DR1/MCPM0/SI1027.WAV, ...`` (any case; NIST SPHERE or converted
RIFF copies, see `seqdis_jax.data.timit` for the accepted layout and every rule). Writes
``<data_dir>/timit/1.0.0`` (``--features=log_magnitude``, the default: 200-d frames) or
``<data_dir>/timit_mel/1.0.0`` (``--features=log_mel``: 80-d), with splits train (every TRAIN
speaker's SI and SX sentences; SA sentences skipped) and test (the 24-speaker core test set, or
every TEST speaker with ``--test_speakers=all``): per 20-frame segment (a new one every
``--hop`` frames) a float32 ``video`` (20, F) standardised with the train split's per-bin mean
and std (stored in the metadata as ``normalisation``; `seqdis_jax.data.timit.read_normalisation`),
the ClassLabels ``speaker``, ``sex`` and ``dialect`` and int32 ``utterance``, ``sentence`` and
``segment``. ``--data_dir`` defaults to ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

Two passes over the audio: the first reads every file used (checking it) and gathers the train
statistics and segment counts, the second writes the standardised segments; nothing is written
when the first pass finds a bad file. A run is idempotent: the dataset's metadata holds a
fingerprint (sha256 of the protocol, the options and every used file's relative path and
bytes); when the prepared dataset has the same fingerprint, nothing is rewritten. Another
``--hop`` or ``--test_speakers`` rebuilds the same build in place. Bad inputs (missing folder,
no TRAIN/ and TEST/, a bad folder or file name, a missing core test speaker, an unreadable or
compressed or non-16-bit audio file, a sample rate differing between files, bad options) exit
with status 2 and one line ``error: ...``; a failed build leaves a previously prepared dataset
as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from data_prep import common, speech
from data_prep.common import InputError, Progress, already_prepared, fingerprint
from seqdis_jax.data import array_record, audio, timit

# Bump whenever the file discovery, the sentence selection, the split, the features, the
# segments, the standardisation or the record layout change: the next run then rebuilds.
PROTOCOL = "timit-protocol-1"
HOMEPAGE = "https://catalog.ldc.upenn.edu/LDC93S1"
CITATION = """@misc{garofolo1993timit,
  title = {{TIMIT} Acoustic-Phonetic Continuous Speech Corpus {LDC93S1}},
  author = {Garofolo, John S. and Lamel, Lori F. and Fisher, William M. and Fiscus, Jonathan G.
            and Pallett, David S. and Dahlgren, Nancy L. and Zue, Victor},
  publisher = {Linguistic Data Consortium},
  address = {Philadelphia},
  year = {1993}
}"""


def options(
    features: str = timit.DEFAULT_FEATURES,
    hop: int = timit.DEFAULT_HOP,
    test_speakers: str = "core",
) -> dict:
    """The options after validation (InputError for bad ones), as stored in the metadata."""
    checked = speech.check_options(features, hop)
    if test_speakers not in timit.TEST_SPEAKER_CHOICES:
        raise InputError(
            f"--test_speakers must be one of {', '.join(timit.TEST_SPEAKER_CHOICES)}, "
            f"got {test_speakers!r}"
        )
    return {**checked, "test_speakers": test_speakers}


def scan(source_dir: str, test_speakers: str = "core") -> tuple[str, list[timit.Utterance], int]:
    """`timit.find_utterances`, its errors as `InputError`; reads no audio (only the first
    bytes of files holding the same utterance)."""
    try:
        return timit.find_utterances(source_dir, test_speakers)
    except (OSError, ValueError) as e:
        raise InputError(str(e)) from e


def dataset_fingerprint(root: str, utterances: Sequence[timit.Utterance], opts: dict) -> str:
    """sha256 of the protocol, the version, the options and every used file's relative path
    and bytes."""
    header = f"{PROTOCOL}\n{timit.TFDS_VERSION}\n{json.dumps(opts, sort_keys=True)}\n"
    return fingerprint(
        header, [(u.path.replace(os.sep, "/"), os.path.join(root, u.path)) for u in utterances]
    )


def features(speakers: Sequence[str], kind: str) -> dict[str, array_record.Feature]:
    """The record layout: float32 video (20, F), ClassLabels speaker, sex and dialect, ids."""
    return {
        "video": array_record.Feature(
            "float32", (timit.SEGMENT_FRAMES, audio.FEATURE_KINDS[kind])
        ),
        "speaker": array_record.Feature("int32", names=tuple(speakers)),
        "sex": array_record.Feature("int32", names=timit.SEXES),
        "dialect": array_record.Feature("int32", names=timit.DIALECTS),
        "utterance": array_record.Feature("int32"),
        "sentence": array_record.Feature("int32"),
        "segment": array_record.Feature("int32"),
    }


def prepare(
    source_dir: str,
    data_dir: str,
    features_kind: str = timit.DEFAULT_FEATURES,
    hop: int = timit.DEFAULT_HOP,
    test_speakers: str = "core",
) -> tuple[str, bool]:
    """Builds the dataset unless it is prepared with the same fingerprint.

    Returns (version directory, whether anything was written). Raises `InputError` for bad
    inputs (see the module docstring); nothing is written then.
    """
    opts = options(features_kind, hop, test_speakers)
    root, utterances, skipped = scan(source_dir, test_speakers)
    name = timit.tfds_name(features_kind)
    digest = dataset_fingerprint(root, utterances, opts)
    final = array_record.version_dir(name, data_dir, timit.TFDS_VERSION)
    if already_prepared(name, data_dir, timit.TFDS_VERSION, digest):
        return final, False
    paths = [os.path.join(root, u.path) for u in utterances]
    counts, rate, mean, std = speech.train_statistics(
        paths, [u.split == "train" for u in utterances], opts, name, "utterances")
    speakers = audio.speaker_names(utterances)
    splits = {
        split: [i for i, u in enumerate(utterances) if u.split == split]
        for split in ("train", "test")
    }
    progress = Progress(len(utterances), name, "utterances")
    test_set = "the core test set" if test_speakers == "core" else "every TEST speaker"
    array_record.write_dataset(
        name,
        data_dir,
        {
            split: speech.segment_records(
                paths, indices, opts, (rate, mean, std), progress,
                lambda i: {"speaker": np.int32(speakers.index(utterances[i].speaker)),
                           "sex": np.int32(timit.SEXES.index(utterances[i].sex)),
                           "dialect": np.int32(timit.DIALECTS.index(utterances[i].dialect)),
                           "sentence": np.int32(utterances[i].sentence_number)})
            for split, indices in splits.items()
        },
        features(speakers, features_kind),
        version=timit.TFDS_VERSION,
        description=(
            f"TIMIT (Garofolo et al., 1993) SI and SX sentences as {features_kind} spectral "
            f"segments of 20 frames (25 ms Hamming windows, 10 ms shift, 400-point FFT, hop "
            f"{hop} frames), standardised per bin with the train statistics; train = every "
            f"TRAIN speaker, test = {test_set}. "
            "Static labels speaker, sex, dialect region."
        ),
        homepage=HOMEPAGE,
        citation=CITATION,
        metadata={
            "protocol": PROTOCOL,
            "options": opts,
            "static_factors": list(timit.STATIC_FACTORS),
            "dynamic_factors": list(timit.DYNAMIC_FACTORS),
            "group": timit.GROUP,
            "sample_rate": int(rate),
            "num_speakers": {
                split: len({utterances[i].speaker for i in ix}) for split, ix in splits.items()
            },
            "num_utterances": {split: len(ix) for split, ix in splits.items()},
            "num_segments": {split: sum(counts[i] for i in ix) for split, ix in splits.items()},
            "skipped_sa_files": skipped,
            audio.NORMALISATION_KEY: audio.normalisation_metadata(mean, std),
        },
        fingerprint=digest,
        expected_sizes={split: sum(counts[i] for i in ix) for split, ix in splits.items()},
    )
    return final, True


if __name__ == "__main__":
    common.main(
        prepare,
        source_help="The TIMIT release folder holding TRAIN/ and TEST/ (any case).",
        source_required=(
            "--source_dir=<the TIMIT folder holding TRAIN/ and TEST/> is required (TIMIT "
            f"is licence-restricted: {HOMEPAGE})"
        ),
        options=[
            *speech.command_line_options("timit", timit.DEFAULT_FEATURES, timit.DEFAULT_HOP),
            common.Option(
                "test_speakers", "core", "core: the 24 core test speakers; all: every TEST speaker."
            ),
        ],
    )
