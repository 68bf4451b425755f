"""Training a method: train_and_evaluate (the fit loop of fit.py with the run's training
curves, then the evaluators), and a run's checkpoints restored for evaluation.

The jitted step and TrainState are train_step.py's (re-exported here); the judge is trained
and restored by judge.py on the same fit loop. train.py talks to a method only through its
`Method` (seqdis_jax/models/method.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from seqdis_jax import checkpointing, evaluators, fit, models, parallel, report
from seqdis_jax import judge as judge_lib
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import RECORD_KEY
from seqdis_jax.errors import MissingCheckpointError, UserInputError
from seqdis_jax.metric_writers import MetricWriter
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains `config.method` on `config.data`, resuming from `workdir` when a checkpoint is
    there, checkpoints every `config.train.checkpoint_every` steps and at the end, then runs
    the evaluators (their pictures and report.html: seqdis_jax/report.py). Returns the
    evaluation metrics."""
    method = models.get_method(config.method)
    train_data = data_registry.load(config.data, "train")
    model = method.build(config)
    on_log, validate = training_curves(config, model)
    best_metric = config.train.get("best_metric", "")
    validation_data = (data_registry.load(config.data, "test")
                       if best_metric and validate is None else None)
    state, train_seconds = fit.fit(method, model, config, config.train, config.data.batch_size,
                                   train_data, workdir, (RECORD_KEY,), on_log, validation_data,
                                   validate)
    eval_rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)[2]
    results = evaluators.run_evaluators(config, workdir, model, state, eval_rng,
                                        judge_loader=judge_lib.restore_judge)
    results["train_seconds"] = train_seconds
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    scalars = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    writer.write(int(state.step), scalars, "test")
    writer.close()
    report.after_evaluation(config, workdir, results)  # TensorBoard pictures, report.html
    return results


def training_curves(config: ml_collections.ConfigDict, model: DSVAE
                    ) -> tuple[Callable[[int, Any], dict[str, float]] | None,
                               Callable[[TrainState], dict[str, float]] | None]:
    """(on_log, validate) for `fit.fit`: on_log logs the MWS mutual informations every
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
            config, model, test_data, lambda: judge_lib.restore_judge(config, test_data)))
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
    results = evaluators.run_evaluators(config, workdir, model, state, eval_rng,
                                        judge_loader=judge_lib.restore_judge,
                                        results_file=results_file)
    report.after_evaluation(config, workdir, results, results_file)
    return results


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
