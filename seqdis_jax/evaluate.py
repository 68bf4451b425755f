"""Evaluator registry. `config.eval.evaluators` names the evaluators a run executes.

Each evaluator takes an `EvalContext` and returns a dict of JSON-serialisable results; it may
write files (PNG grids) into the workdir. `run_evaluators` merges the results into
`workdir/metrics.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import eval_batches
from seqdis_jax.nn.gaussian import kl_diag_gaussians, kl_standard_normal

Array = jax.Array


@dataclasses.dataclass
class EvalContext:
    config: ml_collections.ConfigDict
    workdir: str
    model: Any
    variables: dict[str, Any]
    dataset: data_registry.Dataset
    rng: Array

    def video(self, batch: dict[str, np.ndarray]) -> Array:
        return jnp.asarray(batch["video"], jnp.float32) / self.config.data.pixel_scale


EVALUATORS: dict[str, Callable[[EvalContext], dict[str, Any]]] = {}


def register(name: str):
    def wrap(fn):
        EVALUATORS[name] = fn
        return fn

    return wrap


def run_evaluators(
    config: ml_collections.ConfigDict, workdir: str, model: Any, state: Any, rng: Array
) -> dict[str, Any]:
    """Runs every evaluator in `config.eval.evaluators`; writes `metrics.json`."""
    unknown = [n for n in config.eval.evaluators if n not in EVALUATORS]
    if unknown:
        raise ValueError(
            f"Unknown evaluator(s) {unknown}; config.eval.evaluators may hold {sorted(EVALUATORS)}."
        )
    ctx = EvalContext(
        config=config,
        workdir=workdir,
        model=model,
        variables={"params": state.params, "batch_stats": state.batch_stats},
        dataset=data_registry.load(config.data, "test"),
        rng=rng,
    )
    results: dict[str, Any] = {"step": int(state.step)}
    for i, name in enumerate(config.eval.evaluators):
        ctx.rng = jax.random.fold_in(rng, i)
        results.update(EVALUATORS[name](ctx))
    if jax.process_index() == 0:
        path = os.path.join(workdir, "metrics.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)  # never leave a half-written metrics.json
    return results


@register("reconstruction")
def reconstruction(ctx: EvalContext) -> dict[str, Any]:
    """Test-set reconstruction error (sum over frames and pixels, mean over sequences) from
    posterior samples and from posterior means, and the two KL terms."""
    model = ctx.model

    @jax.jit
    def per_example(variables, video, rng):
        out = model.apply(variables, video, False, rngs={"sample": rng})
        x_mean = model.apply(variables, out["s_mean"], out["d_mean"], False, method=model.decode)
        sq = lambda y: jnp.sum(jnp.square(y - video).reshape(video.shape[0], -1), axis=-1)
        kl_d = kl_diag_gaussians(
            out["d_mean"], out["d_logvar"], out["prior_mean"], out["prior_logvar"]
        )
        return dict(
            reconstruction=sq(out["reconstruction"]),
            reconstruction_from_means=sq(x_mean),
            kl_static=jnp.sum(kl_standard_normal(out["s_mean"], out["s_logvar"]), axis=-1),
            kl_dynamic=jnp.sum(kl_d, axis=(1, 2)),
        )

    totals: dict[str, float] = {}
    count = 0
    batches = eval_batches(ctx.dataset.source, ctx.config.eval.batch_size, ctx.config.eval.limit)
    for i, batch in enumerate(batches):
        values = jax.device_get(
            per_example(ctx.variables, ctx.video(batch), jax.random.fold_in(ctx.rng, i))
        )
        mask = batch["mask"]
        for k, v in values.items():
            totals[k] = totals.get(k, 0.0) + float(np.sum(v[mask]))
        count += int(mask.sum())
    return {f"test/{k}": v / count for k, v in totals.items()} | {"test/num_sequences": count}


def frames_to_grid(rows: np.ndarray, gap: int = 2) -> np.ndarray:
    """(R, T, H, W, C) floats in [0, 1] -> one uint8 RGB image, a row per sequence."""
    rows = np.clip(np.asarray(rows, np.float32), 0.0, 1.0)
    if rows.shape[-1] == 1:
        rows = np.repeat(rows, 3, axis=-1)
    r, t, h, w, c = rows.shape
    grid = np.ones((r * (h + gap) + gap, t * (w + gap) + gap, c), np.float32)
    for i in range(r):
        for j in range(t):
            y, x = gap + i * (h + gap), gap + j * (w + gap)
            grid[y : y + h, x : x + w] = rows[i, j]
    return (grid * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str, image: np.ndarray) -> None:
    Image.fromarray(image).save(path + ".tmp.png")
    os.replace(path + ".tmp.png", path)


@register("grids")
def grids(ctx: EvalContext) -> dict[str, Any]:
    """PNG grids from the first test sequences, decoding posterior means (C-DSVAE Fig. 3, 8):

    - reconstruction.png: pairs of rows (input, reconstruction).
    - swap.png: blocks of four rows (x_A, x_B, [s_A, d_B], [s_B, d_A]).
    - static_fixed_dynamics_sampled.png: row 0 the input; then s of row 0 with d_1:T from
      the learned prior (its ancestral means, as the authors decode).
    - dynamics_fixed_static_sampled.png: row 0 the input; then d_1:T of row 0 with s ~ N(0, I).
    """
    model, variables = ctx.model, ctx.variables
    n = ctx.config.eval.grid_sequences
    batch = next(eval_batches(ctx.dataset.source, n))
    video = ctx.video(batch)
    t = video.shape[1]
    rng_post, rng_prior, rng_static = jax.random.split(ctx.rng, 3)

    @jax.jit
    def make(variables, video):
        out = model.apply(variables, video, False, rngs={"sample": rng_post})
        s, d = out["s_mean"], out["d_mean"]
        decode = lambda s, d: model.apply(variables, s, d, False, method=model.decode)
        swapped = decode(s[_pair_partner(n)], d)
        d_prior, _ = model.apply(
            variables, n - 1, t, method=model.sample_dynamics, rngs={"sample": rng_prior}
        )
        s_prior = jax.random.normal(rng_static, (n - 1, s.shape[-1]))
        fixed_s = decode(jnp.broadcast_to(s[:1], (n - 1, s.shape[-1])), d_prior)
        fixed_d = decode(s_prior, jnp.broadcast_to(d[:1], (n - 1,) + d.shape[1:]))
        return decode(s, d), swapped, fixed_s, fixed_d

    recon, swapped, fixed_s, fixed_d = jax.device_get(make(variables, video))
    video = np.asarray(video)
    pairs = [(i, i + 1) for i in range(0, n - 1, 2)]
    outputs = {
        "reconstruction.png": np.concatenate([np.stack([video[i], recon[i]]) for i in range(n)]),
        # swapped[i] decodes s of i's partner with d of i: row A's d with B's s and vice versa.
        "swap.png": np.concatenate(
            [np.stack([video[a], video[b], swapped[b], swapped[a]]) for a, b in pairs]
        ),
        "static_fixed_dynamics_sampled.png": np.concatenate([video[:1], fixed_s]),
        "dynamics_fixed_static_sampled.png": np.concatenate([video[:1], fixed_d]),
    }
    for name, rows in outputs.items():
        save_png(os.path.join(ctx.workdir, name), frames_to_grid(rows))
    return {"grids": sorted(outputs)}


def _pair_partner(n: int) -> np.ndarray:
    """Index of each sequence's swap partner: (0,1), (2,3), ...; an odd last one keeps itself."""
    partner = np.arange(n)
    for i in range(0, n - 1, 2):
        partner[i], partner[i + 1] = i + 1, i
    return partner
