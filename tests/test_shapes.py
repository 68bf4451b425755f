"""Tests for the built-in moving-shapes dataset: format, determinism and label correctness."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqdis_jax.data import shapes as S

N = 2000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return S.generate(N, seed=123)


@pytest.fixture(scope="module")
def intensity(data: dict[str, np.ndarray]) -> np.ndarray:
    """Per-pixel coverage in [0, 1], (N, T, H, W); every colour has a channel at 255 and the
    background holds that channel at round(255 * S._BACKGROUND)."""
    v = data["video"]
    top = np.maximum(np.maximum(v[..., 0], v[..., 1]), v[..., 2]).astype(np.float32)
    background = np.floor(255.0 * S._BACKGROUND + 0.5)
    return np.clip((top - background) / (255.0 - background), 0.0, 1.0)


def test_background_is_a_dim_copy_of_the_colour(data: dict[str, np.ndarray]) -> None:
    corner = data["video"][:, :, 0, 0].astype(np.float32)  # (N, T, 3): never covered
    colours = np.array(S.COLORS, np.float32)[data["color"]][:, None, :]
    np.testing.assert_array_equal(corner, np.floor(colours * S._BACKGROUND + 0.5) + 0 * corner)


@pytest.fixture(scope="module")
def centroids(intensity: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (x, y) per frame, (N, T, 2)."""
    grid = np.arange(intensity.shape[-1], dtype=np.float32) + 0.5
    mass = intensity.sum(axis=(2, 3))
    cx = np.einsum("ntyx,x->nt", intensity, grid) / mass
    cy = np.einsum("ntyx,y->nt", intensity, grid) / mass
    return np.stack([cx, cy], axis=-1)


def test_constants() -> None:
    assert len(S.SHAPES) == 5 and len(S.COLORS) == 6 and len(S.SIZES) == 2
    assert len(S.MOTIONS) == 9 and len(set(S.MOTIONS)) == 9
    assert S.NUM_CLASSES == {"shape": 5, "color": 6, "size": 2, "motion": 9}
    assert S.STATIC_FACTORS == ("shape", "color", "size") and S.DYNAMIC_FACTORS == ("motion",)
    assert len({tuple(c) for c in S.COLORS}) == 6


def test_shapes_and_dtypes() -> None:
    d = S.generate(5, seed=0)
    assert set(d) == {"video", "shape", "color", "size", "motion"}
    assert d["video"].shape == (5, 8, 64, 64, 3) and d["video"].dtype == np.uint8
    for k in ("shape", "color", "size", "motion"):
        assert d[k].shape == (5,) and d[k].dtype == np.int32
    d = S.generate(3, seed=0, num_frames=5, image_size=48)
    assert d["video"].shape == (3, 5, 48, 48, 3)


def test_determinism() -> None:
    a, b, c = S.generate(64, seed=7), S.generate(64, seed=7), S.generate(64, seed=8)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["video"], c["video"])
    # Bit-identical across processes.
    code = (
        "import hashlib; from seqdis_jax.data import shapes as S; "
        "print(hashlib.sha256(S.generate(64, seed=7)['video'].tobytes()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == hashlib.sha256(a["video"].tobytes()).hexdigest()


def test_load_splits_and_errors() -> None:
    tr = S.load("train", num_train=50, num_test=30, seed=1)
    te = S.load("test", num_train=50, num_test=30, seed=1)
    assert tr["video"].shape[0] == 50 and te["video"].shape[0] == 30
    assert not np.array_equal(tr["video"][:30], te["video"])
    np.testing.assert_array_equal(S.load("train", num_train=50, seed=1)["video"], tr["video"])
    with pytest.raises(ValueError, match="split"):
        S.load("val")
    with pytest.raises(ValueError, match="positive"):
        S.load("train", num_train=0)
    with pytest.raises(ValueError, match="positive"):
        S.load("test", num_test=-1)
    with pytest.raises(ValueError):
        S.generate(0, seed=0)


def test_labels_cover_all_classes_uniformly(data: dict[str, np.ndarray]) -> None:
    for name, k in S.NUM_CLASSES.items():
        counts = np.bincount(data[name], minlength=k)
        assert data[name].min() >= 0 and data[name].max() < k and counts.size == k
        expected = N / k
        assert counts.min() > 0.75 * expected and counts.max() < 1.25 * expected, (name, counts)
    # Factors are independent: motion is not predictable from the static combination.
    static = (data["shape"] * 6 + data["color"]) * 2 + data["size"]
    joint = np.zeros((60, 9))
    np.add.at(joint, (static, data["motion"]), 1)
    rows = joint / joint.sum(1, keepdims=True)
    assert rows.max() < 0.45  # uniform would be 1/9; per-row n ~ 33


def test_shape_inside_frame(intensity: np.ndarray) -> None:
    lit = intensity > 0
    assert not lit[:, :, [0, -1], :].any() and not lit[:, :, :, [0, -1]].any()
    assert lit.any(axis=(2, 3)).all()  # every frame shows the shape


def test_colour_matches_label(data: dict[str, np.ndarray], intensity: np.ndarray) -> None:
    colours = np.array(S.COLORS, dtype=np.uint8)[data["color"]]  # (N, 3)
    video = data["video"]
    full = intensity == 1.0  # fully covered pixels
    assert full.sum(axis=(2, 3)).min() >= 20
    # All fully covered pixels have exactly the label colour (so it is the dominant one), and
    # every pixel lies between the dim background and the full colour, channel by channel.
    for ch in range(3):
        ref = colours[:, ch][:, None, None, None]
        chan = video[..., ch]
        assert (chan[full] == np.broadcast_to(ref, chan.shape)[full]).all()
        dim = np.floor(ref.astype(np.float32) * S._BACKGROUND + 0.5)
        assert ((chan >= dim) & (chan <= ref)).all()
    # No channel of any colour is 0, so an outline shows in all three channels.
    assert np.array(S.COLORS).min() > 0


def test_size_and_extent(data: dict[str, np.ndarray], intensity: np.ndarray) -> None:
    area = intensity.sum(axis=(2, 3)).mean(axis=1)  # (N,)
    width = (intensity > 0.5).any(axis=2).sum(-1)  # (N, T) columns more than half covered
    for k in range(len(S.SHAPES)):
        small = (data["shape"] == k) & (data["size"] == 0)
        large = (data["shape"] == k) & (data["size"] == 1)
        assert area[large].mean() > 2.0 * area[small].mean(), S.SHAPES[k]
        assert 15 <= width[small].min() and width[small].max() <= 17
        assert 23 <= width[large].min() and width[large].max() <= 25


def test_static_factors_constant_over_time(
    data: dict[str, np.ndarray], intensity: np.ndarray
) -> None:
    area = intensity.sum(axis=(2, 3))  # (N, T)
    rel = np.abs(area / area.mean(axis=1, keepdims=True) - 1.0)
    assert rel.max() < 0.03
    # Shape identity is constant: the fill pattern is the same up to a translation, which we
    # check via the rotation-invariant second moment (spread) of the intensity.
    grid = np.arange(64, dtype=np.float32) + 0.5
    mass = area
    mx = np.einsum("ntyx,x->nt", intensity, grid) / mass
    vx = np.einsum("ntyx,x->nt", intensity, grid**2) / mass - mx**2
    assert np.abs(vx / vx.mean(axis=1, keepdims=True) - 1.0).max() < 0.05


def _classify_motion(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recover the motion label from centroid trajectories (N, T, 2) by a simple rule."""
    disp = c - c[:, :1]  # (N, T, 2)
    norm = np.linalg.norm(disp, axis=-1)
    m = disp[np.arange(len(c)), norm.argmax(1)]  # largest displacement vector
    ax, ay = np.abs(m[:, 0]), np.abs(m[:, 1])
    direction = np.where(ay < 0.2 * ax, 0, np.where(ax < 0.2 * ay, 1, 2))
    # Progress along m, normalised so that the furthest point is 1.
    prog = (disp @ m[:, :, None])[..., 0] / (m * m).sum(-1, keepdims=True)  # (N, T)
    t_len = c.shape[1]
    u = np.arange(t_len) / (t_len - 1)
    templates = np.stack([u, u**3, np.sin(np.pi * u)])  # (3, T)
    templates = templates / templates.max(1, keepdims=True)
    err = np.abs(prog[:, None, :] - templates[None]).max(-1)  # (N, 3)
    return 3 * err.argmin(1) + direction, err.min(1)


def test_motion_recoverable_from_centroids(
    data: dict[str, np.ndarray], centroids: np.ndarray
) -> None:
    pred, err = _classify_motion(centroids)
    np.testing.assert_array_equal(pred, data["motion"])
    assert err.max() < 0.05  # the trajectory follows the documented profile closely
    # Diagonal moves have equal |dx| and |dy|; straight moves have none across.
    disp = np.abs(centroids[:, -1] - centroids[:, 0])
    slide_diag = data["motion"] == 2
    np.testing.assert_allclose(disp[slide_diag, 0], disp[slide_diag, 1], atol=0.2)
    slide_h = data["motion"] == 0
    assert disp[slide_h, 1].max() < 0.2 and disp[slide_h, 0].min() > 14.0


def test_start_position_does_not_reveal_motion(
    data: dict[str, np.ndarray], centroids: np.ndarray
) -> None:
    start = centroids[:, 0]  # (N, 2)
    overall = start.mean(0)
    for m in range(9):
        sel = data["motion"] == m
        assert np.abs(start[sel].mean(0) - overall).max() < 3.0, S.MOTIONS[m]
        assert np.abs(start[sel].std(0) - start.std(0)).max() < 3.0, S.MOTIONS[m]


# --- A CPU-sized form: 32x32 frames, shapes scaled 1.25x, 8 compass directions ----------------

COMPASS_32 = dict(image_size=32, shape_scale=1.25, motion_set="compass")


@pytest.fixture(scope="module")
def compass() -> dict[str, np.ndarray]:
    return S.generate(N, seed=7, **COMPASS_32)


def test_compass_labels_are_the_centroid_direction(compass: dict[str, np.ndarray]) -> None:
    v = compass["video"].astype(np.float32)
    top = v.max(-1)  # (N, T, H, W): the colour's brightest channel
    background = top[:, :, :1, :1]
    mask = (top - background) / (top.max(axis=(2, 3), keepdims=True) - background)
    grid = np.arange(32, dtype=np.float32) + 0.5
    mass = mask.sum(axis=(2, 3))
    cx = np.einsum("ntyx,x->nt", mask, grid) / mass
    cy = np.einsum("ntyx,y->nt", mask, grid) / mass
    disp = np.stack([cx[:, -1] - cx[:, 0], cy[:, -1] - cy[:, 0]], -1)  # (N, 2), y down
    angle = np.mod(np.arctan2(disp[:, 1], disp[:, 0]), 2 * np.pi)
    pred = np.rint(angle / (np.pi / 4)).astype(int) % 8
    np.testing.assert_array_equal(pred, compass["motion"])
    # Constant velocity: every step moves the centroid by the same vector (within rounding).
    steps = np.diff(np.stack([cx, cy], -1), axis=1)
    np.testing.assert_allclose(steps, np.broadcast_to(steps.mean(1, keepdims=True), steps.shape),
                               atol=0.35)
    assert np.linalg.norm(disp, axis=-1).min() > 6.0  # long enough to see at 32x32


def test_compass_keeps_the_shape_inside_the_frame(compass: dict[str, np.ndarray]) -> None:
    v = compass["video"]
    border = np.concatenate([v[:, :, 0], v[:, :, -1], v[:, :, :, 0], v[:, :, :, -1]], axis=2)
    corner = v[:, :, :1, 0]  # (N, T, 1, 3)
    assert (border == corner).all()  # the border rows and columns are all background
    assert compass["video"].shape == (N, 8, 32, 32, 3)
    assert set(np.unique(compass["motion"])) == set(range(len(S.COMPASS)))


def test_registry_counts_the_motion_set(tmp_path: Path) -> None:
    from experiments import shapes as shapes_config
    from seqdis_jax.data import registry

    config = shapes_config.get_config("smoke")
    for key, value in COMPASS_32.items():
        config.data[key] = value
    dataset = registry.load(config.data, "test")
    assert dataset.num_classes["motion"] == 8 and dataset.video_shape == (8, 32, 32, 3)
    with pytest.raises(ValueError, match="motion_set must be one of"):
        S.generate(2, seed=0, motion_set="spiral")
