"""The fit loop shared by every method (train.py) and the judge (judge.py).

`fit` takes what it trains explicitly: the `Method` and its module, the training section that
sets the schedule (a run's `config.train`, a judge's `config.judge.train`), the batch size,
the data, the workdir and the hooks (curves logged at log time, the validation that ranks
checkpoints, whether the machine is recorded). The run config is still read for what both
share (mesh, seed, data options) and handed to the method's loss unchanged.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqdis_jax import checkpointing, machine, parallel, workdir_lock
from seqdis_jax.data import validation as data_validation
from seqdis_jax.data.pipeline import (
    RECORD_KEY,
    eval_batches,
    process_shard,
    to_global_batch,
    train_iterator,
)
from seqdis_jax.errors import RunInterrupted, UserInputError
from seqdis_jax.metric_writers import MetricWriter, ProgressLine
from seqdis_jax.models import LossInputs, Method
from seqdis_jax.train_step import (
    NON_FINITE_ROWS,
    SkipCounter,
    TrainState,
    batch_video_shape,
    check_batch,
    create_train_state,
    interval_means,
    make_optimizer,
    make_train_step,
    sharded_restore_target,
    to_model_batch,
)

Array = jax.Array


def log(message: str) -> None:
    """Run-level messages on the console of process 0 (absl INFO is muted by the launcher)."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def make_validation_fn(method: Method, model: nn.Module, config: ml_collections.ConfigDict,
                       t: ml_collections.ConfigDict, batch_size: int, dataset: Any,
                       batch_keys: tuple[str, ...], mesh: jax.sharding.Mesh,
                       abstract_state: TrainState) -> Callable[[TrainState], dict[str, float]]:
    """state -> the method's loss terms (eval mode, fixed noise) averaged over the first
    `t.validation_batches` batches (of `batch_size`) of `dataset`: the metric that the
    training section `t`'s `best_metric` ranks checkpoints by. The batches are split over `mesh`
    as the training batches are (the training batch size divides among its devices)."""
    batches = []
    for batch in itertools.islice(eval_batches(dataset.source, batch_size),
                                  t.validation_batches):
        batches.append({k: parallel.place_rows(batch[k], mesh) for k in batch_keys})
    pixel_scale = float(config.data.pixel_scale)

    def loss_terms(state, batch):
        out = method.loss(LossInputs(model, state.params, state.batch_stats,
                                     to_model_batch(batch, pixel_scale), jax.random.PRNGKey(0),
                                     config, False, state.step))
        return out[1][0]

    losses = parallel.gathered_jit(loss_terms, mesh)

    if not batches:
        raise UserInputError("config.train.best_metric needs config.train.validation_batches "
                             ">= 1 and a non-empty test split.")
    names = sorted(jax.eval_shape(losses, abstract_state, batches[0]))
    if t.best_metric not in names:
        raise UserInputError(
            f"config.train.best_metric={t.best_metric!r} is not a term of the "
            f"{config.method} loss; choose one of {names}.")

    def validate(state: TrainState) -> dict[str, float]:
        values = jax.device_get([losses(state, batch) for batch in batches])
        return {k: float(np.mean([v[k] for v in values])) for k in values[0]}

    return validate


class StopSignals:
    """While entered, SIGINT (Ctrl-C) and SIGTERM (a preempted VM, a job scheduler) only set
    `signum`, which the fit loop reads once per step: it then saves a checkpoint at that step
    and raises RunInterrupted. Saving inside the handler could interrupt a step or Orbax's own
    writes. A second signal says the save is under way; a third aborts at once
    (KeyboardInterrupt; Orbax's temporary directories keep the earlier checkpoints intact).
    The previous handlers come back on exit. Off outside the main thread (Python delivers
    signals there only) and in multi-host runs, where one process alone must not stop: there
    Orbax's PreemptionCheckpointingPolicy makes every process save at one agreed step after a
    SIGTERM (JAX's preemption notifier), and the loop stops after that save."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if self.enabled:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self._count += 1
        if self.signum is None:
            self.signum = signum
        elif self._count == 2:  # os.write: a print could re-enter the interrupted one
            os.write(2, b"Stopping after this step with a checkpoint; interrupt once more to "
                        b"stop without it (the earlier checkpoints stay intact).\n")
        else:
            raise KeyboardInterrupt

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


def fit(
    method: Method,
    model: nn.Module,
    config: ml_collections.ConfigDict,
    train: ml_collections.ConfigDict,
    batch_size: int,
    train_data: Any,
    workdir: str,
    batch_keys: tuple[str, ...] = (RECORD_KEY,),
    on_log: Callable[[int, Any], dict[str, Any]] | None = None,
    validation_data: Any = None,
    validate: Callable[[TrainState], dict[str, float]] | None = None,
    record_machine: bool = True,
) -> tuple[TrainState, float]:
    """The training loop shared by every method and the judge.

    Trains `model` with `method.optimizer(config)` on batches of `batch_size` sequences of
    `train_data` (the entries `batch_keys`), on the schedule of the training section `train`
    (num_steps, log_every, checkpoint_every, keep_checkpoints, max_skips, best_metric, ...).
    Builds the mesh of `config.mesh` (parallel.py), resumes from the latest checkpoint in
    `workdir` (train state, data order, PRNG stream), runs the jitted step to
    `train.num_steps`, logs the mean of each `log_every` interval over the steps the NaN/Inf
    guard kept (one host transfer per interval), raises `BadDataError` when a step's batch
    held a NaN/Inf (flagged on device; read with the guard's flags at the next log or save),
    stops after `train.max_skips` consecutive skipped steps, checkpoints every
    `checkpoint_every` steps and at the end (ranked by `train.best_metric` on
    `validation_data` when set). `on_log(step, state)` may return extra scalars (e.g.
    mutual-information curves) that are logged under the split 'eval'. `validate(state)`,
    when given, replaces the loss-based validation as the metrics that rank checkpoints.
    `record_machine`: append the machine to `workdir`'s machine.jsonl (a method's run; not
    the judge's). Returns the final state and the training wall time.

    The workdir is locked for the run (workdir_lock.py: a second run on it stops with one line
    naming this one). SIGINT or SIGTERM saves a checkpoint at the current step and raises
    `RunInterrupted` (StopSignals). A resumed run first drops the records of metrics.jsonl
    logged after the checkpoint it resumes from; a damaged latest checkpoint falls back to the
    newest intact one (checkpointing.restore).
    """
    single = jax.process_count() == 1
    with workdir_lock.held(workdir, enabled=jax.process_index() == 0), \
            StopSignals(enabled=single) as stop:
        return _fit(method, model, config, train, batch_size, train_data, workdir, batch_keys,
                    on_log, validation_data, validate, record_machine, stop)


def _fit(method, model, config, train, batch_size, train_data, workdir, batch_keys, on_log,
         validation_data, validate, record_machine, stop: StopSignals):
    t = train
    multihost = jax.process_count() > 1
    tx = make_optimizer(config, method)
    video_shape = (batch_size,) + batch_video_shape(config, train_data)[1:]
    mesh = parallel.mesh_from_config(config)
    parallel.check_batch_size(batch_size, mesh)
    batch_sharding = parallel.batch_sharding(mesh)
    rng = jax.random.PRNGKey(config.seed)
    init_rng, train_rng, _ = jax.random.split(rng, 3)
    train_rng = jax.device_put(train_rng, parallel.replicated(mesh))
    # Each process reads its own shard; the step sees the global batch split over devices.
    local_batch_size, shard_index, shard_count = process_shard(batch_size)
    data_iter = train_iterator(
        train_data.source, local_batch_size, config.seed, shard_index, shard_count)
    local_video_shape = (local_batch_size,) + video_shape[1:]
    target, state_sharding = sharded_restore_target(model, tx, video_shape, mesh)
    best_metric = t.get("best_metric", "")
    if validate is None and best_metric and validation_data is not None:
        validate = make_validation_fn(method, model, config, t, batch_size, validation_data,
                                      batch_keys, mesh, target)
    manager = checkpointing.make_manager(
        workdir, t.checkpoint_every, t.keep_checkpoints,
        best_metric=best_metric if validate else "", best_mode=t.get("best_mode", "min"),
        keep_best=t.get("keep_best", 0))
    resumed = manager.latest_step() is not None
    if resumed:
        state = checkpointing.restore(manager, target, data_iter, set_aside=True)
    else:
        state = create_train_state(model, tx, jnp.zeros(video_shape, jnp.float32), init_rng,
                                   out_shardings=state_sharding)
    start_step = int(state.step)
    # Records logged after the checkpoint (by the run that stopped) would be logged again.
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0, resume_step=start_step)
    dropped = (f" Dropped the {writer.dropped} records of metrics.jsonl logged after it."
               if writer.dropped else "")
    if resumed:
        log(f"Resumed from {manager.directory} at step {start_step}.{dropped}")
    elif dropped:
        log(f"No checkpoint in {manager.directory}: starting afresh.{dropped}")
    if record_machine:
        machine.record_start(workdir, int(state.step))
    bf16_fields = [f"config.model.{field}=bfloat16" for field in ("compute_dtype", "product_dtype")
                   if config.get("model", {}).get(field) == "bfloat16"]
    if bf16_fields and jax.default_backend() == "cpu" and machine.lacks_bf16_units():
        log(f"Note: {' and '.join(bf16_fields)} on a CPU without bf16 units (lscpu lists "
            "neither avx512_bf16 nor amx_bf16): bf16 is emulated here and measured slower "
            "than float32 (docs/results.md, issue 20); float32 is faster on this CPU.")
    param_count = sum(x.size for x in jax.tree.leaves(state.params))
    log(f"{type(model).__name__}: {param_count:,} parameters; training to step "
        f"{t.num_steps} on {mesh.size} device(s), mesh {dict(mesh.shape)}.")

    train_step = make_train_step(method, model, tx, config, state_sharding=state_sharding,
                                 batch_sharding=batch_sharding)
    progress = ProgressLine(t.num_steps, start_step, enabled=jax.process_index() == 0)
    skips = SkipCounter(t.get("max_skips", 10))
    last_checkpoint = manager.latest_step()
    pending: list[dict[str, Array]] = []
    checked = 0  # entries of `pending` whose skip flags the host has seen
    start_time = time.perf_counter()
    for step in range(start_step + 1, t.num_steps + 1):
        batch = next(data_iter)
        check_batch(batch, local_video_shape)  # shapes only: the NaN check is in the step
        global_batch = to_global_batch({k: batch[k] for k in batch_keys}, batch_sharding)
        state, metrics = train_step(state, global_batch, train_rng)
        pending.append(metrics)
        stopping = stop.signum is not None  # read once per step; saved below, after the loop
        log_now = step % t.log_every == 0 or step == t.num_steps
        save_now = manager.should_save(step)
        if log_now or save_now or stopping:  # the guard's flags reach the host before any save
            flags = jax.device_get([(m["skipped"], m[NON_FINITE_ROWS])
                                    for m in pending[checked:]])
            checked = len(pending)
            for _, rows in flags:
                data_validation.check_batch_rows(rows)
            skips.update([skipped for skipped, _ in flags], step, manager.directory,
                         last_checkpoint)
        if log_now:
            # One host transfer per log interval: the mean over the steps the guard kept.
            means = interval_means(jax.device_get(pending))
            pending, checked = [], 0
            steps_per_sec = progress.update(step, means)
            writer.write(step, {**means, "skipped_total": skips.total,
                                "steps_per_sec": steps_per_sec})
            extra = on_log(step, state) if on_log is not None else None
            if extra:  # not on steps without curves
                writer.write(step, extra, "eval")
        if save_now:
            last_checkpoint = _save(manager, step, state, data_iter, validate, writer)
            if multihost and manager.reached_preemption(step):
                stop.signum, stopping = signal.SIGTERM, True  # every process saved this step
        if stopping:
            break
    if train_step._cache_size() > 1:  # every step must reuse one executable
        log(f"Warning: the train step was compiled {train_step._cache_size()} times.")
    if manager.latest_step() != int(state.step):
        _save(manager, int(state.step), state, data_iter, validate, writer, force=True)
    manager.wait_until_finished()
    manager.close()
    writer.close()
    if stop.signum is not None:
        step = int(state.step)
        saved = (f"saved a checkpoint of step {step}" if step != last_checkpoint
                 else f"the checkpoint of step {step} is")
        raise RunInterrupted(f"Interrupted at step {step} ({stop.name}); {saved} in "
                             f"{manager.directory}", 128 + stop.signum)
    train_seconds = time.perf_counter() - start_time
    skipped = f" ({skips.total} skipped by the NaN/Inf guard)" if skips.total else ""
    log(f"Trained {int(state.step) - start_step} steps{skipped} in {train_seconds:.1f}s.")
    return state, train_seconds


def _save(manager, step: int, state: TrainState, data_iter: Any,
          validate: Callable[[TrainState], dict[str, float]] | None, writer: MetricWriter,
          force: bool = False) -> int:
    """Saves a checkpoint (with its validation metrics when checkpoints are ranked)."""
    metrics = None
    if validate is not None:
        metrics = validate(state)
        writer.write(step, metrics, "validation")
    checkpointing.save(manager, step, state, data_iter, force=force, metrics=metrics)
    return step
