"""Method registry: a method is a module with `build(config)` and `loss_fn(...)`.

A new method is one new file in this package plus one line in `METHODS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS = {
    "dsvae": "seqdis_jax.models.dsvae",
}


def get_method(name: str) -> ModuleType:
    """Returns the method module registered under `name`."""
    if name not in METHODS:
        raise ValueError(
            f"Unknown method {name!r}; config.method must be one of {sorted(METHODS)}."
        )
    return importlib.import_module(METHODS[name])
