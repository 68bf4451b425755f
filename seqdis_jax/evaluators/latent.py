"""Latent-code classification (SPYL 5.5): `latent/<label>_from_<code>/<classifier>` (+ _std)
and `latent/{static,dynamic,frame}_gap/<classifier>`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from seqdis_jax import metrics as metrics_lib
from seqdis_jax.evaluators.base import EvalContext, register


@register("latent_classification", needs_labels="any")
def latent_classification(ctx: EvalContext) -> dict[str, Any]:
    """Predict every static and dynamic label from s and from flattened d_1:T with SVC,
    RandomForest and KNN (default settings) on 80/20 splits over `eval.latent_seeds` seeds.

    static_gap = mean_f acc(f | s) - acc(f | d) over static factors; dynamic_gap likewise
    acc(f | d) - acc(f | s) over dynamic factors: large gaps mean each code holds its own
    factor only. A per-frame label (`Dataset.frame_factors`, e.g. Letters' letters) is
    predicted for every frame from its d_t and from the sequence's s (SPYL B.9), over the
    frames of the evaluated sequences: `latent/<label>_from_{d_t,s}`, `latent/frame_gap`."""
    codes = ctx.codes()
    d_mean = codes["d_mean"]
    n, t = d_mean.shape[:2]
    sequence_features = {"s": codes["s_mean"], "d": d_mean.reshape(n, -1)}
    frame_features = {"s": np.repeat(codes["s_mean"], t, axis=0),
                      "d_t": d_mean.reshape(n * t, -1)}
    seeds = tuple(range(ctx.config.eval.latent_seeds))
    classifiers = tuple(ctx.config.eval.latent_classifiers)
    results: dict[str, Any] = {}
    accuracy: dict[tuple[str, str, str], float] = {}

    def classify(name: str, labels: np.ndarray, features: dict[str, np.ndarray]) -> None:
        for code, x in features.items():
            scores = metrics_lib.latent_classification(x, labels, classifiers, seeds)
            for clf, (mean, std) in scores.items():
                accuracy[code, name, clf] = mean
                results[f"latent/{name}_from_{code}/{clf}"] = mean
                results[f"latent/{name}_from_{code}/{clf}_std"] = std

    static = [f for f in ctx.dataset.static_factors if _varies(codes, f)]
    dynamic = [f for f in ctx.dataset.dynamic_factors if _varies(codes, f)]
    frame = [f for f in ctx.dataset.frame_factors if _varies(codes, f)]
    for name in static + dynamic:
        classify(name, codes[name], sequence_features)
    for name in frame:
        classify(name, codes[name].reshape(n * t), frame_features)
    for clf in classifiers:
        for key, factors, own, other in (("static_gap", static, "s", "d"),
                                         ("dynamic_gap", dynamic, "d", "s"),
                                         ("frame_gap", frame, "d_t", "s")):
            if factors:
                results[f"latent/{key}/{clf}"] = float(np.mean(
                    [accuracy[own, f, clf] - accuracy[other, f, clf] for f in factors]))
    return results


def _varies(codes: dict[str, np.ndarray], label: str) -> bool:
    """False (with a warning) when every evaluated sequence has the same `label`."""
    if len(np.unique(codes[label])) > 1:
        return True
    print(f"Warning: {label!r} takes one value on the evaluated test sequences; it is not "
          "classified (raise config.eval.limit).", file=sys.stderr, flush=True)
    return False
