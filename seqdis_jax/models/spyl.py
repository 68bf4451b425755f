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
  * `code` (the authors' code): the positive is the re-encoded decoding of the sequence's own
    posterior mean with a prior-sampled other factor; the negatives are the `bank_negatives`
    farthest (by KL to the anchor's posterior) of a bank of `bank_size` sequences decoded from
    prior samples of both factors and re-encoded.
Negative-selection ablations (Table 4): `spyl.negatives` in farthest / middle /
middle_farthest / random. The authors' 50-epoch warm-up before the contrastive terms:
`spyl.contrastive_warmup_steps`.

Stop-gradients, and why: the KL matrices and rank selections only choose indices (no gradient
through a sort). The views are generated like data augmentations: the sampled codes that are
decoded and the decoded frames carry no gradient (`DSVAE.reencode`), so the decoder and prior
are not trained to produce easy views; the gradient of the InfoNCE reaches the encoder through
the anchors and through the re-encoding of the views. Bank negatives (`code`) carry no
gradient, as in the authors' code. In `reparameterization` the views are posterior samples of
the batch and keep their gradient (there is no re-encoding for it to flow through).

Reconstruction (`spyl.reconstruction_reduction`): App. B says the MSE is not divided by the
batch size (`sum`, default); the authors' code divides it by B (`mean`, the same scale as the
other methods here). With the sum, l1 weighs B times more against the KL and MI terms; on
Sprites `:cpu` (batch 32) it cost 10 points of judged accuracy against `mean`
(docs/results.md), so reproduce the paper's numbers with `mean`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from seqdis_jax import estimators
from seqdis_jax.models import dsvae
from seqdis_jax.nn.gaussian import reparameterize
from seqdis_jax.nn.video import apply_updating_batch_stats

Array = jax.Array
sg = jax.lax.stop_gradient

VIEWS = ("predictive", "reparameterization", "code")
NEGATIVES = ("farthest", "middle", "middle_farthest", "random")

build = dsvae.build


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Method-specific checks (called by `configuration.validate`); ValueError names the fix."""
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


def _sample_prior(model, params, batch_stats, rng, batch: int, steps: int, static_dim: int):
    """(s ~ N(0, I), d_1:T ~ learned prior), the 'arbitrary' other factor of a view."""
    s_rng, d_rng = jax.random.split(rng)
    _, d = model.apply({"params": params, "batch_stats": batch_stats}, batch, steps,
                       method=model.sample_dynamics, rngs={"sample": d_rng})
    return jax.random.normal(s_rng, (batch, static_dim)), d


def contrastive_terms(model, params, batch_stats, out, rng, config, train):
    """(I(s; x), I(d_1:T; x), batch_stats) by InfoNCE with SPYL's views."""
    c = config.spyl
    n, steps = out["d"].shape[:2]
    static_dim = out["s"].shape[-1]
    anchor_s, anchor_d = out["s"], dsvae.flat(out["d"])
    prior_rng, draw_rng, select_rng, reencode_rng = jax.random.split(rng, 4)
    reencode = lambda stats, s, d: apply_updating_batch_stats(
        model, params, stats, (s, d), train, method=model.reencode,
        rngs={"sample": reencode_rng})

    if c.views == "code":
        bank = c.bank_size
        s_prior, d_prior = _sample_prior(model, params, batch_stats, prior_rng, n + bank, steps,
                                         static_dim)
        # Rows: [own s mean + prior d | prior s + own d mean | bank of prior samples].
        s_in = jnp.concatenate([sg(out["s_mean"]), s_prior[:n], s_prior[n:]])
        d_in = jnp.concatenate([d_prior[:n], sg(out["d_mean"]), d_prior[n:]])
        views, batch_stats = reencode(batch_stats, sg(s_in), sg(d_in))
        bank_post = jax.tree.map(lambda a: sg(a[2 * n:]), views)
        result = []
        for name, anchor, positive in (("s", anchor_s, views["s"][:n]),
                                       ("d", anchor_d, dsvae.flat(views["d"][n:2 * n]))):
            far = estimators.kl_matrix(
                dsvae.flat(sg(out[f"{name}_mean"])), dsvae.flat(sg(out[f"{name}_logvar"])),
                dsvae.flat(bank_post[f"{name}_mean"]), dsvae.flat(bank_post[f"{name}_logvar"]))
            _, negative = jax.lax.top_k(far, c.bank_negatives)
            pool = jnp.concatenate([positive, dsvae.flat(bank_post[name])])
            result.append(pool_info_nce(anchor, pool, jnp.arange(n), negative + n,
                                        c.temperature))
        return result[0], result[1], batch_stats

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


def loss_fn(
    model: dsvae.DSVAE,
    params: Any,
    batch_stats: Any,
    batch: dict[str, Array],
    rng: Array,
    config: ml_collections.ConfigDict,
    train: bool = True,
    step: Array | None = None,
) -> tuple[Array, tuple[dict[str, Array], Any]]:
    """SPYL eq. (9) as a loss; returns (loss, (metrics, new batch_stats))."""
    c = config.spyl
    x = batch["video"]
    model_rng, view_rng = jax.random.split(rng)
    out, batch_stats = apply_updating_batch_stats(
        model, params, batch_stats, x, train, rngs={"sample": model_rng})
    recon = dsvae.output_reconstruction_error(x, out)  # per sequence
    recon_scale = dsvae.reconstruction_scale(c.reconstruction_reduction, x.shape[0])
    kl_s, kl_d = dsvae.kl_terms(out)
    mi_s_x, mi_d_x, batch_stats = contrastive_terms(
        model, params, batch_stats, out, view_rng, config, train)
    mi_s_d = dsvae.mws_static_dynamic(out, config.data.num_train)
    # The authors' warm-up: no contrastive terms before `contrastive_warmup_steps`.
    active = 1.0 if step is None else (step >= c.contrastive_warmup_steps).astype(jnp.float32)
    loss = (c.reconstruction_weight * recon_scale * recon + config.loss.kl_static_weight * kl_s
            + config.loss.kl_dynamic_weight * kl_d
            - active * c.contrastive_weight * (mi_s_x + mi_d_x)
            + c.mi_static_dynamic_weight * mi_s_d)
    metrics = dict(loss=loss, reconstruction=recon, kl_static=kl_s, kl_dynamic=kl_d,
                   contrastive_mi_s_x=mi_s_x, contrastive_mi_d_x=mi_d_x, mws_mi_s_d=mi_s_d)
    return loss, (metrics, batch_stats)
