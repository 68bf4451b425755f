"""TIMIT (Garofolo et al., 1993; LDC93S1) as 20-frame spectral segments for sequential
disentanglement (DSVAE, C-DSVAE App. C.1, SPYL A.3 / B.5), speaker as the static factor.

TIMIT is licence-restricted (LDC), so only a synthetic copy of its layout is tested here.

**Source layout** (LDC's release; ``--source_dir`` is the folder holding ``TRAIN/`` and
``TEST/``, or a folder with a single such folder inside, e.g. ``timit/`` holding ``TIMIT/``)::

    TRAIN/ TEST/                    the official train (462 speakers) and test (168) parts
      DR1/ ... DR8/                 dialect regions
        MCPM0/ FCJF0/ ...           speakers: sex (M or F), initials, a digit
          SA1.WAV SI1027.WAV SX127.WAV ...  10 sentences per speaker, NIST SPHERE 16 kHz
          (.PHN .WRD .TXT files are ignored)

Folder and file names may be upper or lower case. An utterance file is any file whose name
ends in ``.wav`` in any case: LDC's ``SX127.WAV`` as well as converted copies ``SX127.WAV.wav``
or ``sx127.wav``; its content (NIST SPHERE of either byte order, or RIFF/WAVE) is detected from
its bytes (`audio.read_audio`; a shorten-compressed SPHERE file must be converted with
``sph2pipe`` first). The utterance's id is the file name up to its first dot, upper-cased, and
must be ``SA<n>``, ``SI<n>`` or ``SX<n>``. When several files hold one utterance (e.g. the
original ``SX127.WAV`` and a converted ``SX127.WAV.wav``), the first RIFF one by name is used,
else the first by name. Folders other than ``DR1..DR8`` in a part, and a speaker folder whose
name does not start with M or F, are errors; so is a speaker name found twice.

**Rules** (`data_prep.timit` writes them):

* **Utterances**: the SI and SX sentences (8 per speaker). The two SA sentences are skipped:
  every speaker reads the same two dialect sentences, which would let the text leak into the
  speaker code (speaker verification protocols drop them too).
* **Split**: ``train`` = every speaker of ``TRAIN/`` (3696 utterances in the full corpus);
  ``test`` = the 24-speaker core test set of ``TEST/`` (SPYL B.5: "24 unique speakers, eight
  sentences each, 192 audios"), `CORE_TEST_SPEAKERS`. A core speaker missing from ``TEST/`` is
  an error unless ``--test_speakers=all`` (then every ``TEST/`` speaker is in ``test``).
  Train and test speakers are disjoint (speaker verification on unseen speakers).
* Utterances are sorted by their key ``<PART>/<DRn>/<SPEAKER>/<ID>`` (upper case);
  ``utterance`` = the position in that list (unique over both splits).
* **Features** (`seqdis_jax.data.audio`): ``log_magnitude`` (default, 200 bins, build
  ``timit``) or ``log_mel`` (80 filters, build ``timit_mel``; `tfds_name`) of 25 ms periodic
  Hamming frames (400 samples at 16 kHz) every 10 ms, 400-point FFT, no pre-emphasis; every file
  must share one sample rate (at most 16 kHz).
* **Segments**: 20 frames (200 ms) starting every ``hop`` frames (default `DEFAULT_HOP` = 20:
  no overlap, TIMIT being large), fully inside the utterance (shorter utterances: one segment
  padded by repeating the last frame). ``segment`` = position within the utterance.
* **Standardisation**: per bin, with the train split's mean and std over every frame of every
  train segment, stored in the build's metadata (`read_normalisation`).

**Records**: ``video`` float32 (20, F), ClassLabels ``speaker`` (the build's speakers, sorted),
``sex`` (F, M) and ``dialect`` (DR1..DR8), int32 ``utterance``, ``sentence`` (the number of
the SI/SX id: TIMIT numbers its 2342 prompts in one sequence, so SX and SI numbers do not
overlap and the number names the text) and ``segment``. Static factors: speaker, sex,
dialect; no dynamic factor; a recording's segments share ``utterance``.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from seqdis_jax.data import audio
from seqdis_jax.data.registry import PreparedSpec

TFDS_NAME = "timit"  # log_magnitude build; `tfds_name` names the others
TFDS_VERSION = "1.0.0"

PARTS = {"train": "TRAIN", "test": "TEST"}  # split -> release folder
DIALECTS = tuple(f"DR{i}" for i in range(1, 9))
SEXES = ("F", "M")
USED_SENTENCE_TYPES = ("SI", "SX")
SKIPPED_SENTENCE_TYPES = ("SA",)  # the two dialect sentences every speaker reads
# The core test set: 2 male and 1 female speaker per dialect region (TIMIT's testset.doc).
CORE_TEST_SPEAKERS = {
    "DR1": ("MDAB0", "MWBT0", "FELC0"),
    "DR2": ("MTAS1", "MWEW0", "FPAS0"),
    "DR3": ("MJMP0", "MLNT0", "FPKT0"),
    "DR4": ("MLLL0", "MTLS0", "FJLM0"),
    "DR5": ("MBPM0", "MKLT0", "FNLP0"),
    "DR6": ("MCMJ0", "MJDH0", "FMGD0"),
    "DR7": ("MGRT0", "MNJM0", "FDHC0"),
    "DR8": ("MJLN0", "MPAM0", "FMLD0"),
}
TEST_SPEAKER_CHOICES = ("core", "all")
SEGMENT_FRAMES = audio.SEGMENT_FRAMES
DEFAULT_HOP = 20
DEFAULT_FEATURES = "log_magnitude"
FEATURE_SUFFIXES = {"log_magnitude": "", "log_mel": "_mel"}
STATIC_FACTORS = ("speaker", "sex", "dialect")
DYNAMIC_FACTORS: tuple[str, ...] = ()
# 462 train + 24 core test speakers; a build's own speaker list wins.
NUM_CLASSES = {"speaker": 486, "sex": len(SEXES), "dialect": len(DIALECTS)}
GROUP = "utterance"

SPEC = PreparedSpec(
    tfds_name=TFDS_NAME,
    video_shape=(SEGMENT_FRAMES, audio.NUM_MAGNITUDE_BINS),
    static_factors=STATIC_FACTORS,
    dynamic_factors=DYNAMIC_FACTORS,
    num_classes=NUM_CLASSES,
    prepare_command=(
        "python -m data_prep.timit --source_dir=<the TIMIT folder holding TRAIN/ and TEST/>"
    ),
    group=GROUP,
    build_flags={suffix: f"--features={features}"
                 for features, suffix in FEATURE_SUFFIXES.items() if suffix},
)

_UTTERANCE = re.compile(r"(SA|SI|SX)(\d+)")
_DIALECT = re.compile(r"DR[1-8]")


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One SI or SX recording and its labels."""

    split: str  # "train" or "test" (the TRAIN or TEST part)
    dialect: str  # "DR1".."DR8"
    speaker: str  # upper-cased folder name, e.g. "MCPM0"
    sentence: str  # upper-cased id, e.g. "SX127"
    path: str  # the audio file, relative to the release root

    @property
    def key(self) -> str:
        return f"{PARTS[self.split]}/{self.dialect}/{self.speaker}/{self.sentence}"

    @property
    def sex(self) -> str:
        return self.speaker[0]

    @property
    def sentence_number(self) -> int:
        return int(self.sentence[2:])


def tfds_name(features: str = DEFAULT_FEATURES) -> str:
    """``timit`` for log_magnitude features, ``timit_mel`` for log_mel."""
    if features not in FEATURE_SUFFIXES:
        raise ValueError(f"features must be one of {sorted(FEATURE_SUFFIXES)}, got {features!r}")
    return TFDS_NAME + FEATURE_SUFFIXES[features]


def core_test_speakers() -> tuple[str, ...]:
    """The 24 core test speakers, in `CORE_TEST_SPEAKERS` order."""
    return tuple(s for speakers in CORE_TEST_SPEAKERS.values() for s in speakers)


def _subdirs(folder: str) -> dict[str, str]:
    """Upper-cased name -> name of the folders in ``folder``."""
    return {
        n.upper(): n for n in sorted(os.listdir(folder)) if os.path.isdir(os.path.join(folder, n))
    }


def release_root(source_dir: str) -> str:
    """The folder holding TRAIN/ and TEST/ (any case): ``source_dir`` or its only subfolder
    that holds both. FileNotFoundError otherwise."""
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(f"TIMIT folder not found: {source_dir}")
    candidates = [source_dir] + [os.path.join(source_dir, n) for n in _subdirs(source_dir).values()]
    for folder in candidates:
        if {"TRAIN", "TEST"} <= set(_subdirs(folder)):
            return folder
    raise FileNotFoundError(f"no TRAIN/ and TEST/ folders in {source_dir} (nor one level below)")


def _is_riff(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"RIFF"


def _speaker_utterances(
    root: str, split: str, dialect: str, relative: str
) -> tuple[list[Utterance], int]:
    """The SI/SX utterances of one speaker folder and the number of SA ones skipped."""
    speaker = os.path.basename(relative).upper()
    files: dict[str, list[str]] = {}
    for name in sorted(os.listdir(os.path.join(root, relative))):
        path = os.path.join(relative, name)
        if not name.lower().endswith(".wav") or not os.path.isfile(os.path.join(root, path)):
            continue
        sentence = name.split(".")[0].upper()
        if _UTTERANCE.fullmatch(sentence) is None:
            raise ValueError(
                f"{os.path.join(root, path)}: not a TIMIT utterance name (SA<n>, SI<n>, SX<n>)"
            )
        files.setdefault(sentence, []).append(path)
    utterances, skipped = [], 0
    for sentence, paths in sorted(files.items()):
        if sentence[:2] in SKIPPED_SENTENCE_TYPES:
            skipped += 1
            continue
        riff = [p for p in paths if _is_riff(os.path.join(root, p))]
        utterances.append(Utterance(split, dialect, speaker, sentence, (riff or paths)[0]))
    return utterances, skipped


def find_utterances(
    source_dir: str, test_speakers: str = "core"
) -> tuple[str, list[Utterance], int]:
    """(release root, the SI/SX utterances used sorted by key, number of SA files skipped).

    ``test_speakers``: "core" keeps the 24 `CORE_TEST_SPEAKERS` of TEST/ (all must be there),
    "all" every TEST/ speaker. Raises FileNotFoundError for a missing folder, ValueError for
    anything else wrong with the layout (see the module docstring).
    """
    if test_speakers not in TEST_SPEAKER_CHOICES:
        raise ValueError(
            f"test_speakers must be one of {', '.join(TEST_SPEAKER_CHOICES)}, got {test_speakers!r}"
        )
    root = release_root(source_dir)
    utterances: list[Utterance] = []
    skipped = 0
    seen: dict[str, str] = {}  # speaker -> its folder
    parts = _subdirs(root)
    for split, part in PARTS.items():
        for dialect, dialect_name in _subdirs(os.path.join(root, parts[part])).items():
            dialect_dir = os.path.join(parts[part], dialect_name)
            if _DIALECT.fullmatch(dialect) is None:
                raise ValueError(
                    f"{os.path.join(root, dialect_dir)}: not a dialect region folder (DR1..DR8)"
                )
            for speaker, speaker_name in _subdirs(os.path.join(root, dialect_dir)).items():
                relative = os.path.join(dialect_dir, speaker_name)
                if speaker[0] not in SEXES:
                    raise ValueError(
                        f"{os.path.join(root, relative)}: a TIMIT speaker folder's name starts "
                        "with its sex, M or F"
                    )
                if speaker in seen:
                    raise ValueError(
                        f"speaker {speaker} appears twice: {seen[speaker]} and {relative}"
                    )
                seen[speaker] = relative
                found, n_skipped = _speaker_utterances(root, split, dialect, relative)
                utterances += found
                skipped += n_skipped
    if test_speakers == "core":
        core = set(core_test_speakers())
        test = {u.speaker for u in utterances if u.split == "test"}
        missing = [s for s in core_test_speakers() if s not in test]
        if missing:
            raise ValueError(
                f"{len(missing)} of the 24 core test speakers have no SI/SX utterance in "
                f"{os.path.join(root, parts['TEST'])}: {' '.join(missing)} (use "
                "--test_speakers=all to test on every TEST speaker instead)"
            )
        utterances = [u for u in utterances if u.split == "train" or u.speaker in core]
    for split, part in PARTS.items():
        if not any(u.split == split for u in utterances):
            raise ValueError(f"no SI/SX utterance in {os.path.join(root, parts[part])}")
    return root, sorted(utterances, key=lambda u: u.key), skipped


def read_normalisation(
    data_dir: str | os.PathLike, features: str = DEFAULT_FEATURES
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 per feature bin of the prepared build of ``features``: the train
    statistics its ``video`` was standardised with (`audio.destandardise` undoes it)."""
    return audio.read_normalisation(tfds_name(features), data_dir, TFDS_VERSION)
