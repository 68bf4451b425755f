"""The method interface: all that train.py, configuration.py and the experiment configs know of
a method. Each method module of this package ends in `METHOD = Method(...)`; the registry
(`seqdis_jax.models`) finds it by name. docs/adding_a_method.md walks through a new one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections
import optax

from seqdis_jax import optim
from seqdis_jax.nn.video import apply_updating_batch_stats

Array = jax.Array
Metrics = dict[str, Array]
# (loss, (metrics, new batch_stats)): metrics hold "loss" and the terms worth logging.
LossOutput = tuple[Array, tuple[Metrics, Any]]


@dataclasses.dataclass(frozen=True)
class LossInputs:
    """What a method's loss reads: the network and its variables, a model batch (the sequences
    under "x" as floats, `data.pipeline.model_inputs`, and the labels), the step's randomness,
    the config, train or eval mode, and the optimiser step (for schedules such as a warm-up;
    None outside the train step)."""

    model: nn.Module
    params: Any
    batch_stats: Any
    batch: dict[str, Array]
    rng: Array
    config: ml_collections.ConfigDict
    train: bool = True
    step: Array | None = None

    @property
    def x(self) -> Array:
        """The sequences x_1:T: frames (B, T, H, W, C) or features (B, T, F)."""
        return self.batch["x"]

    def apply(self, inputs: Any, rng: Array | None = None, batch_stats: Any = None,
              method: Callable[..., Any] | None = None) -> tuple[Any, Any]:
        """(output, batch_stats) of `model.apply(inputs, train)` (`method`: another entry point,
        e.g. `model.encode`) with `rng` as its 'sample' stream, starting from `batch_stats`
        (default: the inputs'). In training the apply is a BatchNorm batch of its own and
        the returned statistics are updated; in evaluation they are returned unchanged."""
        stats = self.batch_stats if batch_stats is None else batch_stats
        rngs = None if rng is None else {"sample": rng}
        return apply_updating_batch_stats(self.model, self.params, stats, inputs, self.train,
                                          rngs=rngs, method=method)

    def forward(self, rng: Array | None = None) -> tuple[dict[str, Array], Any]:
        """(output, batch_stats) of the full pass on x (posterior, prior and reconstruction),
        drawing with `rng` (default: the inputs')."""
        return self.apply(self.x, self.rng if rng is None else rng)


def loss_output(loss: Array, batch_stats: Any, **terms: Array) -> LossOutput:
    """A loss's return value: the loss, and the metrics "loss" and `terms`."""
    return loss, (dict(loss=loss, **terms), batch_stats)


class TrainStateLike(Protocol):
    """The train state as a method's `update` sees it (seqdis_jax/train.py `TrainState`)."""

    step: Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def replace(self, **updates: Any) -> TrainStateLike: ...


class Update(Protocol):
    """A training step's update, traced inside the jitted step: (model, the method's
    optimiser, config, state, model-ready batch, the step's rng) -> (new state, metrics). The
    metrics hold "loss" and should hold "grad_norm" (the NaN/Inf guard checks both)."""

    def __call__(self, model: nn.Module, tx: optax.GradientTransformation,
                 config: ml_collections.ConfigDict, state: TrainStateLike,
                 batch: dict[str, Array], rng: Array) -> tuple[TrainStateLike, Metrics]: ...


def no_checks(config: ml_collections.ConfigDict) -> None:
    """The checks of a method without settings of its own."""
    del config


def _set_field(config: ml_collections.ConfigDict, path: str, value: Any) -> None:
    *sections, field = path.split(".")
    for section in sections:
        config = config[section]
    config[field] = value


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
    """A sequential-disentanglement method.

    name:             `config.method`, and the name of its config section `config.<name>`.
    build:            config -> the flax module (a `dsvae.DSVAE` or a subclass: `encode`,
                      `decode`, `sample_dynamics`, `__call__`, the interface the evaluators use).
    loss:             LossInputs -> LossOutput, traced inside the jitted step; also the
                      validation loss (train=False).
    default_config:   (**options) -> the section `config.<name>` with the paper's defaults;
                      an empty ConfigDict (no section) for a method without settings.
    checks:           config -> None, raising ValueError that names the fix (`validate` adds
                      the check that the section is there).
    optimizer:        config -> the optax transformation of the whole train state
                      (default `optim.adam`).
    update:           a custom training update (`Update`), e.g. R-WAE's alternating groups;
                      None: one gradient of `loss` through `optimizer`.
    config_overrides: {"section.field": value} of the shared sections (train, loss) that the
                      method's paper sets, applied by `configure` after the section.
    smoke_overrides:  {"section.field": value} that keep a `:smoke` step cheap
                      (experiments/base.py `shrink_method_to_smoke`).
    """

    name: str
    build: Callable[[ml_collections.ConfigDict], nn.Module]
    loss: Callable[[LossInputs], LossOutput]
    default_config: Callable[..., ml_collections.ConfigDict] = ml_collections.ConfigDict
    checks: Callable[[ml_collections.ConfigDict], None] = no_checks
    optimizer: Callable[[ml_collections.ConfigDict], optax.GradientTransformation] = optim.adam
    update: Update | None = None
    config_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    smoke_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def configure(self, config: ml_collections.ConfigDict, **options: Any) -> None:
        """Sets `config` to train this method, in place: `config.method`, the section
        `default_config(**options)` (when not empty) and `config_overrides`."""
        config.method = self.name
        section = self.default_config(**options)
        if section:
            config[self.name] = section
        for path, value in self.config_overrides.items():
            _set_field(config, path, value)

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """The method's checks of `config` (called by `configuration.validate`); ValueError
        names the fix."""
        if self.default_config() and self.name not in config:
            raise ValueError(
                f"config.method={self.name!r} needs a config.{self.name} section; build the "
                f"config with seqdis_jax.models.get_method({self.name!r}).configure(config).")
        self.checks(config)

    def shrink_to_smoke(self, config: ml_collections.ConfigDict) -> None:
        """`smoke_overrides`, in place."""
        for path, value in self.smoke_overrides.items():
            _set_field(config, path, value)
