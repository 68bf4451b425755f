"""Using a trained run from Python: `seqdis_jax.load(workdir)` -> a `TrainedModel`.

    model = seqdis_jax.load("runs/shapes")        # the latest kept checkpoint
    codes = model.encode(video)                   # posterior means and samples of s, d_1:T
    x_ab, x_ba = model.swap(video[:2], video[2:4])
    x = model.generate(8)                         # s ~ N(0, I), d_1:T from the learned prior

The config comes back from the run's `config.json` (every override it was trained with), and
only the parameters and BatchNorm statistics are restored, onto the default device: the
optimizer is never built and its state never read (Orbax partial restore). Every method and
modality works the same way: the calls are the model's own entry points (`encode`, `decode`,
`sample_dynamics` of `models.dsvae.DSVAE` and its subclasses), in evaluation mode.

Scales: `encode` takes what the dataset stores under "video" (`data.pipeline.model_inputs`):
integer frames are divided by `config.data.pixel_scale` as in training (uint8 video -> [0, 1]);
floats (speech, series features, or frames already scaled) are taken as they are. `decode`,
`swap` and `generate` return float32 in that model scale: video in [0, 1], features in the
dataset's stored scale.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqdis_jax import checkpointing, configuration, models, train_step
from seqdis_jax.data import pipeline
from seqdis_jax.errors import MissingCheckpointError, UserInputError

Seed = int | jax.Array  # an int seed or a PRNG key


class Codes(NamedTuple):
    """Posterior of a batch of B sequences: means and reparameterised samples of s (B, Ds)
    and d_1:T (B, T, Dd). R-WAE with actions: d_t carries the action code after its Dd.
    Under the papers' LSTM posterior (nested sampling) the mean of d_t follows the sampled
    d_<t, so the seed moves d_mean too."""

    s_mean: np.ndarray
    s_sample: np.ndarray
    d_mean: np.ndarray
    d_sample: np.ndarray


def _key(seed: Seed) -> jax.Array:
    return jax.random.PRNGKey(seed) if isinstance(seed, int) else seed


@dataclasses.dataclass(frozen=True, repr=False)
class TrainedModel:
    """A restored run: its config, the step of its checkpoint, the flax module and its
    variables ({"params", "batch_stats"}; no optimizer state). Arrays come back as numpy."""

    config: ml_collections.ConfigDict
    step: int
    workdir: str
    module: Any
    variables: dict[str, Any]

    def __repr__(self) -> str:
        return (f"TrainedModel(method={self.config.method!r}, data={self.config.data.name!r}, "
                f"modality={self.modality!r}, step={self.step}, workdir={self.workdir!r})")

    @property
    def modality(self) -> str:
        return self.config.model.get("modality", "video")

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one x_t: (H, W, C) of video, (F,) of speech and series."""
        return _frame_shape(self.config)

    # -- the model's entry points, jitted once per model (evaluation mode: BatchNorm's
    # running averages, no statistics updated).
    @functools.cached_property
    def _encode(self):
        m = self.module
        return jax.jit(lambda v, x, rng: m.apply(v, x, False, rngs={"sample": rng},
                                                 method=m.encode))

    @functools.cached_property
    def _decode(self):
        m = self.module
        return jax.jit(lambda v, s, d: m.apply(v, s, d, False, method=m.decode))

    @functools.cached_property
    def _sample_dynamics(self):
        m = self.module
        return jax.jit(lambda v, rng, n, t: m.apply(v, n, t, method=m.sample_dynamics,
                                                    rngs={"sample": rng}),
                       static_argnums=(2, 3))

    @functools.cached_property
    def dynamic_code_dim(self) -> int:
        """Size of d_t as the decoder reads it (dynamic_dim, plus R-WAE's action code)."""
        shapes = jax.eval_shape(self._sample_dynamics, self.variables, jax.random.PRNGKey(0),
                                1, 1)
        return int(shapes[1].shape[-1])

    @functools.cached_property
    def sequence_length(self) -> int:
        """T of the run's dataset (the default length of `generate`); opens its test split."""
        from seqdis_jax.data import registry

        try:
            return int(registry.load(self.config.data, "test").video_shape[0])
        except (OSError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserInputError(
                f"The length of this run's sequences comes from its dataset, which cannot be "
                f"opened here ({reason}); pass num_steps=T to generate().") from None

    def _inputs(self, x: Any, name: str = "x") -> jax.Array:
        x = pipeline.model_inputs({pipeline.RECORD_KEY: np.asarray(x)},
                                  self.config.data.pixel_scale)[pipeline.MODEL_KEY]
        if x.ndim != 2 + len(self.frame_shape) or x.shape[2:] != self.frame_shape:
            frame = ", ".join(map(str, self.frame_shape))
            raise UserInputError(
                f"{name} has shape {x.shape}; this {self.modality} model takes a batch of "
                f"sequences (B, T, {frame}) (for one sequence pass {name}[None]).")
        return jnp.asarray(x)

    def encode(self, x: Any, seed: Seed = 0) -> Codes:
        """The posterior of s and d_1:T of a batch of sequences x (B, T, ...frame), as the
        dataset stores them (module docstring, "Scales"); `seed` draws the samples."""
        out = jax.device_get(self._encode(self.variables, self._inputs(x), _key(seed)))
        return Codes(out["s_mean"], out["s"], out["d_mean"], out["d"])

    def _codes(self, s: Any, d: Any) -> tuple[jax.Array, jax.Array]:
        s, d = jnp.asarray(s, jnp.float32), jnp.asarray(d, jnp.float32)
        ds, dd = self.config.model.static_dim, self.dynamic_code_dim
        if s.ndim != 2 or s.shape[1] != ds:
            raise UserInputError(f"s has shape {s.shape}; pass a batch (B, {ds}).")
        if d.ndim != 3 or d.shape[2] != dd:
            raise UserInputError(f"d has shape {d.shape}; pass a batch (B, T, {dd}).")
        if s.shape[0] != d.shape[0]:
            raise UserInputError(f"s holds {s.shape[0]} codes and d {d.shape[0]}; pass as "
                                 "many of each.")
        return s, d

    def decode(self, s: Any, d: Any) -> np.ndarray:
        """x_1:T (B, T, ...frame) decoded from s (B, Ds) and d_1:T (B, T, Dd): the mean of
        the likelihood, float32 in the model scale (module docstring, "Scales")."""
        return np.asarray(jax.device_get(self._decode(self.variables, *self._codes(s, d))))

    def swap(self, x_a: Any, x_b: Any, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
        """(decode(s_a, d_b), decode(s_b, d_a)) from the posterior means of two batches of
        as many sequences: a's content moving as b, and b's content moving as a. The means
        are `encode(x, seed)`'s (the mean of d_t follows the sampled d_<t: nested sampling)."""
        a, b = self._inputs(x_a, "x_a"), self._inputs(x_b, "x_b")
        if len(a) != len(b):
            raise UserInputError(f"x_a holds {len(a)} sequences and x_b {len(b)}; swap pairs "
                                 "them one to one: pass as many of each.")
        code_a = self._encode(self.variables, a, _key(seed))
        code_b = self._encode(self.variables, b, _key(seed))
        return (self.decode(code_a["s_mean"], code_b["d_mean"]),
                self.decode(code_b["s_mean"], code_a["d_mean"]))

    def generate(self, n: int, s: Any = None, d: Any = None, seed: Seed = 0,
                 num_steps: int | None = None) -> np.ndarray:
        """n sequences decoded from s and d_1:T, drawing what is not given: s ~ N(0, I) (the
        static prior of every method), d_1:T ancestrally from the learned prior p(d_t | d_<t)
        (`sample_dynamics`: its samples, not its means). A given s (Ds,) or d (T, Dd) is used
        for all n; T is d's, else `num_steps`, else the dataset's (`sequence_length`)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise UserInputError(f"n must be a positive int, got {n!r}.")
        n = int(n)
        rng_s, rng_d = jax.random.split(_key(seed))
        if s is None:
            s = jax.random.normal(rng_s, (n, self.config.model.static_dim))
        if d is None:
            t = num_steps or self.sequence_length
            _, d = self._sample_dynamics(self.variables, rng_d, n, int(t))
        s, d = jnp.asarray(s, jnp.float32), jnp.asarray(d, jnp.float32)
        s = jnp.broadcast_to(s, (n,) + s.shape) if s.ndim == 1 else s
        d = jnp.broadcast_to(d, (n,) + d.shape) if d.ndim == 2 else d
        if s.shape[0] != n or d.shape[0] != n:
            raise UserInputError(f"generate({n}) got s of shape {s.shape} and d of shape "
                                 f"{d.shape}; give one code for all or n of them.")
        return self.decode(s, d)


def _frame_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    data = config.data
    if config.model.get("modality", "video") == "video":
        size = data.get("image_size", 64)
        return (size, size, data.channels)
    return (data.num_features,)


def _abstract_variables(module: Any, frame_shape: tuple[int, ...]) -> dict[str, Any]:
    """Shapes of {"params", "batch_stats"} as training initialises them
    (`train_step.init_variables`), on the default device; nothing is allocated."""
    example = jax.ShapeDtypeStruct((1, 2) + frame_shape, jnp.float32)
    shapes = jax.eval_shape(functools.partial(train_step.init_variables, module), example,
                            jax.random.PRNGKey(0))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                        shapes)


def load(workdir: str, step: int | None = None) -> TrainedModel:
    """The run trained in `workdir` at checkpoint `step` (None: the latest kept one): its
    config from config.json and its parameters and BatchNorm statistics, nothing else."""
    import orbax.checkpoint as ocp

    workdir = os.path.abspath(os.path.expanduser(str(workdir)))
    if not os.path.isdir(workdir):
        raise UserInputError(f"{workdir} does not exist; pass the --workdir of a trained run.")
    config = configuration.load_config(workdir)
    directory = checkpointing.checkpoint_dir(workdir)
    fix = ("train into it first: python -m experiments.main --config=<the run's config> "
           f"--workdir={workdir}")
    if not os.path.isdir(directory):
        raise MissingCheckpointError(f"{workdir} holds no checkpoints/; {fix}.")
    # Never saves, so never deletes (read_only=True would only add two absl warnings).
    manager = ocp.CheckpointManager(directory, item_names=("state", "data"),
                                    options=ocp.CheckpointManagerOptions(create=False))
    try:
        kept = sorted(manager.all_steps())
        if not kept:
            raise MissingCheckpointError(f"{directory} holds no complete checkpoint; {fix}.")
        if step is None:
            step = kept[-1]
        if step not in kept:
            raise UserInputError(f"step={step!r} is not kept in {directory}; pass one of "
                                 f"{kept} or step=None (the latest).")
        module = models.get_method(config.method).build(config)
        target = _abstract_variables(module, _frame_shape(config))
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        # Only the requested subtree is read: opt_state (and the data iterator) stay on disk.
        args = ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                      partial_restore=True)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(state=args))["state"]
        except (ValueError, KeyError, TypeError) as e:  # another tree structure or shape
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserInputError(
                f"The checkpoint of step {step} in {directory} does not fit the model of "
                f"{workdir}/config.json ({reason}); was config.json replaced?") from e
    finally:
        manager.close()
    variables = {"params": restored["params"], "batch_stats": restored.get("batch_stats", {})}
    return TrainedModel(config=config, step=int(step), workdir=workdir, module=module,
                        variables=variables)
