"""The Free Spoken Digit Dataset (FSDD; Jackson et al., github.com/Jakobovski/
free-spoken-digit-dataset) as 20-frame spectral segments for sequential disentanglement.

**Source layout** (the repository's ``recordings`` folder, passed as ``--source_dir``): 3000
WAV files ``{digit}_{speaker}_{index}.wav``, 8 kHz mono 16-bit PCM: 6 speakers (george,
jackson, lucas, nicolas, theo, yweweler) x 10 digits (0..9) x 50 takes (index 0..49). Files
not ending in ``.wav`` are ignored; a ``.wav`` name that does not match the pattern (one digit,
a speaker name of letters, a take number) is an error, as is an unreadable or non-16-bit-PCM
WAV, a multi-channel one, or a sample rate differing between files.

**Rules** (`data_prep.fsdd` writes them):

* Recordings are sorted by (digit, speaker, take); ``utterance`` = the position in that list
  (unique per recording, over both splits).
* **Split**: FSDD's official one (its README: "Recordings numbered 0-4 (inclusive) are in the
  test and 5-49 are in the training set"): takes 0..4 are ``test``, the others ``train``. Every
  speaker and digit is in both splits; test utterances are takes not seen in training.
* **Features** (`seqdis_jax.data.audio`): ``log_magnitude`` (default, 200 bins, build ``fsdd``)
  or ``log_mel`` (80 filters, build ``fsdd_mel``: both builds can coexist; `tfds_name`) of 25 ms
  periodic-Hamming frames every 10 ms (200-sample windows zero-padded to a 400-point FFT, so the
  8 kHz audio is not resampled), no pre-emphasis.
* **Segments**: 20 frames (200 ms), starting every ``hop`` frames (default `DEFAULT_HOP` = 10,
  i.e. 50 % overlap), fully inside the utterance; an utterance of fewer than 20 frames (under
  about 0.215 s; the shortest FSDD recordings are 0.14 s) gives one segment padded by repeating
  its last frame. ``segment`` = the segment's position within its utterance (starts at frame
  ``segment * hop``).
* **Standardisation**: each feature bin minus the train split's mean, divided by its std (over
  every frame of every train segment); both vectors are in the build's metadata
  (`read_normalisation`, `audio.destandardise`).

**Records**: ``video`` float32 (20, F) (F = 200, or 80 for ``fsdd_mel``), ClassLabels
``speaker`` (the speaker names found, sorted) and ``digit`` ("0".."9"), int32 ``utterance``,
``take`` and ``segment``. Static factor: speaker; dynamic factor: digit; a recording's segments
share ``utterance`` (the group the verification EER averages over).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from seqdis_jax.data import audio
from seqdis_jax.data.registry import PreparedSpec

TFDS_NAME = "fsdd"  # log_magnitude build; `tfds_name` names the others
TFDS_VERSION = "1.0.0"

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")  # FSDD 1.0.10, sorted
DIGITS = tuple(str(d) for d in range(10))  # class index = the digit
NUM_TAKES = 50
NUM_TEST_TAKES = 5  # takes 0..4 are the official test split
SEGMENT_FRAMES = audio.SEGMENT_FRAMES
DEFAULT_HOP = 10  # frames between segment starts
DEFAULT_FEATURES = "log_magnitude"
FEATURE_SUFFIXES = {"log_magnitude": "", "log_mel": "_mel"}  # build name = fsdd + suffix
STATIC_FACTORS = ("speaker",)
DYNAMIC_FACTORS = ("digit",)
NUM_CLASSES = {"speaker": len(SPEAKERS), "digit": len(DIGITS)}  # a build's own list wins
GROUP = "utterance"
SAMPLE_RATE = 8000  # FSDD's rate (not required: every file just has to share one rate)

SPEC = PreparedSpec(
    tfds_name=TFDS_NAME,
    video_shape=(SEGMENT_FRAMES, audio.NUM_MAGNITUDE_BINS),
    static_factors=STATIC_FACTORS,
    dynamic_factors=DYNAMIC_FACTORS,
    num_classes=NUM_CLASSES,
    prepare_command="python -m data_prep.fsdd --source_dir=<the FSDD recordings folder>",
    group=GROUP,
    build_flags={suffix: f"--features={features}"
                 for features, suffix in FEATURE_SUFFIXES.items() if suffix},
)

_NAME = re.compile(r"(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<take>\d+)\.wav")
EXTENSION = ".wav"


@dataclasses.dataclass(frozen=True)
class Recording:
    """One FSDD file and the labels its name gives."""

    name: str  # file name, e.g. "3_theo_12.wav"
    digit: int
    speaker: str
    take: int

    @property
    def split(self) -> str:
        return split_of(self.take)


def tfds_name(features: str = DEFAULT_FEATURES) -> str:
    """``fsdd`` for log_magnitude features, ``fsdd_mel`` for log_mel."""
    if features not in FEATURE_SUFFIXES:
        raise ValueError(f"features must be one of {sorted(FEATURE_SUFFIXES)}, got {features!r}")
    return TFDS_NAME + FEATURE_SUFFIXES[features]


def split_of(take: int) -> str:
    """FSDD's official split: takes 0..4 are test, the others train."""
    return "test" if take < NUM_TEST_TAKES else "train"


def parse_name(name: str) -> Recording:
    """The labels of a file name ``{digit}_{speaker}_{index}.wav``; ValueError otherwise."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(
            f"FSDD file name {name!r} does not match {{digit}}_{{speaker}}_{{index}}.wav"
        )
    return Recording(name, int(match["digit"]), match["speaker"], int(match["take"]))


def find_recordings(source_dir: str) -> list[Recording]:
    """The recordings of the folder, sorted by (digit, speaker, take); reads no audio.

    Raises FileNotFoundError for a missing folder or one without ``.wav`` files, ValueError for
    a ``.wav`` file whose name does not match the pattern.
    """
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(f"FSDD recordings folder not found: {source_dir}")
    names = [n for n in os.listdir(source_dir) if n.lower().endswith(EXTENSION)]
    if not names:
        raise FileNotFoundError(
            f"no .wav file in {source_dir}: expected FSDD's {{digit}}_{{speaker}}_{{index}}.wav"
        )
    recordings = []
    for name in names:
        try:
            recordings.append(parse_name(name))
        except ValueError as e:
            raise ValueError(f"{e} (in {source_dir})") from None
    return sorted(recordings, key=lambda r: (r.digit, r.speaker, r.take))


def read_normalisation(
    data_dir: str | os.PathLike, features: str = DEFAULT_FEATURES
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 per feature bin of the prepared build of ``features``: the train
    statistics its ``video`` was standardised with (`audio.destandardise` undoes it)."""
    return audio.read_normalisation(tfds_name(features), data_dir, TFDS_VERSION)
