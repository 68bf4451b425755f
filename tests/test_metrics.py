"""Metrics and estimators against closed forms and hand computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqdis_jax import estimators, metrics


def test_judge_scores_on_hand_made_tables():
    # Confident and uniform marginal: IS = K, H(y|x) = 0, H(y) = log K, accuracy from argmax.
    probs = np.eye(4, dtype=np.float32)
    scores = jax.device_get(metrics.judge_scores(probs, np.array([0, 1, 2, 0])))
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["inception_score"] == pytest.approx(4.0, rel=1e-5)
    assert scores["entropy_y_given_x"] == pytest.approx(0.0, abs=1e-5)
    assert scores["entropy_y"] == pytest.approx(math.log(4), rel=1e-5)
    # Every prediction uniform: IS = 1, H(y|x) = H(y) = log K.
    uniform = np.full((5, 3), 1 / 3, np.float32)
    scores = jax.device_get(metrics.judge_scores(uniform, np.zeros(5, int)))
    assert scores["inception_score"] == pytest.approx(1.0, rel=1e-5)
    assert scores["entropy_y_given_x"] == pytest.approx(math.log(3), rel=1e-5)
    assert scores["entropy_y"] == pytest.approx(math.log(3), rel=1e-5)
    # A 2x2 table computed by hand: p(y|x1) = (0.9, 0.1), p(y|x2) = (0.3, 0.7).
    table = np.array([[0.9, 0.1], [0.3, 0.7]], np.float32)
    marginal = table.mean(0)
    kl = np.sum(table * np.log(table / marginal), axis=1)
    scores = jax.device_get(metrics.judge_scores(table, np.array([0, 0])))
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["inception_score"] == pytest.approx(np.exp(kl.mean()), rel=1e-5)
    assert scores["entropy_y_given_x"] == pytest.approx(
        -np.mean(np.sum(table * np.log(table), 1)), rel=1e-5)
    assert scores["entropy_y"] == pytest.approx(-np.sum(marginal * np.log(marginal)), rel=1e-5)


def _first_k_of_each_class(labels, k):
    """Plain reference: per class present, its first k indices; all of them, ascending."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in np.unique(labels)]))


def test_balanced_subset_takes_the_first_k_of_each_class_in_order():
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 2, 5, 7], size=200, p=[0.4, 0.3, 0.2, 0.1])  # 1, 3, 4, 6 absent
    smallest = np.bincount(labels)[[0, 2, 5, 7]].min()
    for k in (1, 3, smallest):
        got = metrics.balanced_subset(labels, k)
        np.testing.assert_array_equal(got, _first_k_of_each_class(labels, k))
        assert np.all(np.diff(got) > 0)  # dataset order kept
        assert np.all(np.bincount(labels[got], minlength=8)[[0, 2, 5, 7]] == k)
    np.testing.assert_array_equal(metrics.balanced_subset(labels, metrics.SMALLEST_CLASS),
                                  _first_k_of_each_class(labels, smallest))
    balanced = np.repeat(np.arange(3), 4)  # already balanced: everything, in order
    np.testing.assert_array_equal(metrics.balanced_subset(balanced, -1), np.arange(12))
    np.testing.assert_array_equal(metrics.balanced_subset(np.array([2, 1, 2, 2, 1, 0]), 1),
                                  [0, 1, 5])


def test_balanced_subset_refuses_a_class_too_small():
    labels = np.array([0, 0, 0, 1, 1, 2, 0, 1])
    with pytest.raises(metrics.ClassTooSmallError,
                       match=r"1 of the 3 classes have fewer than 3 sequences \(class: count "
                             r"\{2: 1\}; 8 sequences in all\)"):
        metrics.balanced_subset(labels, 3)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="per_class must be >= 1"):
            metrics.balanced_subset(labels, bad)


def _authors_scores(p_yx, eps=1e-16):
    """IS, H(y|x), H(y) as the authors' numpy code computes them (C-DSVAE test_sprite_cls.py
    `inception_score`, `entropy_Hyx`, `entropy_Hy`, eps 1e-16)."""
    p_y = p_yx.mean(axis=0, keepdims=True)
    inception = np.exp(np.mean(np.sum(p_yx * (np.log(p_yx + eps) - np.log(p_y + eps)), 1)))
    return dict(inception_score=inception,
                entropy_y_given_x=-np.mean(np.sum(p_yx * np.log(p_yx + eps), axis=1)),
                entropy_y=-np.sum(p_y * np.log(p_y + eps)))


def test_judge_scores_on_the_balanced_subset_match_the_authors_formulas():
    rng = np.random.default_rng(1)
    labels = rng.choice(6, size=300, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    logits = rng.normal(size=(300, 6)) + 6.0 * np.eye(6)[labels]
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    probs[:5] = np.eye(6, dtype=np.float32)[labels[:5]]  # exact zeros: the eps matters there
    index = metrics.balanced_subset(labels, -1)
    got = jax.device_get(metrics.judge_scores(probs[index], labels[index]))
    want = _authors_scores(probs[index].astype(np.float64))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    # The subset changes the scores: the full table's marginal is not uniform.
    full = jax.device_get(metrics.judge_scores(probs, labels))
    assert full["entropy_y"] < got["entropy_y"] - 0.05
    assert full["entropy_y"] == pytest.approx(_authors_scores(probs)["entropy_y"], rel=1e-5)


def test_eer_closed_cases():
    targets = np.array([1, 1, 1, 0, 0, 0], bool)
    assert metrics.equal_error_rate(np.array([6, 5, 4, 3, 2, 1.0]), targets) == 0.0
    rng = np.random.default_rng(0)
    same = rng.normal(size=20000)
    scores = np.concatenate([same, rng.normal(size=20000)])
    labels = np.concatenate([np.ones(20000, bool), np.zeros(20000, bool)])
    assert metrics.equal_error_rate(scores, labels) == pytest.approx(0.5, abs=0.02)
    # Hand case: targets score (0.9, 0.6, 0.3), non-targets (0.8, 0.2, 0.1). At threshold 0.6
    # one of three non-targets is accepted and one of three targets is rejected: EER = 1/3.
    scores = np.array([0.9, 0.6, 0.3, 0.8, 0.2, 0.1])
    assert metrics.equal_error_rate(scores, targets) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="both target"):
        metrics.equal_error_rate(scores, np.ones(6, bool))


def test_verification_eer_separates_identities():
    rng = np.random.default_rng(1)
    identity = np.repeat(np.arange(5), 10)
    centres = rng.normal(size=(5, 16)) * 5
    vectors = centres[identity] + rng.normal(size=(50, 16)) * 0.1
    assert metrics.verification_eer(vectors, identity) == 0.0
    noise = rng.normal(size=(50, 16))
    assert metrics.verification_eer(noise, identity) > 0.3


def test_gaussian_log_density_matrix_matches_numpy():
    rng = np.random.default_rng(2)
    z, mean, logvar = rng.normal(size=(3, 2, 6, 4)).astype(np.float32)
    got = np.asarray(estimators.gaussian_log_density_matrix(z, mean, logvar))
    var = np.exp(logvar)
    want = -0.5 * np.sum(
        (z[:, :, None, :] - mean[:, None, :, :]) ** 2 / var[:, None, :, :]
        + logvar[:, None, :, :] + np.log(2 * np.pi), axis=-1)
    assert got.shape == (2, 6, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _correlated_posteriors(rho, batch, sigma=0.5, tau=1.0, seed=0):
    """q(s|x_i) = N(a_i, sigma^2), q(d_t|x_i) = N(b_i, sigma^2) (T = 1), (a_i, b_i) jointly
    Gaussian with variance tau^2 and correlation rho."""
    key = jax.random.PRNGKey(seed)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    a = tau * jax.random.normal(k1, (batch, 1))
    b = rho * a + tau * math.sqrt(1 - rho**2) * jax.random.normal(k2, (batch, 1))
    logvar = jnp.full((batch, 1), 2 * math.log(sigma))
    s = a + sigma * jax.random.normal(k3, (batch, 1))
    d = (b + sigma * jax.random.normal(k4, (batch, 1)))[:, None, :]
    return s, a, logvar, d, b[:, None, :], logvar[:, None, :]


def test_mws_mutual_information_matches_gaussian_closed_forms():
    sigma, tau, rho = 0.5, 1.0, 0.9
    mi = jax.device_get(estimators.mws_mutual_information(
        *_correlated_posteriors(rho, 4000, sigma, tau)))
    total = tau**2 + sigma**2
    mi_s_x = 0.5 * math.log(total / sigma**2)  # = I(d; x)
    r = rho * tau**2 / total  # correlation of the aggregate (s, d)
    mi_s_d = -0.5 * math.log(1 - r**2)
    assert mi["mi_s_x"] == pytest.approx(mi_s_x, rel=0.1)
    assert mi["mi_d_x"] == pytest.approx(mi_s_x, rel=0.1)
    assert mi["mi_s_d"] == pytest.approx(mi_s_d, rel=0.1)
    independent = jax.device_get(estimators.mws_mutual_information(
        *_correlated_posteriors(0.0, 4000, sigma, tau, seed=1)))
    assert abs(independent["mi_s_d"]) < 0.03
    # eq. (13) as printed (log NM) biases every estimate by +log N.
    printed = jax.device_get(estimators.mws_mutual_information(
        *_correlated_posteriors(rho, 4000, sigma, tau), dataset_size=100))
    assert printed["mi_s_d"] == pytest.approx(mi["mi_s_d"] + math.log(100), rel=1e-4)


def test_mws_sums_log_densities_over_time():
    s, s_mean, s_logvar, _, _, _ = _correlated_posteriors(0.5, 64)
    key = jax.random.PRNGKey(3)
    d_mean = jax.random.normal(key, (64, 5, 2))
    d_logvar = jnp.full((64, 5, 2), -1.0)
    d = d_mean + 0.3 * jax.random.normal(jax.random.PRNGKey(4), d_mean.shape)
    mi = estimators.mws_mutual_information(s, s_mean, s_logvar, d, d_mean, d_logvar)
    # Flattening time into the dimension axis is the same Gaussian.
    flat = estimators.mws_mutual_information(
        s, s_mean, s_logvar, d.reshape(64, 1, 10), d_mean.reshape(64, 1, 10),
        d_logvar.reshape(64, 1, 10))
    for k in mi:
        assert float(mi[k]) == pytest.approx(float(flat[k]), rel=1e-4, abs=1e-4)


def test_latent_classification_separated_and_noise():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 50)
    separated = np.eye(4)[labels] * 10 + rng.normal(size=(200, 4)) * 0.1
    result = metrics.latent_classification(separated, labels, seeds=(0, 1))
    for mean, std in result.values():
        assert mean == pytest.approx(1.0) and std == pytest.approx(0.0)
    noise = rng.normal(size=(200, 4))
    result = metrics.latent_classification(noise, labels, seeds=(0, 1, 2))
    for mean, _ in result.values():
        assert 0.05 < mean < 0.5  # chance is 0.25


def test_auroc_auprc_closed_forms():
    # Perfect ranking, reversed ranking, every score tied.
    labels = np.array([0, 0, 1, 1])
    assert metrics.auroc([0.1, 0.2, 0.3, 0.4], labels) == 1.0
    assert metrics.auprc([0.1, 0.2, 0.3, 0.4], labels) == 1.0
    assert metrics.auroc([0.4, 0.3, 0.2, 0.1], labels) == 0.0
    # Reversed: the positives enter last, at precision 1/3 (R = 1/2) and 2/4 (R = 1).
    assert metrics.auprc([0.4, 0.3, 0.2, 0.1], labels) == pytest.approx(0.5 / 3 + 0.5 / 2)
    assert metrics.auroc(np.zeros(4), labels) == 0.5
    assert metrics.auprc(np.zeros(4), labels) == 0.5  # one threshold: P = positive rate, R = 1
    # By hand: of the 4 (positive, negative) pairs, 0.8 beats both negatives, 0.35 beats 0.1
    # and loses to 0.4: AUROC = 3/4. Descending, thresholds 0.8 (P 1, R 1/2), 0.4 (P 1/2,
    # R 1/2), 0.35 (P 2/3, R 1), 0.1 (P 1/2, R 1): AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    scores = [0.1, 0.4, 0.35, 0.8]
    assert metrics.auroc(scores, labels) == pytest.approx(0.75)
    assert metrics.auprc(scores, labels) == pytest.approx(5 / 6)
    # A tie counts half: the positive ties one negative and beats the other -> 3/4; both 0.5s
    # enter at one threshold (P 1/2, R 1) -> AP 1/2.
    assert metrics.auroc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.75)
    assert metrics.auprc([0.5, 0.5, 0.2], [True, False, False]) == pytest.approx(0.5)


def _mann_whitney_auroc(scores, labels):
    """(sum of the positives' average ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg)."""
    from scipy.stats import rankdata

    n_pos = labels.sum()
    u = rankdata(scores)[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * (len(labels) - n_pos))


def _average_precision(scores, labels):
    """sum (R_n - R_{n-1}) P_n over the distinct thresholds, highest first (numpy)."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores) != 0.0), len(scores) - 1]
    true_pos = np.cumsum(labels)[last]
    recall = true_pos / labels.sum()
    return np.sum(np.diff(recall, prepend=0.0) * true_pos / (last + 1.0))


def test_auroc_auprc_match_closed_forms_with_ties():
    # The rounded scores tie often, also across the classes. The first two numbers of each
    # trial are the outputs of this module's hand-written AUROC/AUPRC before they became
    # scikit-learn's: equal to a few ulps.
    before = [(0.7946348350661019, 0.5176067755695357), (0.767359902540898, 0.6065773039025718),
              (0.7554623983739838, 0.6071274151433252), (0.7783023412660179, 0.6285228531922045),
              (0.7497044451450189, 0.5314552267903803)]
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = 200 + 37 * trial
        labels = rng.random(n) < 0.3
        scores = np.round(rng.normal(size=n) + labels, 1)
        auroc, auprc = metrics.auroc(scores, labels), metrics.auprc(scores, labels)
        assert auroc == pytest.approx(before[trial][0], rel=1e-12)
        assert auprc == pytest.approx(before[trial][1], rel=1e-12)
        assert auroc == pytest.approx(_mann_whitney_auroc(scores, labels), rel=1e-12)
        assert auprc == pytest.approx(_average_precision(scores, labels), rel=1e-12)


def test_auroc_auprc_mae_reject_bad_inputs():
    with pytest.raises(ValueError, match="one class"):
        metrics.auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="one class"):
        metrics.auroc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="positive"):
        metrics.auprc([0.1, 0.2], [0, 0])
    assert metrics.auprc([0.1, 0.2], [1, 1]) == 1.0  # all positive: precision 1 throughout
    with pytest.raises(ValueError, match="finite"):
        metrics.auroc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        metrics.auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="shape"):
        metrics.mean_absolute_error(np.zeros(3), np.zeros((3, 1)))
    assert metrics.mean_absolute_error([1.0, -1.0, 3.0], [0.0, 1.0, 3.0]) == pytest.approx(1.0)
