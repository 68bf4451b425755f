"""Verification by cosine similarity of the codes (C-DSVAE 4.4): `eer/static`, `eer/dynamic`,
`eer/gap`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from seqdis_jax import metrics as metrics_lib
from seqdis_jax.data import registry as data_registry
from seqdis_jax.evaluators.base import EvalContext, register


def _static_identity(codes: dict[str, np.ndarray], dataset: data_registry.Dataset
                     ) -> np.ndarray:
    """One id per sequence from its static labels (the speaker / the Sprites character)."""
    labels = [codes[name] for name in dataset.static_factors]
    sizes = [dataset.num_classes[name] for name in dataset.static_factors]
    return np.ravel_multi_index(labels, sizes)


@register("verification_eer", needs_labels="static")
def verification_eer(ctx: EvalContext) -> dict[str, Any]:
    """Verification by cosine similarity (C-DSVAE 4.4): one vector per sequence, the static
    mean or the time-average of the dynamic means, or per recording (speech, `Dataset.group`)
    their averages over the recording's segments (DSVAE, SPYL B.5); all pairs are scored, a
    target when both share the identity (all static labels). Low static EER and high dynamic
    EER (a large gap) mean the identity lives in s only."""
    codes = ctx.codes()
    identity = _static_identity(codes, ctx.dataset)
    static, dynamic = codes["s_mean"], codes["d_mean"].mean(axis=1)
    if ctx.dataset.group:  # one vector per recording: the mean over its segments (DSVAE)
        recordings, first, index = np.unique(codes[ctx.dataset.group], return_index=True,
                                             return_inverse=True)
        count = np.bincount(index)[:, None]
        static = np.stack([np.bincount(index, weights=c) for c in static.T], -1) / count
        dynamic = np.stack([np.bincount(index, weights=c) for c in dynamic.T], -1) / count
        identity = identity[first]
    if len(np.unique(identity)) in (1, len(identity)):
        print("Warning: verification_eer skipped: the evaluated sequences need both shared and "
              "distinct identities; raise config.eval.limit.", file=sys.stderr, flush=True)
        return {}
    static_eer = metrics_lib.verification_eer(static, identity)
    dynamic_eer = metrics_lib.verification_eer(dynamic, identity)
    return {"eer/static": static_eer, "eer/dynamic": dynamic_eer,
            "eer/gap": dynamic_eer - static_eer}
