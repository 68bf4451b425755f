"""Training: TrainState, create_train_state, train_step, train_and_evaluate.

A training step is one `jax.jit` function (state, batch, rng) -> (state, metrics) with the
state buffers donated. The step draws its randomness from `fold_in(rng, state.step)`, so
a resumed run reproduces the PRNG stream of an uninterrupted one.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from seqdis_jax import checkpointing, machine, models, parallel
from seqdis_jax import evaluate as evaluate_lib
from seqdis_jax import judge as judge_lib
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data import validation
from seqdis_jax.data.pipeline import (
    eval_batches,
    process_shard,
    to_global_batch,
    train_iterator,
)
from seqdis_jax.errors import MissingCheckpointError, NonFiniteTrainingError, UserInputError
from seqdis_jax.metric_writers import MetricWriter, ProgressLine

Array = jax.Array


def _log(message: str) -> None:
    """Run-level messages on the console of process 0 (absl INFO is muted by the launcher)."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)




class TrainState(flax.struct.PyTreeNode):
    """Everything a training step changes; a pytree of arrays that Orbax saves as is."""

    step: Array
    params: Any
    batch_stats: Any
    opt_state: Any


def make_optimizer(config: ml_collections.ConfigDict, method: Any = None
                   ) -> optax.GradientTransformation:
    """The method's own optimiser when it defines `make_optimizer(config)` (e.g. R-WAE's
    per-group Adams), else Adam with the config's learning rate (optionally cosine-annealed;
    optional global-norm clipping)."""
    if method is not None and hasattr(method, "make_optimizer"):
        return method.make_optimizer(config)
    t = config.train
    learning_rate = t.learning_rate
    if t.cosine_decay:  # the judges: anneal to 0 over the run
        learning_rate = optax.cosine_decay_schedule(t.learning_rate, t.num_steps)
    adam = optax.adam(learning_rate, b1=t.adam_b1, b2=t.adam_b2)
    if t.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), adam)
    return adam


def to_model_batch(batch: dict[str, Any], pixel_scale: float) -> dict[str, Array]:
    """uint8 video -> float32 in [0, 1) inside the step (host sends 4x fewer bytes)."""
    video = batch["video"]
    if jnp.issubdtype(video.dtype, jnp.integer):
        video = video.astype(jnp.float32) / pixel_scale
    return {**batch, "video": video}


def check_batch(batch: dict[str, Any], expected_video_shape: tuple[int, ...]) -> None:
    """Raises one clear error when a host batch does not match what the model was built for
    or holds non-finite values."""
    if "video" not in batch:
        raise UserInputError(f"Batch has no 'video' entry (keys: {sorted(batch)}).")
    shape = tuple(batch["video"].shape)
    if shape != tuple(expected_video_shape):
        raise UserInputError(
            f"Batch 'video' has shape {shape} but the model was built for "
            f"{tuple(expected_video_shape)} = (batch_size, T, ...frame); make "
            "config.data.batch_size and the dataset's frames/size agree with the data."
        )
    validation.check_batch_finite(batch)  # float features: one np.isfinite pass on the host


def create_train_state(
    model: Any, tx: optax.GradientTransformation, example_video: Array, rng: Array,
    out_shardings: Any = None,
) -> TrainState:
    """Initialises parameters, BatchNorm statistics and optimizer state (jit-compiled), laid
    out as `out_shardings` says (a TrainState of shardings; default: one device). Parameters
    and optimizer state are float32 whatever the compute dtype."""

    def init(rng):
        params_rng, sample_rng = jax.random.split(rng)
        variables = model.init(
            {"params": params_rng, "sample": sample_rng}, example_video, True
        )
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
        )

    return jax.jit(init, out_shardings=out_shardings)(rng)


def gradient_update(
    method: Any,
    model: Any,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    state: TrainState,
    batch: dict[str, Array],
    rng: Array,
) -> tuple[TrainState, dict[str, Array]]:
    """The default update: one gradient of `method.loss_fn` through `tx` for all parameters.
    A method with alternating phases defines `train_update` with this signature instead."""

    def objective(params):
        return method.loss_fn(model, params, state.batch_stats, batch, rng, config, True,
                              step=state.step)

    (_, (metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, metrics


def all_finite(tree: Any) -> Array:
    """True when every element of every leaf is finite (one fused reduction)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def skip_non_finite(old: TrainState, new: TrainState, metrics: dict[str, Array]
                    ) -> tuple[TrainState, dict[str, Array]]:
    """The NaN/Inf guard, inside the step: when the loss or the gradient's global norm is not
    finite (a NaN or Inf anywhere in the gradient makes its norm one), keep `old` (only its
    step counter advances, so the data order and PRNG stream go on) and report `skipped` = 1.
    An update without a `grad_norm` metric is checked on its new parameters instead.
    Checking the two scalars, not every leaf, matters: per-leaf reductions made XLA:CPU
    compile the step ~10x slower."""
    checks = [metrics["loss"]] if "loss" in metrics else []
    checks.append(metrics["grad_norm"] if "grad_norm" in metrics else new.params)
    finite = all_finite(checks)
    kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    kept = kept.replace(step=new.step)
    return kept, {**metrics, "skipped": 1.0 - finite.astype(jnp.float32)}


def make_train_step(
    method: Any,
    model: Any,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    max_traces: int | None = None,
    state_sharding: Any = None,
    batch_sharding: Any = None,
) -> Callable[[TrainState, dict[str, Array], Array], tuple[TrainState, dict[str, Array]]]:
    """The jitted training step, donating the state: `method.train_update` when the method
    defines one, else `gradient_update`, then the NaN/Inf guard (`skip_non_finite`). With
    shardings (parallel.py), the state and batch keep their layouts across steps and metrics
    come back replicated. With `max_traces`, a further trace (a recompilation) raises
    (`chex.assert_max_traces`; tests use it)."""
    pixel_scale = float(config.data.pixel_scale)
    update = getattr(method, "train_update", None)
    if update is None:
        update = functools.partial(gradient_update, method)

    def train_step(state: TrainState, batch: dict[str, Array], rng: Array):
        rng = jax.random.fold_in(rng, state.step)
        batch = to_model_batch(batch, pixel_scale)
        new_state, metrics = update(model, tx, config, state, batch, rng)
        return skip_non_finite(state, new_state, metrics)

    if max_traces is not None:
        train_step = chex.assert_max_traces(train_step, n=max_traces)
    if state_sharding is None:
        return jax.jit(train_step, donate_argnums=(0,))
    replicated = parallel.replicated(batch_sharding.mesh)
    return jax.jit(train_step, donate_argnums=(0,),
                   in_shardings=(state_sharding, batch_sharding, replicated),
                   out_shardings=(state_sharding, replicated))


def abstract_train_state(
    model: Any, tx: optax.GradientTransformation, video_shape: tuple[int, ...]
) -> TrainState:
    """Shapes and dtypes of the train state, without allocating it (restore target)."""
    example = jax.ShapeDtypeStruct(video_shape, jnp.float32)
    return jax.eval_shape(
        lambda rng, x: create_train_state(model, tx, x, rng), jax.random.PRNGKey(0), example
    )


def sharded_restore_target(model: Any, tx: optax.GradientTransformation,
                           video_shape: tuple[int, ...], mesh: jax.sharding.Mesh
                           ) -> tuple[TrainState, Any]:
    """(restore target laid out on `mesh`, its shardings): a checkpoint written on any
    topology (other device count, other hosts) restores onto this one."""
    abstract = abstract_train_state(model, tx, video_shape)
    shardings = parallel.state_sharding(mesh, abstract)
    return parallel.with_sharding(abstract, shardings), shardings


def batch_video_shape(config: ml_collections.ConfigDict, dataset: Any) -> tuple[int, ...]:
    """(B, T, H, W, C) or (B, T, F) of a training batch; refuses data the model cannot take."""
    shape = tuple(dataset.video_shape)
    modality = config.model.get("modality", "video")
    if modality == "video":
        size = config.data.get("image_size", 64)  # only generated data has the field
        ok = len(shape) == 4 and shape[1:3] == (size, size) and shape[3] == config.data.channels
        expected = f"(T, {size}, {size}, config.data.channels={config.data.channels})"
        fix = "Fix config.data.channels"
        if "image_size" in config.data:
            expected += f" (config.data.image_size={size})"
            fix = "Fix config.data.channels or config.data.image_size"
    else:
        ok = len(shape) == 2 and shape[1] == config.data.num_features
        expected = f"(T, config.data.num_features={config.data.num_features})"
        fix = "Set config.data.num_features to the dataset's feature count"
    if not ok:
        raise UserInputError(
            f"Dataset {config.data.name!r} has sequences of shape {shape}; the {modality} models "
            f"need {expected}. {fix} or re-run the dataset's data_prep converter."
        )
    return (config.data.batch_size,) + shape


class _SkipCounter:
    """Host-side bookkeeping of the guard's `skipped` flags: totals and the current streak."""

    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0
        self.streak = 0

    def update(self, flags: list[float], last_step: int, checkpoint_dir: str,
               last_good_checkpoint: int | None) -> None:
        for flag in flags:
            self.streak = self.streak + 1 if flag else 0
            self.total += int(flag)
            if self.streak >= self.limit:
                kept = (f"the last checkpoint, step {last_good_checkpoint}, in {checkpoint_dir} "
                        "holds the last good parameters" if last_good_checkpoint is not None
                        else "no checkpoint was written")
                raise NonFiniteTrainingError(
                    f"{self.streak} consecutive steps up to step {last_step} had a non-finite "
                    f"loss or gradient and were skipped (config.train.max_skips="
                    f"{self.limit}); training stopped and {kept}. Lower "
                    "config.train.learning_rate or set config.train.grad_clip_norm, then run "
                    "the same command to resume.")


def make_validation_fn(method: Any, model: Any, config: ml_collections.ConfigDict,
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
        out = method.loss_fn(model, state.params, state.batch_stats,
                             to_model_batch(batch, pixel_scale), jax.random.PRNGKey(0),
                             config, False, step=state.step)
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
    method: Any,
    model: Any,
    config: ml_collections.ConfigDict,
    train_data: Any,
    workdir: str,
    batch_keys: tuple[str, ...],
    on_log: Callable[[int, Any], dict[str, Any]] | None = None,
    validation_data: Any = None,
    validate: Callable[[TrainState], dict[str, float]] | None = None,
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
    validation as the metrics that rank checkpoints. Returns the final state and the training
    wall time.
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
    if method is not judge_lib:
        machine.record_start(workdir, int(state.step))
    param_count = sum(x.size for x in jax.tree.leaves(state.params))
    _log(f"{type(model).__name__}: {param_count:,} parameters; training to step "
         f"{t.num_steps} on {mesh.size} device(s), mesh {dict(mesh.shape)}.")

    train_step = make_train_step(method, model, tx, config, state_sharding=state_sharding,
                                 batch_sharding=batch_sharding)
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    start_step = int(state.step)
    progress = ProgressLine(t.num_steps, start_step, enabled=jax.process_index() == 0)
    skips = _SkipCounter(t.get("max_skips", 10))
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
            means = _interval_means(jax.device_get(pending))
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


def _interval_means(interval: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Mean of each metric over the interval's kept steps; `skipped` is the skipped count."""
    kept = [m for m in interval if not m["skipped"]]
    means = {k: float(np.mean([m[k] for m in kept])) if kept else float("nan")
             for k in interval[0] if k != "skipped"}
    return {**means, "skipped": float(len(interval) - len(kept))}


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
    results = evaluate_lib.run_evaluators(config, workdir, model, state, eval_rng,
                                          judge_loader=restore_judge)
    results["train_seconds"] = train_seconds
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    scalars = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    writer.write(int(state.step), scalars, "test")
    writer.close()
    return results


def training_curves(config: ml_collections.ConfigDict, model: Any
                    ) -> tuple[Callable[[int, Any], dict[str, float]] | None,
                               Callable[[TrainState], dict[str, float]] | None]:
    """(on_log, validate) for `_fit`: on_log logs the MWS mutual informations every
    `eval.mi_every` steps and the judged generation accuracy (`evaluate.make_judge_curve`)
    every `eval.judge_every` steps; validate is that judged accuracy when
    `train.best_metric` names one of its keys (checkpoints are then ranked by it), else None.
    Both curves are computed once per step however often they are asked for."""
    t, e = config.train, config.eval
    mi_every, judge_every = e.get("mi_every", 0), e.get("judge_every", 0)
    best_metric = t.get("best_metric", "")
    ranks_by_judge = best_metric.startswith(evaluate_lib.JUDGE_CURVE_PREFIX + "/")
    for name, every in (("mi_every", mi_every), ("judge_every", judge_every)):
        if not isinstance(every, int) or every < 0 or (every and every % t.log_every):
            raise UserInputError(
                f"config.eval.{name}={every!r} must be 0 (off) or a multiple of "
                f"config.train.log_every={t.log_every} (curves are computed on log steps).")
    if ranks_by_judge and t.get("best_mode", "min") != "max":
        raise UserInputError(
            f"config.train.best_metric={best_metric!r} is an accuracy: set "
            "config.train.best_mode=max.")
    mi_curve = evaluate_lib.make_mi_curve(config, model) if mi_every else None
    judge_curve = None
    if judge_every or ranks_by_judge:
        test_data = data_registry.load(config.data, "test")
        judge_curve = _once_per_step(evaluate_lib.make_judge_curve(
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
    model = judge_lib.build(config, train_data)
    keys = ("video",) + tuple(name for name, _ in judge_lib.factors_of(train_data))
    state, seconds = _fit(judge_lib, model, jc, train_data, judge_dir, keys)
    test_data = data_registry.load(config.data, "test")
    accuracy = evaluate_lib.judge_accuracy(
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
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
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
                       checkpoint: str | int = "latest") -> tuple[Any, TrainState, int]:
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
    return evaluate_lib.run_evaluators(config, workdir, model, state, eval_rng,
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
