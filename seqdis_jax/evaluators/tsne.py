"""t-SNE of the codes coloured by label (DBSE Fig. 2): tsne.png, metrics.json key `tsne`."""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from seqdis_jax.evaluators.base import EvalContext, register
from seqdis_jax.evaluators.drawing import save_png, scatter_panel


@register("tsne", needs_labels="any")
def tsne(ctx: EvalContext) -> dict[str, Any]:
    """tsne.png: t-SNE of s (top row) and of flattened d_1:T (bottom row), one column per
    labelled factor, points coloured by that label (DBSE Fig. 2)."""
    from sklearn.manifold import TSNE

    codes = ctx.codes()
    n = len(codes["s_mean"])
    factors = tuple(ctx.dataset.static_factors) + tuple(ctx.dataset.dynamic_factors)
    rows = []
    for code, x in (("s", codes["s_mean"]), ("d", codes["d_mean"].reshape(n, -1))):
        embedding = TSNE(2, init="pca", perplexity=min(30.0, (n - 1) / 3.0),
                         random_state=ctx.config.seed).fit_transform(x)
        rows.append([scatter_panel(embedding, codes[f], f"t-SNE of {code}, colour = {f}")
                     for f in factors])
    w, h = rows[0][0].size
    canvas = Image.new("RGB", (w * len(factors), h * 2), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            canvas.paste(panel, (c * w, r * h))
    save_png(os.path.join(ctx.workdir, "tsne.png"), canvas)
    return {"tsne": "tsne.png"}
