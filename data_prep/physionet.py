"""Prepare the PhysioNet 2012 challenge's ICU series as a TFDS array_record dataset (no
TensorFlow needed).

    python -m data_prep.physionet --source_dir=<folder holding set-a/, set-b/, Outcomes-a.txt,
        Outcomes-b.txt> [--data_dir=DIR]

Download the challenge's files from physionet.org/content/challenge-2012 (set-a.tar.gz,
set-b.tar.gz, Outcomes-a.txt, Outcomes-b.txt) and unpack the two sets into ``--source_dir``.
Writes ``<data_dir>/physionet/1.0.0``: train = set-a, test = set-b, records in RecordID order;
float32 video (48, 10) (hourly bins of 10 standardised vitals), uint8 ``observed`` (48, 10),
class labels ``mortality`` and ``icu_type`` and int32 ``record_id``. Binning, filling and
standardisation: see `seqdis_jax.data.physionet`. ``--data_dir`` defaults to
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

A run is idempotent: the dataset's metadata holds a fingerprint (sha256 of the protocol, the
two Outcomes files and every record file); when the prepared dataset has the same fingerprint,
nothing is rewritten. Bad inputs (missing folder, set folder or Outcomes file, a record without
an outcome, a malformed line, named with its file and line) exit with status 2 and one line
``error: ...``; a failed run leaves an earlier build untouched.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import numpy as np

from data_prep import common
from data_prep.common import InputError, Progress, already_prepared, fingerprint
from seqdis_jax.data import array_record, physionet

# Bump whenever the features, the binning, the filling, the standardisation, the split or the
# record layout change: the fingerprint changes with it, so the next run rebuilds.
PROTOCOL = "physionet-protocol-1"
CITATION = """@inproceedings{silva2012predicting,
  title = {Predicting In-Hospital Mortality of {ICU} Patients: The {PhysioNet}/Computing in
           Cardiology Challenge 2012},
  author = {Silva, Ikaro and Moody, George and Scott, Daniel J. and Celi, Leo A. and
            Mark, Roger G.},
  booktitle = {Computing in Cardiology},
  volume = {39},
  pages = {245--248},
  year = {2012}
}"""
SOURCE_HINT = "<folder holding set-a/, set-b/, Outcomes-a.txt, Outcomes-b.txt>"


@dataclasses.dataclass(frozen=True)
class Stay:
    """One record file of a set and its outcome."""

    record_id: int  # from the file name
    path: str  # relative to the source folder
    died: int  # In-hospital_death


def scan(source_dir: str) -> dict[str, list[Stay]]:
    """The stays of each split in RecordID order, after checking the folders, the Outcomes
    files and that every record file has an outcome; reads no record file.

    Raises `InputError` for a missing folder or Outcomes file, a malformed Outcomes line, a
    record file whose name is not ``<RecordID>.txt`` and a record without an outcome.
    """
    if not os.path.isdir(source_dir):
        raise InputError(f"PhysioNet 2012 folder not found: {source_dir}")
    stays: dict[str, list[Stay]] = {}
    for split, set_dir in physionet.SET_DIRS.items():
        folder = os.path.join(source_dir, set_dir)
        if not os.path.isdir(folder):
            raise InputError(f"missing PhysioNet set folder: {folder}")
        outcomes_path = os.path.join(source_dir, physionet.OUTCOME_FILES[split])
        if not os.path.isfile(outcomes_path):
            raise InputError(f"missing PhysioNet outcomes file: {outcomes_path}")
        try:
            outcomes = physionet.read_outcomes(outcomes_path)
        except ValueError as e:
            raise InputError(str(e)) from e
        ids = []
        for name in os.listdir(folder):
            stem, ext = os.path.splitext(name)
            if ext != ".txt":
                continue
            if not stem.isdigit():
                raise InputError(f"{os.path.join(folder, name)}: not named <RecordID>.txt")
            ids.append(int(stem))
        if not ids:
            raise InputError(f"{folder} holds no <RecordID>.txt record file")
        stays[split] = []
        for record_id in sorted(ids):
            if record_id not in outcomes:
                raise InputError(
                    f"{os.path.join(folder, f'{record_id}.txt')}: RecordID {record_id} has no "
                    f"line in {outcomes_path}")
            path = os.path.join(set_dir, f"{record_id}.txt")
            stays[split].append(Stay(record_id, path, outcomes[record_id]))
    return stays


def dataset_fingerprint(source_dir: str, stays: Mapping[str, Sequence[Stay]]) -> str:
    """sha256 of the protocol, the Outcomes files and every record file (name and content)."""
    header = f"{PROTOCOL}\n{physionet.TFDS_VERSION}\n"
    files = [(name, os.path.join(source_dir, name)) for name in physionet.OUTCOME_FILES.values()]
    for split in sorted(stays):
        files += [(s.path, os.path.join(source_dir, s.path)) for s in stays[split]]
    return fingerprint(header, files)


def features() -> dict[str, array_record.Feature]:
    """The record layout."""
    shape = (physionet.NUM_BINS, len(physionet.FEATURES))
    return {
        "video": array_record.Feature("float32", shape),
        "observed": array_record.Feature("uint8", shape),
        "mortality": array_record.Feature("int32", names=physionet.MORTALITY),
        "icu_type": array_record.Feature("int32", names=physionet.ICU_TYPES),
        "record_id": array_record.Feature("int32"),
    }


def read_stays(
    source_dir: str, stays: Sequence[Stay], progress: Progress
) -> list[physionet.PatientRecord]:
    """Parses the record files; raises `InputError` naming the file (and line) of a bad one."""
    records = []
    for stay in stays:
        path = os.path.join(source_dir, stay.path)
        try:
            record = physionet.read_record(path)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(str(e)) from e
        if record.record_id != stay.record_id:
            raise InputError(f"{path}: its RecordID line says {record.record_id}")
        records.append(record)
        progress.update()
    return records


def build_arrays(
    stays: Sequence[Stay],
    records: Sequence[physionet.PatientRecord],
    mean: np.ndarray,
    std: np.ndarray,
) -> dict[str, np.ndarray]:
    """One split's records as a dict of arrays (one row per stay)."""
    return {
        "video": np.stack(
            [physionet.standardise(physionet.fill(r.values, mean), mean, std) for r in records]),
        "observed": np.stack([~np.isnan(r.values) for r in records]).astype(np.uint8),
        "mortality": np.array([s.died for s in stays], np.int32),
        "icu_type": np.array([r.icu_type for r in records], np.int32),
        "record_id": np.array([r.record_id for r in records], np.int32),
    }


def prepare(source_dir: str, data_dir: str) -> tuple[str, bool]:
    """Builds the dataset unless it is prepared with the same fingerprint.

    Returns (version directory, whether anything was written). Raises `InputError` for bad
    inputs (see the module docstring); nothing is written then.
    """
    stays = scan(source_dir)
    digest = dataset_fingerprint(source_dir, stays)
    final = array_record.version_dir(physionet.TFDS_NAME, data_dir, physionet.TFDS_VERSION)
    if already_prepared(physionet.TFDS_NAME, data_dir, physionet.TFDS_VERSION, digest):
        return final, False
    progress = Progress(sum(map(len, stays.values())), physionet.TFDS_NAME, "records")
    records = {split: read_stays(source_dir, s, progress) for split, s in stays.items()}
    try:
        mean, std = physionet.statistics([r.values for r in records["train"]])
    except ValueError as e:
        raise InputError(str(e)) from e
    splits = {split: build_arrays(stays[split], records[split], mean, std) for split in stays}
    array_record.write_dataset(
        physionet.TFDS_NAME,
        data_dir,
        splits,
        features(),
        version=physionet.TFDS_VERSION,
        description=(
            "PhysioNet/CinC Challenge 2012 ICU stays: 48 hourly bins (bin = min(minute // 60, "
            "47)) of 10 vitals (per-bin mean, forward/back-filled, never-observed = train mean, "
            "standardised with train statistics); train = set-a, test = set-b; static labels "
            "in-hospital mortality and ICU type."
        ),
        homepage="https://physionet.org/content/challenge-2012/",
        citation=CITATION,
        metadata={
            "protocol": PROTOCOL,
            "features": list(physionet.FEATURES),
            "feature_mean": [float(v) for v in mean],
            "feature_std": [float(v) for v in std],
            "static_factors": list(physionet.STATIC_FACTORS),
            "dynamic_factors": list(physionet.DYNAMIC_FACTORS),
            "time_bins": "min(minute // 60, 47), 48 hourly bins",
            "num_records": {split: len(s) for split, s in stays.items()},
        },
        fingerprint=digest,
        expected_sizes={split: len(s) for split, s in stays.items()},
    )
    return final, True


if __name__ == "__main__":
    common.main(
        prepare,
        source_help="Folder holding set-a/, set-b/, Outcomes-a.txt and Outcomes-b.txt.",
        source_required=f"--source_dir={SOURCE_HINT} is required",
    )
