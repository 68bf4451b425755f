"""Launcher: `python -m experiments.main --config=experiments/<name>.py[:variant] --workdir=DIR`.

Flags:
  --config             an ml_collections config file, optionally `:variant`; override any field
                       with --config.a.b=value (unknown fields and wrong types are refused).
  --workdir            where checkpoints, logs, metrics.json, PNG grids and config.json go.
                       A workdir with checkpoints is resumed.
  --mode               train (train, then evaluate) or eval (restore the latest checkpoint and
                       evaluate only).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and outputs.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "What to run.")
flags.mark_flags_as_required(["config", "workdir"])


def _prepare_workdir(workdir: str, mode: str) -> str:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    from seqdis_jax.configuration import UserInputError

    if mode == "eval" and not os.path.isdir(workdir):
        raise UserInputError(
            f"--workdir {workdir} does not exist; --mode=eval needs the workdir of a trained run."
        )
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserInputError(f"--workdir {workdir} is a file, not a directory.")
    if not os.path.isdir(workdir):
        parent = os.path.dirname(workdir)
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK):
            raise UserInputError(f"--workdir {workdir} cannot be created: {parent} is not writable.")
    elif not os.access(workdir, os.W_OK | os.X_OK):
        raise UserInputError(f"--workdir {workdir} is not writable; pass a writable directory.")
    return workdir


def run(config, workdir: str, mode: str) -> dict:
    """Validates everything, then trains and/or evaluates. Nothing is written before the
    checks pass."""
    from seqdis_jax import configuration, train

    workdir = _prepare_workdir(workdir, mode)
    configuration.validate(config)
    configuration.check_workdir_compatible(config, workdir)
    if mode == "eval":
        return train.evaluate_checkpoint(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    configuration.save_config(config, workdir)
    return train.train_and_evaluate(config, workdir)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from seqdis_jax.configuration import UserInputError
    from seqdis_jax.train import MissingCheckpointError

    try:
        results = run(_CONFIG.value, _WORKDIR.value, _MODE.value)
    except (UserInputError, MissingCheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    logging.info("Results: %s", results)
    shown = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    print(" ".join(f"{k}={v:.5g}" for k, v in shown.items()), flush=True)


if __name__ == "__main__":
    app.run(main)
