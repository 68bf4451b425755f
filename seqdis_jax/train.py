"""Training: the fit loop shared by every method and the judge, train_and_evaluate, and the
judge's and a run's checkpoints restored for evaluation.

The jitted step and TrainState are train_step.py's (re-exported here). train.py talks to a
method only through its `Method` (seqdis_jax/models/method.py).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqdis_jax import checkpointing, evaluators, machine, models, parallel
from seqdis_jax import judge as judge_lib
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import (
    eval_batches,
    process_shard,
    to_global_batch,
    train_iterator,
)
from seqdis_jax.errors import MissingCheckpointError, UserInputError
from seqdis_jax.metric_writers import MetricWriter, ProgressLine
from seqdis_jax.models import LossInputs, Method
from seqdis_jax.models.dsvae import DSVAE
from seqdis_jax.train_step import (  # noqa: F401 (the step's API, re-exported)
    SkipCounter,
    TrainState,
    abstract_train_state,
    all_finite,
    batch_video_shape,
    check_batch,
    create_train_state,
    gradient_update,
    interval_means,
    make_optimizer,
    make_train_step,
    sharded_restore_target,
    skip_non_finite,
    to_model_batch,
)

Array = jax.Array


def _log(message: str) -> None:
    """Run-level messages on the console of process 0 (absl INFO is muted by the launcher)."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def make_validation_fn(method: Method, model: nn.Module, config: ml_collections.ConfigDict,
                       dataset: Any, batch_keys: tuple[str, ...], mesh: jax.sharding.Mesh,
                       abstract_state: TrainState) -> Callable[[TrainState], dict[str, float]]:
    """state -> the method's loss terms (eval mode, fixed noise) averaged over the first
    `config.train.validation_batches` batches of `dataset`: the metric that
    `config.train.best_metric` ranks checkpoints by."""
    replicated = parallel.replicated(mesh)
    batches = []
    for batch in itertools.islice(
            eval_batches(dataset.source, config.data.batch_size),
            config.train.validation_batches):
        batches.append({k: parallel.host_array(batch[k], replicated) for k in batch_keys})
    pixel_scale = float(config.data.pixel_scale)

    @jax.jit
    def losses(state, batch):
        out = method.loss(LossInputs(model, state.params, state.batch_stats,
                                     to_model_batch(batch, pixel_scale), jax.random.PRNGKey(0),
                                     config, False, state.step))
        return out[1][0]

    if not batches:
        raise UserInputError("config.train.best_metric needs config.train.validation_batches "
                             ">= 1 and a non-empty test split.")
    names = sorted(jax.eval_shape(losses, abstract_state, batches[0]))
    if config.train.best_metric not in names:
        raise UserInputError(
            f"config.train.best_metric={config.train.best_metric!r} is not a term of the "
            f"{config.method} loss; choose one of {names}.")

    def validate(state: TrainState) -> dict[str, float]:
        values = jax.device_get([losses(state, batch) for batch in batches])
        return {k: float(np.mean([v[k] for v in values])) for k in values[0]}

    return validate


def _fit(
    method: Method,
    model: nn.Module,
    config: ml_collections.ConfigDict,
    train_data: Any,
    workdir: str,
    batch_keys: tuple[str, ...],
    on_log: Callable[[int, Any], dict[str, Any]] | None = None,
    validation_data: Any = None,
    validate: Callable[[TrainState], dict[str, float]] | None = None,
    record_machine: bool = True,
) -> tuple[TrainState, float]:
    """The training loop shared by every method and the judge.

    Builds the mesh of `config.mesh` (parallel.py), resumes from the latest checkpoint in
    `workdir` (train state, data order, PRNG stream), runs the jitted step to
    `config.train.num_steps`, logs the mean of each `log_every` interval over the steps the
    NaN/Inf guard kept (one host transfer per interval), stops after
    `config.train.max_skips` consecutive skipped steps, checkpoints every `checkpoint_every`
    steps and at the end (ranked by `config.train.best_metric` on `validation_data` when set).
    `on_log(step, state)` may return extra scalars (e.g. mutual-information curves) that are
    logged under the split 'eval'. `validate(state)`, when given, replaces the loss-based
    validation as the metrics that rank checkpoints. `record_machine`: append the machine to
    `workdir`'s machine.jsonl (a method's run; not the judge's). Returns the final state and
    the training wall time.
    """
    t = config.train
    tx = make_optimizer(config, method)
    video_shape = batch_video_shape(config, train_data)
    mesh = parallel.mesh_from_config(config)
    parallel.check_batch_size(config.data.batch_size, mesh)
    batch_sharding = parallel.batch_sharding(mesh)
    rng = jax.random.PRNGKey(config.seed)
    init_rng, train_rng, _ = jax.random.split(rng, 3)
    train_rng = jax.device_put(train_rng, parallel.replicated(mesh))
    # Each process reads its own shard; the step sees the global batch split over devices.
    local_batch_size, shard_index, shard_count = process_shard(config.data.batch_size)
    data_iter = train_iterator(
        train_data.source, local_batch_size, config.seed, shard_index, shard_count)
    local_video_shape = (local_batch_size,) + video_shape[1:]
    target, state_sharding = sharded_restore_target(model, tx, video_shape, mesh)
    best_metric = t.get("best_metric", "")
    if validate is None and best_metric and validation_data is not None:
        validate = make_validation_fn(method, model, config, validation_data, batch_keys, mesh,
                                      target)
    manager = checkpointing.make_manager(
        workdir, t.checkpoint_every, t.keep_checkpoints,
        best_metric=best_metric if validate else "", best_mode=t.get("best_mode", "min"),
        keep_best=t.get("keep_best", 0))
    if manager.latest_step() is not None:
        state = checkpointing.restore(manager, target, data_iter)
        _log(f"Resumed from {manager.directory} at step {int(state.step)}.")
    else:
        state = create_train_state(model, tx, jnp.zeros(video_shape, jnp.float32), init_rng,
                                   out_shardings=state_sharding)
    if record_machine:
        machine.record_start(workdir, int(state.step))
    param_count = sum(x.size for x in jax.tree.leaves(state.params))
    _log(f"{type(model).__name__}: {param_count:,} parameters; training to step "
         f"{t.num_steps} on {mesh.size} device(s), mesh {dict(mesh.shape)}.")

    train_step = make_train_step(method, model, tx, config, state_sharding=state_sharding,
                                 batch_sharding=batch_sharding)
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    start_step = int(state.step)
    progress = ProgressLine(t.num_steps, start_step, enabled=jax.process_index() == 0)
    skips = SkipCounter(t.get("max_skips", 10))
    last_checkpoint = manager.latest_step()
    pending: list[dict[str, Array]] = []
    checked = 0  # entries of `pending` whose skip flags the host has seen
    start_time = time.perf_counter()
    for step in range(start_step + 1, t.num_steps + 1):
        batch = next(data_iter)
        check_batch(batch, local_video_shape)
        global_batch = to_global_batch({k: batch[k] for k in batch_keys}, batch_sharding)
        state, metrics = train_step(state, global_batch, train_rng)
        pending.append(metrics)
        log_now = step % t.log_every == 0 or step == t.num_steps
        save_now = manager.should_save(step)
        if log_now or save_now:  # the guard's flags reach the host before any save
            flags = jax.device_get([m["skipped"] for m in pending[checked:]])
            checked = len(pending)
            skips.update(flags, step, manager.directory, last_checkpoint)
        if log_now:
            # One host transfer per log interval: the mean over the steps the guard kept.
            means = interval_means(jax.device_get(pending))
            pending, checked = [], 0
            steps_per_sec = progress.update(step, means)
            writer.write(step, {**means, "skipped_total": skips.total,
                                "steps_per_sec": steps_per_sec})
            if on_log is not None:
                writer.write(step, on_log(step, state), "eval")
        if save_now:
            last_checkpoint = _save(manager, step, state, data_iter, validate, writer)
    if train_step._cache_size() > 1:  # every step must reuse one executable
        _log(f"Warning: the train step was compiled {train_step._cache_size()} times.")
    if manager.latest_step() != int(state.step):
        _save(manager, int(state.step), state, data_iter, validate, writer, force=True)
    manager.wait_until_finished()
    manager.close()
    writer.close()
    train_seconds = time.perf_counter() - start_time
    skipped = f" ({skips.total} skipped by the NaN/Inf guard)" if skips.total else ""
    _log(f"Trained {int(state.step) - start_step} steps{skipped} in {train_seconds:.1f}s.")
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains `config.method` on `config.data`, resuming from `workdir` when a checkpoint is
    there, checkpoints every `config.train.checkpoint_every` steps and at the end, then runs
    the evaluators. Returns the evaluation metrics."""
    method = models.get_method(config.method)
    train_data = data_registry.load(config.data, "train")
    model = method.build(config)
    on_log, validate = training_curves(config, model)
    best_metric = config.train.get("best_metric", "")
    validation_data = (data_registry.load(config.data, "test")
                       if best_metric and validate is None else None)
    state, train_seconds = _fit(method, model, config, train_data, workdir, ("video",), on_log,
                                validation_data, validate)
    eval_rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)[2]
    results = evaluators.run_evaluators(config, workdir, model, state, eval_rng,
                                        judge_loader=restore_judge)
    results["train_seconds"] = train_seconds
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    scalars = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    writer.write(int(state.step), scalars, "test")
    writer.close()
    return results


def training_curves(config: ml_collections.ConfigDict, model: DSVAE
                    ) -> tuple[Callable[[int, Any], dict[str, float]] | None,
                               Callable[[TrainState], dict[str, float]] | None]:
    """(on_log, validate) for `_fit`: on_log logs the MWS mutual informations every
    `eval.mi_every` steps and the judged generation accuracy (`evaluators.make_judge_curve`)
    every `eval.judge_every` steps; validate is that judged accuracy when
    `train.best_metric` names one of its keys (checkpoints are then ranked by it), else None.
    Both curves are computed once per step however often they are asked for."""
    t, e = config.train, config.eval
    mi_every, judge_every = e.get("mi_every", 0), e.get("judge_every", 0)
    best_metric = t.get("best_metric", "")
    ranks_by_judge = best_metric.startswith(evaluators.JUDGE_CURVE_PREFIX + "/")
    for name, every in (("mi_every", mi_every), ("judge_every", judge_every)):
        if not isinstance(every, int) or every < 0 or (every and every % t.log_every):
            raise UserInputError(
                f"config.eval.{name}={every!r} must be 0 (off) or a multiple of "
                f"config.train.log_every={t.log_every} (curves are computed on log steps).")
    if ranks_by_judge and t.get("best_mode", "min") != "max":
        raise UserInputError(
            f"config.train.best_metric={best_metric!r} is an accuracy: set "
            "config.train.best_mode=max.")
    mi_curve = evaluators.make_mi_curve(config, model) if mi_every else None
    judge_curve = None
    if judge_every or ranks_by_judge:
        test_data = data_registry.load(config.data, "test")
        judge_curve = _once_per_step(evaluators.make_judge_curve(
            config, model, test_data, lambda: restore_judge(config, test_data)))
    if ranks_by_judge and best_metric not in judge_curve.names:
        raise UserInputError(
            f"config.train.best_metric={best_metric!r} is not a judged-accuracy key; choose "
            f"one of {judge_curve.names}.")

    def on_log(step: int, state: TrainState) -> dict[str, float]:
        scalars = {}
        if mi_curve is not None and step % mi_every == 0:
            scalars.update(mi_curve(state))
        if judge_every and step % judge_every == 0:
            scalars.update(judge_curve(state))
        return scalars

    return (on_log if mi_curve or judge_every else None,
            judge_curve if ranks_by_judge else None)


def _once_per_step(curve: Callable[[TrainState], dict[str, float]]
                   ) -> Callable[[TrainState], dict[str, float]]:
    """`curve`, remembering its last result so a log and a save at one step share it."""
    last: dict[str, Any] = {"step": None, "value": None}

    def cached(state: TrainState) -> dict[str, float]:
        step = int(state.step)
        if last["step"] != step:
            last["step"], last["value"] = step, curve(state)
        return last["value"]

    cached.names = curve.names
    return cached


def judge_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The run config with the judge's optimisation settings in place of the model's."""
    jc = config.copy_and_resolve_references()
    with jc.unlocked():
        jc.train = config.judge.train.copy_and_resolve_references()
        jc.data.batch_size = config.judge.batch_size
    return jc


def train_judge(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Trains the judge of `config.data` into `config.judge.workdir` with full supervision
    on the training split, then measures its test accuracy per factor and writes judge.json.
    A judge that already reached `config.judge.train.num_steps` there is only re-measured."""
    judge_dir = os.path.abspath(config.judge.workdir)
    train_data = data_registry.load(config.data, "train")
    existing = judge_lib.read_metadata(judge_dir)
    if existing is not None:
        judge_lib.check_compatible(existing, config, train_data, judge_dir)
    os.makedirs(judge_dir, exist_ok=True)
    jc = judge_config(config)
    method = judge_lib.as_method(train_data)
    model = method.build(config)
    keys = ("video",) + tuple(name for name, _ in judge_lib.factors_of(train_data))
    state, seconds = _fit(method, model, jc, train_data, judge_dir, keys, record_machine=False)
    test_data = data_registry.load(config.data, "test")
    accuracy = evaluators.judge_accuracy(
        config, model, {"params": state.params, "batch_stats": state.batch_stats}, test_data
    )
    metadata = judge_lib.data_signature(config, train_data) | {
        "architecture": judge_lib.judge_architecture(config),
        "step": int(state.step),
        "test_accuracy": accuracy,
        "train_seconds": seconds,
    }
    judge_lib.write_metadata(judge_dir, metadata)
    _log("Judge test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    return {f"judge/test_accuracy/{k}": v for k, v in accuracy.items()} | {
        "judge/train_seconds": seconds}


def restore_judge(
    config: ml_collections.ConfigDict, dataset: Any
) -> tuple[judge_lib.Judge, dict[str, Any], dict[str, Any]]:
    """(judge module, variables, judge.json) from `config.judge.workdir`; trains the judge
    first when it is missing and `config.judge.train_if_missing` is set."""
    judge_dir = os.path.abspath(config.judge.workdir)
    metadata = judge_lib.read_metadata(judge_dir)
    if metadata is None:
        if not config.judge.train_if_missing:
            raise MissingCheckpointError(
                f"No trained judge in {judge_dir} (config.judge.workdir). Train it with: "
                f"python -m experiments.main --config=<this config> --mode=judge "
                f"(or set --config.judge.train_if_missing=True)."
            )
        _log(f"No judge in {judge_dir}: training one (config.judge.train_if_missing).")
        train_judge(config)
        metadata = judge_lib.read_metadata(judge_dir)
    judge_lib.check_compatible(metadata, config, dataset, judge_dir)
    model = judge_lib.build(config, dataset)
    tx = make_optimizer(judge_config(config))
    shape = (config.judge.batch_size,) + tuple(dataset.video_shape)
    manager = checkpointing.make_manager(judge_dir, 1, 1, create=False)
    target, _ = sharded_restore_target(model, tx, shape, parallel.mesh_from_config(config))
    state = checkpointing.restore(manager, target, step=metadata["step"])
    manager.close()
    return model, {"params": state.params, "batch_stats": state.batch_stats}, metadata


def restore_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                       checkpoint: str | int = "latest") -> tuple[DSVAE, TrainState, int]:
    """(model, train state, latest step) of a checkpoint of `workdir`: 'latest', 'best' (the
    kept checkpoint Orbax ranks best by the run's `train.best_metric`) or a step."""
    method = models.get_method(config.method)
    model = method.build(config)
    tx = make_optimizer(config, method)
    test_data = data_registry.load(config.data, "test")
    video_shape = batch_video_shape(config, test_data)
    if not os.path.isdir(checkpointing.checkpoint_dir(workdir)):
        raise MissingCheckpointError(
            f"--mode=eval found no checkpoints in {checkpointing.checkpoint_dir(workdir)}; "
            "train first with --mode=train and the same --workdir."
        )
    t = config.train
    manager = ranked_manager(config, workdir)
    latest = manager.latest_step()
    if latest is None:
        raise MissingCheckpointError(
            f"--mode=eval found no checkpoints in {manager.directory}; "
            "train first with --mode=train and the same --workdir."
        )
    step = _checkpoint_step(manager, checkpoint, t.get("best_metric", ""))
    target, _ = sharded_restore_target(model, tx, video_shape, parallel.mesh_from_config(config))
    state = checkpointing.restore(manager, target, step=step)
    manager.close()
    return model, state, latest


def ranked_manager(config: ml_collections.ConfigDict, workdir: str):
    """A read-only manager of `workdir`'s checkpoints that knows the run's ranking
    (`train.best_metric`, `best_mode`), so `best_step()` names its best kept checkpoint."""
    t = config.train
    return checkpointing.make_manager(
        workdir, 1, 1, create=False, best_metric=t.get("best_metric", ""),
        best_mode=t.get("best_mode", "min"), keep_best=max(t.get("keep_best", 0), 1))


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        checkpoint: str | int = "latest") -> dict[str, Any]:
    """Restores a checkpoint of `workdir` (`restore_checkpoint`) and runs the evaluators (no
    training). The latest writes metrics.json; any other step writes metrics_step<N>.json."""
    model, state, latest = restore_checkpoint(config, workdir, checkpoint)
    eval_rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)[2]
    step = int(state.step)
    results_file = "metrics.json" if step == latest else f"metrics_step{step}.json"
    return evaluators.run_evaluators(config, workdir, model, state, eval_rng,
                                     judge_loader=restore_judge, results_file=results_file)


def _checkpoint_step(manager: Any, checkpoint: str | int, best_metric: str) -> int:
    """The step that --checkpoint names among the kept checkpoints of `manager`."""
    kept = sorted(manager.all_steps())
    if checkpoint == "latest":
        return kept[-1]
    if checkpoint == "best":
        step = manager.best_step() if best_metric else None
        if step is None:
            raise UserInputError(
                f"--checkpoint=best: no checkpoint in {manager.directory} was saved with a "
                f"ranking metric (config.train.best_metric={best_metric!r}); use "
                f"--checkpoint=latest or a step of {kept}.")
        return step
    if str(checkpoint).isdigit() and int(checkpoint) in kept:
        return int(checkpoint)
    raise UserInputError(
        f"--checkpoint={checkpoint!r}: choose 'latest', 'best' or a kept step of {kept}.")
