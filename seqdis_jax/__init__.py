"""seqdis_jax: sequential disentanglement methods in JAX/Flax.

`seqdis_jax.load(workdir, step=None)` restores a trained run for use from Python
(seqdis_jax/api.py); it is imported on first use, so `import seqdis_jax` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqdis_jax.api import Codes, TrainedModel, load

__all__ = ["Codes", "TrainedModel", "load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from seqdis_jax import api

        return getattr(api, name)
    raise AttributeError(f"module 'seqdis_jax' has no attribute {name!r}")
