"""Test-set reconstruction error and KL terms: `test/*` (`test/reconstruction`,
`test/reconstruction_from_means`, `test/kl_static`, `test/kl_dynamic`, `test/num_sequences`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqdis_jax import parallel
from seqdis_jax.evaluators.base import EvalContext, register
from seqdis_jax.models.dsvae import dynamic_kl_per_sequence, reconstruction_error_per_sequence
from seqdis_jax.nn.gaussian import kl_standard_normal


@register("reconstruction")
def reconstruction(ctx: EvalContext) -> dict[str, Any]:
    """Test-set reconstruction error (the training loss's term: squared error summed over
    frames and pixels, or the Gaussian NLL of a series model; mean over sequences) from
    posterior samples and from posterior means, and the two KL terms."""
    model = ctx.model

    def per_example(variables, video, rng):
        out = model.apply(variables, video, False, rngs={"sample": rng})
        decoded_means = model.apply(variables, out["s_mean"], out["d_mean"], False,
                                    method=model.decode_distribution)
        return dict(
            reconstruction=reconstruction_error_per_sequence(
                video, out["reconstruction"], out.get("reconstruction_logvar")),
            reconstruction_from_means=reconstruction_error_per_sequence(video, *decoded_means),
            kl_static=jnp.sum(kl_standard_normal(out["s_mean"], out["s_logvar"]), axis=-1),
            kl_dynamic=dynamic_kl_per_sequence(out),
        )

    per_example = parallel.gathered_jit(per_example, ctx.devices())

    totals: dict[str, float] = {}
    count = 0
    batches = ctx.batches(ctx.config.eval.batch_size, ctx.config.eval.limit)
    for i, batch in enumerate(batches):
        values = jax.device_get(
            per_example(ctx.variables, ctx.x(batch), jax.random.fold_in(ctx.rng, i))
        )
        mask = batch["mask"]
        for k, v in values.items():
            totals[k] = totals.get(k, 0.0) + float(np.sum(v[mask]))
        count += int(mask.sum())
    return {f"test/{k}": v / count for k, v in totals.items()} | {"test/num_sequences": count}
