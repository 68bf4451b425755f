"""The training step: TrainState, its initialisation and restore target, the jitted step
(the method's update, then the NaN/Inf guard) and the checks of what it is fed.

A training step is one `jax.jit` function (state, batch, rng) -> (state, metrics) with the
state buffers donated. The step draws its randomness from `fold_in(rng, state.step)`, so
a resumed run reproduces the PRNG stream of an uninterrupted one. fit.py runs it in its
loop for every method and for the judge (its loss in a `Method`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from seqdis_jax import optim, parallel
from seqdis_jax.data import pipeline
from seqdis_jax.errors import NonFiniteTrainingError, UserInputError
from seqdis_jax.models import LossInputs, Method

Array = jax.Array
NON_FINITE_ROWS = "non_finite_rows"  # step metric: bool[B], the batch rows holding NaN/Inf


class TrainState(flax.struct.PyTreeNode):
    """Everything a training step changes; a pytree of arrays that Orbax saves as is."""

    step: Array
    params: Any
    batch_stats: Any
    opt_state: Any


def make_optimizer(config: ml_collections.ConfigDict, method: Method | None = None
                   ) -> optax.GradientTransformation:
    """`method.optimizer(config)` (R-WAE: one Adam per group); without a method, the standard
    Adam of the config (`optim.adam`; the judges)."""
    return (optim.adam if method is None else method.optimizer)(config)


def to_model_batch(batch: dict[str, Any], pixel_scale: float) -> dict[str, Array]:
    """Records -> the model batch ("x": float32) inside the step (`pipeline.model_inputs`; the
    host sends uint8 frames, 4x fewer bytes)."""
    return pipeline.model_inputs(batch, pixel_scale)


def check_batch(batch: dict[str, Any], expected_video_shape: tuple[int, ...]) -> None:
    """Raises one clear error when a host batch does not match what the model was built for
    (shapes only, no pass over the data: the step flags non-finite values,
    `non_finite_rows`)."""
    if "video" not in batch:
        raise UserInputError(f"Batch has no 'video' entry (keys: {sorted(batch)}).")
    shape = tuple(batch["video"].shape)
    if shape != tuple(expected_video_shape):
        raise UserInputError(
            f"Batch 'video' has shape {shape} but the model was built for "
            f"{tuple(expected_video_shape)} = (batch_size, T, ...frame); make "
            "config.data.batch_size and the dataset's frames/size agree with the data."
        )


def non_finite_rows(records: dict[str, Array]) -> Array:
    """bool[B], traced inside the step: the sequences of a batch of records whose float
    x_1:T holds a NaN or an Inf (constant False for integer frames). The step returns it
    as the metric NON_FINITE_ROWS and its guard skips such a batch; the loop reads it with
    the guard's flags (`validation.check_batch_rows`), so no batch waits on a host check."""
    x = records[pipeline.RECORD_KEY]
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros(x.shape[:1], bool)
    return ~jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)


def init_variables(model: nn.Module, example_video: Array, rng: Array) -> dict[str, Any]:
    """{"params", "batch_stats"} as training initialises them (train mode; `batch_stats` is {}
    for a model without BatchNorm). Traceable: under jax.eval_shape it allocates nothing."""
    params_rng, sample_rng = jax.random.split(rng)
    variables = model.init({"params": params_rng, "sample": sample_rng}, example_video, True)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, example_video: Array, rng: Array,
    out_shardings: Any = None,
) -> TrainState:
    """Initialises parameters, BatchNorm statistics and optimizer state (jit-compiled), laid
    out as `out_shardings` says (a TrainState of shardings; default: one device). Parameters
    and optimizer state are float32 whatever the compute dtype."""

    def init(rng):
        variables = init_variables(model, example_video, rng)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=variables["params"],
            batch_stats=variables["batch_stats"],
            opt_state=tx.init(variables["params"]),
        )

    return jax.jit(init, out_shardings=out_shardings)(rng)


def gradient_update(
    method: Method,
    model: nn.Module,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    state: TrainState,
    batch: dict[str, Array],
    rng: Array,
) -> tuple[TrainState, dict[str, Array]]:
    """The default update: one gradient of `method.loss` through `tx` for all parameters.
    A method with alternating phases brings its own `Method.update` (the rest of this
    signature) instead."""

    def objective(params):
        return method.loss(LossInputs(model, params, state.batch_stats, batch, rng, config,
                                      True, state.step))

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
    An update without a `grad_norm` metric is checked on its new parameters instead. A batch
    with NON_FINITE_ROWS (`non_finite_rows`) is skipped too, whatever its loss.
    Checking the two scalars, not every leaf, matters: per-leaf reductions made XLA:CPU
    compile the step ~10x slower."""
    checks = [metrics["loss"]] if "loss" in metrics else []
    checks.append(metrics["grad_norm"] if "grad_norm" in metrics else new.params)
    finite = all_finite(checks)
    if NON_FINITE_ROWS in metrics:
        finite = finite & ~jnp.any(metrics[NON_FINITE_ROWS])
    kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    kept = kept.replace(step=new.step)
    return kept, {**metrics, "skipped": 1.0 - finite.astype(jnp.float32)}


def make_train_step(
    method: Method,
    model: nn.Module,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    max_traces: int | None = None,
    state_sharding: Any = None,
    batch_sharding: Any = None,
) -> Callable[[TrainState, dict[str, Array], Array], tuple[TrainState, dict[str, Array]]]:
    """The jitted training step, donating the state: `method.update` when the method has one,
    else `gradient_update`, then the NaN/Inf guard (`skip_non_finite`), which also skips a
    batch holding NaN/Inf (its rows come back as the metric NON_FINITE_ROWS). With shardings
    (parallel.py), the state and batch keep their layouts across steps and metrics come back
    replicated. With `max_traces`, a further trace (a recompilation) raises
    (`chex.assert_max_traces`; tests use it)."""
    pixel_scale = float(config.data.pixel_scale)
    update = method.update or functools.partial(gradient_update, method)

    def train_step(state: TrainState, batch: dict[str, Array], rng: Array):
        rng = jax.random.fold_in(rng, state.step)
        bad_rows = non_finite_rows(batch)
        batch = to_model_batch(batch, pixel_scale)
        new_state, metrics = update(model, tx, config, state, batch, rng)
        return skip_non_finite(state, new_state, {**metrics, NON_FINITE_ROWS: bad_rows})

    if max_traces is not None:
        train_step = chex.assert_max_traces(train_step, n=max_traces)
    if state_sharding is None:
        return jax.jit(train_step, donate_argnums=(0,))
    replicated = parallel.replicated(batch_sharding.mesh)
    return jax.jit(train_step, donate_argnums=(0,),
                   in_shardings=(state_sharding, batch_sharding, replicated),
                   out_shardings=(state_sharding, replicated))


def abstract_train_state(
    model: nn.Module, tx: optax.GradientTransformation, video_shape: tuple[int, ...]
) -> TrainState:
    """Shapes and dtypes of the train state, without allocating it (restore target)."""
    example = jax.ShapeDtypeStruct(video_shape, jnp.float32)
    return jax.eval_shape(
        lambda rng, x: create_train_state(model, tx, x, rng), jax.random.PRNGKey(0), example
    )


def sharded_restore_target(model: nn.Module, tx: optax.GradientTransformation,
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


class SkipCounter:
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


def interval_means(interval: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Mean of each metric over the interval's kept steps; `skipped` is the skipped count
    (NON_FINITE_ROWS, read by the loop before, is no scalar and is left out)."""
    kept = [m for m in interval if not m["skipped"]]
    means = {k: float(np.mean([m[k] for m in kept])) if kept else float("nan")
             for k in interval[0] if k not in ("skipped", NON_FINITE_ROWS)}
    return {**means, "skipped": float(len(interval) - len(kept))}
