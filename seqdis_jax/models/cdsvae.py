"""C-DSVAE: contrastively disentangled sequential VAE (Bai, Wang, Gomes, NeurIPS 2021).

The DSVAE network (`dsvae.DSVAE`) trained with the objective of C-DSVAE eq. (6) / App. A.5,
written as a loss to minimise:
    recon + alpha (KL_s + KL_d) - beta (I(s; x) + I(d_1:T; x)) + gamma I(s; d_1:T),
where
  * I(s; x)  ~ (C(s) + C(s^c)) / 2 and I(d; x) ~ (C(d) + C(d^m)) / 2 (eq. 8), each C the InfoNCE
    bound of eq. (7) with phi(u, v) = exp(cos(u, v) / tau), tau = 0.5; u is the posterior mean of
    s, or the flattened posterior-mean trajectory of d_1:T; the positive is the other view of the
    same sequence and the negatives are the other 2B - 2 codes of the batch
    (`estimators.paired_views_info_nce`);
  * x^c is the content augmentation (frames shuffled or reversed) and x^m the motion
    augmentation (crop-and-resize, colour distortion, blur, noise), both drawn inside the jitted
    step (`seqdis_jax.data.augment`); the views only go through the encoder and posteriors;
  * I(s; d_1:T) is the minibatch-weighted-sampling estimate of App. A.3 eq. (13), with the
    dataset size N = `data.num_train` (`dsvae.mws_static_dynamic`); `cdsvae.mws_estimator =
    "per_frame_code"` is the authors' per-frame version (`estimators.mws_per_frame_code`);
  * alpha is `loss.kl_static_weight` / `loss.kl_dynamic_weight` (both alpha in the paper).

BatchNorm and the views (`cdsvae.batch_norm_views`): `separate` (default, as the authors' code)
runs x, x^c and x^m as three applies, each normalised with its own batch statistics and each
updating the running averages in turn; `joint` encodes the three as one batch of 3B sequences
(one set of statistics, one encoder pass). Measured on Sprites `:cpu` (docs/results.md): joint
kept the judged action 62 % of the time against separate's 86 %, so separate is the default.

The authors' code (`:code` in experiments/cdsvae_sprites.py) differs from the paper in three
more switches, all on there: `model.dynamic_posterior = "rnn_bilstm"` (a tanh RNN over the
static posterior's bidirectional LSTM outputs, `recurrent.RNNDynamicPosterior`),
`model.static_head_activation = "leaky_relu"` (LeakyReLU(0.2) after the static heads) and
`cdsvae.mws_estimator = "per_frame_code"`. docs/results.md lists what still differs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from seqdis_jax import estimators
from seqdis_jax.data import augment
from seqdis_jax.models import dsvae
from seqdis_jax.models.method import LossInputs, LossOutput, Method, loss_output

Array = jax.Array

BATCH_NORM_VIEWS = ("separate", "joint")


def default_config() -> ml_collections.ConfigDict:
    """`config.cdsvae`, with the paper's values (eq. 6, App. A.5, C.2) as defaults."""
    c = ml_collections.ConfigDict()
    c.contrastive_weight = 1.0  # beta of eq. (6) (App. C.2: 1.0 on Sprites)
    c.mi_static_dynamic_weight = 1.0  # gamma of eq. (6)
    c.temperature = 0.5  # tau of phi(u, v) = exp(cos(u, v) / tau)
    c.content_reverse_probability = 0.5  # content view: reverse time, else a random order
    c.motion_augmentation = True  # False: no motion view and no I(d; x) term (e.g. audio)
    c.motion = ml_collections.ConfigDict(
        dataclasses.asdict(augment.MotionAugmentationConfig()))
    c.batch_norm_views = "separate"  # or "joint": x and its views in one BatchNorm batch
    # I(s; d) of eq. (6): "sequence" (App. A.3 eq. 13) or "per_frame_code" (the authors' code:
    # per frame, std = exp(logvar), + log(B N) inside a ReLU).
    c.mws_estimator = "sequence"
    return c


def validate_config(config: ml_collections.ConfigDict) -> None:
    """C-DSVAE's checks (`Method.checks`); ValueError names the fix."""
    c = dsvae.check_method_section(config, "cdsvae", batch_minimum=2)
    if c.batch_norm_views not in BATCH_NORM_VIEWS:
        raise ValueError(f"config.cdsvae.batch_norm_views must be one of {BATCH_NORM_VIEWS}, "
                         f"got {c.batch_norm_views!r}.")
    modality = config.model.get("modality", "video")
    if c.motion_augmentation and modality != "video":
        # C-DSVAE's audio motion view is voice conversion (Sec. 2.3), which is not implemented;
        # its Table 6 row "w/o motion aug" is this setting.
        raise ValueError(f"config.cdsvae.motion_augmentation is a video augmentation; set it to "
                         f"False for config.model.modality={modality!r}.")
    if c.get("mws_estimator", "sequence") not in dsvae.MWS_ESTIMATORS:
        raise ValueError(f"config.cdsvae.mws_estimator must be one of {dsvae.MWS_ESTIMATORS}, "
                         f"got {c.mws_estimator!r}.")
    if not 0.0 <= c.content_reverse_probability <= 1.0:
        raise ValueError("config.cdsvae.content_reverse_probability must be in [0, 1].")


def encode_views(inputs: LossInputs, views: list[Array], rng: Array, batch_norm_views: str
                 ) -> tuple[dict[str, Array], list[dict[str, Array]], Any]:
    """Full pass on x (posterior, prior, reconstruction) and the posteriors of the views.

    `separate`: one apply per input, so each gets its own BatchNorm batch statistics (the
    authors' separate `model(...)` calls). `joint`: x and the views share one encoder pass.
    Returns (output of x, posteriors of the views, updated batch_stats).
    """
    x, model = inputs.x, inputs.model
    rng_of = lambda i: jax.random.fold_in(rng, i)
    if batch_norm_views == "separate":
        out, batch_stats = inputs.apply(x, rng_of(0))
        posteriors = []
        for i, view in enumerate(views):
            posterior, batch_stats = inputs.apply(view, rng_of(i + 1), batch_stats, model.encode)
            posteriors.append(posterior)
        return out, posteriors, batch_stats
    joint, batch_stats = inputs.apply(jnp.concatenate([x, *views], axis=0), rng_of(0),
                                      method=model.encode)
    parts = [jax.tree.map(lambda a, i=i: a[i * x.shape[0]:(i + 1) * x.shape[0]], joint)
             for i in range(len(views) + 1)]
    out, batch_stats = inputs.apply(parts[0], rng_of(len(views) + 1), batch_stats,
                                    model.reconstruct)
    return out, parts[1:], batch_stats


def loss_fn(inputs: LossInputs) -> LossOutput:
    """C-DSVAE eq. (6) as a loss; metrics: its terms."""
    config, x = inputs.config, inputs.x
    c = config.cdsvae
    content_rng, motion_rng, model_rng = jax.random.split(inputs.rng, 3)
    views = [augment.content_augmentation(content_rng, x, c.content_reverse_probability)]
    if c.motion_augmentation:
        motion = augment.MotionAugmentationConfig(**c.motion.to_dict())
        views.append(augment.motion_augmentation(motion_rng, x, motion))
    out, view_posteriors, batch_stats = encode_views(inputs, views, model_rng,
                                                     c.batch_norm_views)

    recon = dsvae.output_reconstruction_error(x, out)
    kl_s, kl_d = dsvae.kl_terms(out)
    # C-DSVAE eq. (8): the contrasted codes are posterior means.
    mi_s_x = estimators.paired_views_info_nce(
        out["s_mean"], view_posteriors[0]["s_mean"], c.temperature)
    mi_d_x = jnp.zeros(())
    if c.motion_augmentation:
        mi_d_x = estimators.paired_views_info_nce(
            dsvae.flat(out["d_mean"]), dsvae.flat(view_posteriors[1]["d_mean"]), c.temperature)
    mi_s_d = dsvae.mws_static_dynamic(out, config.data.num_train,
                                      c.get("mws_estimator", "sequence"))
    loss = (recon + config.loss.kl_static_weight * kl_s + config.loss.kl_dynamic_weight * kl_d
            - c.contrastive_weight * (mi_s_x + mi_d_x) + c.mi_static_dynamic_weight * mi_s_d)
    return loss_output(loss, batch_stats, reconstruction=recon, kl_static=kl_s,
                       kl_dynamic=kl_d, contrastive_mi_s_x=mi_s_x, contrastive_mi_d_x=mi_d_x,
                       mws_mi_s_d=mi_s_d)


METHOD = Method(name="cdsvae", build=dsvae.build, loss=loss_fn, default_config=default_config,
                checks=validate_config)
