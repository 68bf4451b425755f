"""What the speech converters (FSDD, TIMIT) share: option checks, the train-statistics pass and
the segment records of the writing pass (`seqdis_jax.data.audio` holds the signal processing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from data_prep.common import InputError, Option, Progress
from seqdis_jax.data import audio


def check_options(features: str, hop: int) -> dict:
    """--features and --hop after validation (InputError), as stored in the metadata."""
    if features not in audio.FEATURE_KINDS:
        raise InputError(
            f"--features must be one of {', '.join(audio.FEATURE_KINDS)}, got {features!r}"
        )
    if hop < 1:
        raise InputError(f"--hop must be >= 1 frame, got {hop}")
    return {"features": features, "hop": int(hop), "segment_frames": audio.SEGMENT_FRAMES}


def command_line_options(name: str, default_features: str, default_hop: int) -> list[Option]:
    """The flags --features and --hop of a converter whose builds are ``name`` (log_magnitude)
    and ``<name>_mel`` (log_mel), for `data_prep.common.main`."""
    return [
        Option(
            "features", default_features,
            f"log_magnitude (200-d, build {name}) or log_mel (80-d, build {name}_mel).",
            arg="features_kind",
        ),
        Option("hop", default_hop, "Frames between segment starts (>= 1).", kind="integer"),
    ]


def train_statistics(paths: Sequence[str], is_train: Sequence[bool], opts: dict, label: str,
                     unit: str) -> tuple[list[int], int, np.ndarray, np.ndarray]:
    """Pass 1 (`audio.train_statistics`): segments per file, sample rate, train mean and std;
    a file that cannot be read is an InputError."""
    progress = Progress(len(paths), f"{label} (reading, train statistics)", unit)
    try:
        return audio.train_statistics(paths, is_train, opts["features"], opts["hop"],
                                      on_file=progress.update)
    except (OSError, ValueError) as e:
        raise InputError(str(e)) from e


def segment_records(
    paths: Sequence[str],
    indices: Sequence[int],
    opts: dict,
    normalisation: tuple[int, np.ndarray, np.ndarray],
    progress: Progress,
    labels: Callable[[int], dict[str, np.int32]],
) -> Iterator[dict[str, object]]:
    """Pass 2: the standardised segments of the files ``indices``, in order, each with the
    file's `labels(i)`, ``utterance`` = i and ``segment`` = its position in the file."""
    rate, mean, std = normalisation
    for i in indices:
        try:
            segments, _ = audio.utterance_segments(paths[i], opts["features"], opts["hop"], rate)
        except (OSError, ValueError) as e:  # the file changed since pass 1
            raise InputError(str(e)) from e
        for k, video in enumerate(audio.standardise(segments, mean, std)):
            yield {"video": video, **labels(i), "utterance": np.int32(i),
                   "segment": np.int32(k)}
        progress.update()
