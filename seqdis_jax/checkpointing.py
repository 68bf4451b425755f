"""Orbax checkpointing of the train state together with the input iterator.

The manager saves `Composite(state=..., data=...)` so a resumed run sees the same data order
(maxtext's pattern). Orbax writes each step to a temporary directory and renames it when
complete, so an interrupted save never shadows the previous good checkpoint
(tests/test_resume.py kills a save half-way). Retention keeps the latest `keep` checkpoints
and, when a metric is named, also the `keep_best` best by that metric.

Restoring reads only Orbax's array and JSON formats: nothing is unpickled. A damaged latest
checkpoint (a file missing, cut short or corrupt) falls back to the newest intact one, and
nothing here deletes one: a damaged checkpoint is only moved aside (`restore`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sys
import threading
import warnings
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from seqdis_jax.errors import CheckpointWriteError, DamagedCheckpointError, UserInputError

CHECKPOINT_SUBDIR = "checkpoints"
DAMAGED_SUBDIR = "damaged_checkpoints"  # where a resuming run moves damaged checkpoints


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
    set_aside: bool = False,
) -> Any:
    """Restores the state at `step` (default: latest) into the structure of `abstract_state`;
    restores the iterator in place when one is given.

    A damaged latest checkpoint (a file of it missing, cut short or corrupt) is reported in one
    line and the newest intact one is restored instead; `DamagedCheckpointError` when none is
    intact, or when a damaged `step` other than the latest was asked for. Nothing is deleted.
    `set_aside` (a run about to train on): the damaged checkpoints are moved to
    `<workdir>/damaged_checkpoints/` so that Orbax's retention never deletes them and a new
    save of their step number writes a fresh directory beside them, not over them.
    """
    latest = manager.latest_step()
    step = latest if step is None else step
    if step is None:
        raise FileNotFoundError(f"No checkpoint in {manager.directory}.")
    candidates = [step]
    if step == latest:
        candidates += sorted((s for s in manager.all_steps() if s < step), reverse=True)
    damaged: list[tuple[int, str]] = []
    for candidate in candidates:
        try:
            state = _restore_step(manager, candidate, abstract_state, data_iterator)
        except _Damaged as e:
            damaged.append((candidate, e.cause))
            continue
        if damaged:
            _report_fallback(manager, damaged, candidate, set_aside)
        return state
    causes = "; ".join(f"{s}: {cause}" for s, cause in damaged)
    if step != latest:
        kept = sorted(manager.all_steps())
        raise DamagedCheckpointError(
            f"The checkpoint of step {step} in {manager.directory} is damaged "
            f"({damaged[0][1]}); "
            f"nothing was deleted. Choose another of the kept steps {kept}.")
    raise DamagedCheckpointError(
        f"Every checkpoint in {manager.directory} is damaged ({causes}); nothing was deleted. "
        "Copy them back from a backup, or train afresh with a new --workdir.")


class _Damaged(Exception):
    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


def _restore_step(manager: ocp.CheckpointManager, step: int, abstract_state: Any,
                  data_iterator: Any | None) -> Any:
    items = dict(state=ocp.args.StandardRestore(abstract_state))
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    _quiet_closed_loop_callbacks()  # before: a damaged file's echoes can come at any time
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:
        step_dir = os.path.join(os.fspath(manager.directory), str(step))
        cause = damage_cause(e, step_dir)
        if cause is not None:
            raise _Damaged(cause) from e
        if not isinstance(e, (ValueError, KeyError, TypeError)):
            raise
        # Orbax: another tree structure or shape.
        reason = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else ""
        reason = (reason if len(reason) <= 200 else reason[:200] + "...") or type(e).__name__
        raise UserInputError(
            f"The checkpoint of step {step} in {manager.directory} does not fit this model "
            f"and config ({reason}); it was written by another model or config: pass the "
            "config that run used, or use a new --workdir.") from e
    return restored["state"]


def _quiet_closed_loop_callbacks() -> None:
    """After a failed restore, tensorstore completes the other reads of that restore on
    asyncio loops Orbax has closed; each reports a RuntimeError('Event loop is closed') through
    sys.unraisablehook, a traceback on the console. Those (and only those) are dropped."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_closed_loop_callbacks", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook._drops_closed_loop_callbacks = True
    sys.unraisablehook = hook
    previous_thread_hook = threading.excepthook

    def thread_hook(args):  # the same error, raised in tensorstore's callback threads
        if not (isinstance(args.exc_value, RuntimeError)
                and str(args.exc_value) == "Event loop is closed"):
            previous_thread_hook(args)

    threading.excepthook = thread_hook
    # The reads of the damaged file that no one awaited anymore are also logged by asyncio
    # ("Task exception was never retrieved", a traceback), after the one-line report.
    logging.getLogger("asyncio").addFilter(_drop_unretrieved_damaged_reads)
    # ... and the coroutines of that restore that never started warn when collected.
    warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited",
                            category=RuntimeWarning)


def _drop_unretrieved_damaged_reads(record: logging.LogRecord) -> bool:
    """False (drop) for asyncio's report of an unawaited read that failed on a damaged file."""
    error = record.exc_info[1] if record.exc_info else None
    return not ("exception was never retrieved" in str(record.msg)  # a Task or a Future
                and error is not None and any(code in str(error) for code in _STATUS))


# tensorstore's status codes for unreadable files (its errors are ValueErrors): a file that is
# missing, cut short, or holds bytes it cannot decode.
_STATUS = {"NOT_FOUND": "missing file", "OUT_OF_RANGE": "file cut short",
           "DATA_LOSS": "corrupt file", "FAILED_PRECONDITION": "unreadable file"}
_PATH = re.compile(r"(/[^\s\"'\\\[\]]+)")


def damage_cause(error: BaseException, step_dir: str) -> str | None:
    """'<file in the step directory>: <what is wrong>' when `error` (or an error it came from)
    says that a file of the checkpoint in `step_dir` is missing, cut short or corrupt; None
    for other errors (a checkpoint of another model)."""
    kind = None
    for e in _chain(error):
        text = str(e)
        if isinstance(e, json.JSONDecodeError):
            kind = "corrupt JSON"
        elif isinstance(e, FileNotFoundError) or "does not exist" in text:
            kind = "missing file"
        elif isinstance(e, OSError):
            kind = e.strerror or type(e).__name__
        else:
            code = re.match(r"\s*([A-Z_]+):", text)
            kind = _STATUS.get(code.group(1)) if code else None
        if kind is not None:
            paths = [p.rstrip(".,:;)") for p in _PATH.findall(text)]
            paths = [p for p in paths if p.startswith(step_dir + os.sep)]
            where = max(paths, key=len) if paths else _unreadable_json(step_dir)
            named = re.search(r"\(named ([^)\s]+)\)", text)  # "Metadata file (named X)"
            where = os.path.join(where, named.group(1)) if where and named else where
            return f"{os.path.relpath(where, step_dir)}: {kind}" if where else kind
    return None


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _unreadable_json(step_dir: str) -> str | None:
    """The first JSON file of the step directory that does not parse (Orbax's JSON errors
    name no file)."""
    for base, _, files in sorted(os.walk(step_dir)):
        for name in sorted(files):
            path = os.path.join(base, name)
            try:
                with open(path, "rb") as f:
                    head = f.read(1)
                    if head not in (b"{", b"["):
                        continue
                    json.loads(head + f.read())
            except ValueError:
                return path
            except OSError:
                continue
    return None


def _report_fallback(manager: ocp.CheckpointManager, damaged: list[tuple[int, str]],
                     restored: int, set_aside: bool) -> None:
    """One line on process 0; with `set_aside`, the damaged step directories are moved to
    `<workdir>/damaged_checkpoints/<step>` (`<step>-2`, ... when that name is taken)."""
    directory = os.fspath(manager.directory)
    moved = ""
    if set_aside and jax.process_index() == 0 and jax.process_count() == 1:
        aside = os.path.join(os.path.dirname(directory), DAMAGED_SUBDIR)
        os.makedirs(aside, exist_ok=True)
        for step, _ in damaged:
            target, n = os.path.join(aside, str(step)), 1
            while os.path.exists(target):
                n += 1
                target = os.path.join(aside, f"{step}-{n}")
            try:
                os.rename(os.path.join(directory, str(step)), target)
            except OSError as e:
                raise DamagedCheckpointError(
                    f"Checkpoint {step} in {directory} is damaged ({dict(damaged)[step]}) and "
                    f"could not be moved to {target} ({e.strerror or e}); move it out of "
                    f"{directory} yourself and run the same command again.") from e
        manager.reload()
        moved = f"moved to {aside}/ (nothing is deleted); "
    steps = ", ".join(str(s) for s, _ in damaged)
    causes = (damaged[0][1] if len(damaged) == 1
              else "; ".join(f"{s}: {cause}" for s, cause in damaged))
    noun = "Checkpoint" if len(damaged) == 1 else "Checkpoints"
    verb = "is" if len(damaged) == 1 else "are"
    if jax.process_index() == 0:
        print(f"{noun} {steps} in {directory} {verb} damaged ({causes}); {moved}restoring "
              f"the newest intact one, step {restored}.", file=sys.stderr, flush=True)
