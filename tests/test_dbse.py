"""DBSE: the anchor's posterior (s from x_a only, d_a = 0), the subtraction of eq. (8), the
authors' feature-subtraction variant, the loss of eqs. (5)-(7) against numpy, single-trace
training, and the config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_testing import smoke_config, train_on_fixed_batch

from experiments import dbse_shapes
from seqdis_jax import configuration
from seqdis_jax.data import shapes
from seqdis_jax.errors import UserInputError
from seqdis_jax.models import LossInputs, dbse

BATCH = 4
T = 8
VIDEO = shapes.generate(BATCH, seed=3)["video"]
X = jnp.asarray(VIDEO, jnp.float32) / 255.0
RNG = jax.random.PRNGKey(7)


def _config(**overrides):
    """The smoke config at the 64x64 frames of VIDEO (the papers' DCGAN-64 path)."""
    return smoke_config(dbse_shapes, BATCH, **({"data__image_size": 64} | overrides))


_VARIABLES = {}


def _init(config):
    """The model and its variables, every kernel redrawn LeCun-normal: with the authors'
    N(0, 0.01^2) init and the BatchNorm running averages every code is ~1e-9, too small for
    the comparisons below to mean anything. The anchor and the hidden / none subtraction do
    not change the parameters, so the variables are drawn once per structure."""
    model = dbse.build(config)
    structure = config.dbse.subtraction == "features"
    if structure not in _VARIABLES:
        variables = model.init({"params": jax.random.PRNGKey(0),
                                "sample": jax.random.PRNGKey(1)}, X, True)
        leaves, treedef = jax.tree.flatten(variables["params"])
        keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
        leaves = [jax.random.normal(k, p.shape) / np.sqrt(np.prod(p.shape[:-1])) if p.ndim > 1
                  else p for k, p in zip(keys, leaves)]
        _VARIABLES[structure] = {**variables, "params": jax.tree.unflatten(treedef, leaves)}
    return model, _VARIABLES[structure]


def _encoder(model):
    """x -> (posterior, s~) with the BatchNorm running averages (frames are then encoded
    independently), one compiled function for every input; s~ from the model's sow."""

    @jax.jit
    def encode(variables, x):
        out, state = model.apply(variables, x, False, rngs={"sample": RNG}, method=model.encode,
                                 mutable=["intermediates"])
        return out, state["intermediates"]["s_tilde"][0]

    return lambda variables, x: jax.device_get(encode(variables, x))


def _perturb(x, frames):
    noise = jax.random.uniform(jax.random.PRNGKey(11), x.shape)
    keep = np.ones((1, x.shape[1], 1, 1, 1), np.float32)
    keep[:, list(frames)] = 0.0
    return x * keep + noise * (1.0 - keep)


@pytest.mark.parametrize("anchor,index", [("first", 0), ("middle", 3), ("last", 7)])
def test_static_factor_reads_only_the_anchor_and_its_dynamics_are_zero(anchor, index):
    assert dbse.anchor_index(anchor, T) == index  # x_1, x_{T/2}, x_T (1-based)
    model, variables = _init(_config(dbse__anchor=anchor))
    encode = _encoder(model)
    out, _ = encode(variables, X)
    others = [t for t in range(T) if t != index]
    out_others, _ = encode(variables, _perturb(X, others))
    np.testing.assert_allclose(out_others["s_mean"], out["s_mean"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out_others["s_logvar"], out["s_logvar"], atol=1e-6, rtol=0)
    out_anchor, _ = encode(variables, _perturb(X, [index]))
    assert np.abs(out_anchor["s_mean"] - out["s_mean"]).max() > 1e-4
    # d_a := 0 exactly (mean and sample; the log-variance slot is the constant 0).
    for key in ("d_mean", "d", "d_logvar"):
        assert np.all(out[key][:, index] == 0.0), key
    assert np.all(np.abs(out["d"][:, others]).max(axis=-1) > 0)

    means, samples = jax.device_get(model.apply(
        variables, 5, T, method=model.sample_dynamics, rngs={"sample": RNG}))
    assert np.all(means[:, index] == 0.0) and np.all(samples[:, index] == 0.0)
    assert np.all(np.abs(samples[:, others]).max(axis=-1) > 0)
    # The recursion is conditioned on the clamped 0: teacher-forcing the prior on the samples
    # gives back the returned means.
    forced, _ = model.apply(variables, jnp.asarray(samples), method=lambda m, d: m.prior(d))
    np.testing.assert_allclose(np.asarray(forced)[:, others], means[:, others],
                               rtol=1e-5, atol=1e-6)


def test_hidden_subtraction_shifts_the_head_by_minus_s_tilde_and_carries_x_a():
    config = _config()
    hidden, variables = _init(config)
    none = dbse.build(_config(dbse__subtraction="none"))
    encode_hidden, encode_none = _encoder(hidden), _encoder(none)
    out_h, s_tilde = encode_hidden(variables, X)
    out_n, _ = encode_none(variables, X)
    w_mean = np.asarray(variables["params"]["dynamic_posterior"]["rnn"]["head"]["mean"]["kernel"])
    # Eq. (8) at the first step after the anchor (same carry and input d_a = 0 in both):
    # mu(h~ - s~) - mu(h~) = -s~ W_mean.
    np.testing.assert_allclose(out_h["d_mean"][:, 1] - out_n["d_mean"][:, 1], -s_tilde @ w_mean,
                               rtol=1e-4, atol=1e-7)
    assert np.abs(s_tilde @ w_mean).max() > 1e-5
    # s~ = tanh(Dense(g_a)), recomputed from the parameters.
    features = hidden.apply(variables, X, False, method=hidden.encode_frames)
    dense = variables["params"]["static_mlp"]
    np.testing.assert_allclose(
        s_tilde, np.tanh(np.asarray(features[:, 0]) @ dense["kernel"] + dense["bias"]),
        rtol=1e-5, atol=1e-6)

    x_a_changed = _perturb(X, [0])
    out_n2, _ = encode_none(variables, x_a_changed)
    np.testing.assert_array_equal(out_n2["d_mean"], out_n["d_mean"])  # no sub: d ignores x_a
    np.testing.assert_array_equal(out_n2["d"], out_n["d"])
    out_h2, _ = encode_hidden(variables, x_a_changed)
    assert np.abs(out_h2["d_mean"][:, 1:] - out_h["d_mean"][:, 1:]).max() > 1e-6


def test_feature_subtraction_is_the_authors_bidirectional_posterior():
    config = _config(dbse__subtraction="features")
    model, variables = _init(config)
    assert "feature_dynamic_posterior" in variables["params"]
    assert "dynamic_posterior" not in variables["params"]
    encode = _encoder(model)
    out, _ = encode(variables, X)
    assert np.all(np.abs(out["d"][:, 0]).max(axis=-1) > 0)  # d_a: a sample at the noise slot
    assert np.all(np.abs(out["d_mean"][:, 0]).max(axis=-1) > 0)
    # Bidirectional: the last frame reaches d at t = 2.
    out_last, _ = encode(variables, _perturb(X, [T - 1]))
    assert np.abs(out_last["d_mean"][:, 1] - out["d_mean"][:, 1]).max() > 1e-6
    # The prior draws are not clamped at the anchor.
    _, samples = model.apply(variables, 3, T, method=model.sample_dynamics, rngs={"sample": RNG})
    assert np.all(np.abs(np.asarray(samples)[:, 0]).max(axis=-1) > 0)

    # The anchor's reconstruction term decodes (s, d_a) with the sampled d_a.
    _, (metrics, _) = dbse.loss_fn(LossInputs(model, variables["params"],
                                              variables["batch_stats"], {"x": X}, RNG,
                                              config, train=False))
    full = jax.device_get(model.apply(variables, X, False, rngs={"sample": RNG}))
    decode = lambda d: np.asarray(model.apply(variables, jnp.asarray(full["s"]), jnp.asarray(d),
                                              False, method=model.decode))
    error = lambda x_hat: np.mean(np.sum((x_hat[:, 0] - np.asarray(X)[:, 0]) ** 2, (1, 2, 3)))
    np.testing.assert_allclose(float(metrics["reconstruction_anchor"]), error(decode(full["d"])),
                               rtol=1e-5)
    d_zero = full["d"].copy()
    d_zero[:, 0] = 0.0
    assert abs(error(decode(d_zero)) - error(decode(full["d"]))) > 1e-3


def _numpy_loss_terms(out, x, anchor):
    """Eqs. (5)-(6) from the model outputs, per sequence then averaged over the batch."""
    others = np.arange(x.shape[1]) != anchor
    errors = np.sum((out["reconstruction"] - x) ** 2, axis=(2, 3, 4))  # (B, T)
    var_s = np.exp(out["s_logvar"])
    kl_s = np.mean(np.sum(0.5 * (var_s + out["s_mean"] ** 2 - 1 - out["s_logvar"]), -1))
    sq, sp = np.exp(0.5 * out["d_logvar"]), np.exp(0.5 * out["prior_logvar"])
    kl_d = np.log(sp / sq) + (sq**2 + (out["d_mean"] - out["prior_mean"]) ** 2) / (2 * sp**2) - 0.5
    kl_d = np.sum(kl_d, axis=-1)  # (B, T)
    return dict(sequence=np.mean(np.sum(errors[:, others], -1)), anchor=np.mean(errors[:, anchor]),
                kl_s=kl_s, kl_d=np.mean(np.sum(kl_d[:, others], -1)),
                kl_d_anchor=np.mean(kl_d[:, anchor]))


def test_loss_matches_numpy_and_each_switch_changes_exactly_its_term():
    config = _config(dbse__anchor="middle", dbse__anchor_weight=0.3,
                     dbse__reconstruction_reduction="sum",
                     loss__kl_static_weight=0.7, loss__kl_dynamic_weight=1.3)
    model, variables = _init(config)
    a = dbse.anchor_index("middle", T)
    out = jax.device_get(model.apply(variables, X, False, rngs={"sample": RNG}))
    ref = _numpy_loss_terms(out, np.asarray(X), a)
    assert ref["kl_d_anchor"] > 1e-3  # the mask matters: the anchor's KL is not zero

    def loss(**overrides):
        c = config.copy_and_resolve_references()
        for key, value in overrides.items():
            c.dbse[key] = value
        value, (metrics, _) = dbse.loss_fn(LossInputs(model, variables["params"],
                                                      variables["batch_stats"], {"x": X},
                                                      RNG, c, train=False))
        return float(value), jax.device_get(metrics)

    paper, m = loss()
    np.testing.assert_allclose(m["reconstruction"], ref["sequence"], rtol=1e-5)
    np.testing.assert_allclose(m["reconstruction_anchor"], ref["anchor"], rtol=1e-5)
    np.testing.assert_allclose(m["kl_static"], ref["kl_s"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(m["kl_dynamic"], ref["kl_d"], rtol=1e-4, atol=1e-6)
    expected = (BATCH * (ref["sequence"] + 0.3 * ref["anchor"]) + 0.7 * ref["kl_s"]
                + 1.3 * ref["kl_d"])
    np.testing.assert_allclose(paper, expected, rtol=1e-5)

    no_loss, _ = loss(first_frame_loss=False)  # Table 4 "no loss": exactly the alpha term
    np.testing.assert_allclose(paper - no_loss, BATCH * 0.3 * ref["anchor"], rtol=1e-4)
    every_frame, m_all = loss(sequence_reconstruction="all")  # + exactly the anchor frame
    np.testing.assert_allclose(m_all["reconstruction"], ref["sequence"] + ref["anchor"],
                               rtol=1e-5)
    np.testing.assert_allclose(every_frame - paper, BATCH * ref["anchor"], rtol=1e-4)
    mean, m_mean = loss(reconstruction_reduction="mean")  # the batch factor, on recon only
    np.testing.assert_allclose(m_mean["reconstruction"], m["reconstruction"], rtol=1e-6)
    np.testing.assert_allclose(paper - mean, (BATCH - 1) * (ref["sequence"] + 0.3 * ref["anchor"]),
                               rtol=1e-4)


@pytest.mark.parametrize("overrides", [
    {},
    {"dbse__subtraction": "features", "dbse__sequence_reconstruction": "all"},
], ids=["paper", "features"])
def test_training_lowers_the_loss_with_one_trace(overrides):
    history = train_on_fixed_batch(_config(train__learning_rate=3e-3, **overrides), 25)
    losses = [float(h["loss"]) for h in history]
    assert np.isfinite(losses).all()
    assert all(np.isfinite(float(h["grad_norm"])) and float(h["grad_norm"]) > 0 for h in history)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("key,value,message", [
    ("dbse__anchor", "second", "config.dbse.anchor must be one of"),
    ("dbse__subtraction", "static", "config.dbse.subtraction must be one of"),
    ("dbse__sequence_reconstruction", "rest", "config.dbse.sequence_reconstruction must be"),
    ("dbse__reconstruction_reduction", "batch", "config.dbse.reconstruction_reduction must be"),
    ("dbse__anchor_weight", -0.1, "anchor_weight .* must be >= 0"),
])
def test_bad_switches_are_refused_with_the_fix(key, value, message):
    config = dbse_shapes.get_config("smoke")
    section, field = key.split("__")
    config[section][field] = value
    with pytest.raises(UserInputError, match=message):
        configuration.validate(config)


def test_a_config_without_the_dbse_section_is_refused():
    config = dbse_shapes.get_config("smoke")
    del config["dbse"]
    with pytest.raises(UserInputError, match=r"get_method\('dbse'\)\.configure\(config\)"):
        configuration.validate(config)


def test_separate_anchor_decode_is_a_second_decoder_call_with_its_own_batch_norm_batch():
    """`anchor_decode="separate"` (the authors' `recon_frame_x`): x^_a comes from a decoder
    call on (s, d_a) alone -- normalised with those B frames' statistics, updating the running
    averages after the sequence pass. Eval mode equals the one pass; the sequence term, the KLs
    and the encoder are untouched."""
    config = _config(dbse__anchor_weight=0.3)
    model, variables = _init(config)
    params, stats = variables["params"], variables["batch_stats"]

    def loss(anchor_decode, train):
        c = config.copy_and_resolve_references()
        c.dbse.anchor_decode = anchor_decode
        _, (metrics, new_stats) = dbse.loss_fn(LossInputs(model, params, stats, {"x": X},
                                                          RNG, c, train=train))
        return jax.device_get(metrics), new_stats

    shared_eval, _ = loss("shared", False)
    separate_eval, _ = loss("separate", False)
    for name in shared_eval:
        np.testing.assert_allclose(separate_eval[name], shared_eval[name], rtol=1e-5, atol=1e-6)

    shared, shared_stats = loss("shared", True)
    separate, separate_stats = loss("separate", True)
    for name in ("reconstruction", "kl_static", "kl_dynamic"):
        np.testing.assert_allclose(separate[name], shared[name], rtol=1e-6)
    assert abs(float(separate["reconstruction_anchor"] - shared["reconstruction_anchor"])) > 1e-4
    # Reference: the train-mode full pass, then a decoder call on the anchor latents.
    out, after_pass = model.apply(variables, X, True, rngs={"sample": RNG},
                                  mutable=["batch_stats"])
    a = dbse.anchor_index(config.dbse.anchor, T)
    frames, after_anchor = model.apply(
        {"params": params, "batch_stats": after_pass["batch_stats"]}, out["s"],
        out["d"][:, a:a + 1], True, method=model.decode, mutable=["batch_stats"])
    expected = np.mean(np.sum(np.square(np.asarray(frames[:, 0]) - np.asarray(X[:, a])),
                              axis=(1, 2, 3)))
    np.testing.assert_allclose(separate["reconstruction_anchor"], expected, rtol=1e-5)
    chex_equal = lambda x, y: jax.tree.map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), x, y)
    chex_equal(separate_stats, after_anchor["batch_stats"])
    chex_equal(shared_stats, after_pass["batch_stats"])
    # The encoder's running averages are updated once in both; the decoder's twice here.
    chex_equal(separate_stats["encoder"], shared_stats["encoder"])
    assert not np.allclose(separate_stats["decoder"]["bn1"]["var"],
                           shared_stats["decoder"]["bn1"]["var"])
