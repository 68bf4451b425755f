"""Video augmentations for contrastive sequential disentanglement (C-DSVAE).

Implements the two families of augmentation of C-DSVAE (Bai et al. 2021, "Contrastively
Disentangled Sequential Variational Autoencoder", Sec. 2.3 and Fig. 2):

* **content augmentation** (`content_augmentation`): "randomly shuffle or simply reverse the
  order of time steps". The frames are untouched, so the static (content) factor is kept while
  the dynamics are destroyed; it gives the positive view for the static latent ``s``.
* **motion augmentation** (`motion_augmentation`): appearance changes (crop-and-resize, colour
  jitter, grayscale, Gaussian blur, additive noise) with ONE set of random parameters per
  sequence, shared by all of its frames, so the motion is kept while the appearance changes;
  it gives the positive view for the dynamic latents ``z_{1:T}``.

All functions are pure JAX (no numpy, no Python loops over batch or time; `jax.vmap` over
sequences) and are meant to run on the fly inside the jitted training step, with a fresh
`jax.random` key each step. The authors' code instead precomputes the augmented views once
and stores them in a pickle; we do not.

Videos are float arrays in [0, 1] of shape (B, T, H, W, C) with C = 3 (RGB) or C = 1 (grey).
"""

from __future__ import annotations

import dataclasses

import dm_pix
import jax
import jax.numpy as jnp

__all__ = [
    "MotionAugmentationConfig",
    "content_augmentation",
    "motion_augmentation",
    "permute_time",
]


# --------------------------------------------------------------------------------------------
# Content augmentation: reorder time steps.
# --------------------------------------------------------------------------------------------


def permute_time(video: jax.Array, order: jax.Array) -> jax.Array:
    """Reorders the time axis of a batch of videos.

    Args:
      video: (B, T, ...) array.
      order: (B, T) integer array, one permutation of ``range(T)`` per sequence, or (T,) to
        apply the same order to every sequence.

    Returns:
      ``out[b, t] = video[b, order[b, t]]``, same shape and dtype as ``video``.
    """
    if order.ndim == 1:
        return jnp.take(video, order, axis=1)
    return jax.vmap(lambda seq, o: jnp.take(seq, o, axis=0))(video, order)


def content_augmentation(
    rng: jax.Array, video: jax.Array, reverse_probability: float = 0.5
) -> jax.Array:
    """Randomly reverses or shuffles the frames of each sequence (C-DSVAE content view).

    Per sequence, independently: with probability ``reverse_probability`` the time axis is
    reversed, otherwise a uniformly random permutation of the T frames is applied. Frames are
    not modified, so each output sequence is a permutation of its input frames.

    Args:
      rng: a `jax.random` key.
      video: (B, T, H, W, C) array.
      reverse_probability: probability of reversing (vs. shuffling) a sequence.

    Returns:
      The reordered videos, same shape and dtype as ``video``.
    """
    batch, steps = video.shape[0], video.shape[1]
    reversed_order = jnp.arange(steps - 1, -1, -1)

    def sequence_order(key: jax.Array) -> jax.Array:
        reverse_key, shuffle_key = jax.random.split(key)
        probability = jnp.asarray(reverse_probability, jnp.float32)
        reverse = jax.random.bernoulli(reverse_key, probability)
        shuffled = jax.random.permutation(shuffle_key, steps)
        return jnp.where(reverse, reversed_order, shuffled)

    order = jax.vmap(sequence_order)(jax.random.split(rng, batch))
    return permute_time(video, order)


# --------------------------------------------------------------------------------------------
# Motion augmentation: change appearance with per-sequence parameters shared over time.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MotionAugmentationConfig:
    """Parameters of `motion_augmentation` (SimCLR-style appearance augmentations).

    Each ``*_probability`` is the per-sequence probability that the op is applied; the random
    parameters of an op are drawn once per sequence and shared by all of its frames.

    Attributes:
      crop_probability: probability of crop-and-resize.
      crop_min_scale: the crop side is a fraction in [crop_min_scale, 1] of the frame side
        (same fraction for height and width, so the aspect ratio is kept), at a uniformly
        random position; the crop is resized back to H x W with bilinear interpolation.
      color_probability: probability of colour jitter (brightness, contrast, saturation, hue,
        applied in this fixed order with clipping to [0, 1] after each).
      brightness: brightness factor drawn uniformly in [1 - brightness, 1 + brightness]
        (multiplicative, as torchvision / SimCLR v2).
      contrast: contrast factor drawn uniformly in [1 - contrast, 1 + contrast] (blend with the
        per-frame, per-channel mean).
      saturation: saturation factor drawn uniformly in [1 - saturation, 1 + saturation]
        (RGB only).
      hue: hue shift drawn uniformly in [-hue, hue], in turns (RGB only).
      grayscale_probability: probability of converting RGB to grey (replicated over the three
        channels); no-op for C = 1.
      blur_probability: probability of Gaussian blur.
      blur_sigma_min: lower bound of the uniformly drawn blur standard deviation (pixels).
      blur_sigma_max: upper bound of the uniformly drawn blur standard deviation (pixels).
      blur_kernel_size: size of the square Gaussian kernel (rounded up to an odd integer);
        borders are edge-padded.
      noise_std: standard deviation of the additive Gaussian noise, drawn independently per
        pixel and always applied; 0 disables it.
    """

    crop_probability: float = 0.5
    crop_min_scale: float = 0.6
    color_probability: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_probability: float = 0.0
    blur_probability: float = 0.5
    blur_sigma_min: float = 0.1
    blur_sigma_max: float = 1.5
    blur_kernel_size: float = 5.0
    noise_std: float = 0.05

    def __post_init__(self) -> None:
        for name in (
            "crop_probability",
            "color_probability",
            "grayscale_probability",
            "blur_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 < self.crop_min_scale <= 1.0:
            raise ValueError(f"crop_min_scale must be in (0, 1], got {self.crop_min_scale}")
        if not 0.0 < self.blur_sigma_min <= self.blur_sigma_max:
            raise ValueError("need 0 < blur_sigma_min <= blur_sigma_max")
        if self.blur_kernel_size < 1:
            raise ValueError(f"blur_kernel_size must be >= 1, got {self.blur_kernel_size}")
        for name in ("brightness", "contrast", "saturation", "hue", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _crop_and_resize(key: jax.Array, frames: jax.Array, min_scale: float) -> jax.Array:
    """Random crop (same box for all frames) resized back to H x W, bilinear. frames: (T,H,W,C)."""
    height, width = frames.shape[1], frames.shape[2]
    scale_key, y_key, x_key = jax.random.split(key, 3)
    scale = jax.random.uniform(scale_key, (), minval=min_scale, maxval=1.0)
    top = jax.random.uniform(y_key, ()) * height * (1.0 - scale)
    left = jax.random.uniform(x_key, ()) * width * (1.0 - scale)
    # Output coordinate o samples input coordinate top + o * scale.
    return jax.image.scale_and_translate(
        frames,
        shape=frames.shape,
        spatial_dims=(1, 2),
        scale=jnp.stack([1.0 / scale, 1.0 / scale]),
        translation=jnp.stack([-top / scale, -left / scale]),
        method="linear",
        antialias=True,
    )


def _color_jitter(key: jax.Array, frames: jax.Array, cfg: MotionAugmentationConfig) -> jax.Array:
    """SimCLR-style colour jitter with one set of factors for all frames. frames: (T,H,W,C)."""
    b_key, c_key, s_key, h_key = jax.random.split(key, 4)

    def factor(k: jax.Array, strength: float) -> jax.Array:
        return jax.random.uniform(k, (), minval=1.0 - strength, maxval=1.0 + strength)

    out = jnp.clip(frames * factor(b_key, cfg.brightness), 0.0, 1.0)
    out = jnp.clip(dm_pix.adjust_contrast(out, factor(c_key, cfg.contrast)), 0.0, 1.0)
    if frames.shape[-1] == 3:
        out = jnp.clip(dm_pix.adjust_saturation(out, factor(s_key, cfg.saturation)), 0.0, 1.0)
        delta = jax.random.uniform(h_key, (), minval=-cfg.hue, maxval=cfg.hue)
        out = jnp.clip(dm_pix.adjust_hue(out, delta), 0.0, 1.0)
    return out


def _gaussian_blur(key: jax.Array, frames: jax.Array, cfg: MotionAugmentationConfig) -> jax.Array:
    """Gaussian blur with one random sigma for all frames, edge padding. frames: (T,H,W,C).

    `dm_pix.gaussian_blur`'s kernel and order (the horizontal pass, then the vertical one, on
    the edge-padded frames), written as 2 r + 1 shifted multiply-adds per pass: under `vmap`
    with one sigma per sequence, dm_pix's depthwise convolutions ran 9x slower on XLA:CPU
    (`python bench/augment_cpu.py`; `tests/test_augment.py` checks it equals
    `_gaussian_blur_dm_pix`).
    """
    sigma, radius = _blur_sigma_and_radius(key, cfg)
    taps = jnp.arange(-radius, radius + 1).astype(jnp.float32)
    weights = jnp.exp(-taps**2 / (2.0 * sigma**2))
    weights = (weights / jnp.sum(weights)).astype(frames.dtype)
    height, width = frames.shape[1], frames.shape[2]
    padded = jnp.pad(frames, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(weights[i] * padded[:, :, i:i + width] for i in range(2 * radius + 1))
    return sum(weights[i] * rows[:, i:i + height] for i in range(2 * radius + 1))


def _gaussian_blur_dm_pix(
    key: jax.Array, frames: jax.Array, cfg: MotionAugmentationConfig
) -> jax.Array:
    """`_gaussian_blur`'s former form, kept as its reference: dm_pix.gaussian_blur on the
    edge-padded frames (the same sigma draw). Not used in training."""
    sigma, radius = _blur_sigma_and_radius(key, cfg)
    padded = jnp.pad(frames, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    return dm_pix.gaussian_blur(padded, sigma, cfg.blur_kernel_size, padding="VALID")


def _blur_sigma_and_radius(key: jax.Array, cfg: MotionAugmentationConfig) -> tuple[jax.Array, int]:
    sigma = jax.random.uniform(key, (), minval=cfg.blur_sigma_min, maxval=cfg.blur_sigma_max)
    return sigma, int(cfg.blur_kernel_size / 2)  # dm_pix's rounding of the kernel size


def _augment_sequence(
    key: jax.Array, frames: jax.Array, cfg: MotionAugmentationConfig
) -> jax.Array:
    """Motion augmentation of one sequence (T, H, W, C); parameters shared over time."""
    keys = jax.random.split(key, 5)
    probabilities = jnp.asarray(
        [
            cfg.crop_probability,
            cfg.color_probability,
            cfg.grayscale_probability,
            cfg.blur_probability,
        ],
        jnp.float32,
    )
    apply_crop, apply_color, apply_grey, apply_blur = jax.random.bernoulli(keys[0], probabilities)
    crop_key, color_key, blur_key, noise_key = keys[1:]

    out = frames
    out = jnp.where(apply_crop, _crop_and_resize(crop_key, out, cfg.crop_min_scale), out)
    out = jnp.where(apply_color, _color_jitter(color_key, out, cfg), out)
    if out.shape[-1] == 3:
        grey = dm_pix.rgb_to_grayscale(out, keep_dims=True)
        out = jnp.where(apply_grey, grey, out)
    out = jnp.where(apply_blur, _gaussian_blur(blur_key, out, cfg), out)
    if cfg.noise_std > 0:
        out = out + cfg.noise_std * jax.random.normal(noise_key, out.shape, out.dtype)
    return jnp.clip(out, 0.0, 1.0)


def motion_augmentation(
    rng: jax.Array,
    video: jax.Array,
    config: MotionAugmentationConfig = MotionAugmentationConfig(),
) -> jax.Array:
    """Changes the appearance of each sequence while keeping its motion (C-DSVAE motion view).

    Applies, in order, crop-and-resize, colour jitter, grayscale, Gaussian blur and additive
    Gaussian noise. Each sequence draws one set of random parameters (whether each op is
    applied, crop box, jitter factors, blur sigma) shared by all its T frames; sequences draw
    independent parameters; noise is independent per pixel. The frame order is unchanged.

    Args:
      rng: a `jax.random` key.
      video: (B, T, H, W, C) float array in [0, 1], C = 3 or C = 1.
      config: augmentation parameters (hashable, so usable as a static jit argument).

    Returns:
      The augmented videos, same shape and dtype as ``video``, clipped to [0, 1].
    """
    if video.ndim != 5 or video.shape[-1] not in (1, 3):
        raise ValueError(f"expected (B, T, H, W, C) with C in (1, 3), got {video.shape}")
    keys = jax.random.split(rng, video.shape[0])
    out = jax.vmap(lambda k, seq: _augment_sequence(k, seq, config))(keys, video)
    return out.astype(video.dtype)
