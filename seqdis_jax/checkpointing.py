"""Orbax checkpointing of the train state together with the input iterator.

The manager saves `Composite(state=..., data=...)` so a resumed run sees the same data order
(maxtext's pattern). Orbax writes each step to a temporary directory and renames it when
complete, so an interrupted save never shadows the previous good checkpoint
(tests/test_resume.py kills a save half-way). Retention keeps the latest `keep` checkpoints
and, when a metric is named, also the `keep_best` best by that metric.

Restoring reads only Orbax's array and JSON formats: nothing is unpickled.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import grain
import orbax.checkpoint as ocp

from seqdis_jax.errors import CheckpointWriteError, UserInputError

CHECKPOINT_SUBDIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def make_manager(
    workdir: str, save_every: int, keep: int, create: bool = True,
    best_metric: str = "", best_mode: str = "min", keep_best: int = 0,
) -> ocp.CheckpointManager:
    """A manager that saves every `save_every` steps and keeps the latest `keep`, plus the
    `keep_best` checkpoints with the lowest (`best_mode='min'`) or highest `best_metric`
    among those saved with metrics."""
    policy = ocp.checkpoint_managers.LatestN(n=keep)
    best_options = {}
    if best_metric and keep_best > 0:
        def get_metric(metrics):
            return metrics[best_metric]

        best = ocp.checkpoint_managers.BestN(
            get_metric_fn=get_metric,
            reverse=best_mode == "min",  # BestN keeps the *last* n of the sorted order
            n=keep_best, keep_checkpoints_without_metrics=False)
        policy = ocp.checkpoint_managers.AnyPreservationPolicy([policy, best])
        # Orbax writes a checkpoint's metrics to disk only when `best_fn` is set (retention
        # itself follows `preservation_policy`); without them a resumed run ranks nothing it
        # did not save itself and deletes the best checkpoints of the run before.
        best_options = dict(best_fn=get_metric, best_mode=best_mode)
    # Every `save_every` steps (and when a preemption is signalled); not Orbax's default
    # extra save at the first step of a run.
    saving = ocp.checkpoint_managers.AnySavePolicy([
        ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
        ocp.checkpoint_managers.PreemptionCheckpointingPolicy()])
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=saving,
        preservation_policy=policy,
        create=create,
        enable_async_checkpointing=False,
        **best_options,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir), item_names=("state", "data"), options=options
    )


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    data_iterator: Any | None = None,
    force: bool = False,
    metrics: dict[str, float] | None = None,
) -> bool:
    """Saves the state (and the grain iterator, when given) at `step`, with `metrics` for
    best-checkpoint retention. A failed write raises CheckpointWriteError naming the cause;
    Orbax leaves only a temporary directory behind, which restores ignore."""
    items = dict(state=ocp.args.StandardSave(state))
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    try:
        return manager.save(step, args=ocp.args.Composite(**items), force=force,
                            metrics=metrics)
    except OSError as e:
        cause = ("the disk is full" if e.errno == errno.ENOSPC
                 else f"{e.strerror or e}")
        latest = manager.latest_step()
        kept = (f"the checkpoint of step {latest} is intact" if latest is not None
                else "no earlier checkpoint exists")
        raise CheckpointWriteError(
            f"Could not write the checkpoint of step {step} to {manager.directory}: "
            f"{cause}; {kept}. Free space (or fix the permissions) and run the same command "
            "to resume.") from e


def restore(
    manager: ocp.CheckpointManager,
    abstract_state: Any,
    data_iterator: Any | None = None,
    step: int | None = None,
) -> Any:
    """Restores the state at `step` (default: latest) into the structure of `abstract_state`;
    restores the iterator in place when one is given."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"No checkpoint in {manager.directory}.")
    items = dict(state=ocp.args.StandardRestore(abstract_state))
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:  # Orbax: another tree structure or shape
        reason = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else ""
        reason = (reason if len(reason) <= 200 else reason[:200] + "...") or type(e).__name__
        raise UserInputError(
            f"The checkpoint of step {step} in {manager.directory} does not fit this model "
            f"and config ({reason}); it was written by another model or config: pass the "
            "config that run used, or use a new --workdir.") from e
    return restored["state"]
