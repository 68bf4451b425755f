"""Tests for the C-DSVAE content / motion augmentations (seqdis_jax.data.augment)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqdis_jax.data import augment as A

B, T, H, W = 4, 6, 16, 16

# Every op applied, no noise: deterministic given the per-sequence parameters.
ALL_ON = A.MotionAugmentationConfig(
    crop_probability=1.0,
    color_probability=1.0,
    grayscale_probability=1.0,
    blur_probability=1.0,
    noise_std=0.0,
)
ALL_OFF = A.MotionAugmentationConfig(
    crop_probability=0.0,
    color_probability=0.0,
    grayscale_probability=0.0,
    blur_probability=0.0,
    noise_std=0.0,
)


@functools.cache
def _jitted_motion():
    return jax.jit(A.motion_augmentation, static_argnames="config")


DEFAULT = A.MotionAugmentationConfig()


def motion(
    rng: jax.Array, video: jax.Array, config: A.MotionAugmentationConfig = DEFAULT
) -> jax.Array:
    return _jitted_motion()(rng, video, config=config)


def _video(seed: int = 0, channels: int = 3, shape=(B, T, H, W)) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (*shape, channels), jnp.float32)


def _frame_indices(inp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """For each output frame (B, T), the index of the exactly equal input frame of its sequence
    (-1 if none)."""
    eq = np.all(out[:, :, None] == inp[:, None, :], axis=(3, 4, 5))  # (B, T_out, T_in)
    return np.where(eq.any(-1), eq.argmax(-1), -1)


# --------------------------------------------------------------------------------------------
# Content augmentation
# --------------------------------------------------------------------------------------------


def test_content_is_permutation_of_frames() -> None:
    video = _video()
    out = A.content_augmentation(jax.random.key(1), video)
    assert out.shape == video.shape and out.dtype == video.dtype
    idx = _frame_indices(np.asarray(video), np.asarray(out))
    for b in range(B):
        assert sorted(idx[b].tolist()) == list(range(T))


def test_content_reverse_probability_one_reverses() -> None:
    video = _video()
    out = A.content_augmentation(jax.random.key(2), video, reverse_probability=1.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(video[:, ::-1]))


def test_content_different_keys_give_different_orders() -> None:
    video = _video()
    orders = [
        _frame_indices(
            np.asarray(video),
            np.asarray(A.content_augmentation(jax.random.key(k), video, reverse_probability=0.0)),
        )
        for k in range(3)
    ]
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    # Sequences in a batch are shuffled independently.
    assert len({tuple(o) for o in orders[0]}) > 1


def test_content_reverse_fraction() -> None:
    n = 400
    video = jnp.broadcast_to(
        jnp.arange(T, dtype=jnp.float32)[None, :, None, None, None], (n, T, 1, 1, 1)
    )
    out = np.asarray(A.content_augmentation(jax.random.key(3), video, 0.5))[..., 0, 0, 0]
    reversed_fraction = np.mean(np.all(out == np.arange(T)[::-1], axis=1))
    assert 0.4 < reversed_fraction < 0.6


def test_content_jit_matches_eager() -> None:
    video = _video()
    key = jax.random.key(4)
    eager = A.content_augmentation(key, video)
    jitted = jax.jit(A.content_augmentation)(key, video)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))


def test_permute_time_shared_and_per_sequence_orders() -> None:
    video = _video()
    order = jnp.array([2, 0, 1, 5, 4, 3])
    np.testing.assert_array_equal(
        np.asarray(A.permute_time(video, order)), np.asarray(video[:, order])
    )
    np.testing.assert_array_equal(
        np.asarray(A.permute_time(video, jnp.tile(order, (B, 1)))), np.asarray(video[:, order])
    )


# --------------------------------------------------------------------------------------------
# Motion augmentation
# --------------------------------------------------------------------------------------------


def test_motion_default_shape_range_determinism_and_change() -> None:
    video = _video(shape=(B, T, 64, 64))
    video = video.at[:, :, :8].set(0.0).at[:, :, -8:].set(1.0)  # black / white (hue edge cases)
    key = jax.random.key(5)
    out = motion(key, video)
    assert out.shape == video.shape and out.dtype == video.dtype
    out_np = np.asarray(out)
    assert np.all(np.isfinite(out_np))
    assert out_np.min() >= 0.0 and out_np.max() <= 1.0
    np.testing.assert_array_equal(out_np, np.asarray(motion(key, video)))  # same key, same out
    assert not np.allclose(out_np, np.asarray(motion(jax.random.key(6), video)))
    assert np.abs(out_np - np.asarray(video)).mean() > 1e-2  # not the identity


def test_motion_all_off_is_identity() -> None:
    video = _video()
    out = motion(jax.random.key(7), video, ALL_OFF)
    np.testing.assert_allclose(np.asarray(out), np.asarray(video), atol=1e-6)


def test_motion_same_params_over_time_independent_over_batch() -> None:
    """Identical frames stay identical (one parameter set per sequence); identical sequences in
    a batch become different (independent parameters)."""
    frame = _video(channels=3, shape=(1, 1, H, W))
    video = jnp.broadcast_to(frame, (B, T, H, W, 3))
    out = np.asarray(motion(jax.random.key(8), video, ALL_ON))
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape), atol=1e-6)
    for b in range(1, B):
        assert not np.allclose(out[0], out[b], atol=1e-3)
    # grayscale_probability = 1: the three channels are equal.
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)
    assert np.abs(out - np.asarray(video)).mean() > 1e-2


def test_motion_commutes_with_time_permutation() -> None:
    """The frame order is kept: augmenting a time-permuted video equals permuting the augmented
    video (parameters do not depend on the time index)."""
    video = _video(seed=9)
    order = jnp.array([3, 1, 5, 0, 2, 4])
    key = jax.random.key(10)
    out = motion(key, video, ALL_ON)
    out_of_permuted = motion(key, video[:, order], ALL_ON)
    np.testing.assert_allclose(np.asarray(out_of_permuted), np.asarray(out[:, order]), atol=1e-6)


def test_motion_grey_video_in_jitted_step() -> None:
    """C = 1 videos, both augmentations inside one jitted function (as in a training step)."""
    video = _video(seed=11, channels=1)

    @jax.jit
    def step(rng: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        content_key, motion_key = jax.random.split(rng)
        return A.content_augmentation(content_key, v), A.motion_augmentation(motion_key, v)

    content_view, motion_view = step(jax.random.key(12), video)
    assert content_view.shape == motion_view.shape == video.shape
    assert motion_view.dtype == video.dtype
    m = np.asarray(motion_view)
    assert m.min() >= 0.0 and m.max() <= 1.0
    assert np.abs(m - np.asarray(video)).mean() > 1e-2
    idx = _frame_indices(np.asarray(video), np.asarray(content_view))
    assert all(sorted(row.tolist()) == list(range(T)) for row in idx)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        A.MotionAugmentationConfig(crop_probability=1.5)
    with pytest.raises(ValueError):
        A.MotionAugmentationConfig(blur_sigma_min=2.0, blur_sigma_max=1.0)
    with pytest.raises(ValueError):
        A.motion_augmentation(jax.random.key(0), jnp.zeros((2, 3, 8, 8, 2)))


@pytest.mark.parametrize("kernel_size", [5.0, 4.0, 1.0])
def test_gaussian_blur_equals_dm_pix_per_sequence_sigma(kernel_size: float) -> None:
    """The shifted-sum blur equals dm_pix.gaussian_blur on the edge-padded frames (its former
    form), under vmap with one sigma per sequence, to float32 rounding."""
    cfg = A.MotionAugmentationConfig(blur_kernel_size=kernel_size)
    video = jax.random.uniform(jax.random.PRNGKey(0), (B, T, H, W, 3))
    keys = jax.random.split(jax.random.PRNGKey(1), B)
    ours = jax.jit(jax.vmap(lambda k, f: A._gaussian_blur(k, f, cfg)))(keys, video)
    reference = jax.vmap(lambda k, f: A._gaussian_blur_dm_pix(k, f, cfg))(keys, video)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
