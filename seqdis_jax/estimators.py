"""Batch estimators over diagonal-Gaussian posteriors: pairwise log-densities and the
minibatch-weighted-sampling (MWS) mutual information of C-DSVAE App. A.3.

Pure jnp functions of posterior parameters and samples; every [B, B] matrix is built with
matrix products over the latent dimension, so no [B, B, D] (or [T, B, B, D]) tensor exists.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density_matrix(z: Array, mean: Array, logvar: Array) -> Array:
    """log N(z_i; mean_j, diag(exp(logvar_j))) for every pair (i, j), summed over dimensions.

    z, mean, logvar: (..., B, D) -> (..., B, B). Leading axes (e.g. time) are batched.
    Expands -(z_i - mu_j)^2 / (2 var_j) into three matrix products, so the cost is a few
    (B, D) x (D, B) products and memory is O(B^2), never O(B^2 D).
    """
    precision = jnp.exp(-logvar)  # 1 / var_j
    hi = jax.lax.Precision.HIGHEST
    quad = (
        jnp.einsum("...id,...jd->...ij", jnp.square(z), precision, precision=hi)
        - 2.0 * jnp.einsum("...id,...jd->...ij", z, mean * precision, precision=hi)
        + jnp.sum(jnp.square(mean) * precision, axis=-1)[..., None, :]
    )
    log_norm = jnp.sum(logvar, axis=-1)[..., None, :] + z.shape[-1] * _LOG_2PI
    return -0.5 * (quad + log_norm)


def mws_mutual_information(
    s: Array,
    s_mean: Array,
    s_logvar: Array,
    d: Array,
    d_mean: Array,
    d_logvar: Array,
    dataset_size: int | None = None,
) -> dict[str, Array]:
    """I(s; d_1:T), I(s; x_1:T) and I(d_1:T; x_1:T) by minibatch weighted sampling.

    C-DSVAE App. A.3, eq. (13): the aggregate posterior q(s) = E_x q(s|x) at each sample s_i is
    estimated from the minibatch, log q(s_i) ~ logsumexp_j log q(s_i | x_j) - log M, and
    likewise for d_1:T (log q(d_i | x_j) = sum_t log q(d_t,i | x_j), a [T, B, B] block) and for
    the pair (s, d) (the sum of the two blocks). Then
        I(s; d) = H(s) + H(d) - H(s, d),   I(s; x) = H(s) - H(s|x),   I(d; x) = H(d) - H(d|x),
    with H(s|x) = -mean_i log q(s_i | x_i).

    Eq. (13) as printed subtracts log(N M) rather than log M (N = dataset size, after
    beta-TCVAE's MWS). That adds log N to every entropy, which does not cancel in the mutual
    informations (it biases each by +log N); pass `dataset_size=N` to reproduce it exactly.

    Args:
      s, s_mean, s_logvar: (B, Ds) sample of q(s|x_i) and its parameters.
      d, d_mean, d_logvar: (B, T, Dd) sampled trajectory of q(d_1:T|x_i) and its parameters.
    Returns scalars `mi_s_d`, `mi_s_x`, `mi_d_x` in nats (and the three entropies).
    """
    batch = s.shape[0]
    log_q_s = gaussian_log_density_matrix(s, s_mean, s_logvar)  # [B, B]
    to_time_major = lambda a: jnp.swapaxes(a, 0, 1)
    log_q_d = jnp.sum(  # [T, B, B] summed over time -> [B, B]
        gaussian_log_density_matrix(to_time_major(d), to_time_major(d_mean),
                                    to_time_major(d_logvar)),
        axis=0,
    )
    log_m = math.log(batch) + (math.log(dataset_size) if dataset_size else 0.0)

    def entropy(log_q):  # -E_i log q(z_i), q(z_i) = (1/M) sum_j q(z_i | x_j)
        return -jnp.mean(jax.scipy.special.logsumexp(log_q, axis=1) - log_m)

    h_s, h_d, h_sd = entropy(log_q_s), entropy(log_q_d), entropy(log_q_s + log_q_d)
    h_s_given_x = -jnp.mean(jnp.diagonal(log_q_s))
    h_d_given_x = -jnp.mean(jnp.diagonal(log_q_d))
    return dict(
        mi_s_d=h_s + h_d - h_sd,
        mi_s_x=h_s - h_s_given_x,
        mi_d_x=h_d - h_d_given_x,
        entropy_s=h_s,
        entropy_d=h_d,
        entropy_s_d=h_sd,
    )


def mws_per_frame_code(
    s: Array,
    s_mean: Array,
    s_logvar: Array,
    d: Array,
    d_mean: Array,
    d_logvar: Array,
    dataset_size: int,
) -> Array:
    """I(s; d) as the C-DSVAE and SPYL authors' code computes it (`mi_fz` in C-DSVAE
    train_cdsvae.py, `calculate_mws` in SPYL cdsvae/utils.py; REFERENCE_FACTS.md section 4):

      * per frame: for every t, log q(s_i | x_j) and log q(d_t,i | x_j) (not d_1:T as one
        variable);
      * their density takes the log-variance in its log-sigma slot, so its standard deviation
        is exp(logvar), not exp(logvar / 2) (here: `gaussian_log_density_matrix` with
        2 logvar);
      * log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(B N) for s, d_t and (s, d_t);
      * mean over t and i of ReLU(log q(s_i, d_t,i) - log q(s_i) - log q(d_t,i)), so the
        constants net to + log(B N) inside the ReLU.

    s, s_mean, s_logvar (B, Ds); d, d_mean, d_logvar (B, T, Dd); dataset_size N -> scalar.
    """
    batch = s.shape[0]
    to_time_major = lambda a: jnp.swapaxes(a, 0, 1)
    log_q_s = gaussian_log_density_matrix(s, s_mean, 2.0 * s_logvar)  # [B, B]
    log_q_d = gaussian_log_density_matrix(  # [T, B, B]
        to_time_major(d), to_time_major(d_mean), 2.0 * to_time_major(d_logvar))
    log_bn = math.log(batch * dataset_size)
    lse = lambda a: jax.scipy.special.logsumexp(a, axis=-1) - log_bn
    log_q_s_marginal = lse(log_q_s)  # [B]
    log_q_d_marginal = lse(log_q_d)  # [T, B]
    log_q_joint = lse(log_q_s[None] + log_q_d)  # [T, B]
    return jnp.mean(jax.nn.relu(log_q_joint - log_q_s_marginal[None] - log_q_d_marginal))


# --- Contrastive estimators (C-DSVAE eq. 7-8; SPYL eq. 6) -------------------------------------


def cosine_similarity_matrix(u: Array, v: Array, eps: float = 1e-8) -> Array:
    """cos(u_i, v_j) for every pair: u (..., N, D), v (..., M, D) -> (..., N, M)."""
    u = u / jnp.maximum(jnp.linalg.norm(u, axis=-1, keepdims=True), eps)
    v = v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), eps)
    return jnp.einsum("...nd,...md->...nm", u, v, precision=jax.lax.Precision.HIGHEST)


def info_nce_log_ratio(positive_logits: Array, negative_logits: Array) -> Array:
    """log phi(u, v+) / (phi(u, v+) + sum_j phi(u, v_j)) per anchor, from logits log phi.

    positive_logits (B,), negative_logits (B, M) -> (B,). At most 0; the InfoNCE estimate of
    the mutual information is its mean plus log(M + 1) (C-DSVAE eq. 7), so never above
    log(M + 1), the log of the number of candidates.
    """
    logits = jnp.concatenate([positive_logits[:, None], negative_logits], axis=1)
    return positive_logits - jax.scipy.special.logsumexp(logits, axis=1)


def info_nce(anchor: Array, positive: Array, negatives: Array, temperature: float = 0.5
             ) -> Array:
    """InfoNCE mutual-information estimate (SPYL eq. 6 + log(M + 1)) with
    phi(u, v) = exp(cos(u, v) / temperature).

    anchor (B, D), positive (B, D), negatives (B, M, D) -> scalar, in [-inf, log(M + 1)].
    """
    pos = jnp.sum(cosine_similarity_matrix(anchor[:, None], positive[:, None]), (1, 2))
    neg = cosine_similarity_matrix(anchor[:, None], negatives)[:, 0]
    log_ratio = info_nce_log_ratio(pos / temperature, neg / temperature)
    return jnp.mean(log_ratio) + math.log(negatives.shape[1] + 1)


def paired_views_info_nce(u: Array, v: Array, temperature: float = 0.5) -> Array:
    """(C(u) + C(v)) / 2 for two views of a batch (C-DSVAE eq. 8), NT-Xent form.

    u, v: (B, D), row i of each the same sequence. Each of the 2B codes is an anchor; its
    positive is the other view of the same sequence and its negatives are the 2B - 2 codes of
    the other sequences (both views; the positive stays in the denominator), as the authors'
    code does. The mean over the 2B anchors is (C(u) + C(v)) / 2, each C of eq. (7) with
    n = 2B - 2 negatives, so the estimate is at most log(2B - 1).
    """
    batch = u.shape[0]
    codes = jnp.concatenate([u, v], axis=0)
    logits = cosine_similarity_matrix(codes, codes) / temperature  # (2B, 2B)
    index = jnp.arange(2 * batch)
    partner = (index + batch) % (2 * batch)
    positive = logits[index, partner]
    # Drop the anchor itself: every candidate but j == i enters the denominator.
    logits = jnp.where(jnp.eye(2 * batch, dtype=bool), -jnp.inf, logits)
    log_ratio = positive - jax.scipy.special.logsumexp(logits, axis=1)
    return jnp.mean(log_ratio) + math.log(2 * batch - 1)


# --- KL matrix and the thirds heuristic (SPYL eq. 7, Alg. 1) -------------------------------------


def kl_matrix(mean_p: Array, logvar_p: Array, mean_q: Array | None = None,
              logvar_q: Array | None = None) -> Array:
    """D_ij = KL[N(mean_p_i, e^logvar_p_i) || N(mean_q_j, e^logvar_q_j)] (SPYL eq. 7).

    (N, D) and (M, D) diagonal Gaussians -> (N, M), summed over dimensions (flatten time into
    D for trajectories); q defaults to p (the batch against itself: zero diagonal). The
    elementwise closed form is expanded into (N, D) x (D, M) products, so the cost is O(NMD)
    flops and O(NM) memory: no (N, M, D) tensor.
    """
    if mean_q is None:
        mean_q, logvar_q = mean_p, logvar_p
    hi = jax.lax.Precision.HIGHEST
    precision_q = jnp.exp(-logvar_q)  # 1 / var_q_j
    # sum_d [(var_p_i + (mean_p_i - mean_q_j)^2) / var_q_j]
    quad = (
        jnp.einsum("nd,md->nm", jnp.exp(logvar_p) + jnp.square(mean_p), precision_q, precision=hi)
        - 2.0 * jnp.einsum("nd,md->nm", mean_p, mean_q * precision_q, precision=hi)
        + jnp.sum(jnp.square(mean_q) * precision_q, axis=-1)[None, :]
    )
    log_det = jnp.sum(logvar_q, axis=-1)[None, :] - jnp.sum(logvar_p, axis=-1)[:, None]
    kl = 0.5 * (log_det + quad - mean_p.shape[-1])
    # The expansion cancels large terms; true KLs are >= 0, so clip the rounding error.
    return jnp.maximum(kl, 0.0)


# Rank ranges of a row of D sorted ascending (SPYL Sec. 4, Table 4): closest third for
# positives; the negatives' pool of each ablation. Rank 0 is the anchor itself (D_ii = 0).
THIRDS = ("closest", "middle", "farthest", "middle_farthest", "random")


def third_bounds(batch: int, which: str) -> tuple[int, int]:
    """[lo, hi) ranks of row-sorted D for a selection rule (SPYL Alg. 1: omega = chi[:n/3],
    rho = chi[2n/3:]); `random` is every other sequence of the batch."""
    first, second = batch // 3, (2 * batch) // 3
    bounds = {
        "closest": (0, max(first, 1)),
        "middle": (first, max(second, first + 1)),
        "farthest": (second, batch),
        "middle_farthest": (first, batch),
        "random": (min(1, batch - 1), batch),
    }
    if which not in bounds:
        raise ValueError(f"Unknown selection {which!r}; use one of {THIRDS}.")
    return bounds[which]


def sample_by_rank(rng: Array, distances: Array, which: str, num: int) -> Array:
    """Per row i of `distances` (N, M), `num` column indices drawn uniformly (with
    replacement) from the ranks `which` of the row sorted ascending -> (N, num) int32."""
    lo, hi = third_bounds(distances.shape[1], which)
    order = jnp.argsort(distances, axis=1)
    ranks = jax.random.randint(rng, (distances.shape[0], num), lo, hi)
    return jnp.take_along_axis(order, ranks, axis=1)


# --- R-WAE: MMD, scaled MMD, critic penalties, Gumbel-softmax (Han et al. 2021, App. D) ----------

# Bandwidths sigma of the mixture of RBF kernels used for the motion regulariser (R-WAE App. D,
# after Li et al. 2017). The paper does not list its sigmas; these span the scale of unit-variance
# latents.
DEFAULT_MMD_BANDWIDTHS = (1.0, 2.0, 4.0, 8.0, 16.0)


def _squared_distances(x: Array, y: Array) -> Array:
    """||x_i - y_j||^2 for x (n, D), y (m, D) -> (n, m), as ||x||^2 + ||y||^2 - 2 x y^T (one
    matrix product, no (n, m, D) tensor), clipped at 0 against rounding."""
    xy = jnp.einsum("nd,md->nm", x, y, precision=jax.lax.Precision.HIGHEST)
    sq = jnp.sum(jnp.square(x), axis=-1)[:, None] + jnp.sum(jnp.square(y), axis=-1)[None, :]
    return jnp.maximum(sq - 2.0 * xy, 0.0)


def rbf_mixture_kernel(x: Array, y: Array, bandwidths=DEFAULT_MMD_BANDWIDTHS) -> Array:
    """Mixture of RBF kernels k(x_i, y_j) = sum_sigma exp(-||x_i - y_j||^2 / (2 sigma^2)).

    R-WAE App. D (the kernel of MMD_k, eq. 21), after Li et al. (2017). x (n, D), y (m, D),
    bandwidths a sequence (or array) of sigmas -> (n, m). k(x, x) = len(bandwidths).
    """
    inv_two_var = 0.5 / jnp.square(jnp.asarray(bandwidths, dtype=x.dtype))  # (K,)
    d2 = _squared_distances(x, y)
    return jnp.sum(jnp.exp(-d2[..., None] * inv_two_var), axis=-1)


def _mmd_from_kernels(kxx: Array, kyy: Array, kxy: Array, paired: bool = False) -> Array:
    """Unbiased MMD^2 (U-statistic) from the three Gram matrices; the i == j terms of the
    within-sample sums are removed by subtracting the trace, and of the cross sum too when
    the samples are `paired`."""
    n, m = kxx.shape[0], kyy.shape[0]
    within_x = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    within_y = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    if paired:
        return within_x + within_y - 2.0 * (jnp.sum(kxy) - jnp.trace(kxy)) / (n * (n - 1))
    return within_x + within_y - 2.0 * jnp.mean(kxy)


def mmd_unbiased(x: Array, y: Array, bandwidths=DEFAULT_MMD_BANDWIDTHS,
                 paired: bool = False) -> Array:
    """Unbiased estimate of MMD_k^2(Q, P) from x ~ Q (n, D) and y ~ P (m, D), n, m >= 2.

    R-WAE App. D, eq. (21), with the mixture-of-RBF kernel `rbf_mixture_kernel`:
        1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
        - 2/(n m) sum_{i,j} k(x_i, y_j).
    Eq. (21) (and eq. 22) as printed weights the cross term by -1/n^2, without the factor 2;
    that is a typo: without it the estimate of MMD(P, P) is E k(z, z') != 0. This is the
    standard unbiased estimator of Gretton et al. (2012), Lemma 6, which is zero in
    expectation when Q = P (it can be slightly negative on a finite sample).

    `paired=True` (n == m) is for samples drawn in pairs, x_i and y_i dependent but the pairs
    independent: R-WAE's posterior d_t and the prior's d_t conditioned on the same history
    d_<t. The cross sum then skips i == j as well (Gretton et al. 2012, eq. 3: the U-statistic
    of h = k(x_i,x_j) + k(y_i,y_j) - k(x_i,y_j) - k(x_j,y_i)); with the i == j pairs kept,
    their correlation biases the estimate below zero.
    """
    if paired and x.shape[0] != y.shape[0]:
        raise ValueError(f"paired MMD needs as many x as y samples, got {x.shape[0]} and "
                         f"{y.shape[0]}.")
    return _mmd_from_kernels(
        rbf_mixture_kernel(x, x, bandwidths),
        rbf_mixture_kernel(y, y, bandwidths),
        rbf_mixture_kernel(x, y, bandwidths),
        paired,
    )


def mmd_unbiased_per_step(x: Array, y: Array, bandwidths=DEFAULT_MMD_BANDWIDTHS,
                          paired: bool = False) -> Array:
    """MMD_unbiased of each time step's batch: x (B, T, D) ~ Q, y (B', T, D) ~ P -> (T,).

    Entry t compares {x_{i,t}}_i with {y_{i,t}}_i, i.e. MMD(Q_{d_t|d<t}, P_{d_t|d<t}) of the
    motion regulariser sum_t MMD_k(q(z_t^m | z_<t^m), p(z_t^m | z_<t^m)) (R-WAE eq. 11, App. D).
    """
    return jax.vmap(lambda a, b: mmd_unbiased(a, b, bandwidths, paired), in_axes=(1, 1))(x, y)


def scaled_mmd(features_q: Array, features_p: Array, gradient_sq_norm: Array,
               scale: float = 10.0) -> Array:
    """Scaled MMD of R-WAE(MMD) (App. D, eq. 22 and the ratio above it; Arbel et al. 2018):
        MMD_k(f(Q), f(P)) / (1 + scale * E_P[||grad f(z)||^2]),
    with MMD_k the unbiased estimate (cross term -2/(n m), see `mmd_unbiased`) under the scalar
    RBF kernel k(a, b) = exp(-(a - b)^2 / 2) on the critic outputs.

    features_q: f(z~_i) on posterior samples, (n,) or (n, 1); features_p: f(z_i) on prior
    samples, (m,) or (m, 1); gradient_sq_norm: the scalar E_P[||grad f||^2] (see
    `mean_gradient_sq_norm`); scale: 10 in the paper.
    """
    fq = jnp.reshape(features_q, (features_q.shape[0], -1))
    fp = jnp.reshape(features_p, (features_p.shape[0], -1))
    return mmd_unbiased(fq, fp, (1.0,)) / (1.0 + scale * gradient_sq_norm)


def mean_gradient_sq_norm(fn, z: Array) -> Array:
    """mean_i ||d fn / d z (z_i)||^2 for samples z (n, ...), fn mapping one sample to a scalar.

    The gradient penalty E[||grad f||_F^2] of the scaled MMD (R-WAE App. D) and of eq. (24).
    Built from jax.vmap(jax.grad(fn)), so it is itself differentiable w.r.t. whatever fn closes
    over (double backprop: take jax.grad of a loss containing it w.r.t. the critic's params).
    """
    grads = jax.vmap(jax.grad(fn))(z)
    return jnp.mean(jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=-1))


def interpolates(rng: Array, a: Array, b: Array) -> Array:
    """alpha * a + (1 - alpha) * b, alpha ~ U(0, 1) drawn once per sample (leading axis).

    R-WAE eq. (24): z^ = alpha z + (1 - alpha) z~ with z from the prior (a) and z~ from the
    posterior (b); the gradient penalty is evaluated at z^. a, b: (n, ...) of one shape.
    """
    shape = (a.shape[0],) + (1,) * (a.ndim - 1)
    alpha = jax.random.uniform(rng, shape, dtype=jnp.result_type(a, b))
    return alpha * a + (1.0 - alpha) * b


def js_discriminator_objective(logits_prior: Array, logits_posterior: Array) -> Array:
    """E_p[log D(z)] + E_q[log(1 - D(z~))], D = sigmoid(logits) (R-WAE eq. 23).

    logits_prior: D's logits on prior samples z ~ p(z^c); logits_posterior: on posterior
    samples z~ ~ q(z~^c). The discriminator MAXIMISES this (its optimum is 2 JS(p, q) - log 4);
    log(1 - sigmoid(l)) = log_sigmoid(-l), so no log(0) for large logits. At chance (all
    logits 0) it is 2 log(1/2).
    """
    return (jnp.mean(jax.nn.log_sigmoid(logits_prior))
            + jnp.mean(jax.nn.log_sigmoid(-logits_posterior)))


def gumbel_softmax(rng: Array, logits: Array, temperature: float) -> Array:
    """Relaxed one-hot sample softmax((logits + g) / tau), g_j ~ Gumbel(0, 1) i.i.d.

    R-WAE Sec. 3.4 (Jang et al. 2016; Maddison et al. 2016): a~_j proportional to
    exp((log alpha_j + g_j) / tau). logits (..., A) may be unnormalised log-probabilities
    (softmax is shift-invariant) -> (..., A) on the simplex; tau -> 0 gives one-hot samples of
    Cat(softmax(logits)), tau -> inf the uniform vector 1/A.
    """
    g = jax.random.gumbel(rng, logits.shape, dtype=logits.dtype)
    return jax.nn.softmax((logits + g) / temperature, axis=-1)


def categorical_kl_uniform(logits: Array) -> Array:
    """KL(Cat(softmax(logits)) || Uniform(A)) = sum_j q_j log q_j + log A, (..., A) -> (...).

    The regulariser of the action variable a against its uniform prior (R-WAE Sec. 3.4). Uses
    log_softmax, so no log(0); entries with q_j = 0 (logit -inf) contribute 0, with finite
    gradients. In [0, log A].
    """
    log_q = jax.nn.log_softmax(logits, axis=-1)
    q = jnp.exp(log_q)
    safe_log_q = jnp.where(q > 0, log_q, 0.0)
    return jnp.sum(q * safe_log_q, axis=-1) + math.log(logits.shape[-1])
