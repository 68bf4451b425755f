"""PNG grids of reconstructions, swaps, samples and interpolations; metrics.json key `grids`
(the file names)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqdis_jax import parallel
from seqdis_jax.data.pipeline import eval_batches
from seqdis_jax.evaluators.base import EvalContext, register
from seqdis_jax.evaluators.drawing import frames_to_grid, save_png, sequences_as_pictures

INTERPOLATION_STEPS = 8


@register("grids")
def grids(ctx: EvalContext) -> dict[str, Any]:
    """PNG grids from the first test sequences, decoding posterior means (C-DSVAE Fig. 3, 8;
    speech and series sequences are drawn as one heat map each, C-DSVAE Fig. 13):

    - reconstruction.png: pairs of rows (input, reconstruction).
    - swap.png: blocks of four rows (x_A, x_B, [s_A, d_B], [s_B, d_A]); where the data has
      static labels, each A is paired with the sequence that differs from it in the most of
      them (`_swap_pairs`), so that the grid shows each factor moving with s.
    - static_fixed_dynamics_sampled.png: row 0 the input; then s of row 0 with d_1:T drawn
      from the learned prior (ancestral samples). Not its means: the mean of d_1 is one
      constant, the centre of a wide p(d_1), and decodes to a smudge in every row (measured
      on the Quickstart, docs/results.md); judge_generation keeps the authors' means.
    - dynamics_fixed_static_sampled.png: row 0 the input; then d_1:T of row 0 with s ~ N(0, I).
    - interpolation.png: first row x_A, last row x_B; between them d_1:T of A with s moving
      linearly from s_A to s_B (C-DSVAE App. G).
    """
    model, variables = ctx.model, ctx.variables
    n = ctx.config.eval.grid_sequences
    batch = next(eval_batches(ctx.dataset.source, n))
    video = ctx.x(batch)
    t = video.shape[1]
    rng_post, rng_prior, rng_static = jax.random.split(ctx.rng, 3)

    n = len(video)
    pairs = _swap_pairs([np.asarray(batch[name]) for name in ctx.dataset.static_factors
                         if name in batch], n)
    partner = np.arange(n)
    for a, b in pairs:
        partner[a], partner[b] = b, a

    def make(variables, video, partner):
        out = model.apply(variables, video, False, rngs={"sample": rng_post})
        s, d = out["s_mean"], out["d_mean"]
        decode = lambda s, d: model.apply(variables, s, d, False, method=model.decode)
        swapped = decode(s[partner], d)
        _, d_prior = model.apply(
            variables, n - 1, t, method=model.sample_dynamics, rngs={"sample": rng_prior}
        )
        s_prior = jax.random.normal(rng_static, (n - 1, s.shape[-1]))
        fixed_s = decode(jnp.broadcast_to(s[:1], (n - 1, s.shape[-1])), d_prior)
        fixed_d = decode(s_prior, jnp.broadcast_to(d[:1], (n - 1,) + d.shape[1:]))
        alpha = jnp.linspace(0.0, 1.0, INTERPOLATION_STEPS)[:, None]
        interpolated = decode((1.0 - alpha) * s[0] + alpha * s[1],
                              jnp.broadcast_to(d[:1], (INTERPOLATION_STEPS,) + d.shape[1:]))
        return decode(s, d), swapped, fixed_s, fixed_d, interpolated

    make = parallel.gathered_jit(make, ctx.devices())

    recon, swapped, fixed_s, fixed_d, interpolated = jax.device_get(
        make(variables, video, partner))
    video = np.asarray(video)
    outputs = {
        "reconstruction.png": np.concatenate([np.stack([video[i], recon[i]]) for i in range(n)]),
        # swapped[i] decodes s of i's partner with d of i: row A's d with B's s and vice versa.
        "swap.png": np.concatenate(
            [np.stack([video[a], video[b], swapped[b], swapped[a]]) for a, b in pairs]
        ),
        "static_fixed_dynamics_sampled.png": np.concatenate([video[:1], fixed_s]),
        "dynamics_fixed_static_sampled.png": np.concatenate([video[:1], fixed_d]),
        "interpolation.png": np.concatenate([video[:1], interpolated, video[1:2]]),
    }
    for name, rows in outputs.items():
        save_png(os.path.join(ctx.workdir, name), frames_to_grid(sequences_as_pictures(rows)))
    return {"grids": sorted(outputs)}


def _swap_pairs(static_labels: list[np.ndarray], n: int) -> list[tuple[int, int]]:
    """Disjoint pairs of the first n sequences for swap.png: in order, each unpaired sequence
    with the later unpaired one that differs from it in the most static labels (the first such
    one); without labels (0, 1), (2, 3), .... An odd last sequence is left out."""
    if not static_labels:
        return [(i, i + 1) for i in range(0, n - 1, 2)]
    labels = np.stack([np.asarray(x)[:n] for x in static_labels], axis=1)  # (n, factors)
    free, pairs = list(range(n)), []
    while len(free) >= 2:
        a, rest = free[0], free[1:]
        b = max(rest, key=lambda j: (int(np.sum(labels[a] != labels[j])), -j))
        pairs.append((a, b))
        free = [j for j in rest if j != b]
    return pairs
