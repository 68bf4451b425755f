"""Built-in "moving shapes" dataset (in the spirit of R-WAE, App. I), pure numpy, no downloads.

Each sequence shows one coloured shape moving on a background of the same colour at a quarter
of its intensity. (On black, a CPU-sized DCGAN decoder spends thousands of steps on grey blobs
before it renders colour, measured; the dim background makes colour a whole-frame signal, so the
Quickstart model learns it in minutes.)  The static factors
(shape, colour, size) are fixed for the whole sequence; the dynamic factor (motion) describes
how the centre moves.  All four factors are drawn uniformly and independently per sequence, so
every one of the 5 * 6 * 2 = 60 static combinations co-occurs with every one of the 9 motions.

Geometry (image_size = 64, everything scales linearly with ``image_size / 64``)
----------------------------------------------------------------------------
* Half-extent ``h``: small = 8 px (16 px across), large = 12 px (24 px across).
  Every shape fills the bounding box ``[-h, h]^2`` around its centre (x right, y down):

  - circle:   ``x^2 + y^2 <= h^2``
  - square:   ``max(|x|, |y|) <= h``
  - triangle: apex up, ``y <= h`` and ``|x| <= (y + h) / 2`` (apex ``(0, -h)``, base width 2h)
  - cross:    plus sign, union of the boxes ``|x| <= h/3, |y| <= h`` and ``|x| <= h, |y| <= h/3``
  - diamond:  ``|x| + |y| <= h``

* Rasterisation: a signed distance ``sdf`` (px) is evaluated at every pixel centre and turned into
  coverage ``clip(0.5 - sdf, 0, 1)`` (a one-pixel soft edge = mild anti-aliasing).  A pixel's value
  is ``round(coverage * COLORS[color])``, so interior pixels carry exactly the sequence colour.

* Margin: the centre always stays in ``[lo, hi] = [h + 2, image_size - h - 2]`` per axis, so
  no lit pixel ever touches the border rows/columns.

Motion (label = 3 * type + direction), frame ``t = 0..T-1``, ``u = t / (T - 1)``
--------------------------------------------------------------------------------
``centre(t) = start + sign * D * profile_type(u) * dir_direction``

* types:      0 "slide" (constant velocity) ``profile = u``;
              1 "accel" (starts at rest, speeds up) ``profile = u^3``;
              2 "bounce" (there and back again) ``profile = sin(pi * u)`` (returns to start).
* directions: 0 horizontal ``(1, 0)``; 1 vertical ``(0, 1)``; 2 diagonal ``(0.8, 0.8)``
  (x right, y down).  The sign is drawn per moving axis (so horizontal = left/right,
  vertical = up/down, diagonal = any of the four diagonals).
* travel ``D ~ U[0.8, 1.0] * Dmax`` (speed jitter) with ``Dmax = (hi_large - lo_large) / 2``
  (= 18 px at 64x64), the same for both sizes.
* start: each coordinate of the start position is uniform on ``[lo, hi]`` for every class.  On a
  moving axis the sign is then random when both signs keep the shape inside the frame and forced
  otherwise (``D <= (hi - lo) / 2`` guarantees one fits).  Hence the start position has the same
  distribution for all 9 motions and does not reveal the motion class.

Options for smaller, CPU-sized forms (the Quickstart: ``image_size=32, shape_scale=1.5,
motion_set="compass", shapes=("square", "triangle", "cross")``)
--------------------------------------------------------------------------------
* ``shapes`` draws the shape from a subset of SHAPES; the label indexes that subset.
* ``shape_scale`` multiplies both half-extents (1.5 at 32x32: 12 and 18 px across); the margin
  stays 2 px, so the centre range, and with it the travel, shrinks.
* ``motion_set="compass"``: 8 labels, a constant-velocity slide towards ``right, down_right,
  down, down_left, left, up_left, up, up_right`` (label k moves along angle k * 45 degrees, y
  down; a diagonal moves ``0.8 D`` along each axis). ``D ~ U[0.8, 1.0] * 1.5 Dmax`` (6.0-7.5 px
  at the Quickstart's sizes), and the start is uniform over the positions that keep the whole
  path inside ``[lo, hi]``, so here the start position does depend on the direction.
  Why not the 9 "types" at 32x32: with shape_scale 1.25 they leave 6.5 px of travel, and a
  1500-step judge reached motion 0.38 on them (compass: 1.000; docs/results.md, "Quickstart").
"""

from __future__ import annotations

import math

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "diamond")
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
# RGB, indexed by the colour label. No channel is 0, so a shape's outline shows in all three
# channels whatever its colour. With pure primaries the outline moves between channels with the
# colour and a CNN learns shape far more slowly (probe numbers in docs/results.md).
COLORS = (
    (255, 96, 96),
    (96, 255, 96),
    (96, 96, 255),
    (255, 255, 96),
    (255, 96, 255),
    (96, 255, 255),
)
SIZES = ("small", "large")
MOTION_TYPES = ("slide", "accel", "bounce")
MOTION_DIRECTIONS = ("horizontal", "vertical", "diagonal")
MOTIONS = tuple(f"{m}_{d}" for m in MOTION_TYPES for d in MOTION_DIRECTIONS)
# motion_set="compass": a constant-velocity slide in one of 8 directions (y down).
COMPASS = ("right", "down_right", "down", "down_left", "left", "up_left", "up", "up_right")
MOTION_SETS = {"types": MOTIONS, "compass": COMPASS}

STATIC_FACTORS = ("shape", "color", "size")
DYNAMIC_FACTORS = ("motion",)
NUM_CLASSES = {"shape": 5, "color": 6, "size": 2, "motion": 9}

_HALF_EXTENT = (8.0, 12.0)  # px at 64x64, indexed by size label
_MARGIN = 2.0  # px between the shape's bounding box and the frame edge
_DIAGONAL = 0.8  # per-axis fraction of D for diagonal motion
_BACKGROUND = 0.25  # background = this fraction of the sequence colour (0: black)
_DIR_VEC = np.array([[1.0, 0.0], [0.0, 1.0], [_DIAGONAL, _DIAGONAL]])  # (x, y) per direction


def _profile(motion_type: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Displacement profile in [0, 1] of shape (N, T) for each motion type."""
    profiles = np.stack([u, u**3, np.sin(np.pi * u)])  # (3, T)
    profiles[2, [0, -1]] = 0.0  # exact return to the start for "bounce"
    return profiles[motion_type]


def _sdf(kind: int, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Approximate signed distance (px, negative inside) of shape ``kind`` with half-extent h."""
    ax, ay = np.abs(x), np.abs(y)
    if kind == 0:  # circle
        return np.sqrt(x * x + y * y) - h
    if kind == 1:  # square
        return np.maximum(ax, ay) - h
    if kind == 2:  # triangle, apex (0, -h), base y = h; side normals (+-2, -1) / sqrt(5)
        return np.maximum(y - h, (2.0 * ax - y - h) / math.sqrt(5.0))
    if kind == 3:  # cross = union of two boxes
        w = h / 3.0
        return np.minimum(np.maximum(ax - w, ay - h), np.maximum(ax - h, ay - w))
    if kind == 4:  # diamond
        return (ax + ay - h) / math.sqrt(2.0)
    raise ValueError(f"unknown shape kind {kind}")


def generate(
    num_sequences: int, seed: int, num_frames: int = 8, image_size: int = 64,
    shape_scale: float = 1.0, motion_set: str = "types", shapes: tuple[str, ...] = SHAPES,
) -> dict[str, np.ndarray]:
    """Generate ``num_sequences`` moving-shape videos, deterministically from ``seed``.

    Returns ``video`` uint8 (N, T, S, S, 3) and int32 labels ``shape``, ``color``, ``size``,
    ``motion`` of shape (N,).  See the module docstring for the exact definitions.
    """
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be positive, got {num_sequences}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 for recognisable shapes, got {image_size}")
    n, t_len, size_px = int(num_sequences), int(num_frames), int(image_size)
    scale = size_px / 64.0
    rng = np.random.default_rng(seed)

    unknown = [name for name in shapes if name not in SHAPES]
    if unknown or not shapes or len(set(shapes)) != len(shapes):
        raise ValueError(f"shapes must be distinct names from {SHAPES}, got {tuple(shapes)}")
    kinds = np.array([SHAPES.index(name) for name in shapes])  # label -> _sdf kind
    shape = rng.integers(0, len(shapes), n)
    color = rng.integers(0, NUM_CLASSES["color"], n)
    size = rng.integers(0, NUM_CLASSES["size"], n)
    if motion_set not in MOTION_SETS:
        raise ValueError(f"motion_set must be one of {sorted(MOTION_SETS)}, got {motion_set!r}")
    motion = rng.integers(0, len(MOTION_SETS[motion_set]), n)
    motion_type, direction = motion // 3, motion % 3

    h_all = np.array(_HALF_EXTENT) * scale * shape_scale
    h = h_all[size]  # (N,)
    lo, hi = h + _MARGIN, size_px - h - _MARGIN  # (N,) centre range per axis
    d_max = (size_px - 2.0 * (h_all[-1] + _MARGIN)) / 2.0
    travel = rng.uniform(0.8, 1.0, n) * d_max  # (N,)
    extent = travel[:, None] * _DIR_VEC[direction]  # (N, 2) per-axis |displacement|

    u = np.arange(t_len) / (t_len - 1)
    if motion_set == "compass":
        angle = motion * (np.pi / 4)
        unit = np.rint(np.stack([np.cos(angle), np.sin(angle)], -1))  # (N, 2) = (x, y), y down
        span = (hi - lo)[:, None]
        # Longer travel than "types" (no sign to leave room for): 3/4 of the large shape's span.
        travel = travel / d_max * (0.75 * 2.0 * d_max)
        step = travel[:, None] * unit * _DIAGONAL ** (np.abs(unit).sum(-1, keepdims=True) - 1)
        low = lo[:, None] + np.maximum(-step, 0.0)  # the start that keeps the end inside
        start = low + rng.uniform(0.0, 1.0, (n, 2)) * (span - np.abs(step))
        centre = start[:, None, :] + step[:, None, :] * u[None, :, None]
    else:
        start = rng.uniform(lo[:, None], hi[:, None], (n, 2))  # (N, 2) = (x, y)
        can_pos = start + extent <= hi[:, None]
        can_neg = start - extent >= lo[:, None]
        coin = rng.random((n, 2)) < 0.5
        sign = np.where(can_pos & can_neg, np.where(coin, 1.0, -1.0),
                        np.where(can_pos, 1.0, -1.0))
        prof = _profile(motion_type, u)  # (N, T)
        centre = start[:, None, :] + (sign * extent)[:, None, :] * prof[:, :, None]  # (N, T, 2)

    # Local window that contains every lit pixel of the largest shape.
    win = math.ceil(2.0 * h_all[-1] + 2.0) + 1
    offs = np.arange(win)
    rgb = np.array(COLORS, dtype=np.float32)[color][:, None, None, :]  # (N, 1, 1, 3)
    background = (rgb * _BACKGROUND + 0.5).astype(np.uint8)  # (N, 1, 1, 3)
    video = np.broadcast_to(background[:, None], (n, t_len, size_px, size_px, 3)).copy()
    n_idx = np.arange(n)[:, None, None]
    masks = {kinds[k]: np.flatnonzero(shape == k) for k in range(len(shapes))}
    for t in range(t_len):
        cx, cy = centre[:, t, 0], centre[:, t, 1]
        x0 = np.clip(np.floor(cx - h_all[-1] - 1.0), 0, size_px - win).astype(np.int64)
        y0 = np.clip(np.floor(cy - h_all[-1] - 1.0), 0, size_px - win).astype(np.int64)
        # Pixel-centre coordinates relative to the shape centre: (N, 1, W) and (N, W, 1).
        xs = (x0[:, None] + offs + 0.5 - cx[:, None]).astype(np.float32)[:, None, :]
        ys = (y0[:, None] + offs + 0.5 - cy[:, None]).astype(np.float32)[:, :, None]
        cov = np.empty((n, win, win), dtype=np.float32)
        for kind, idx in masks.items():
            if idx.size:
                hk = h[idx].astype(np.float32)[:, None, None]
                cov[idx] = _sdf(kind, xs[idx], ys[idx], hk)
        np.clip(0.5 - cov, 0.0, 1.0, out=cov)
        cov = cov[..., None]
        patch = (cov * rgb + (1.0 - cov) * rgb * _BACKGROUND + 0.5).astype(np.uint8)  # (N,W,W,3)
        rows = y0[:, None, None] + offs[None, :, None]
        cols = x0[:, None, None] + offs[None, None, :]
        video[n_idx, t, rows, cols] = patch

    return {
        "video": video,
        "shape": shape.astype(np.int32),
        "color": color.astype(np.int32),
        "size": size.astype(np.int32),
        "motion": motion.astype(np.int32),
    }


def load(
    split: str, num_train: int = 8000, num_test: int = 1000, seed: int = 0, image_size: int = 64,
    shape_scale: float = 1.0, motion_set: str = "types", shapes: tuple[str, ...] = SHAPES,
) -> dict[str, np.ndarray]:
    """Return the ``train`` or ``test`` split; they use seeds ``2*seed`` and ``2*seed + 1``.

    The two splits are independent random draws from the same distribution (not a partition of
    one draw), so ``num_train`` does not change the test set and vice versa.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    if num_train < 1 or num_test < 1:
        raise ValueError(
            f"num_train and num_test must be positive, got num_train={num_train}, "
            f"num_test={num_test}"
        )
    options = dict(image_size=image_size, shape_scale=shape_scale, motion_set=motion_set,
                   shapes=tuple(shapes))
    if split == "train":
        return generate(num_train, 2 * seed, **options)
    return generate(num_test, 2 * seed + 1, **options)
