"""Method registry: a method is a module with
  * `build(config) -> flax module` with `encode`, `decode`, `sample_dynamics` and `__call__`
    (the DSVAE interface the evaluators use),
  * `loss_fn(model, params, batch_stats, batch, rng, config, train=True, step=None)
    -> (loss, (metrics, batch_stats))`, traced inside the jitted train step (`step` is the
    optimiser step, for schedules such as a warm-up),
  * optionally `validate_config(config)`, raising ValueError that names the fix.

A new method is one new file in this package plus one line in `METHODS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS = {
    "dsvae": "seqdis_jax.models.dsvae",
    "cdsvae": "seqdis_jax.models.cdsvae",
    "spyl": "seqdis_jax.models.spyl",
    "dbse": "seqdis_jax.models.dbse",
    "rwae": "seqdis_jax.models.rwae",
}


def get_method(name: str) -> ModuleType:
    """Returns the method module registered under `name`."""
    if name not in METHODS:
        raise ValueError(
            f"Unknown method {name!r}; config.method must be one of {sorted(METHODS)}."
        )
    return importlib.import_module(METHODS[name])
