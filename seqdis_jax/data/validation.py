"""Checks that a loaded dataset is usable, done where they are cheap.

* At load time (`check_dataset`; `registry.load` runs it on every split it loads): the split
  has records, and its ``video`` has a dtype the models take (`VIDEO_DTYPES`: uint8 frames,
  float32 features), the shape the dataset declares and, when float, only finite values. An
  in-memory source is checked whole (one vectorised pass over its array); a lazy one (an
  ArrayRecord split, SM-MNIST's on-the-fly rendering) on `SAMPLED_RECORDS` records spread over
  the split, first and last included. Reading them also finds damaged files: a truncated or
  overwritten ArrayRecord file fails on its footer or on the sampled records.
* Per training batch (`check_batch_rows`): float ``video`` is finite, tested on device inside
  the train step (`train_step.non_finite_rows`) and read by the loop with the NaN/Inf guard's
  flags at the next log or save step. A NaN in a record that the load-time sample missed
  would otherwise only make the guard skip every step that draws it, without saying why.

Every failure is a `BadDataError` (a `NotPreparedError`: the launcher prints its one-line
message and exits 2) that names the split, the record and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from seqdis_jax.data.array_record import BadDataError

VIDEO_DTYPES = ("uint8", "float32")  # uint8 frames (scaled in the step); float32 features
SAMPLED_RECORDS = 8  # records of a lazy source read at load time
BATCH_FIX = ("re-run the dataset's data_prep converter (or fix the source files it is "
             "generated from)")


def sample_indices(length: int, count: int = SAMPLED_RECORDS) -> list[int]:
    """Up to `count` record indices spread evenly over [0, length), first and last included."""
    if length <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, length - 1, min(count, length))})


def _non_finite_rows(video: np.ndarray) -> np.ndarray:
    """Indices (along the first axis) of the sequences holding a NaN or an Inf."""
    if not np.issubdtype(video.dtype, np.floating) or video.size == 0:
        return np.zeros((0,), np.int64)
    bad = ~np.isfinite(video.reshape(len(video), -1)).all(axis=1)
    return np.flatnonzero(bad)


def _check_video(video: np.ndarray, indices: np.ndarray, expected_shape: tuple[int, ...],
                 split: str, name: str, fix: str) -> None:
    """dtype, per-record shape and finiteness of `video`: records `indices` of the split."""
    where = f"The {split!r} split of dataset {name!r}"
    if video.dtype.name not in VIDEO_DTYPES:
        raise BadDataError(
            f"{where} stores 'video' as {video.dtype.name}, but the models take uint8 frames "
            f"or float32 features; {fix}")
    if tuple(video.shape[1:]) != tuple(expected_shape):
        raise BadDataError(
            f"{where} has records of 'video' shape {tuple(video.shape[1:])} (T, ...) but "
            f"declares {tuple(expected_shape)}: its records and its metadata disagree; {fix}")
    rows = _non_finite_rows(video)
    if len(rows):
        more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
        raise BadDataError(
            f"{where} has non-finite (NaN/Inf) 'video' values in record "
            f"{int(indices[rows[0]])}{more}; {fix}")


def check_dataset(dataset: Any, split: str, name: str, fix: str) -> None:
    """Refuses split `split` of dataset `name` (a `registry.Dataset`) when it is empty,
    unreadable or holds a 'video' of another dtype or shape than declared, or non-finite
    values; `fix` (e.g. "re-prepare it with: python -m data_prep...") ends the message."""
    source = dataset.source
    length = len(source)
    if length == 0:
        raise BadDataError(f"The {split!r} split of dataset {name!r} has no records; {fix}")
    arrays = getattr(source, "arrays", None)
    if isinstance(arrays, Mapping) and "video" in arrays:  # in memory: all of it, vectorised
        video = np.asarray(arrays["video"])
        _check_video(video, np.arange(len(video)), dataset.video_shape, split, name, fix)
        return
    for index in sample_indices(length):
        try:
            video = np.asarray(source[index]["video"])
        except Exception as e:  # any reader error means a damaged or foreign file
            reason = str(e).splitlines()[0][:200] if str(e) else ""
            raise BadDataError(
                f"Could not read record {index} of the {split!r} split of dataset {name!r} "
                f"({type(e).__name__}: {reason}): its files are damaged or were changed after "
                f"they were written; {fix}") from e
        _check_video(video[None], np.array([index]), dataset.video_shape, split, name, fix)


def check_batch_rows(non_finite: np.ndarray, fix: str = BATCH_FIX) -> None:
    """Refuses a training batch whose float 'video' held a NaN or an Inf: `non_finite` is
    the bool[B] that the train step computed on device (`train_step.non_finite_rows`), read
    by the loop with the NaN/Inf guard's flags."""
    non_finite = np.asarray(non_finite)
    rows = np.flatnonzero(non_finite)
    if len(rows):
        raise BadDataError(
            f"A training batch has non-finite (NaN/Inf) 'video' values in {len(rows)} of its "
            f"{len(non_finite)} sequences (batch rows {rows.tolist()}): a record of the "
            f"training split is damaged; {fix}.")
