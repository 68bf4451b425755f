"""PhysioNet/Computing in Cardiology Challenge 2012 (Silva et al., 2012): 48 hours of ICU
measurements per patient, the clinical series of GLR (Tonekaboni et al., 2022) and the DBSE
paper's time-series experiments.

Published layout (physionet.org/content/challenge-2012), ``<root>`` being the folder passed as
``--source_dir`` to ``python -m data_prep.physionet``:

* ``<root>/set-a/<RecordID>.txt``, ``<root>/set-b/<RecordID>.txt``: one file per ICU stay,
  header ``Time,Parameter,Value``, then lines ``HH:MM,<parameter>,<value>`` (time since
  admission, up to 48:00). The first lines, at 00:00, are the descriptors ``RecordID``,
  ``Age``, ``Gender``, ``Height``, ``ICUType`` (1..4), ``Weight``; the rest are time-stamped
  measurements (HR, GCS, Temp, ...). ``-1`` means missing (unknown Height, Weight, ...).
* ``<root>/Outcomes-a.txt``, ``<root>/Outcomes-b.txt``: header ``RecordID,SAPS-I,SOFA,
  Length_of_stay,Survival,In-hospital_death``, one line per record of the set.

Protocol. GLR describes hourly series over the first 48 hours; the rest is this project's own:

* T = ``NUM_BINS`` = 48 hourly bins: a measurement at minute m after admission goes to bin
  ``min(m // 60, 47)`` (48:00 joins the last hour; `time_bin`).
* F = 10 time-varying vitals `FEATURES`: HR, SysABP, DiasABP, MAP, RespRate, Temp, SaO2, GCS,
  Urine, FiO2; every other parameter (labs, Weight, MechVent, ...) is ignored. A value of
  ``-1`` is missing and ignored.
* A bin's value is the mean of its measurements. Bins without one are forward-filled from the
  last observed bin; bins before a variable's first observation are back-filled from it; a
  variable never observed for a patient is set to the train mean (0 after standardising).
* Standardisation: each feature with the mean and (population, ddof=0) standard deviation
  over every observed bin (the per-bin means, before filling) of the train patients, stored
  in the build's metadata (``feature_mean``, ``feature_std``); a zero std is replaced by 1.
* Split: set-a = ``train`` (4000 stays), set-b = ``test`` (4000), the challenge's two
  labelled sets (set-c's outcomes were withheld). Records are in RecordID order.

Labels (static; no dynamic factor): ``mortality`` (In-hospital_death: 0 "survived", 1 "died"),
``icu_type`` (ICUType 1..4 -> 0..3: coronary care, cardiac surgery recovery, medical,
surgical). Records also hold ``record_id`` int32 and ``observed`` uint8 (48, 10): 1 where the
bin had a measurement of the feature (the rest of ``video`` is filled).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from seqdis_jax.data.registry import PreparedSpec

TFDS_NAME = "physionet"
TFDS_VERSION = "1.0.0"

NUM_BINS = 48  # hours
FEATURES = ("HR", "SysABP", "DiasABP", "MAP", "RespRate", "Temp", "SaO2", "GCS", "Urine", "FiO2")
MORTALITY = ("survived", "died")  # In-hospital_death 0 / 1
ICU_TYPES = ("coronary_care", "cardiac_surgery_recovery", "medical", "surgical")  # ICUType 1..4
STATIC_FACTORS = ("mortality", "icu_type")
DYNAMIC_FACTORS: tuple[str, ...] = ()
NUM_CLASSES = {"mortality": len(MORTALITY), "icu_type": len(ICU_TYPES)}
MISSING = -1.0  # the release's "unknown" value

SET_DIRS = {"train": "set-a", "test": "set-b"}
OUTCOME_FILES = {"train": "Outcomes-a.txt", "test": "Outcomes-b.txt"}
RECORD_HEADER = ("Time", "Parameter", "Value")
OUTCOME_HEADER = ("RecordID", "SAPS-I", "SOFA", "Length_of_stay", "Survival", "In-hospital_death")

SPEC = PreparedSpec(
    tfds_name=TFDS_NAME,
    video_shape=(NUM_BINS, len(FEATURES)),
    static_factors=STATIC_FACTORS,
    dynamic_factors=DYNAMIC_FACTORS,
    num_classes=NUM_CLASSES,
    prepare_command=(
        "python -m data_prep.physionet --source_dir=<folder holding set-a/, set-b/, "
        "Outcomes-a.txt, Outcomes-b.txt>"
    ),
)


@dataclasses.dataclass(frozen=True)
class PatientRecord:
    """One parsed record file: ``values`` float64 (48, 10), the per-bin means, NaN where the
    bin has no measurement of the feature."""

    record_id: int
    icu_type: int  # 0..3 (ICUType - 1)
    values: np.ndarray


def time_bin(minutes: int) -> int:
    """The hourly bin of a measurement ``minutes`` after admission: min(m // 60, 47)."""
    return min(minutes // 60, NUM_BINS - 1)


def _minutes(text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or int(minutes) >= 60:
        raise ValueError(f"time {text!r} is not HH:MM")
    return 60 * int(hours) + int(minutes)


def _read_lines(path: str, header: tuple[str, ...]) -> list[str]:
    """The lines of a challenge CSV file after checking its header line."""
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    found = tuple(c.strip() for c in lines[0].split(",")) if lines else ()
    if found != header:
        raise ValueError(f"{path} line 1: expected the header {','.join(header)}, "
                         f"got {lines[0] if lines else '<empty file>'!r}")
    return lines


def read_record(path: str) -> PatientRecord:
    """Parses a record file into per-bin means; raises ValueError naming the file and line of
    a malformed line, a missing RecordID or ICUType, or an ICUType outside 1..4."""
    sums = np.zeros((NUM_BINS, len(FEATURES)))
    counts = np.zeros((NUM_BINS, len(FEATURES)), np.int64)
    column = {name: j for j, name in enumerate(FEATURES)}
    descriptors: dict[str, tuple[float, int]] = {}  # name -> (value, line)
    lines = _read_lines(path, RECORD_HEADER)
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split(",")
        try:
            if len(fields) != 3:
                raise ValueError(f"expected Time,Parameter,Value, got {len(fields)} fields")
            minutes, name = _minutes(fields[0]), fields[1].strip()
            value = float(fields[2])
            if not np.isfinite(value):
                raise ValueError(f"value {fields[2].strip()!r} is not finite")
        except ValueError as e:
            raise ValueError(f"{path} line {number}: {e} ({line.strip()!r})") from None
        if name in ("RecordID", "ICUType") and name not in descriptors:
            descriptors[name] = (value, number)
        elif name in column and value != MISSING:
            b, j = time_bin(minutes), column[name]
            sums[b, j] += value
            counts[b, j] += 1
    for name in ("RecordID", "ICUType"):
        if name not in descriptors:
            raise ValueError(f"{path}: no {name} line")
    record_id, _ = descriptors["RecordID"]
    icu_type, number = descriptors["ICUType"]
    if icu_type not in (1, 2, 3, 4):
        raise ValueError(f"{path} line {number}: ICUType {icu_type:g} is not one of 1, 2, 3, 4")
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return PatientRecord(int(record_id), int(icu_type) - 1, values)


def read_outcomes(path: str) -> dict[int, int]:
    """{RecordID: In-hospital_death (0 or 1)} of an Outcomes file; ValueError naming the file
    and line of a malformed one."""
    lines = _read_lines(path, OUTCOME_HEADER)
    outcomes = {}
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = [c.strip() for c in line.split(",")]
        if (len(fields) != len(OUTCOME_HEADER) or not fields[0].isdigit()
                or fields[-1] not in ("0", "1")):
            raise ValueError(
                f"{path} line {number}: expected {len(OUTCOME_HEADER)} fields, an integer "
                f"RecordID and In-hospital_death 0 or 1, got {line.strip()!r}")
        outcomes[int(fields[0])] = int(fields[-1])
    return outcomes


def statistics(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per feature over every observed (non-NaN) bin of the given (48, 10) arrays,
    ddof=0; a zero std becomes 1. ValueError when a feature is never observed."""
    stacked = np.concatenate([v.reshape(-1, len(FEATURES)) for v in values])
    observed = ~np.isnan(stacked)
    never = [name for name, seen in zip(FEATURES, observed.any(axis=0)) if not seen]
    if never:
        raise ValueError(f"the train set never observes {', '.join(never)}")
    mean = np.nanmean(stacked, axis=0)
    std = np.nanstd(stacked, axis=0)
    return mean, np.where(std > 0, std, 1.0)


def fill(values: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``values`` (48, 10) with NaN bins filled: forward fill, leading gaps back-filled from the
    first observation, never-observed features set to ``fallback`` (10,)."""
    out = np.array(values, dtype=np.float64)
    for j in range(out.shape[1]):
        seen = np.flatnonzero(~np.isnan(out[:, j]))
        if not seen.size:
            out[:, j] = fallback[j]
            continue
        # Index of the last observed bin at or before each bin (the first one before it).
        last = np.maximum.accumulate(np.where(np.isnan(out[:, j]), -1, np.arange(len(out))))
        out[:, j] = out[np.where(last < 0, seen[0], last), j]
    return out


def standardise(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(values - mean) / std`` as float32."""
    return ((values - mean) / std).astype(np.float32)
