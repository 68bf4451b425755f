"""Pieces every converter in data_prep/ shares: the error type for bad inputs, a progress
line, content fingerprints, the skip-if-unchanged check and the command-line wrapper."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable

from seqdis_jax.data import array_record


class InputError(Exception):
    """A problem with the user's inputs: reported as one line ``error: ...``, exit status 2."""


class Progress:
    """Prints ``label: done/total <unit>, elapsed, ETA`` to stderr, at most every few seconds
    (and always for the first and last item)."""

    def __init__(self, total: int, label: str, unit: str, every_s: float = 5.0):
        self.total, self.label, self.unit, self.every_s = total, label, unit, every_s
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if 1 < self.done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / max(self.done, 1) * (self.total - self.done)
        print(
            f"{self.label}: {self.done}/{self.total} {self.unit}, {elapsed:.0f} s elapsed, "
            f"ETA {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def fingerprint(header: str, files: Iterable[tuple[str, str]]) -> str:
    """sha256 over ``header`` (protocol, version, split, options) and each (name, path)'s name
    and content, in the given order: equal fingerprints mean an identical dataset."""
    h = hashlib.sha256(header.encode())
    for name, path in files:
        with open(path, "rb") as f:
            h.update(f"\n{name}\n".encode() + hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def already_prepared(name: str, data_dir: str, version: str, digest: str) -> bool:
    """Whether ``<data_dir>/<name>/<version>`` is complete and was built with ``digest``."""
    metadata = array_record.read_metadata(name, data_dir, version)
    return metadata is not None and metadata.get(array_record.FINGERPRINT_KEY) == digest


def run_converter(prepare: Callable[[str], tuple[str, bool]], data_dir_flag: str | None) -> None:
    """The body of a converter's ``main``: ``prepare(data_dir) -> (path, written)``; an
    `InputError` becomes one line ``error: ...`` and exit status 2."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # TFDS logs every step of a build at INFO
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()  # Progress reports per item instead
    data_dir = os.path.expanduser(data_dir_flag or array_record.default_data_dir())
    start = time.monotonic()
    try:
        path, written = prepare(data_dir)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if written:
        print(f"wrote {path} in {time.monotonic() - start:.1f} s")
    else:
        print(f"skipped: {path} is already prepared from the same inputs and protocol")
