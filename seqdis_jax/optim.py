"""Optimisers: the standard Adam of a config (`adam`), and optimisers over groups of
parameters, for methods that update their networks in alternating phases (R-WAE's
critic/encoder steps and decoder/prior steps, App. G Alg. 1-2).

Groups are `optax.partition` labels (e.g. one per top-level submodule), each with its own
transformation and state. A phase steps only some groups with `step_groups`, inside the
jitted train step: the other groups' parameters AND optimiser states stay exactly as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import optax

Params = Mapping[str, Any]


def adam(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with `config.train`'s learning rate (cosine-annealed to 0 over the run with
    `cosine_decay`, as the judges are), betas and optional global-norm clipping: every
    method's optimiser unless it brings its own (`Method.optimizer`)."""
    return adam_of(config.train)


def adam_of(t: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """`adam` of a training section `t` (a run's `config.train`, a judge's
    `config.judge.train`)."""
    learning_rate = t.learning_rate
    if t.cosine_decay:
        learning_rate = optax.cosine_decay_schedule(t.learning_rate, t.num_steps)
    tx = optax.adam(learning_rate, b1=t.adam_b1, b2=t.adam_b2)
    if t.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), tx)
    return tx


def step_groups(tx: optax.GradientTransformation, labels: Any, active: Sequence[str],
                grads: Params, opt_state: optax.PartitionState, params: Params,
                scale: Any = 1.0) -> tuple[Params, optax.PartitionState]:
    """Steps the `active` groups of `tx = optax.partition(transforms, labels)` only; returns
    (params, opt_state) with every other group's parameters and state unchanged. `labels` is
    the partition's label tree (a prefix of `params`). `scale` multiplies the updates (a
    learning-rate schedule evaluated at the global step, e.g. R-WAE's decay by epochs, which
    each group's own step count would misplace).

    optax has no "step these labels only": `set_to_zero` or `masked` per phase would change the
    state's structure between phases, and a zero gradient through Adam still moves parameters
    by their momentum. So the full partition update runs and the inactive groups' results are
    dropped (whether XLA then removes their computation as dead code is not measured)."""
    updates, new_state = tx.update(grads, opt_state, params)
    inner = {group: new_state.inner_states[group] if group in active else state
             for group, state in opt_state.inner_states.items()}

    def step(label, p, u):
        return optax.apply_updates(p, jax.tree.map(lambda x: scale * x, u)) \
            if label in active else p

    return jax.tree.map(step, labels, params, updates), new_state._replace(inner_states=inner)
