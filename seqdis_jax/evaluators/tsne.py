"""t-SNE of the codes coloured by label (DBSE Fig. 2): tsne.png, metrics.json key `tsne`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from seqdis_jax.evaluators.base import EvalContext, register
from seqdis_jax.evaluators.drawing import _PALETTE, save_png, scatter_panel

LEGEND_COLUMNS, LEGEND_ROW = 9, 14  # legend entries per line, pixels per legend line


@register("tsne", needs_labels="any")
def tsne(ctx: EvalContext) -> dict[str, Any]:
    """tsne.png: t-SNE of s (top row) and of flattened d_1:T (bottom row), one column per
    labelled factor, points coloured by that label, its values' colours under each panel
    (DBSE Fig. 2)."""
    codes = ctx.codes()
    n = len(codes["s_mean"])
    factors = tuple(ctx.dataset.static_factors) + tuple(ctx.dataset.dynamic_factors)
    rows = []
    legend_lines = max(-(-min(len(np.unique(codes[f])), len(_PALETTE)) // LEGEND_COLUMNS)
                       for f in factors)
    threads = ctx.config.eval.get("tsne_threads", 1) or None  # None: every core
    for code, x in (("s", codes["s_mean"]), ("d", codes["d_mean"].reshape(n, -1))):
        embedding = embed(x, ctx.config.seed, threads)
        rows.append([_with_legend(scatter_panel(embedding, codes[f],
                                                f"t-SNE of {code}, colour = {f}"),
                                  codes[f], legend_lines) for f in factors])
    w, h = rows[0][0].size
    canvas = Image.new("RGB", (w * len(factors), h * 2), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            canvas.paste(panel, (c * w, r * h))
    save_png(os.path.join(ctx.workdir, "tsne.png"), canvas)
    return {"tsne": "tsne.png"}


def embed(x: np.ndarray, seed: int, threads: int | None) -> np.ndarray:
    """The (N, 2) t-SNE embedding of the (N, D) codes `x` that tsne.png draws (scikit-learn,
    PCA init, perplexity 30 or less for small N), its OpenMP gradient and BLAS PCA limited to
    `threads` (None: every core; `bench/tsne_threads.py` times both)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        return TSNE(2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3.0),
                    random_state=seed).fit_transform(x)


def _with_legend(panel: Image.Image, labels: np.ndarray, lines: int) -> Image.Image:
    """`panel` with a key below it: each label value present beside its colour (as
    `scatter_panel` colours it; past the palette's length the colours repeat)."""
    values = np.unique(labels)
    out = Image.new("RGB", (panel.width, panel.height + lines * LEGEND_ROW + 8), "white")
    out.paste(panel, (0, 0))
    draw = ImageDraw.Draw(out)
    step = (panel.width - 8) // LEGEND_COLUMNS
    shown = values if len(values) <= len(_PALETTE) else values[:len(_PALETTE) - 1]
    for i, value in enumerate([*shown, None] if len(shown) < len(values) else shown):
        x = 4 + (i % LEGEND_COLUMNS) * step
        y = panel.height + 2 + (i // LEGEND_COLUMNS) * LEGEND_ROW
        if value is None:  # more values than colours
            draw.text((x, y), f"+{len(values) - len(shown)} more", fill=(0, 0, 0))
            break
        color = tuple(int(c) for c in _PALETTE[int(value) % len(_PALETTE)])
        draw.rectangle((x, y + 2, x + 8, y + 10), fill=color)
        draw.text((x + 11, y), str(value), fill=(0, 0, 0))
    return out
