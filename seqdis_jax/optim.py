"""Optimisers over groups of parameters, for methods that update their networks in
alternating phases (R-WAE's critic/encoder steps and decoder/prior steps, App. G Alg. 1-2).

The parameters of a model are a dict of its top-level submodules; `group_of(name)` puts each
submodule in a group, and every group has its own optax transformation and optimiser state.
`partitioned(...)` is the `optax.GradientTransformation` whose state is the dict
{group: state}; its `update` steps every group at once. A phase steps only some groups with
`update_groups`, inside the jitted train step: the other groups' parameters AND optimiser
states stay exactly as they were (a zero gradient through Adam would still move a parameter
by its momentum, which is why the phases do not share one `multi_transform`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax

Params = Mapping[str, Any]


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


def partitioned(transforms: Mapping[str, optax.GradientTransformation],
                group_of: Callable[[str], str]) -> optax.GradientTransformation:
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

    return optax.GradientTransformation(init, update)


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
