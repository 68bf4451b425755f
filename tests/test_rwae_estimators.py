"""R-WAE estimators (Han et al. 2021, App. D and Sec. 3.4) and the spectrally normalised latent
critic (App. G) against plain-numpy references, closed forms and sampling checks."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqdis_jax import estimators
from seqdis_jax.nn.critic import LatentCritic

BANDWIDTHS = estimators.DEFAULT_MMD_BANDWIDTHS


# --- numpy references (float64, double loops) ---------------------------------------------------


def _np_kernel(a, b, bandwidths):
    return sum(np.exp(-np.sum((a - b) ** 2) / (2.0 * s**2)) for s in bandwidths)


def _np_gram(x, y, bandwidths):
    return np.array([[_np_kernel(xi, yj, bandwidths) for yj in y] for xi in x])


def _np_mmd_unbiased(x, y, bandwidths):
    """Gretton et al. (2012) U-statistic, one pair at a time."""
    n, m = len(x), len(y)
    kxx = sum(_np_kernel(x[i], x[j], bandwidths) for i in range(n) for j in range(n) if i != j)
    kyy = sum(_np_kernel(y[i], y[j], bandwidths) for i in range(m) for j in range(m) if i != j)
    kxy = sum(_np_kernel(x[i], y[j], bandwidths) for i in range(n) for j in range(m))
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)


def _v_statistic(x, y, bandwidths):
    """Biased MMD^2 (V-statistic, diagonals kept), for contrast with the unbiased estimate."""
    kxx = estimators.rbf_mixture_kernel(x, x, bandwidths)
    kyy = estimators.rbf_mixture_kernel(y, y, bandwidths)
    kxy = estimators.rbf_mixture_kernel(x, y, bandwidths)
    return jnp.mean(kxx) + jnp.mean(kyy) - 2.0 * jnp.mean(kxy)


# --- RBF mixture kernel and MMD (eq. 21) ---------------------------------------------------------


def test_rbf_mixture_kernel_matches_numpy():
    rng = np.random.RandomState(0)
    x, y = rng.randn(6, 3), 2.0 * rng.randn(4, 3)
    got = estimators.rbf_mixture_kernel(jnp.array(x), jnp.array(y), BANDWIDTHS)
    assert got.shape == (6, 4)
    np.testing.assert_allclose(np.asarray(got), _np_gram(x, y, BANDWIDTHS), rtol=1e-5, atol=1e-6)
    # k(x, x) = number of kernels in the mixture; a single bandwidth is a plain RBF.
    self_gram = estimators.rbf_mixture_kernel(jnp.array(x), jnp.array(x), BANDWIDTHS)
    np.testing.assert_allclose(np.diag(self_gram), len(BANDWIDTHS), rtol=1e-6)
    single = estimators.rbf_mixture_kernel(jnp.array(x), jnp.array(y), (0.7,))
    np.testing.assert_allclose(np.asarray(single), _np_gram(x, y, (0.7,)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n,m", [(7, 7), (5, 9)])
def test_mmd_unbiased_matches_numpy_double_loop(n, m):
    rng = np.random.RandomState(n + m)
    x, y = rng.randn(n, 4), 0.5 + 1.5 * rng.randn(m, 4)
    expected = _np_mmd_unbiased(x, y, BANDWIDTHS)
    got = estimators.mmd_unbiased(jnp.array(x), jnp.array(y), BANDWIDTHS)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-5)
    with jax.enable_x64(True):  # the same formula in float64 agrees to rounding
        got64 = jax.jit(estimators.mmd_unbiased, static_argnums=2)(
            jnp.array(x), jnp.array(y), BANDWIDTHS)
        assert got64.dtype == jnp.float64
        np.testing.assert_allclose(float(got64), expected, rtol=1e-10, atol=1e-12)


def test_mmd_same_distribution_is_zero_and_grows_with_mean_shift():
    dim, n = 4, 500
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (n, dim))
    noise = jax.random.normal(ky, (n, dim))
    mmd = jax.jit(estimators.mmd_unbiased, static_argnums=2)
    values = [float(mmd(x, noise + shift, BANDWIDTHS)) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.02, values
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[1] > 0.1 and values[-1] > 1.0, values


def test_mmd_unbiased_is_unbiased_and_v_statistic_is_not():
    """Average over 4000 independent small draws (n = 8, m = 6) of one distribution: the
    U-statistic averages to 0 within its standard error, the V-statistic is clearly positive."""
    draws, n, m, dim = 4000, 8, 6, 2
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    xs = jax.random.normal(kx, (draws, n, dim))
    ys = jax.random.normal(ky, (draws, m, dim))
    unbiased = np.asarray(jax.vmap(lambda a, b: estimators.mmd_unbiased(a, b, BANDWIDTHS))(xs, ys))
    biased = np.asarray(jax.vmap(lambda a, b: _v_statistic(a, b, BANDWIDTHS))(xs, ys))
    se = unbiased.std() / math.sqrt(draws)
    assert abs(unbiased.mean()) < 3.0 * se, (unbiased.mean(), se)
    assert unbiased.min() < 0.0  # an unbiased estimate of 0 must go negative sometimes
    assert biased.mean() > 10.0 * se and biased.min() > 0.0, (biased.mean(), se)


def test_paired_mmd_skips_dependent_pairs_and_stays_unbiased():
    """R-WAE's d_t: sample i of the posterior and of the teacher-forced prior share a history,
    so (x_i, y_i) are dependent. The paired U-statistic leaves the (i, i) cross terms out: it
    matches a numpy double loop and averages to 0 for one distribution, where the unpaired
    estimate is biased below 0 by the pairs' correlation."""
    rng = np.random.RandomState(5)
    x, y = rng.randn(7, 3), rng.randn(7, 3)
    n = len(x)
    kxx = sum(_np_kernel(x[i], x[j], BANDWIDTHS) for i in range(n) for j in range(n) if i != j)
    kyy = sum(_np_kernel(y[i], y[j], BANDWIDTHS) for i in range(n) for j in range(n) if i != j)
    kxy = sum(_np_kernel(x[i], y[j], BANDWIDTHS) for i in range(n) for j in range(n) if i != j)
    expected = (kxx + kyy - 2.0 * kxy) / (n * (n - 1))
    got = estimators.mmd_unbiased(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                  BANDWIDTHS, paired=True)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-5)

    draws, n, dim = 4000, 8, 2
    kh, kx, ky = jax.random.split(jax.random.PRNGKey(2), 3)
    history = jax.random.normal(kh, (draws, n, dim))  # shared by x_i and y_i
    xs = history + 0.3 * jax.random.normal(kx, (draws, n, dim))
    ys = history + 0.3 * jax.random.normal(ky, (draws, n, dim))
    mmd = lambda paired: np.asarray(jax.vmap(
        lambda a, b: estimators.mmd_unbiased(a, b, BANDWIDTHS, paired=paired))(xs, ys))
    paired, unpaired = mmd(True), mmd(False)
    se = paired.std() / math.sqrt(draws)
    assert abs(paired.mean()) < 3.0 * se, (paired.mean(), se)
    assert unpaired.mean() < -10.0 * se, (unpaired.mean(), se)
    with pytest.raises(ValueError, match="as many"):
        estimators.mmd_unbiased(xs[0], ys[0, :5], BANDWIDTHS, paired=True)


def test_mmd_unbiased_per_step_matches_per_step_calls():
    rng = np.random.RandomState(3)
    x = jnp.array(rng.randn(16, 5, 3), jnp.float32)
    y = jnp.array(0.3 * np.arange(5)[None, :, None] + rng.randn(12, 5, 3), jnp.float32)
    got = jax.jit(estimators.mmd_unbiased_per_step, static_argnums=2)(x, y, BANDWIDTHS)
    assert got.shape == (5,)
    mmd = jax.jit(estimators.mmd_unbiased, static_argnums=2)
    expected = [float(mmd(x[:, t], y[:, t], BANDWIDTHS)) for t in range(5)]
    # float32 rounding of sums of O(len(BANDWIDTHS)) kernel values that largely cancel
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=2e-5)
    grad = jax.jit(jax.grad(lambda a: jnp.sum(estimators.mmd_unbiased_per_step(a, y, BANDWIDTHS))))
    assert jnp.all(jnp.isfinite(grad(x)))


# --- scaled MMD (App. D) -----------------------------------------------------------------------


def test_scaled_mmd_matches_numpy():
    rng = np.random.RandomState(4)
    fq, fp = rng.randn(9), 0.4 + rng.randn(11)
    grad_sq = 0.3
    expected = _np_mmd_unbiased(fq[:, None], fp[:, None], (1.0,)) / (1.0 + 10.0 * grad_sq)
    for shape_q, shape_p in [((9,), (11,)), ((9, 1), (11, 1))]:
        got = estimators.scaled_mmd(jnp.array(fq.reshape(shape_q)),
                                    jnp.array(fp.reshape(shape_p)), jnp.float32(grad_sq))
        np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-6)
    got_scale = estimators.scaled_mmd(jnp.array(fq), jnp.array(fp), 0.3, scale=2.0)
    np.testing.assert_allclose(float(got_scale), expected * 4.0 / 1.6, rtol=1e-4, atol=1e-6)


# --- gradient penalty: mean ||grad f||^2, double backprop, interpolates (eq. 24) ----------------


def _tanh_fn(w, z):
    return jnp.sum(jnp.tanh(w @ z) ** 2) + jnp.sin(z[0])


def test_mean_gradient_sq_norm_matches_finite_differences():
    rng = np.random.RandomState(5)
    with jax.enable_x64(True):
        w = jnp.array(rng.randn(3, 4))
        z = jnp.array(rng.randn(6, 4))
        fn = jax.jit(lambda zi: _tanh_fn(w, zi))
        got = estimators.mean_gradient_sq_norm(fn, z)
        eps, eye = 1e-6, np.eye(4)
        fd = np.array([[(fn(zi + eps * e) - fn(zi - eps * e)) / (2 * eps) for e in eye]
                       for zi in z])
        np.testing.assert_allclose(float(got), np.mean(np.sum(fd**2, axis=1)), rtol=1e-7)


def test_mean_gradient_sq_norm_of_linear_fn_is_squared_weight_norm():
    w = jnp.array([0.5, -2.0, 3.0, 0.25])
    z = jax.random.normal(jax.random.PRNGKey(2), (10, 4))
    got = estimators.mean_gradient_sq_norm(lambda zi: jnp.dot(w, zi), z)
    np.testing.assert_allclose(float(got), float(jnp.sum(w**2)), rtol=1e-6)


def test_mean_gradient_sq_norm_double_backprop_matches_finite_differences():
    """d/dw of E||grad_z f_w(z)||^2 (the gradient penalty's gradient w.r.t. critic params)."""
    rng = np.random.RandomState(6)
    with jax.enable_x64(True):
        w = jnp.array(rng.randn(3, 4))
        z = jnp.array(rng.randn(6, 4))
        penalty = jax.jit(
            lambda w_: estimators.mean_gradient_sq_norm(lambda zi: _tanh_fn(w_, zi), z))
        grad = np.asarray(jax.grad(penalty)(w))
        assert np.all(np.isfinite(grad)) and np.any(grad != 0.0)
        eps, fd = 1e-6, np.zeros_like(grad)
        for idx in np.ndindex(*grad.shape):
            dw = np.zeros(grad.shape)
            dw[idx] = eps
            fd[idx] = (penalty(w + dw) - penalty(w - dw)) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_interpolates_lie_on_segment_with_one_alpha_per_row():
    ka, kb, kr = jax.random.split(jax.random.PRNGKey(3), 3)
    a = jax.random.normal(ka, (64, 5))
    b = 3.0 + jax.random.normal(kb, (64, 5))
    out = estimators.interpolates(kr, a, b)
    assert out.shape == a.shape
    alpha = np.asarray((out - b) / (a - b))  # (64, 5): must be constant along features
    np.testing.assert_allclose(alpha, np.repeat(alpha[:, :1], 5, axis=1), atol=1e-4)
    assert alpha.min() >= -1e-5 and alpha.max() <= 1.0 + 1e-5
    assert np.unique(np.round(alpha[:, 0], 4)).size > 50  # drawn per row, not shared
    assert 0.3 < alpha.mean() < 0.7
    # Higher-rank samples (n, T, D): one alpha per sample, shared over the other axes.
    a3 = jnp.zeros((8, 2, 3))
    out3 = np.asarray(estimators.interpolates(kr, a3, jnp.ones((8, 2, 3))))
    np.testing.assert_allclose(out3, np.broadcast_to(out3[:, :1, :1], out3.shape))


# --- JS discriminator objective (eq. 23) ---------------------------------------------------------


def test_js_discriminator_objective_matches_numpy_and_chance_value():
    rng = np.random.RandomState(7)
    lp, lq = rng.randn(10), rng.randn(13)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    expected = np.mean(np.log(sig(lp))) + np.mean(np.log(1.0 - sig(lq)))
    got = estimators.js_discriminator_objective(jnp.array(lp), jnp.array(lq))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    chance = estimators.js_discriminator_objective(jnp.zeros(5), jnp.zeros(7))
    np.testing.assert_allclose(float(chance), 2.0 * math.log(0.5), rtol=1e-6)
    # Stable for saturated logits: log(1 - sigmoid(100)) = -100, no -inf / nan.
    sat = estimators.js_discriminator_objective(jnp.array([-100.0]), jnp.array([100.0]))
    np.testing.assert_allclose(float(sat), -200.0, rtol=1e-5)
    g = jax.grad(estimators.js_discriminator_objective, argnums=(0, 1))(
        jnp.array([-100.0]), jnp.array([100.0]))
    assert all(np.all(np.isfinite(x)) for x in g)


# --- Gumbel-softmax and the categorical KL (Sec. 3.4) --------------------------------------------


def test_gumbel_softmax_on_simplex_and_shift_invariant():
    logits = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    rng = jax.random.PRNGKey(4)
    a = estimators.gumbel_softmax(rng, jnp.broadcast_to(logits, (100, 4)), 0.5)
    assert a.shape == (100, 4)
    assert float(a.min()) >= 0.0
    np.testing.assert_allclose(np.asarray(a.sum(-1)), 1.0, rtol=1e-5)
    # Unnormalised log-probabilities give the same sample.
    b = estimators.gumbel_softmax(rng, jnp.broadcast_to(logits + 7.0, (100, 4)), 0.5)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_gumbel_softmax_low_temperature_samples_the_categorical():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    logits = jnp.broadcast_to(jnp.log(jnp.array(probs)) + 1.3, (20000, 4))
    a = np.asarray(estimators.gumbel_softmax(jax.random.PRNGKey(5), logits, 0.01))
    assert np.mean(a.max(-1) > 0.99) > 0.95
    freq = np.bincount(a.argmax(-1), minlength=4) / len(a)
    np.testing.assert_allclose(freq, probs, atol=0.02)


def test_gumbel_softmax_high_temperature_is_near_uniform():
    logits = jnp.broadcast_to(jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4])), (2000, 4))
    a = np.asarray(estimators.gumbel_softmax(jax.random.PRNGKey(6), logits, 1000.0))
    np.testing.assert_allclose(a, 0.25, atol=0.01)
    np.testing.assert_allclose(a.mean(0), 0.25, atol=1e-3)


def test_categorical_kl_uniform_matches_numpy_and_limits():
    rng = np.random.RandomState(8)
    logits = rng.randn(5, 6) * 2.0
    q = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.sum(q * np.log(q), -1) + np.log(6)
    got = estimators.categorical_kl_uniform(jnp.array(logits))
    assert got.shape == (5,)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(estimators.categorical_kl_uniform(jnp.full((6,), 3.0))),
                               0.0, atol=1e-6)
    one_hot = jnp.array([200.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(float(estimators.categorical_kl_uniform(one_hot)), math.log(6),
                               rtol=1e-6)
    # Exactly-zero probabilities (masked logits): finite value and gradient.
    masked = jnp.array([1.0, 2.0, -jnp.inf])
    q2 = np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()
    np.testing.assert_allclose(float(estimators.categorical_kl_uniform(masked)),
                               np.sum(q2 * np.log(q2)) + np.log(3), rtol=1e-5)
    grad = jax.grad(lambda lg: estimators.categorical_kl_uniform(lg))(masked)
    assert np.all(np.isfinite(np.asarray(grad)))


# --- LatentCritic (App. G) with spectral normalisation ------------------------------------------


@functools.cache
def _converged_critic(dim=8, steps=200):
    """Init and run `steps` power-iteration updates (one per call, update_stats=True). The
    256 x 256 kernel's top singular values are close, so power iteration needs ~150 steps to
    reach 1e-3 relative accuracy (about 1e-2 after 50)."""
    critic = LatentCritic()
    z = jax.random.normal(jax.random.PRNGKey(7), (4, dim))
    variables = critic.init(jax.random.PRNGKey(8), z)

    @jax.jit
    def update(batch_stats):
        _, new = critic.apply({"params": variables["params"], "batch_stats": batch_stats}, z,
                              update_stats=True, mutable=["batch_stats"])
        return new["batch_stats"]

    batch_stats = jax.lax.fori_loop(0, steps, lambda _, bs: update(bs), variables["batch_stats"])
    return critic, {"params": variables["params"], "batch_stats": batch_stats}


def test_latent_critic_shapes_and_plain_variant():
    z = jnp.ones((5, 8))
    critic = LatentCritic()
    variables = critic.init(jax.random.PRNGKey(0), z)
    assert critic.apply(variables, z).shape == (5,)
    assert critic.apply(variables, z[:1]).shape == (1,)  # single sample, for the penalty fn
    shapes = jax.tree_util.tree_map(jnp.shape, variables["params"])
    assert [shapes[f"dense_{i}"]["kernel"] for i in range(4)] == [
        (8, 256), (256, 256), (256, 128), (128, 1)]
    plain = LatentCritic(spectral_norm=False)
    plain_vars = plain.init(jax.random.PRNGKey(0), z)
    assert "batch_stats" not in plain_vars
    assert plain.apply(plain_vars, z).shape == (5,)


def test_latent_critic_spectral_norm_converges_to_one():
    _, variables = _converged_critic()
    for i in range(4):
        kernel = np.asarray(variables["params"][f"dense_{i}"]["kernel"], np.float64)
        stats = variables["batch_stats"][f"spectral_norm_{i}"]
        sigma = float(stats[f"dense_{i}/kernel/sigma"])
        top = np.linalg.svd(kernel / sigma, compute_uv=False)[0]
        assert 0.99 <= top <= 1.0 + 1e-3, (i, top)
        # What the forward pass uses: one more power iteration from the stored u.
        u = np.asarray(stats[f"dense_{i}/kernel/u"], np.float64)
        v = u @ kernel.T
        v /= np.linalg.norm(v)
        u = v @ kernel
        u /= np.linalg.norm(u)
        used = float((v @ kernel @ u.T)[0, 0])
        assert 0.99 <= np.linalg.svd(kernel / used, compute_uv=False)[0] <= 1.0 + 1e-3


def test_latent_critic_is_one_lipschitz():
    critic, variables = _converged_critic()
    fn = lambda zi: critic.apply(variables, zi[None])[0]
    z = 3.0 * jax.random.normal(jax.random.PRNGKey(9), (256, 8))
    grad_norms = np.linalg.norm(np.asarray(jax.jit(jax.vmap(jax.grad(fn)))(z)), axis=1)
    assert grad_norms.max() <= 1.0 + 1e-3, grad_norms.max()
    assert grad_norms.min() > 0.0
    # Finite differences: |f(a) - f(b)| <= ||a - b|| for distant pairs too.
    w = 5.0 * jax.random.normal(jax.random.PRNGKey(10), (256, 8))
    ratio = np.abs(np.asarray(critic.apply(variables, z) - critic.apply(variables, w)))
    ratio /= np.linalg.norm(np.asarray(z - w), axis=1)
    assert ratio.max() <= 1.0 + 1e-3, ratio.max()
    # mean_gradient_sq_norm on the critic is the mean of these squared norms.
    np.testing.assert_allclose(float(estimators.mean_gradient_sq_norm(fn, z)),
                               np.mean(grad_norms**2), rtol=1e-5)


def test_latent_critic_lipschitz_bound_is_tight_for_aligned_rank_one_kernels():
    """Kernels c * a_i a_{i+1}^T (positive unit vectors a_i) with large biases keep every
    leaky_relu in its linear regime, so grad f = c^4 a_0 without spectral normalisation and
    exactly a_0 (norm 1) with it: the bound is attained, and SN is what enforces it."""
    dims = (8, 256, 256, 128, 1)
    rng = np.random.RandomState(12)
    unit = [np.abs(rng.rand(d)) + 0.1 for d in dims]
    unit = [a / np.linalg.norm(a) for a in unit]
    params = {f"dense_{i}": {"kernel": jnp.array(3.0 * np.outer(unit[i], unit[i + 1]),
                                                 jnp.float32),
                             "bias": jnp.full((dims[i + 1],), 10.0 if i < 3 else 0.0)}
              for i in range(4)}
    z = jax.random.normal(jax.random.PRNGKey(13), (16, 8))
    for spectral_norm, expected in [(True, 1.0), (False, 3.0**4)]:
        critic = LatentCritic(spectral_norm=spectral_norm)
        variables = dict(critic.init(jax.random.PRNGKey(0), z), params=params)
        if spectral_norm:  # rank one: a single power iteration is exact
            _, new = critic.apply(variables, z, update_stats=True, mutable=["batch_stats"])
            variables["batch_stats"] = new["batch_stats"]
        fn = lambda zi, vs=variables, c=critic: c.apply(vs, zi[None])[0]
        grads = np.asarray(jax.jit(jax.vmap(jax.grad(fn)))(z))
        np.testing.assert_allclose(grads, np.broadcast_to(expected * unit[0], grads.shape),
                                   rtol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(grads, axis=1), expected, rtol=1e-4)


def test_scaled_mmd_with_critic_double_backprop_is_finite():
    """The R-WAE(MMD) critic loss path: gradient w.r.t. the critic params of the scaled MMD,
    whose denominator holds the input-gradient penalty of the same critic."""
    critic, variables = _converged_critic()
    kq, kp = jax.random.split(jax.random.PRNGKey(11))
    zq = 1.0 + jax.random.normal(kq, (32, 8))
    zp = jax.random.normal(kp, (32, 8))

    def loss(params):
        vs = {"params": params, "batch_stats": variables["batch_stats"]}
        fn = lambda zi: critic.apply(vs, zi[None])[0]
        penalty = estimators.mean_gradient_sq_norm(fn, zp)
        return -estimators.scaled_mmd(critic.apply(vs, zq), critic.apply(vs, zp), penalty)

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    leaves = jax.tree_util.tree_leaves(grads)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert any(np.any(np.asarray(g) != 0.0) for g in leaves)
