"""A tiny synthetic copy of the PhysioNet 2012 challenge in its published layout, for tests.

``<root>/set-a/<RecordID>.txt`` (6 stays), ``<root>/set-b/<RecordID>.txt`` (4 stays),
``<root>/Outcomes-a.txt`` and ``<root>/Outcomes-b.txt`` (each also lists one RecordID that has
no file, as a set's outcomes may). The ICU types cycle through 1..4 and the deaths alternate,
so every class occurs in set-a.

The first stay of set-a (`DESIGNED_ID`) is written by hand so that binning and filling can be
checked cell by cell (`DESIGNED`: its measurements; -1 values and parameters outside the 10
vitals must be ignored). Every other stay draws 1..5 measurements of each vital at random
minutes in [0, 48:00] with values on a 0.1 grid, some -1; the last stay of set-a
(`SILENT_ID`) has descriptors only, like the release's stays without any series.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

VITALS = ("HR", "SysABP", "DiasABP", "MAP", "RespRate", "Temp", "SaO2", "GCS", "Urine", "FiO2")
RANGES = {  # (low, high) of the drawn values
    "HR": (50, 130), "SysABP": (80, 160), "DiasABP": (40, 90), "MAP": (60, 110),
    "RespRate": (10, 30), "Temp": (35, 39), "SaO2": (90, 100), "GCS": (3, 15),
    "Urine": (0, 400), "FiO2": (0.21, 1.0),
}
DESIGNED_ID = 132539
SILENT_ID = 132600
# (time, parameter, value) of the designed stay after its descriptors.
DESIGNED = (
    ("00:07", "GCS", 15.0),
    ("00:37", "HR", 88.0),
    ("00:59", "HR", 92.0),  # bin 0: mean 90
    ("01:00", "HR", 100.0),  # bin 1 (and forward-filled into bins 2..4)
    ("01:00", "pH", 7.4),  # not a vital: ignored
    ("02:00", "SysABP", -1.0),  # missing: SysABP is never observed -> the train mean
    ("03:15", "Temp", 37.5),  # bins 0..2 are back-filled from it
    ("05:30", "HR", 70.0),  # bin 5, forward-filled into bins 6..46
    ("10:00", "Weight", 81.0),  # a time-stamped descriptor: ignored
    ("10:00", "MechVent", 1.0),  # ignored
    ("20:10", "Temp", 38.5),  # bin 20
    ("20:50", "Temp", -1.0),  # missing: does not lower bin 20's mean
    ("47:10", "HR", 80.0),
    ("48:00", "HR", 60.0),  # 48:00 joins bin 47: mean 70
)


@dataclasses.dataclass(frozen=True)
class Stay:
    record_id: int
    icu_type: int  # 1..4, as written
    died: int
    measurements: tuple[tuple[str, str, float], ...]  # (HH:MM, parameter, value)


def _random_measurements(rng: np.random.Generator) -> list[tuple[str, str, float]]:
    rows = []
    for name in VITALS:
        low, high = RANGES[name]
        for _ in range(int(rng.integers(1, 6))):
            minute = int(rng.integers(0, 48 * 60 + 1))
            value = -1.0 if rng.random() < 0.1 else round(float(rng.uniform(low, high)), 1)
            rows.append((f"{minute // 60:02d}:{minute % 60:02d}", name, value))
    return rows


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def write_stay(path: str, stay: Stay) -> None:
    """Writes a record file as the release does: descriptors at 00:00, then time order."""
    lines = ["Time,Parameter,Value", f"00:00,RecordID,{stay.record_id}", "00:00,Age,54",
             "00:00,Gender,0", "00:00,Height,-1", f"00:00,ICUType,{stay.icu_type}",
             "00:00,Weight,-1"]
    for time, name, value in sorted(stay.measurements, key=lambda m: m[0]):
        lines.append(f"{time},{name},{_format(value)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_outcomes(path: str, stays: list[Stay], extra_id: int) -> None:
    lines = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
    for stay in stays:
        lines.append(f"{stay.record_id},12,5,9,{-1 if not stay.died else 4},{stay.died}")
    lines.append(f"{extra_id},10,2,5,-1,0")  # listed, but no record file
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_fixture(root: str, seed: int = 0) -> dict[str, list[Stay]]:
    """Writes the fixture under ``root``; returns the stays per split ("train" = set-a,
    "test" = set-b) in RecordID order."""
    rng = np.random.default_rng(seed)
    ids = {"train": [DESIGNED_ID, 132548, 132551, 132577, 132592, SILENT_ID],
           "test": [142020, 142031, 142066, 142101]}
    stays: dict[str, list[Stay]] = {}
    k = 0
    for split, set_name, letter in (("train", "set-a", "a"), ("test", "set-b", "b")):
        os.makedirs(os.path.join(root, set_name), exist_ok=True)
        stays[split] = []
        for record_id in ids[split]:
            if record_id == DESIGNED_ID:
                measurements = DESIGNED
            elif record_id == SILENT_ID:
                measurements = ()
            else:
                measurements = tuple(_random_measurements(rng))
            stay = Stay(record_id, 1 + k % 4, k % 2, measurements)
            k += 1
            write_stay(os.path.join(root, set_name, f"{record_id}.txt"), stay)
            stays[split].append(stay)
        write_outcomes(os.path.join(root, f"Outcomes-{letter}.txt"), stays[split],
                       ids[split][-1] + 3)
    return stays


def prepare_for_tests(data_dir: str) -> dict[str, str]:
    """Writes the fixture into a fresh folder next to ``data_dir``, prepares it into
    ``data_dir`` and returns the config overrides that point training at that build."""
    from data_prep import physionet as prep

    data_dir = os.path.abspath(data_dir)
    parent = os.path.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    source = tempfile.mkdtemp(prefix="physionet_source-", dir=parent)
    write_fixture(source)
    prep.prepare(source, data_dir)
    return {"data.data_dir": data_dir}
