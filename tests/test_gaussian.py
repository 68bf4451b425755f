import jax
import jax.numpy as jnp
import numpy as np

from seqdis_jax.nn.gaussian import kl_diag_gaussians, kl_standard_normal, reparameterize


def _numpy_kl(mq, sq, mp, sp):
    """KL between univariate normals in terms of standard deviations (textbook form)."""
    return np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5


def test_kl_diag_matches_numpy_closed_form():
    rng = np.random.default_rng(0)
    mq, mp = rng.normal(size=(2, 5, 7))
    sq, sp = rng.uniform(0.2, 3.0, size=(2, 5, 7))
    got = kl_diag_gaussians(mq, 2 * np.log(sq), mp, 2 * np.log(sp))
    np.testing.assert_allclose(np.asarray(got), _numpy_kl(mq, sq, mp, sp), rtol=1e-5, atol=1e-6)


def test_kl_zero_for_identical_and_standard_normal_special_case():
    rng = np.random.default_rng(1)
    m, lv = rng.normal(size=(2, 4, 3))
    np.testing.assert_allclose(np.asarray(kl_diag_gaussians(m, lv, m, lv)), 0.0, atol=1e-6)
    zeros = np.zeros_like(m)
    np.testing.assert_allclose(
        np.asarray(kl_standard_normal(m, lv)),
        np.asarray(kl_diag_gaussians(m, lv, zeros, zeros)),
        rtol=1e-6,
        atol=1e-6,
    )
    assert float(jnp.min(kl_standard_normal(m, lv))) >= 0.0


def test_reparameterize_moments():
    mean = jnp.array([1.0, -2.0, 0.5])
    logvar = jnp.log(jnp.array([0.25, 4.0, 1.0]))
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    z = jax.vmap(lambda k: reparameterize(k, mean, logvar))(keys)
    np.testing.assert_allclose(np.asarray(z.mean(0)), np.asarray(mean), atol=0.05)
    np.testing.assert_allclose(np.asarray(z.var(0)), [0.25, 4.0, 1.0], rtol=0.05)
