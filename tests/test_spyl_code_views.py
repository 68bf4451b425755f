"""SPYL views="code": the authors' training step (SPYL train.py `train`, sample_and_predict.py
`kl_contrast`, `contrastive_loss`, `samples_tr`). The estimator against a numpy reference of
the authors' code, the time-averaged dynamic code, where the gradient flows (views yes, bank
no) and the warm-up's BatchNorm updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_testing import contrastive_gradients, setup, smoke_config, squared_norm

from experiments import spyl_shapes
from seqdis_jax.models import LossInputs, spyl

TAU = 0.5


def _authors_nce(anchor, anchor_logvar, positive, bank_mean, bank_logvar, cneg, tau=TAU,
                 descending=True):
    """numpy transcription of the authors' `kl_contrast` (neg_mode "soft": the first `cneg`
    of the bank sorted by KL[q_anchor || q_bank] descending) and `contrastive_loss(tau,
    normalize=True)`: mean_i -log(e^{cos(a,p)/tau} / (e^{cos(a,p)/tau}
    + sum_n e^{cos(a,n)/tau}))."""
    a_var = np.exp(anchor_logvar)[:, None]
    kl = 0.5 * np.sum(bank_logvar[None] - anchor_logvar[:, None]
                      + (a_var + (anchor[:, None] - bank_mean[None]) ** 2)
                      / np.exp(bank_logvar)[None] - 1.0, axis=-1)
    order = np.argsort(-kl if descending else kl, axis=1, kind="stable")[:, :cneg]
    negatives = bank_mean[order]  # (n, cneg, D)
    a_norm = np.linalg.norm(anchor, axis=1)
    numerator = np.exp(np.sum(anchor * positive, -1)
                       / (a_norm * np.linalg.norm(positive, axis=1)) / tau)
    denominator = np.exp(np.sum(anchor[:, None] * negatives, -1)
                         / (a_norm[:, None] * np.linalg.norm(negatives, axis=-1)) / tau).sum(1)
    return np.mean(-np.log(numerator / (numerator + denominator)))


def _arrays(seed=0, n=5, bank=12, steps=4, ds=6, dd=3):
    r = np.random.default_rng(seed)
    normal = lambda *shape: r.normal(size=shape)
    posterior = dict(s_mean=normal(n, ds), s_logvar=0.5 * normal(n, ds),
                     d_mean=normal(n, steps, dd), d_logvar=0.5 * normal(n, steps, dd))
    static_view = dict(s_mean=normal(n, ds))
    dynamic_view = dict(d_mean=normal(n, steps, dd))
    # The bank as the authors' samples_tr returns it: d_mean, d_logvar averaged over time.
    bank = dict(s_mean=normal(bank, ds), s_logvar=0.5 * normal(bank, ds),
                d_mean=normal(bank, steps, dd).mean(1),
                d_logvar=0.5 * normal(bank, steps, dd).mean(1))
    return posterior, static_view, dynamic_view, bank


def _estimates(posterior, static_view, dynamic_view, bank, cneg):
    as_jnp = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)
    mi_s, mi_d = spyl.code_estimates(as_jnp(posterior), as_jnp(static_view),
                                     as_jnp(dynamic_view), as_jnp(bank), cneg, TAU)
    return float(mi_s), float(mi_d)


@pytest.mark.parametrize("cneg", [1, 4, 12])
def test_code_estimates_match_a_numpy_reference_of_the_authors_code(cneg):
    posterior, static_view, dynamic_view, bank = _arrays()
    mi_s, mi_d = _estimates(posterior, static_view, dynamic_view, bank, cneg)
    loss_s = _authors_nce(posterior["s_mean"], posterior["s_logvar"], static_view["s_mean"],
                          bank["s_mean"], bank["s_logvar"], cneg)
    avg = lambda a: a.mean(1)
    loss_d = _authors_nce(avg(posterior["d_mean"]), avg(posterior["d_logvar"]),
                          avg(dynamic_view["d_mean"]), bank["d_mean"], bank["d_logvar"], cneg)
    # The authors minimise the NCE loss; the estimate is log(M + 1) minus it.
    np.testing.assert_allclose(np.log(cneg + 1) - mi_s, loss_s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.log(cneg + 1) - mi_d, loss_d, rtol=1e-5, atol=1e-5)
    if cneg < 12:  # the selection matters: the closest bank members give another loss
        closest = _authors_nce(posterior["s_mean"], posterior["s_logvar"],
                               static_view["s_mean"], bank["s_mean"], bank["s_logvar"], cneg,
                               descending=False)
        assert abs(closest - loss_s) > 1e-3


def test_dynamic_term_reads_only_time_averages():
    posterior, static_view, dynamic_view, bank = _arrays(seed=1)
    before = _estimates(posterior, static_view, dynamic_view, bank, 4)
    r = np.random.default_rng(7)

    def zero_time_mean(shape):
        a = r.normal(size=shape)
        return a - a.mean(axis=1, keepdims=True)

    shape = posterior["d_mean"].shape
    moved = dict(posterior, d_mean=posterior["d_mean"] + zero_time_mean(shape),
                 d_logvar=posterior["d_logvar"] + 0.3 * zero_time_mean(shape))
    moved_view = dict(d_mean=dynamic_view["d_mean"] + zero_time_mean(shape))
    after = _estimates(moved, static_view, moved_view, bank, 4)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    # A change of the time average does change it (the test can fail).
    shifted = dict(posterior, d_mean=posterior["d_mean"] + r.normal(size=(5, 1, 3)))
    assert abs(_estimates(shifted, static_view, dynamic_view, bank, 4)[1] - before[1]) > 1e-3


def _code_config(**overrides):
    return smoke_config(spyl_shapes, 6, spyl__views="code", spyl__bank_size=8,
                        spyl__bank_negatives=4, **overrides)


def test_code_views_carry_the_gradient_and_the_bank_none(monkeypatch):
    config = _code_config()
    grads = contrastive_gradients(config)
    # Through the views: decoded frames -> decoder; the static view's prior means -> prior.
    assert squared_norm(grads["decoder"]) > 0
    assert squared_norm(grads["prior"]) > 0
    assert squared_norm(grads["encoder"]) > 0 and squared_norm(grads["static_posterior"]) > 0
    assert squared_norm(grads["dynamic_posterior"]) > 0

    # The bank carries none: the same gradient with a bank built from stop-gradiented weights.
    real_bank = spyl.code_bank
    monkeypatch.setattr(spyl, "code_bank", lambda model, params, stats, *rest: real_bank(
        model, jax.lax.stop_gradient(params), stats, *rest))
    frozen_bank = contrastive_gradients(config)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9),
                 grads, frozen_bank)

    # The decoded codes (s_mean(x), d_mean(x), prior means) keep their gradient too: detaching
    # the decoder's inputs changes the posteriors' gradient.
    monkeypatch.setattr(spyl, "code_bank", real_bank)
    real_decode = spyl._decode
    monkeypatch.setattr(spyl, "_decode", lambda model, params, stats, s, d, train: real_decode(
        model, params, stats, jax.lax.stop_gradient(s), jax.lax.stop_gradient(d), train))
    detached = contrastive_gradients(config)
    assert squared_norm(detached["prior"]) == 0.0
    for name in ("static_posterior", "dynamic_posterior"):
        difference = jax.tree.map(lambda a, b: a - b, grads[name], detached[name])
        assert squared_norm(difference) > 1e-6 * squared_norm(grads[name]), name


def test_warmup_keeps_only_the_bank_batch_norm_updates(monkeypatch):
    config = _code_config(spyl__contrastive_warmup_steps=10)
    method, model, _, batch, state = setup(config)
    x = {"x": batch["video"].astype(np.float32) / 255.0}
    real_bank = spyl.code_bank
    seen = []

    def recording_bank(model, params, stats, *rest):
        bank, after = real_bank(model, params, stats, *rest)
        seen.append((stats, after))
        return bank, after

    monkeypatch.setattr(spyl, "code_bank", recording_bank)
    stats_at = lambda step: method.loss(LossInputs(model, state.params, state.batch_stats, x,
                                                   jax.random.PRNGKey(5), config, True,
                                                   jnp.array(step)))[1][1]
    warm = stats_at(9)
    (before_bank, after_bank), = seen
    active = stats_at(10)
    leaves = lambda tree: jax.tree.leaves(tree)
    assert leaves(before_bank) and len(leaves(warm)) == len(leaves(before_bank))
    for w, b, a, v in zip(leaves(warm), leaves(before_bank), leaves(after_bank), leaves(active)):
        np.testing.assert_array_equal(w, a)  # warm-up: the bank's updates, nothing more
        assert not np.allclose(a, b)  # the bank updated every running average ...
        assert not np.allclose(v, a)  # ... and after the warm-up the views update them again
