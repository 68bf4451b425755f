"""Pictures for the evaluators: sequence grids, spectrogram heat maps, scatter panels, PNGs."""

from __future__ import annotations

import os

import jax
import numpy as np
from PIL import Image

SPECTROGRAM_TIME_ZOOM = 4  # pixels per time step of a heat map


def sequences_as_pictures(rows: np.ndarray) -> np.ndarray:
    """(R, T, F) feature sequences -> (1, R, F, 4T, 1): one heat map per sequence, left to
    right in a single grid row, time to the right and feature 0 (the lowest frequency) at the
    bottom, all on one colour scale (C-DSVAE Fig. 13's spectrograms). Video (R, T, H, W, C)
    passes through."""
    rows = np.asarray(rows, np.float32)
    if rows.ndim == 5:
        return rows
    lo, hi = np.percentile(rows, 1), np.percentile(rows, 99)
    scaled = (rows - lo) / max(float(hi - lo), 1e-9)
    maps = np.repeat(np.transpose(scaled, (0, 2, 1))[:, ::-1], SPECTROGRAM_TIME_ZOOM, axis=2)
    return maps[None, :, :, :, None]


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


def save_png(path: str, image: np.ndarray | Image.Image) -> None:
    """Writes atomically, from process 0 only (every process computes the same image)."""
    if jax.process_index() != 0:
        return
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    image.save(path + ".tmp.png")
    os.replace(path + ".tmp.png", path)


_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195), (128, 128, 0),
    (0, 0, 128), (128, 128, 128), (255, 225, 25), (0, 0, 0), (255, 215, 180),
], np.uint8)


def scatter_panel(points: np.ndarray, labels: np.ndarray, title: str, size: int = 320
                  ) -> Image.Image:
    """A square scatter plot of 2-D points, one colour per label, title on top (PIL only)."""
    from PIL import ImageDraw

    panel = Image.new("RGB", (size, size + 16), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    draw.text((4, 2), title, fill=(0, 0, 0))
    lo, hi = points.min(axis=0), points.max(axis=0)
    xy = (points - lo) / np.maximum(hi - lo, 1e-9) * (size - 12) + 6
    for (x, y), label in zip(xy, labels):
        color = tuple(int(c) for c in _PALETTE[int(label) % len(_PALETTE)])
        draw.ellipse((x - 2, y + 16 - 2, x + 2, y + 16 + 2), fill=color)
    return panel
