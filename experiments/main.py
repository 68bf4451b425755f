"""Launcher: `python -m experiments.main --config=experiments/<name>.py[:variant] --workdir=DIR`.

Flags:
  --config             an ml_collections config file, optionally `:variant`; override any field
                       with --config.a.b=value (unknown fields and wrong types are refused).
  --workdir            where checkpoints, logs, metrics.json, PNG grids and config.json go.
                       A workdir with checkpoints is resumed. Not used by --mode=judge.
  --mode               train (train, then evaluate), eval (restore the latest checkpoint and
                       evaluate only) or judge (train the dataset's judge classifier into
                       config.judge.workdir and report its test accuracy per factor).
  --multihost          call jax.distributed.initialize() first (one process per host on a
                       TPU pod slice or a multi-node GPU cluster; the cluster environment gives
                       the coordinator). Every process runs the same command.

The devices (all of every process by default) form the mesh of config.mesh
(seqdis_jax/parallel.py): config.data.batch_size is the global batch, split over them.
Config files are Python and are executed: load only config files you trust.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and outputs.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "judge"], "What to run.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (multi-host TPU/GPU runs).")
flags.mark_flags_as_required(["config"])


def configure_jax(multihost: bool = False) -> None:
    """Process-wide JAX settings of the launcher.

    Non-partitionable threefry: with jax 0.10's default (partitionable) threefry, XLA:CPU spends
    ~1 s compiling each random initializer (measured: DSVAE init 17 s vs 6 s at smoke width).
    Our random draws are small, so the partitionable layout buys nothing.
    With `multihost`, joins the other processes of the job (jax.distributed.initialize).
    """
    import jax

    if multihost:  # before any other JAX call; the coordinator comes from the environment
        jax.distributed.initialize()
    jax.config.update("jax_threefry_partitionable", False)
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO


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
            raise UserInputError(
                f"--workdir {workdir} cannot be created: {parent} is not writable."
            )
    elif not os.access(workdir, os.W_OK | os.X_OK):
        raise UserInputError(f"--workdir {workdir} is not writable; pass a writable directory.")
    return workdir


def run(config, workdir: str, mode: str) -> dict:
    """Validates everything, then trains and/or evaluates. Nothing is written before the
    checks pass."""
    from seqdis_jax import configuration, evaluate, parallel, train
    from seqdis_jax.data import registry

    configuration.validate(config)
    mesh = parallel.mesh_from_config(config)  # the devices can split the batches
    parallel.check_batch_size(config.data.batch_size, mesh)
    if mode == "judge":
        parallel.check_batch_size(config.judge.batch_size, mesh)
        registry.load(config.data, "test")  # unprepared data: one message with the command
        _prepare_workdir(config.judge.workdir, "train")
        return train.train_judge(config)
    if not workdir:
        raise configuration.UserInputError(f"--mode={mode} needs --workdir=DIR.")
    workdir = _prepare_workdir(workdir, mode)
    test_data = registry.load(config.data, "test")  # before anything is written to the workdir
    try:  # the evaluators' needs, before a long training run ends in a refusal
        evaluate.select_evaluators(config.eval.evaluators, test_data,
                                   config.model.get("modality", "video"))
        evaluate.check_downstream_tasks(config, test_data)
    except ValueError as e:
        raise configuration.UserInputError(str(e)) from None
    configuration.check_workdir_compatible(config, workdir)
    if mode == "eval":
        return train.evaluate_checkpoint(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    configuration.save_config(config, workdir)
    return train.train_and_evaluate(config, workdir)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    configure_jax(_MULTIHOST.value)
    from seqdis_jax.checkpointing import CheckpointWriteError
    from seqdis_jax.configuration import UserInputError
    from seqdis_jax.data.registry import NotPreparedError
    from seqdis_jax.evaluate import MissingLabelError
    from seqdis_jax.judge import JudgeMismatchError
    from seqdis_jax.train import MissingCheckpointError, NonFiniteTrainingError

    try:
        results = run(_CONFIG.value, _WORKDIR.value, _MODE.value)
    except (UserInputError, MissingCheckpointError, JudgeMismatchError, MissingLabelError,
            NotPreparedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (CheckpointWriteError, NonFiniteTrainingError) as e:  # a run that failed midway
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    logging.info("Results: %s", results)
    print(format_results(results), flush=True)


def format_results(results: dict) -> str:
    """A two-column table of the scalar results; `x` and `x_std` share a row as mean +- std."""
    rows = []
    for key in sorted(results):
        value = results[key]
        if key.endswith("_std") or not isinstance(value, (int, float)):
            continue
        std = results.get(f"{key}_std")
        rows.append((key, f"{value:.5g}" + (f" +- {std:.3g}" if std is not None else "")))
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


if __name__ == "__main__":
    app.run(main)
