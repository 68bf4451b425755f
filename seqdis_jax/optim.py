"""Optimisers: the standard Adam of a config (`adam`), and optimisers over groups of
parameters, for methods that update their networks in alternating phases (R-WAE's
critic/encoder steps and decoder/prior steps, App. G Alg. 1-2).

The parameters of a model are a dict of its top-level submodules; `group_of(name)` puts each
submodule in a group, and every group has its own optax transformation and optimiser state.
`partitioned(...)` is the `optax.GradientTransformation` whose state is the dict
{group: state}; its `update` steps every group at once. A phase steps only some groups with
its `update_groups`, inside the jitted train step: the other groups' parameters AND optimiser
states stay exactly as they were (a zero gradient through Adam would still move a parameter
by its momentum, which is why the phases do not share one `multi_transform`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

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


def split_by_group(params: Params, group_of: Callable[[str], str], groups: Sequence[str]
                   ) -> dict[str, dict[str, Any]]:
    """{group: {submodule: subtree}} for each of `groups` (possibly empty)."""
    split = {group: {} for group in groups}
    for name, subtree in params.items():
        group = group_of(name)
        if group not in split:
            raise ValueError(f"Submodule {name!r} is in group {group!r}, not one of "
                             f"{list(groups)}; extend the method's group_of.")
        split[group][name] = subtree
    return split


class Partitioned(NamedTuple):
    """An `optax.GradientTransformation` (its `init` and `update`, which steps every group)
    that also knows its groups, so a phase can step some of them alone (`update_groups`)."""

    init: optax.TransformInitFn
    update: optax.TransformUpdateFn
    transforms: Mapping[str, optax.GradientTransformation]
    group_of: Callable[[str], str]

    def update_groups(self, active: Sequence[str], grads: Params, opt_state: Mapping[str, Any],
                      params: Params, scale: Any = 1.0) -> tuple[dict[str, Any], dict[str, Any]]:
        """`update_groups` with this transformation's groups."""
        return update_groups(self.transforms, self.group_of, active, grads, opt_state, params,
                             scale)


def partitioned(transforms: Mapping[str, optax.GradientTransformation],
                group_of: Callable[[str], str]) -> Partitioned:
    """One transformation per group of top-level submodules; the state is {group: state}."""
    groups = tuple(transforms)

    def init(params):
        split = split_by_group(params, group_of, groups)
        return {group: transforms[group].init(split[group]) for group in groups}

    def update(grads, state, params=None):
        updates, new_state = {}, {}
        grads_split = split_by_group(grads, group_of, groups)
        params_split = (split_by_group(params, group_of, groups) if params is not None
                        else dict.fromkeys(groups))
        for group in groups:
            group_updates, new_state[group] = transforms[group].update(
                grads_split[group], state[group], params_split[group])
            updates.update(group_updates)
        return updates, new_state

    return Partitioned(init, update, dict(transforms), group_of)


def update_groups(transforms: Mapping[str, optax.GradientTransformation],
                  group_of: Callable[[str], str], active: Sequence[str], grads: Params,
                  opt_state: Mapping[str, Any], params: Params, scale: Any = 1.0
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Steps the `active` groups only; returns (params, opt_state) with every other group
    unchanged. `scale` multiplies the updates (a learning-rate schedule evaluated at the
    global step, e.g. R-WAE's decay by epochs, which each group's own step count would
    misplace)."""
    groups = tuple(transforms)
    grads_split = split_by_group(grads, group_of, groups)
    params_split = split_by_group(params, group_of, groups)
    new_params, new_state = dict(params), dict(opt_state)
    for group in active:
        updates, new_state[group] = transforms[group].update(
            grads_split[group], opt_state[group], params_split[group])
        updates = jax.tree.map(lambda u: scale * u, updates)
        new_params.update(optax.apply_updates(params_split[group], updates))
    return new_params, new_state
