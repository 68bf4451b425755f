"""SPYL: Sample and Predict Your Latent (Naiman, Berman, Azencot, ICML 2023).

The DSVAE network (`dsvae.DSVAE`) trained with SPYL eq. (9), as a loss to minimise:
    l1 recon + l2 KL_s + l3 KL_d - l4 (I(s; x) + I(d_1:T; x)) + l5 I(s; d_1:T),
l2, l3 = `loss.kl_static_weight`, `loss.kl_dynamic_weight`; the rest in `config.spyl`. The
contrastive terms are InfoNCE (eq. 6, phi = exp(cos / tau), tau = 0.5) whose views come from
the model itself (Sec. 4, Alg. 1, App. B.1); I(s; d) is the MWS estimate as in C-DSVAE.

Views (`spyl.views`), written for the static factor; the dynamic one is the same with s and d
exchanged (d_1:T flattened into one vector):
  * `predictive` (the paper, default). D_ij = KL[q(s|x_i) || q(s|x_j)] over the batch (eq. 7,
    `estimators.kl_matrix`, one O(n^2 d) expression); each row sorted. From every posterior
    q(s|x_j) K = `views_per_sequence` samples s~ are drawn, decoded with dynamics from the
    prior, d~ ~ p(d_1:T), and re-encoded: the pool of n K predicted views s = q(s | x~) (eq. 8,
    "the posterior of the sampled prior"). For anchor i (its posterior sample s_i, Alg. 1) the
    positive is a pool view of a sequence drawn from the closest third of row i, and its 2n
    negatives are pool views of sequences drawn (with replacement) from the farthest third. So a
    step costs the matrix, one decode and one encode pass of 2 n K sequences (static and dynamic
    pools together) and an (n, n K) similarity matrix -- never 2 n^2 decodes, no Python loop.
    Alg. 1 draws fresh views per anchor; here an anchor's 2n negatives come from the K n / 3
    predicted views of its farthest third, shared with the other anchors (K raises variety).
  * `reparameterization` (Table 7's ablation): the pool is the K posterior samples
    themselves, with no decoding and re-encoding.
  * `code` (the authors' code, train.py `train`): contrasts posterior means, and d as its time
    average (one dd-vector, not d_1:T flattened). The static anchor s_mean(x) has as positive
    the s_mean of decode(s_mean(x), prior means d~) re-encoded, the dynamic anchor the time
    average of d_mean(x) that of decode(s ~ N(0, I), d_mean(x)) re-encoded, with no
    stop-gradient, so the InfoNCE also trains the decoder and the prior through the views;
    the negatives are the `bank_negatives` farthest (KL from the anchor's posterior) posterior
    means of a bank of `bank_size` sequences decoded from s ~ N(0, I) and prior means, then
    re-encoded, under stop-gradient. Bank, static view and dynamic view are each decoded and
    re-encoded in a BatchNorm batch of their own, in that order; during the warm-up only the
    bank's BatchNorm updates are kept (`code_terms`).
Negative-selection ablations (Table 4): `spyl.negatives` in farthest / middle /
middle_farthest / random. The authors' 50-epoch warm-up before the contrastive terms:
`spyl.contrastive_warmup_steps`.

Stop-gradients, and why: the KL matrices and rank selections only choose indices (no gradient
through a sort). The `predictive` views are generated like data augmentations: the sampled
codes that are decoded and the decoded frames carry no gradient (`DSVAE.reencode`), so the
decoder and prior are not trained to produce easy views; the gradient of the InfoNCE reaches
the encoder through the anchors and through the re-encoding of the views. `code` keeps the
gradient through its views and stops it only on the bank, as the authors' code does. In
`reparameterization` the views are posterior samples of the batch and keep their gradient
(there is no re-encoding for it to flow through).

Reconstruction (`spyl.reconstruction_reduction`): App. B says the MSE is not divided by the
batch size (`sum`, default); the authors' code divides it by B (`mean`, the same scale as the
other methods here). With the sum, l1 weighs B times more against the KL and MI terms; on
Sprites `:cpu` (batch 32) it cost 10 points of judged accuracy against `mean`
(docs/results.md), so reproduce the paper's numbers with `mean`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from seqdis_jax import estimators
from seqdis_jax.models import dsvae
from seqdis_jax.models.method import LossInputs, LossOutput, Method, loss_output
from seqdis_jax.nn.gaussian import reparameterize
from seqdis_jax.nn.video import apply_updating_batch_stats

Array = jax.Array
sg = jax.lax.stop_gradient

VIEWS = ("predictive", "reparameterization", "code")
NEGATIVES = ("farthest", "middle", "middle_farthest", "random")


def default_config() -> ml_collections.ConfigDict:
    """`config.spyl`: the paper's algorithm (Sec. 4, Alg. 1) and Sprites' weights of Table 6
    as defaults (its KL weights lambda_2, lambda_3 are `config.loss`'s: `config_overrides`)."""
    c = ml_collections.ConfigDict()
    c.reconstruction_weight = 10.0  # lambda_1
    c.contrastive_weight = 5.0  # lambda_4
    c.mi_static_dynamic_weight = 1.0  # lambda_5
    c.temperature = 0.5
    c.views = "predictive"  # or "reparameterization" (Table 7), "code" (the authors' bank)
    c.negatives = "farthest"  # or "middle", "middle_farthest", "random" (Table 4)
    c.views_per_sequence = 2  # K predicted views drawn from each posterior of the batch
    c.bank_size = 512  # views="code": prior-generated bank ...
    c.bank_negatives = 256  # ... and the farthest of it used as negatives
    c.contrastive_warmup_steps = 0  # the authors' code: 50 epochs without contrastive terms
    c.reconstruction_reduction = "sum"  # App. B: MSE not divided by the batch; code: "mean"
    c.mws_estimator = "sequence"  # I(s; d) as C-DSVAE eq. 13; code: "per_frame_code"
    return c


def validate_config(config: ml_collections.ConfigDict) -> None:
    """SPYL's checks (`Method.checks`); ValueError names the fix."""
    # Thirds of the batch (SPYL Alg. 1) need at least three sequences.
    c = dsvae.check_method_section(config, "spyl", batch_minimum=3)
    for field, allowed in (("views", VIEWS), ("negatives", NEGATIVES),
                           ("reconstruction_reduction", dsvae.RECONSTRUCTION_REDUCTIONS)):
        if c[field] not in allowed:
            raise ValueError(f"config.spyl.{field} must be one of {allowed}, got {c[field]!r}.")
    if c.views_per_sequence < 1:
        raise ValueError("config.spyl.views_per_sequence must be >= 1.")
    if not 0 < c.bank_negatives <= c.bank_size:
        raise ValueError(f"config.spyl.bank_negatives ({c.bank_negatives}) must be in "
                         f"[1, config.spyl.bank_size = {c.bank_size}].")
    if c.get("mws_estimator", "sequence") not in dsvae.MWS_ESTIMATORS:
        raise ValueError(f"config.spyl.mws_estimator must be one of {dsvae.MWS_ESTIMATORS}, "
                         f"got {c.mws_estimator!r}.")
    if c.contrastive_warmup_steps < 0:
        raise ValueError("config.spyl.contrastive_warmup_steps must be >= 0.")


def pool_indices(rng: Array, distances: Array, negatives: str, views_per_sequence: int,
                 num_negatives: int) -> tuple[Array, Array]:
    """Indices into a pool of n K views (row j K + k: view k of sequence j) of each anchor's
    positive (n,) -- a sequence of the closest third of its row of D -- and negatives
    (n, num_negatives) -- sequences of the `negatives` third (SPYL Alg. 1)."""
    pos_rng, neg_rng, pos_view_rng, neg_view_rng = jax.random.split(rng, 4)
    positive = estimators.sample_by_rank(pos_rng, distances, "closest", 1)[:, 0]
    negative = estimators.sample_by_rank(neg_rng, distances, negatives, num_negatives)
    k = views_per_sequence
    positive = positive * k + jax.random.randint(pos_view_rng, positive.shape, 0, k)
    negative = negative * k + jax.random.randint(neg_view_rng, negative.shape, 0, k)
    return positive, negative


def pool_info_nce(anchor: Array, pool: Array, positive: Array, negative: Array,
                  temperature: float) -> Array:
    """InfoNCE estimate (SPYL eq. 6 + log(M + 1)) with views gathered from a shared pool:
    one (n, pool) cosine matrix, then a gather per anchor; no (n, M, D) tensor."""
    logits = estimators.cosine_similarity_matrix(anchor, pool) / temperature
    pos = jnp.take_along_axis(logits, positive[:, None], axis=1)[:, 0]
    neg = jnp.take_along_axis(logits, negative, axis=1)
    log_ratio = estimators.info_nce_log_ratio(pos, neg)
    return jnp.mean(log_ratio) + math.log(negative.shape[1] + 1)


def _repeat(a: Array, k: int) -> Array:
    return jnp.repeat(a, k, axis=0)


def _prior_draw(model, params, batch_stats, rng, batch: int, steps: int) -> tuple[Array, Array]:
    """(means, samples) of one free-running (ancestral) draw of the learned prior."""
    return model.apply({"params": params, "batch_stats": batch_stats}, batch, steps,
                       method=model.sample_dynamics, rngs={"sample": rng})


def _sample_prior(model, params, batch_stats, rng, batch: int, steps: int, static_dim: int):
    """(s ~ N(0, I), d_1:T ~ learned prior), the 'arbitrary' other factor of a view."""
    s_rng, d_rng = jax.random.split(rng)
    _, d = _prior_draw(model, params, batch_stats, d_rng, batch, steps)
    return jax.random.normal(s_rng, (batch, static_dim)), d


# --- views="code": the authors' training step (SPYL train.py `train`) -------------------------


def time_average(a: Array) -> Array:
    """(B, T, D) -> (B, D): the mean over time, how the authors' code contrasts d_1:T."""
    return jnp.mean(a, axis=1)


def _decode(model, params, batch_stats, s, d, train):
    """Decoded x_1:T of (s, d_1:T), one BatchNorm batch; gradients flow through it."""
    (frames, _), batch_stats = dsvae.decode_updating_batch_stats(model, params, batch_stats,
                                                                 s, d, train)
    return frames, batch_stats


def _encode(model, params, batch_stats, x, rng, train):
    """Posterior of x_1:T, one BatchNorm batch."""
    return apply_updating_batch_stats(model, params, batch_stats, x, train,
                                      method=model.encode, rngs={"sample": rng})


def _prior_means(model, params, batch_stats, rng, batch, steps):
    """The means sequence of one free-running (ancestral) draw of the learned prior."""
    return _prior_draw(model, params, batch_stats, rng, batch, steps)[0]


def code_bank(model, params, batch_stats, rng, size, steps, static_dim, train):
    """The authors' bank of candidate negatives (`samples_tr`): `size` sequences decoded from
    s ~ N(0, I) and the means sequence of an ancestral prior draw (a decode, its own BatchNorm
    batch), then re-encoded (an encode, its own batch). Returns its posterior under
    stop-gradient -- s_mean, s_logvar (size, ds) and the time-averaged d_mean, d_logvar
    (size, dd) -- and the batch_stats after those two passes."""
    s_rng, d_rng, encode_rng = jax.random.split(rng, 3)
    d = _prior_means(model, params, batch_stats, d_rng, size, steps)
    s = jax.random.normal(s_rng, (size, static_dim))
    frames, batch_stats = _decode(model, params, batch_stats, s, d, train)
    post, batch_stats = _encode(model, params, batch_stats, frames, encode_rng, train)
    bank = dict(s_mean=post["s_mean"], s_logvar=post["s_logvar"],
                d_mean=time_average(post["d_mean"]), d_logvar=time_average(post["d_logvar"]))
    return sg(bank), batch_stats


def code_views(model, params, batch_stats, out, rng, train):
    """The authors' two views of each sequence, each decode and encode its own BatchNorm batch,
    in their order (`forward_fixed_content_for_classification_tr` then `model(c_aug)`,
    `forward_fixed_action_for_classification_tr` then `model(m_aug)`):
      static: decode(s_mean of x, the means sequence of an ancestral prior draw), re-encoded;
      dynamic: decode(s ~ N(0, I), d_mean of x), re-encoded.
    Nothing is stop-gradiented: the contrastive gradient reaches the decoder, the prior and
    the encoder (through the decoded codes) as in the authors' code. Returns (static view's
    posterior, dynamic view's posterior, batch_stats)."""
    n, steps = out["d_mean"].shape[:2]
    prior_rng, s_rng, static_rng, dynamic_rng = jax.random.split(rng, 4)
    d_prior = _prior_means(model, params, batch_stats, prior_rng, n, steps)
    frames, batch_stats = _decode(model, params, batch_stats, out["s_mean"], d_prior, train)
    static_view, batch_stats = _encode(model, params, batch_stats, frames, static_rng, train)
    s_prior = jax.random.normal(s_rng, out["s_mean"].shape)
    frames, batch_stats = _decode(model, params, batch_stats, s_prior, out["d_mean"], train)
    dynamic_view, batch_stats = _encode(model, params, batch_stats, frames, dynamic_rng, train)
    return static_view, dynamic_view, batch_stats


def code_info_nce(anchor_mean: Array, anchor_logvar: Array, positive: Array, bank_mean: Array,
                  bank_logvar: Array, num_negatives: int, temperature: float) -> Array:
    """The authors' `kl_contrast` (neg_mode "soft") + `contrastive_loss(normalize=True)`, as an
    InfoNCE estimate (mean log-ratio + log(M + 1), M = num_negatives; the authors' loss is
    log(M + 1) minus it). Anchor i is the posterior mean anchor_mean_i (n, D); its positive
    positive_i (n, D); its negatives the bank means (m, D) of the M largest
    KL[N(anchor_mean_i, e^anchor_logvar_i) || N(bank_mean_j, e^bank_logvar_j)]. The selection
    and the bank carry no gradient; phi = exp(cos / temperature)."""
    far = estimators.kl_matrix(sg(anchor_mean), sg(anchor_logvar), sg(bank_mean),
                               sg(bank_logvar))
    _, negative = jax.lax.top_k(far, num_negatives)  # (n, M), farthest first
    bank_logits = estimators.cosine_similarity_matrix(anchor_mean, sg(bank_mean)) / temperature
    neg = jnp.take_along_axis(bank_logits, negative, axis=1)
    pos = estimators.cosine_similarity_matrix(anchor_mean[:, None], positive[:, None])[:, 0, 0]
    log_ratio = estimators.info_nce_log_ratio(pos / temperature, neg)
    return jnp.mean(log_ratio) + math.log(num_negatives + 1)


def code_estimates(posterior: dict[str, Array], static_view: dict[str, Array],
                   dynamic_view: dict[str, Array], bank: dict[str, Array], num_negatives: int,
                   temperature: float) -> tuple[Array, Array]:
    """(I(s; x), I(d; x)) of views="code" from arrays: posterior of x (s_mean, s_logvar (n, ds);
    d_mean, d_logvar (n, T, dd)), the views' posteriors (static_view s_mean; dynamic_view d_mean
    (n, T, dd)) and the bank (`code_bank`, d time-averaged). The static anchor is s_mean; the
    dynamic anchor, positive and KL selection use time averages of d_mean and d_logvar."""
    mi_s = code_info_nce(posterior["s_mean"], posterior["s_logvar"], static_view["s_mean"],
                         bank["s_mean"], bank["s_logvar"], num_negatives, temperature)
    mi_d = code_info_nce(time_average(posterior["d_mean"]), time_average(posterior["d_logvar"]),
                         time_average(dynamic_view["d_mean"]), bank["d_mean"], bank["d_logvar"],
                         num_negatives, temperature)
    return mi_s, mi_d


def code_terms(model, params, batch_stats, out, rng, config, train, active=None):
    """`contrastive_terms` for views="code": bank, static view, dynamic view (six model
    applies in the authors' order), then `code_estimates`. While `active` is False (the
    warm-up) the returned batch_stats are those after the bank only: the authors compute the
    bank every step but the views only after the warm-up."""
    c = config.spyl
    bank_rng, view_rng = jax.random.split(rng)
    bank, bank_stats = code_bank(model, params, batch_stats, bank_rng, c.bank_size,
                                 out["d_mean"].shape[1], out["s_mean"].shape[-1], train)
    static_view, dynamic_view, batch_stats = code_views(model, params, bank_stats, out,
                                                        view_rng, train)
    mi_s, mi_d = code_estimates(out, static_view, dynamic_view, bank, c.bank_negatives,
                                c.temperature)
    if active is not None:
        batch_stats = jax.tree.map(lambda after_views, after_bank: jnp.where(
            active, after_views, after_bank), batch_stats, bank_stats)
    return mi_s, mi_d, batch_stats


def contrastive_terms(model, params, batch_stats, out, rng, config, train, active=None):
    """(I(s; x), I(d_1:T; x), batch_stats) by InfoNCE with SPYL's views. `active` (a traced
    bool, or None: always active) is the warm-up switch; only `code` reads it (its batch_stats
    keep the bank's BatchNorm updates alone while it is off, as the authors' warm-up)."""
    c = config.spyl
    if c.views == "code":
        return code_terms(model, params, batch_stats, out, rng, config, train, active)
    n, steps = out["d"].shape[:2]
    static_dim = out["s"].shape[-1]
    anchor_s, anchor_d = out["s"], dsvae.flat(out["d"])
    prior_rng, draw_rng, select_rng, reencode_rng = jax.random.split(rng, 4)
    reencode = lambda stats, s, d: apply_updating_batch_stats(
        model, params, stats, (s, d), train, method=model.reencode,
        rngs={"sample": reencode_rng})

    k = c.views_per_sequence
    grad_or_sg = (lambda a: a) if c.views == "reparameterization" else sg
    s_rng, d_rng = jax.random.split(draw_rng)
    s_draws = reparameterize(s_rng, _repeat(grad_or_sg(out["s_mean"]), k),
                             _repeat(grad_or_sg(out["s_logvar"]), k))  # (nK, ds)
    d_draws = reparameterize(d_rng, _repeat(grad_or_sg(out["d_mean"]), k),
                             _repeat(grad_or_sg(out["d_logvar"]), k))  # (nK, T, dd)
    if c.views == "reparameterization":
        pools = {"s": s_draws, "d": dsvae.flat(d_draws)}
    else:  # predictive: decode with the other factor from the prior, re-encode (eq. 8)
        s_prior, d_prior = _sample_prior(model, params, batch_stats, prior_rng, n * k, steps,
                                         static_dim)
        views, batch_stats = reencode(batch_stats, jnp.concatenate([s_draws, s_prior]),
                                      jnp.concatenate([d_prior, d_draws]))
        pools = {"s": views["s"][:n * k], "d": dsvae.flat(views["d"][n * k:])}
    result = []
    for i, (name, anchor) in enumerate((("s", anchor_s), ("d", anchor_d))):
        distances = estimators.kl_matrix(dsvae.flat(sg(out[f"{name}_mean"])),
                                         dsvae.flat(sg(out[f"{name}_logvar"])))
        positive, negative = pool_indices(jax.random.fold_in(select_rng, i), distances,
                                          c.negatives, k, 2 * n)
        result.append(pool_info_nce(anchor, pools[name], positive, negative, c.temperature))
    return result[0], result[1], batch_stats


def loss_fn(inputs: LossInputs) -> LossOutput:
    """SPYL eq. (9) as a loss; metrics: its terms."""
    config, x, step = inputs.config, inputs.x, inputs.step
    c = config.spyl
    model_rng, view_rng = jax.random.split(inputs.rng)
    out, batch_stats = inputs.forward(model_rng)
    recon = dsvae.output_reconstruction_error(x, out)  # per sequence
    recon_scale = dsvae.reconstruction_scale(c.reconstruction_reduction, x.shape[0])
    kl_s, kl_d = dsvae.kl_terms(out)
    # The authors' warm-up: no contrastive terms before `contrastive_warmup_steps`.
    on = None if step is None else step >= c.contrastive_warmup_steps
    mi_s_x, mi_d_x, batch_stats = contrastive_terms(
        inputs.model, inputs.params, batch_stats, out, view_rng, config, inputs.train, active=on)
    mi_s_d = dsvae.mws_static_dynamic(out, config.data.num_train,
                                      c.get("mws_estimator", "sequence"))
    active = 1.0 if on is None else on.astype(jnp.float32)
    loss = (c.reconstruction_weight * recon_scale * recon + config.loss.kl_static_weight * kl_s
            + config.loss.kl_dynamic_weight * kl_d
            - active * c.contrastive_weight * (mi_s_x + mi_d_x)
            + c.mi_static_dynamic_weight * mi_s_d)
    return loss_output(loss, batch_stats, reconstruction=recon, kl_static=kl_s,
                       kl_dynamic=kl_d, contrastive_mi_s_x=mi_s_x, contrastive_mi_d_x=mi_d_x,
                       mws_mi_s_d=mi_s_d)


METHOD = Method(name="spyl", build=dsvae.build, loss=loss_fn, default_config=default_config,
                checks=validate_config,
                # lambda_2, lambda_3 of Table 6 (Sprites: 5, 1) are the KL weights.
                config_overrides={"loss.kl_static_weight": 5.0, "loss.kl_dynamic_weight": 1.0},
                # One predicted view per sequence keeps a smoke step as cheap as the others'.
                smoke_overrides={"spyl.views_per_sequence": 1})
