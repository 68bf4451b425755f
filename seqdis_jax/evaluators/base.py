"""The evaluator registry. `config.eval.evaluators` names the evaluators a run executes.

Each evaluator takes an `EvalContext` and returns a dict of JSON-serialisable results; it may
write files (PNG grids) into the workdir. `run_evaluators` merges the results into
`workdir/metrics.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from seqdis_jax import parallel
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import RECORD_KEY, eval_batches, model_inputs
from seqdis_jax.errors import MissingLabelError
from seqdis_jax.models.dsvae import MODALITIES

Array = jax.Array


@dataclasses.dataclass
class EvalContext:
    config: ml_collections.ConfigDict
    workdir: str
    model: Any
    variables: dict[str, Any]
    dataset: data_registry.Dataset
    rng: Array
    # () -> (judge module, judge variables, judge.json); trains or restores the judge lazily.
    judge_loader: Callable[[], tuple[Any, dict[str, Any], dict[str, Any]]] | None = None
    # The training mesh: evaluation batches are split over its devices (None: config.mesh).
    mesh: jax.sharding.Mesh | None = None
    _codes: dict[str, np.ndarray] | None = None

    def devices(self) -> jax.sharding.Mesh:
        """The mesh the evaluation batches are split over (`mesh`, else config.mesh's)."""
        if self.mesh is None:
            self.mesh = parallel.mesh_from_config(self.config)
        return self.mesh

    def batches(self, size: int, limit: int | None = None) -> Any:
        """`eval_batches` of the test split, padded (masked) to split over the mesh."""
        return eval_batches(self.dataset.source, size, limit, self.devices().size)

    def x(self, batch: dict[str, np.ndarray]) -> Array:
        """The model input x of a batch of records (`model_inputs`), placed on the mesh."""
        return parallel.place_rows(model_inputs(batch, self.config.data.pixel_scale)["x"],
                                   self.devices())

    def codes(self) -> dict[str, np.ndarray]:
        """Posterior means of s (N, Ds) and d_1:T (N, T, Dd) of the first `eval.limit` test
        sequences, with their labels; computed once and shared by the evaluators."""
        if self._codes is None:
            self._codes = encode_dataset(self.config, self.model, self.variables, self.dataset,
                                         jax.random.fold_in(self.rng, 10_000),
                                         self.config.eval.limit, mesh=self.devices())
        return self._codes


@dataclasses.dataclass(frozen=True)
class Evaluator:
    fn: Callable[[EvalContext], dict[str, Any]]
    # Which labels the dataset must have: "" none, "any" at least one static, dynamic or
    # per-frame label, "static" at least one static label.
    needs_labels: str = ""
    needs_judge: bool = False
    modalities: tuple[str, ...] = MODALITIES  # the config.model.modality values it supports


EVALUATORS: dict[str, Evaluator] = {}


def register(name: str, needs_labels: str = "", needs_judge: bool = False,
             modalities: tuple[str, ...] = MODALITIES):
    if needs_labels not in ("", "any", "static"):
        raise ValueError(f"needs_labels must be '', 'any' or 'static', got {needs_labels!r}")

    def wrap(fn):
        EVALUATORS[name] = Evaluator(fn, needs_labels, needs_judge, modalities)
        return fn

    return wrap


def _has_labels(evaluator: Evaluator, dataset: data_registry.Dataset) -> bool:
    if evaluator.needs_labels == "static":
        return bool(dataset.static_factors)
    if evaluator.needs_labels == "any":
        return bool(dataset.static_factors or dataset.dynamic_factors or dataset.frame_factors)
    return True


def select_evaluators(names: Sequence[str], dataset: data_registry.Dataset,
                      modality: str = "video") -> list[str]:
    """Expands 'all' to every evaluator the dataset's labels and the modality allow; refuses a
    named evaluator whose labels the dataset lacks or that does not apply to the modality."""
    unknown = [n for n in names if n != "all" and n not in EVALUATORS]
    if unknown:
        raise ValueError(
            f"Unknown evaluator(s) {unknown}; config.eval.evaluators may hold 'all' or "
            f"{sorted(EVALUATORS)}."
        )
    selected: list[str] = []
    for name in names:
        expanded = ([n for n, e in EVALUATORS.items()
                     if _has_labels(e, dataset) and modality in e.modalities]
                    if name == "all" else [name])
        for n in expanded:
            if modality not in EVALUATORS[n].modalities:
                raise ValueError(
                    f"Evaluator {n!r} applies to {list(EVALUATORS[n].modalities)} data, not "
                    f"config.model.modality={modality!r}; remove it from config.eval.evaluators.")
            if not _has_labels(EVALUATORS[n], dataset):
                missing = "static label" if EVALUATORS[n].needs_labels == "static" else "label"
                raise MissingLabelError(
                    f"Evaluator {n!r} needs a {missing}, and this dataset labels none "
                    f"(static: {list(dataset.static_factors)}, dynamic: "
                    f"{list(dataset.dynamic_factors)}); remove it from config.eval.evaluators."
                )
            if n not in selected:
                selected.append(n)
    return selected


def run_evaluators(
    config: ml_collections.ConfigDict,
    workdir: str,
    model: Any,
    state: Any,
    rng: Array,
    judge_loader: Callable[[ml_collections.ConfigDict, Any], tuple] | None = None,
    results_file: str = "metrics.json",
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Runs the evaluators in `config.eval.evaluators` ('all': every one the dataset's labels
    allow) with their batches split over `mesh` (None: config.mesh's, where the state was
    trained or restored); writes `results_file` in `workdir`."""
    dataset = data_registry.load(config.data, "test")
    names = select_evaluators(config.eval.evaluators, dataset,
                              config.model.get("modality", "video"))
    ctx = EvalContext(
        config=config,
        workdir=workdir,
        model=model,
        variables={"params": state.params, "batch_stats": state.batch_stats},
        dataset=dataset,
        rng=rng,
        judge_loader=(lambda: judge_loader(config, dataset)) if judge_loader else None,
        mesh=mesh,
    )
    results: dict[str, Any] = {"step": int(state.step)}
    results.update({f"chance/{name}": 1.0 / dataset.num_classes[name]
                    for name in (*dataset.static_factors, *dataset.dynamic_factors,
                                 *dataset.frame_factors) if name in dataset.num_classes})
    results.update({f"chance/{part}": 1.0 / classes
                    for parts in dataset.factor_parts.values() for part, classes in parts})
    for i, name in enumerate(names):
        ctx.rng = jax.random.fold_in(rng, i)
        start = time.perf_counter()
        _progress(f"Evaluating {i + 1}/{len(names)}: {name} ...")
        results.update(EVALUATORS[name].fn(ctx))
        _progress(f"Evaluating {i + 1}/{len(names)}: {name} done in "
                  f"{time.perf_counter() - start:.0f} s.")
    if jax.process_index() == 0:
        path = os.path.join(workdir, results_file)
        if os.path.exists(path):  # keep results of evaluators that were not run this time
            with open(path, encoding="utf-8") as f:
                previous = json.load(f)
            if previous.get("step") == results["step"]:
                results = previous | results
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)  # never leave a half-written metrics.json
    return results


def _progress(message: str) -> None:
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def encode_dataset(
    config: ml_collections.ConfigDict, model: Any, variables: Any,
    dataset: data_registry.Dataset, rng: Array, limit: int | None = None,
    keep_inputs: bool = False, mesh: jax.sharding.Mesh | None = None,
) -> dict[str, np.ndarray]:
    """Posterior means of s and d_1:T of the first `limit` sequences (None: all), plus their
    labels, targets and group, and with `keep_inputs` the input records' sequences (under
    `RECORD_KEY`, as stored). Each batch is split over the devices of `mesh` (None:
    config.mesh's), padded to a multiple of them; the padding is dropped."""
    mesh = parallel.mesh_from_config(config) if mesh is None else mesh

    def encode(variables, x, rng):
        out = model.apply(variables, x, False, rngs={"sample": rng}, method=model.encode)
        return {k: out[k] for k in ("s_mean", "d_mean")}

    encode = parallel.gathered_jit(encode, mesh)

    label_keys = (*dataset.static_factors, *dataset.dynamic_factors, *dataset.frame_factors,
                  *dataset.targets, *((dataset.group,) if dataset.group else ()))
    parts: list[dict[str, np.ndarray]] = []
    if keep_inputs:
        label_keys += (RECORD_KEY,)
    batches = eval_batches(dataset.source, config.eval.batch_size, limit, mesh.size)
    for i, batch in enumerate(batches):
        x = parallel.place_rows(model_inputs(batch, config.data.pixel_scale)["x"], mesh)
        out = jax.device_get(encode(variables, x, jax.random.fold_in(rng, i)))
        mask = batch["mask"]
        parts.append({**{k: v[mask] for k, v in out.items()},
                      **{k: np.asarray(batch[k])[mask] for k in label_keys}})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
