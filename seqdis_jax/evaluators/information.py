"""MWS mutual information between the codes and the data (C-DSVAE App. A.3): `mi/s_d`,
`mi/s_x`, `mi/d_x` and `mi/ceiling` (mutual_information), and the training curve of the same
estimates (make_mi_curve).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from seqdis_jax import estimators, parallel
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import eval_batches, model_inputs
from seqdis_jax.evaluators.base import EvalContext, register


def _mi_function(model: Any, mesh: jax.sharding.Mesh):
    def mutual_information(variables, video, rng):
        out = model.apply(variables, video, False, rngs={"sample": rng}, method=model.encode)
        d_mean, d_logvar, d = out["d_mean"], out["d_logvar"], out["d"]
        return estimators.mws_mutual_information(
            out["s"], out["s_mean"], out["s_logvar"], d, d_mean, d_logvar)

    return parallel.gathered_jit(mutual_information, mesh)


@register("mutual_information")
def mutual_information(ctx: EvalContext) -> dict[str, Any]:
    """I(s; d_1:T), I(s; x), I(d_1:T; x) by MWS (C-DSVAE App. A.3, eq. 13), averaged over
    held-out batches of `eval.mi_batch_size` sequences."""
    fn = _mi_function(ctx.model, ctx.devices())
    values = []
    size = ctx.config.eval.mi_batch_size
    n = min(len(ctx.dataset.source), ctx.config.eval.limit or len(ctx.dataset.source))
    for i, batch in enumerate(eval_batches(ctx.dataset.source, size, n - n % size or n)):
        if not batch["mask"].all():
            break  # MWS needs a full batch of distinct sequences
        values.append(jax.device_get(fn(ctx.variables, ctx.x(batch),
                                        jax.random.fold_in(ctx.rng, i))))
    if not values:
        print(f"Warning: mutual_information skipped: the test split has fewer than "
              f"config.eval.mi_batch_size={size} sequences; lower it.", file=sys.stderr,
              flush=True)
        return {}
    results = {f"mi/{k.removeprefix('mi_')}": float(np.mean([v[k] for v in values]))
               for k in values[0] if k.startswith("mi_")}
    # MWS cannot estimate more than log M nats from a batch of M (each s_i is then told apart
    # from the other M - 1): a value there is a bound reached, not a measurement.
    results["mi/ceiling"] = float(np.log(size))
    return results


def make_mi_curve(config: ml_collections.ConfigDict, model: Any
                  ) -> Callable[[Any], dict[str, float]]:
    """state -> MWS mutual informations on one fixed held-out batch, for training curves
    (C-DSVAE Fig. 6, 14, 15)."""
    dataset = data_registry.load(config.data, "test")
    batch = next(eval_batches(dataset.source, min(config.eval.mi_batch_size,
                                                  len(dataset.source))))
    mesh = parallel.mesh_from_config(config)
    x = parallel.place_rows(model_inputs(batch, config.data.pixel_scale)["x"], mesh)
    fn = _mi_function(model, mesh)
    rng = jax.random.PRNGKey(config.seed + 1)

    def curve(state) -> dict[str, float]:
        values = jax.device_get(fn({"params": state.params, "batch_stats": state.batch_stats},
                                   x, rng))
        return {k: float(v) for k, v in values.items() if k.startswith("mi_")}

    return curve
