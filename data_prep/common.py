"""Pieces every converter in data_prep/ shares: the error type for bad inputs, a progress
bar (tqdm), content fingerprints, the skip-if-unchanged check and the command-line app (`main`)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import tqdm
from absl import app, flags

from seqdis_jax.data import array_record


class InputError(Exception):
    """A problem with the user's inputs: reported as one line ``error: ...``, exit status 2."""


class Progress(tqdm.tqdm):
    """A tqdm bar ``label: done/total <unit>`` on stderr, off when stderr is not a terminal
    (logs and tests stay one line per outcome) and cleared when done."""

    def __init__(self, total: int, label: str, unit: str):
        super().__init__(total=total, desc=label, unit=f" {unit}", file=sys.stderr,
                         disable=None, leave=False)


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


DATA_DIR_HELP = "TFDS data dir (default $TFDS_DATA_DIR, else ~/tensorflow_datasets)."


@dataclasses.dataclass(frozen=True)
class Option:
    """A converter's own flag ``--name``, given to its ``prepare`` as the keyword ``arg``
    (default: ``name``). ``kind`` is the absl flag type: "string", "integer", "float", "bool",
    or "enum" over ``choices``."""

    name: str
    default: Any
    help: str
    kind: str = "string"
    choices: Sequence[str] = ()
    arg: str | None = None

    def define(self) -> None:
        if self.kind == "enum":
            flags.DEFINE_enum(self.name, self.default, list(self.choices), self.help)
        else:
            getattr(flags, f"DEFINE_{self.kind}")(self.name, self.default, self.help)


def main(
    prepare: Callable[..., tuple[str, bool]],
    *,
    source_help: str,
    source_required: str | None,
    options: Sequence[Option] = (),
) -> None:
    """A converter's command line, the body of its ``if __name__ == "__main__":``.

    Defines ``--source_dir`` (help ``source_help``), ``--data_dir`` and ``options``, parses
    them (`absl.app.run`: the module docstring is the usage, ``--help`` lists these flags, an
    extra argument is a usage error) and calls ``prepare(source_dir, data_dir, **options)``
    with ``~`` expanded and ``--data_dir`` defaulting to `array_record.default_data_dir`. A
    missing ``--source_dir`` is the `InputError` ``source_required`` (with None, ``prepare``
    gets None and decides). An `InputError` becomes one line ``error: ...`` on stderr and exit
    status 2; otherwise one line on stdout says what was written or skipped.

    Flags are defined only here, when a converter runs as the program, so that importing
    several converters (tests, fixtures) does not define --source_dir twice.
    """
    # Flags defined below belong to the converter that calls `main`: its --help lists them.
    flags.disclaim_key_flags()
    flags.DEFINE_string("source_dir", None, source_help)
    flags.DEFINE_string("data_dir", None, DATA_DIR_HELP)
    for option in options:
        option.define()
    app.run(functools.partial(_run, prepare, source_required, options))


def _run(
    prepare: Callable[..., tuple[str, bool]],
    source_required: str | None,
    options: Sequence[Option],
    argv: list[str],
) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # TFDS logs every step of a build at INFO
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()  # Progress reports per item instead
    values = {option.arg or option.name: flags.FLAGS[option.name].value for option in options}
    source_dir = flags.FLAGS.source_dir
    data_dir = os.path.expanduser(flags.FLAGS.data_dir or array_record.default_data_dir())
    start = time.monotonic()
    try:
        if not source_dir and source_required is not None:
            raise InputError(source_required)
        source_dir = os.path.expanduser(source_dir) if source_dir else None
        path, written = prepare(source_dir, data_dir, **values)
    except InputError as e:
        tqdm.tqdm.write(f"error: {e}", file=sys.stderr)  # below any unfinished bar
        sys.exit(2)
    if written:
        print(f"wrote {path} in {time.monotonic() - start:.1f} s")
    else:
        print(f"skipped: {path} is already prepared from the same inputs and protocol")
