"""Orbax checkpointing of the train state together with the input iterator.

The manager saves `Composite(state=..., data=...)` so a resumed run sees the same data order
(maxtext's pattern). Orbax writes each step to a temporary directory and renames it when
complete, so an interrupted save never shadows the previous good checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp

CHECKPOINT_SUBDIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def make_manager(
    workdir: str, save_every: int, keep: int, create: bool = True
) -> ocp.CheckpointManager:
    """A manager that saves every `save_every` steps and keeps the latest `keep`."""
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every,
        preservation_policy=ocp.checkpoint_managers.LatestN(n=keep),
        create=create,
        enable_async_checkpointing=False,
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
) -> bool:
    """Saves the state (and the grain iterator, when given) at `step`."""
    items = dict(state=ocp.args.StandardSave(state))
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return manager.save(step, args=ocp.args.Composite(**items), force=force)


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
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"]
