"""Downstream tasks on frozen codes (DBSE 5.3, Tables 2-3; SPYL 5.4, Table 2):
`downstream/<task>/<inputs>/<metric>` (+ _std).
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import RECORD_KEY, model_inputs
from seqdis_jax.evaluators.base import EvalContext, encode_dataset, register

DOWNSTREAM_INPUTS = ("codes", "static", "dynamic", "raw")


def _downstream_inputs(codes: dict[str, np.ndarray], inputs: str, pixel_scale: float
                       ) -> np.ndarray:
    """The predictor's input sequences (N, T', D): [s, d_t] per step, s alone (T' = 1),
    d_1:T, or the raw x_1:T flattened per step (the "RF" baseline)."""
    s, d = codes["s_mean"], codes["d_mean"]
    if inputs == "codes":
        return np.concatenate([np.repeat(s[:, None], d.shape[1], axis=1), d], axis=-1)
    if inputs == "static":
        return s[:, None]
    if inputs == "dynamic":
        return d
    raw = model_inputs({RECORD_KEY: codes[RECORD_KEY]}, pixel_scale)["x"]
    return raw.reshape(raw.shape[0], raw.shape[1], -1)


def check_downstream_tasks(config: ml_collections.ConfigDict,
                           dataset: data_registry.Dataset) -> None:
    """Refuses a task whose target the dataset lacks or whose kind/inputs are unknown."""
    from seqdis_jax import downstream as downstream_lib

    keys = (*dataset.static_factors, *dataset.dynamic_factors, *dataset.targets)
    for name, task in config.eval.get("downstream", {}).items():
        where = f"config.eval.downstream.{name}"
        if task.target not in keys:
            raise ValueError(f"{where}.target={task.target!r} is not a label or target of "
                             f"dataset {config.data.name!r} (it has {list(keys)}).")
        if task.kind not in downstream_lib.KINDS:
            raise ValueError(f"{where}.kind must be one of {downstream_lib.KINDS}, got "
                             f"{task.kind!r}.")
        unknown = [i for i in task.inputs if i not in DOWNSTREAM_INPUTS]
        if unknown or not task.inputs:
            raise ValueError(f"{where}.inputs must name some of {DOWNSTREAM_INPUTS}, got "
                             f"{tuple(task.inputs)}.")


@register("downstream")
def downstream(ctx: EvalContext) -> dict[str, Any]:
    """Each task of `config.eval.downstream`: a small RNN (seqdis_jax/downstream.py) trained on
    the frozen posterior means of the train split (at most `eval.downstream_train_limit`
    sequences) predicts the task's target on the whole test split, `eval.downstream_seeds`
    times: downstream/<task>/<inputs>/<metric> (+ _std). A config without tasks gives {}."""
    from seqdis_jax import downstream as downstream_lib

    tasks = ctx.config.eval.get("downstream", {})
    if not tasks:
        return {}
    config = ctx.config
    check_downstream_tasks(config, ctx.dataset)
    train_data = data_registry.load(config.data, "train")
    encode = lambda data, limit, i: encode_dataset(
        config, ctx.model, ctx.variables, data, jax.random.fold_in(ctx.rng, i), limit,
        keep_inputs=True, mesh=ctx.devices())
    splits = {"train": encode(train_data, config.eval.downstream_train_limit, 0),
              "test": encode(ctx.dataset, None, 1)}
    results: dict[str, Any] = {}
    for name, task in tasks.items():
        num_classes = (ctx.dataset.num_classes[task.target] if task.kind == "multiclass"
                       else None)
        for inputs in task.inputs:
            x = {k: _downstream_inputs(c, inputs, config.data.pixel_scale)
                 for k, c in splits.items()}
            scores = downstream_lib.fit_and_score_seeds(
                x["train"], splits["train"][task.target], x["test"], splits["test"][task.target],
                task.kind, num_classes, steps=config.eval.downstream_steps,
                seeds=tuple(range(config.eval.downstream_seeds)))
            results.update({f"downstream/{name}/{inputs}/{k}": v for k, v in scores.items()})
    return results
