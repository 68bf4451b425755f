"""InfoNCE (C-DSVAE eq. 7-8, SPYL eq. 6), the pairwise KL matrix (SPYL eq. 7) and the thirds
selection (SPYL Alg. 1) against direct numpy implementations and closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqdis_jax import estimators
from seqdis_jax.models import spyl


def _cos(a, b):
    return a @ b.T / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))


def _numpy_info_nce(anchor, positive, negatives, tau):
    """Eq. (7) one anchor at a time: log phi+ / (phi+ + sum phi-) + log(M + 1)."""
    values = []
    for u, v, negs in zip(anchor, positive, negatives):
        phi_pos = np.exp(_cos(u[None], v[None])[0, 0] / tau)
        phi_neg = np.exp(_cos(u[None], negs)[0] / tau)
        values.append(np.log(phi_pos / (phi_pos + phi_neg.sum())))
    return np.mean(values) + np.log(negatives.shape[1] + 1)


def test_info_nce_matches_numpy():
    rng = np.random.RandomState(0)
    anchor, positive = rng.randn(5, 7), rng.randn(5, 7)
    negatives = rng.randn(5, 9, 7)
    got = estimators.info_nce(jnp.array(anchor), jnp.array(positive), jnp.array(negatives), 0.5)
    np.testing.assert_allclose(float(got), _numpy_info_nce(anchor, positive, negatives, 0.5),
                               rtol=1e-5)


def test_paired_views_info_nce_matches_numpy_nt_xent():
    """(C(u) + C(v)) / 2 with the 2B - 2 other codes as negatives (C-DSVAE eq. 8)."""
    rng = np.random.RandomState(1)
    batch, tau = 6, 0.5
    u, v = rng.randn(batch, 4), rng.randn(batch, 4)
    codes = np.concatenate([u, v])
    terms = []
    for i in range(2 * batch):
        partner = (i + batch) % (2 * batch)
        others = [j for j in range(2 * batch) if j not in (i, partner)]
        terms.append(_numpy_info_nce(codes[i:i + 1], codes[partner:partner + 1],
                                     codes[others][None], tau))
    got = estimators.paired_views_info_nce(jnp.array(u), jnp.array(v), tau)
    np.testing.assert_allclose(float(got), np.mean(terms), rtol=1e-5, atol=1e-5)
    assert len(others) == 2 * batch - 2


def test_info_nce_bounded_by_log_candidates_and_tight_for_aligned_views():
    rng = np.random.RandomState(2)
    batch, dim = 16, 32
    # Random views: far below the bound.
    random = estimators.paired_views_info_nce(jnp.array(rng.randn(batch, dim)),
                                              jnp.array(rng.randn(batch, dim)))
    bound = math.log(2 * batch - 1)
    assert float(random) < bound - 1.0
    # Aligned, well separated views (orthogonal codes, tiny noise) approach log(2B - 1): at
    # tau = 0.05 the negatives' share e^{-20} is negligible.
    codes = np.eye(dim)[:batch] * 3.0
    aligned = estimators.paired_views_info_nce(
        jnp.array(codes), jnp.array(codes + 1e-3 * rng.randn(batch, dim)), temperature=0.05)
    assert bound - 1e-3 < float(aligned) <= bound + 1e-6
    # Never above the bound, whatever the inputs.
    for seed in range(5):
        r = np.random.RandomState(seed)
        value = estimators.info_nce(jnp.array(r.randn(4, 3)), jnp.array(r.randn(4, 3)),
                                    jnp.array(r.randn(4, 6, 3)), 0.1)
        assert float(value) <= math.log(7) + 1e-6


def test_kl_matrix_equals_elementwise_closed_form():
    rng = np.random.RandomState(3)
    mean, logvar = rng.randn(7, 5), 0.5 * rng.randn(7, 5)
    got = np.asarray(estimators.kl_matrix(jnp.array(mean), jnp.array(logvar)))
    expected = np.zeros((7, 7))
    for i in range(7):
        for j in range(7):
            var_i, var_j = np.exp(logvar[i]), np.exp(logvar[j])
            expected[i, j] = 0.5 * np.sum(np.log(var_j / var_i)
                                          + (var_i + (mean[i] - mean[j]) ** 2) / var_j - 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.diag(got), 0.0, atol=1e-4)
    assert (got >= 0).all()
    assert not np.allclose(got, got.T)  # KL is not symmetric
    # Cross matrix (anchors against a bank), as the `code` views use.
    bank_mean, bank_logvar = rng.randn(3, 5), rng.randn(3, 5)
    cross = np.asarray(estimators.kl_matrix(jnp.array(mean), jnp.array(logvar),
                                            jnp.array(bank_mean), jnp.array(bank_logvar)))
    var_b = np.exp(bank_logvar)
    expect_02 = 0.5 * np.sum(np.log(var_b[2] / np.exp(logvar[0]))
                             + (np.exp(logvar[0]) + (mean[0] - bank_mean[2]) ** 2) / var_b[2] - 1)
    np.testing.assert_allclose(cross[0, 2], expect_02, rtol=1e-4)


def test_third_bounds_follow_algorithm_1():
    # n = 9: omega = chi[:3], middle chi[3:6], rho = chi[6:].
    assert estimators.third_bounds(9, "closest") == (0, 3)
    assert estimators.third_bounds(9, "middle") == (3, 6)
    assert estimators.third_bounds(9, "farthest") == (6, 9)
    assert estimators.third_bounds(9, "middle_farthest") == (3, 9)
    assert estimators.third_bounds(9, "random") == (1, 9)
    with pytest.raises(ValueError, match="Unknown selection"):
        estimators.third_bounds(9, "nearest")


def test_sample_by_rank_on_a_hand_made_matrix():
    # Row i: distance to j is |i - j| (anchor itself at 0); n = 6 -> thirds of 2.
    n = 6
    distances = jnp.abs(jnp.arange(n)[:, None] - jnp.arange(n)[None, :]).astype(jnp.float32)
    distances = distances + 1e-3 * jnp.arange(n)[None, :]  # break ties: lower j first
    order = np.argsort(np.asarray(distances), axis=1)
    rng = jax.random.PRNGKey(0)
    for which in ("closest", "middle", "farthest"):
        picks = np.asarray(estimators.sample_by_rank(rng, distances, which, 200))
        lo, hi = estimators.third_bounds(n, which)
        for i in range(n):
            assert set(picks[i]) == set(order[i, lo:hi]), (which, i)
    # Row 0's two farthest are 5 and 4; its closest are itself and 1.
    far = np.asarray(estimators.sample_by_rank(rng, distances, "farthest", 100))
    assert set(far[0]) == {4, 5}
    near = np.asarray(estimators.sample_by_rank(rng, distances, "closest", 100))
    assert set(near[0]) == {0, 1}


def test_pool_indices_address_views_of_the_selected_sequences():
    n, k = 6, 3
    distances = jnp.abs(jnp.arange(n)[:, None] - jnp.arange(n)[None, :]).astype(jnp.float32)
    distances = distances + 1e-3 * jnp.arange(n)[None, :]
    positive, negative = spyl.pool_indices(jax.random.PRNGKey(1), distances, "farthest", k, 2 * n)
    positive, negative = np.asarray(positive), np.asarray(negative)
    assert positive.shape == (n,) and negative.shape == (n, 2 * n)
    order = np.argsort(np.asarray(distances), axis=1)
    for i in range(n):
        assert positive[i] // k in order[i, :2]
        assert set(negative[i] // k) <= set(order[i, 4:])
    assert set(negative.reshape(-1) % k) == set(range(k))  # every view slot is used


def test_pool_info_nce_equals_info_nce_on_gathered_views():
    rng = np.random.RandomState(4)
    anchor, pool = rng.randn(4, 5), rng.randn(12, 5)
    positive = np.array([0, 3, 7, 11])
    negative = rng.randint(0, 12, (4, 8))
    got = spyl.pool_info_nce(jnp.array(anchor), jnp.array(pool), jnp.array(positive),
                             jnp.array(negative), 0.5)
    expected = _numpy_info_nce(anchor, pool[positive], pool[negative], 0.5)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
