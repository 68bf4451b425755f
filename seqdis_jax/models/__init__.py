"""Method registry. A method is a `Method` (models/method.py): its network (`build`), its loss,
its config section (`default_config`) and checks, its optimiser and, when it needs one, its own
training update. Each module here ends in `METHOD = Method(...)`.

A new method is one new file in this package plus one line in `METHODS`, or, from outside the
package, `register(Method(...))` (docs/adding_a_method.md).
"""

from __future__ import annotations

import importlib

from seqdis_jax.models.method import LossInputs, LossOutput, Method, loss_output

__all__ = ["METHODS", "LossInputs", "LossOutput", "Method", "get_method", "loss_output",
           "register"]

# name -> the module that defines its METHOD (imported on first use), or a registered Method.
METHODS: dict[str, str | Method] = {
    "dsvae": "seqdis_jax.models.dsvae",
    "cdsvae": "seqdis_jax.models.cdsvae",
    "spyl": "seqdis_jax.models.spyl",
    "dbse": "seqdis_jax.models.dbse",
    "rwae": "seqdis_jax.models.rwae",
}


def get_method(name: str) -> Method:
    """The method registered under `name`."""
    if name not in METHODS:
        raise ValueError(
            f"Unknown method {name!r}; config.method must be one of {sorted(METHODS)}."
        )
    entry = METHODS[name]
    return entry if isinstance(entry, Method) else importlib.import_module(entry).METHOD


def register(method: Method) -> Method:
    """Adds `method` to the registry under `method.name` (a method defined outside this
    package); refuses a name that is taken. Returns the method."""
    if method.name in METHODS:
        raise ValueError(f"A method named {method.name!r} is already registered.")
    METHODS[method.name] = method
    return method
