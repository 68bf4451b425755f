"""The C-DSVAE authors' code as named switches (issue 19), each against a small numpy reference
of the formula their code computes: the per-frame MWS penalty with their density, the tanh RNN
over the bidirectional LSTM outputs, and the LeakyReLU static heads; and the `:code` variant
turns each of them on (and the paper's defaults leave them off)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_testing import smoke_config, train_on_fixed_batch

from experiments import cdsvae_shapes, cdsvae_sprites, spyl_sprites
from seqdis_jax import configuration, errors, estimators
from seqdis_jax.models import LossInputs, dsvae

KEY = jax.random.PRNGKey(0)


def _authors_log_density(sample, mu, logsigma):
    """C-DSVAE mutual_info.log_density: the log-variance goes in as log sigma."""
    tmp = (sample - mu) * np.exp(-logsigma)
    return -0.5 * (tmp * tmp + 2 * logsigma + np.log(2 * np.pi))


def _authors_mws(s, s_mean, s_logvar, d, d_mean, d_logvar, dataset_size):
    """train_cdsvae.py `mi_fz`, written with loops over frames in numpy (float64)."""
    batch, frames, _ = d.shape
    log_bn = math.log(batch * dataset_size)
    lse = lambda a: np.log(np.sum(np.exp(a - a.max(1, keepdims=True)), 1)) + a.max(1)
    values = []
    for t in range(frames):
        log_q_s = _authors_log_density(s[:, None], s_mean[None], s_logvar[None])  # [B, B, Ds]
        log_q_d = _authors_log_density(d[:, t, None], d_mean[None, :, t], d_logvar[None, :, t])
        log_q_sd = np.concatenate([log_q_s, log_q_d], axis=2)
        q_s = lse(log_q_s.sum(2)) - log_bn
        q_d = lse(log_q_d.sum(2)) - log_bn
        q_sd = lse(log_q_sd.sum(2)) - log_bn
        values.append(np.maximum(q_sd - q_s - q_d, 0.0))
    return np.mean(values)


def test_per_frame_mws_matches_the_authors_formula():
    rng = np.random.default_rng(0)
    b, t, ds, dd = 6, 4, 5, 3
    s_mean, d_mean = rng.normal(size=(b, ds)), rng.normal(size=(b, t, dd))
    s_logvar, d_logvar = rng.normal(size=(b, ds)) * 0.3, rng.normal(size=(b, t, dd)) * 0.3
    # Samples close to their own posterior, so the ReLU is active for some (t, i) only.
    s = s_mean + 0.3 * rng.normal(size=s_mean.shape)
    d = d_mean + 0.3 * rng.normal(size=d_mean.shape)
    args = [a.astype(np.float32) for a in (s, s_mean, s_logvar, d, d_mean, d_logvar)]
    got = float(estimators.mws_per_frame_code(*args, dataset_size=9000))
    expected = _authors_mws(s, s_mean, s_logvar, d, d_mean, d_logvar, 9000)
    assert expected > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # It is a different estimate from the paper's (eq. 13, d_1:T as one variable).
    paper = float(estimators.mws_mutual_information(*args, dataset_size=9000)["mi_s_d"])
    assert abs(paper - got) > 1e-3
    via_model = dsvae.mws_static_dynamic(
        dict(zip(("s", "s_mean", "s_logvar", "d", "d_mean", "d_logvar"), args)), 9000,
        "per_frame_code")
    np.testing.assert_allclose(float(via_model), got, rtol=1e-6)


def _loop_outputs(cell_params, hidden, xs, reverse=False):
    """Per-step outputs of one OptimizedLSTMCell applied in a Python loop."""
    cell = nn.OptimizedLSTMCell(hidden)
    carry = cell.initialize_carry(KEY, (xs.shape[0], hidden))
    outputs = [None] * xs.shape[1]
    order = range(xs.shape[1] - 1, -1, -1) if reverse else range(xs.shape[1])
    for t in order:
        carry, outputs[t] = cell.apply({"params": cell_params}, carry, xs[:, t])
    return np.stack([np.asarray(o) for o in outputs], axis=1)


def _leaky(a):
    return np.where(a >= 0, a, 0.2 * a)


def test_rnn_on_bilstm_posterior_and_leaky_heads_match_numpy():
    """q(d_t | x) = heads(tanh RNN over [forward_t, backward_t] of the static posterior's
    bi-LSTM) and q(s | x) = LeakyReLU(Linear(last states)), as model.py computes them."""
    b, t, g, hidden, ds, dd = 3, 5, 4, 6, 2, 3
    features = jax.random.normal(KEY, (b, t, g))
    model = dsvae.DSVAE(static_dim=ds, dynamic_dim=dd, hidden_dim=hidden, modality="speech",
                        num_features=g, dynamic_posterior_kind="rnn_bilstm",
                        static_head_activation="leaky_relu")
    variables = model.init({"params": KEY, "sample": KEY}, features, method=model.posterior)
    params = jax.tree.map(np.asarray, variables["params"])
    assert set(params["dynamic_posterior"]) == {"rnn_cell", "head"}
    assert set(params["dynamic_posterior"]["rnn_cell"]) == {"i", "h"}
    out = model.apply(variables, features, method=model.posterior,
                      rngs={"sample": jax.random.PRNGKey(3)})

    sp = params["static_posterior"]
    fwd = _loop_outputs(sp["forward_lstm"], hidden, features)
    bwd = _loop_outputs(sp["backward_lstm"], hidden, features, reverse=True)
    summary = np.concatenate([fwd[:, -1], bwd[:, 0]], -1)
    head = sp["head"]
    np.testing.assert_allclose(
        out["s_mean"], _leaky(summary @ head["mean"]["kernel"] + head["mean"]["bias"]),
        rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out["s_logvar"], _leaky(summary @ head["logvar"]["kernel"] + head["logvar"]["bias"]),
        rtol=1e-5, atol=1e-6)

    bilstm = np.concatenate([fwd, bwd], -1)  # PyTorch's bidirectional nn.LSTM output
    cell = params["dynamic_posterior"]["rnn_cell"]
    h = np.zeros((b, hidden), np.float32)
    states = []
    for step in range(t):  # nn.RNN(2H, H): h_t = tanh(W_i x_t + b + W_h h_{t-1})
        h = np.tanh(bilstm[:, step] @ cell["i"]["kernel"] + cell["i"]["bias"]
                    + h @ cell["h"]["kernel"])
        states.append(h)
    states = np.stack(states, 1)
    dh = params["dynamic_posterior"]["head"]
    d_mean = states @ dh["mean"]["kernel"] + dh["mean"]["bias"]
    d_logvar = states @ dh["logvar"]["kernel"] + dh["logvar"]["bias"]
    np.testing.assert_allclose(out["d_mean"], d_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["d_logvar"], d_logvar, rtol=1e-5, atol=1e-6)
    # No nested sampling: the sample is mean + sigma * eps per step, eps independent of d_<t.
    eps = (np.asarray(out["d"]) - d_mean) / np.exp(0.5 * d_logvar)
    assert abs(float(np.mean(eps))) < 1.0 and 0.3 < float(np.std(eps)) < 3.0


def test_paper_defaults_keep_the_paper_posterior():
    """Without the switches the parameter tree is the paper's (an LSTM on [g_t, d_{t-1}])
    and the static heads are linear."""
    config = cdsvae_shapes.get_config("smoke")
    assert config.model.dynamic_posterior == "lstm"
    assert config.model.static_head_activation == "linear"
    assert config.cdsvae.mws_estimator == "sequence"
    model = dsvae.build(config)
    assert model.dynamic_posterior_kind == "lstm" and model.static_head_activation == "linear"
    features = jnp.zeros((2, 3, 4))
    speech = dsvae.DSVAE(static_dim=2, dynamic_dim=3, hidden_dim=5, modality="speech",
                         num_features=4)
    params = speech.init({"params": KEY, "sample": KEY}, features,
                         method=speech.posterior)["params"]
    assert "lstm" in params["dynamic_posterior"]["rnn"]


@pytest.mark.parametrize("module,section", [(cdsvae_sprites, "cdsvae"), (spyl_sprites, "spyl")])
def test_code_variants_turn_the_switches_on(module, section):
    code, paper = module.get_config("code"), module.get_config("default")
    assert code.model.dynamic_posterior == "rnn_bilstm"
    assert code.model.recurrent_init == "pytorch" and paper.model.recurrent_init == "flax"
    assert code[section].mws_estimator == "per_frame_code"
    assert paper.model.dynamic_posterior == "lstm"
    assert paper[section].mws_estimator == "sequence"
    # C-DSVAE's LinearUnit has the LeakyReLU; SPYL's cdsvae/model.py has plain Linear heads.
    expected = "leaky_relu" if section == "cdsvae" else "linear"
    assert code.model.static_head_activation == expected
    assert paper.model.static_head_activation == "linear"
    configuration.validate(code)


def test_pytorch_recurrent_init_draws_the_authors_distributions():
    """`model.recurrent_init="pytorch"`: every LSTM / RNN weight ~ U(+-1/sqrt(H)) and each
    bias the sum of two such draws (b_ih + b_hh), as torch.nn.LSTM / RNN initialise."""
    hidden = 64
    model = dsvae.DSVAE(static_dim=4, dynamic_dim=8, hidden_dim=hidden, modality="speech",
                        num_features=16, dynamic_posterior_kind="rnn_bilstm",
                        recurrent_init="pytorch")
    params = model.init({"params": KEY, "sample": KEY}, jnp.zeros((2, 5, 16)))["params"]
    bound = 1 / math.sqrt(hidden)
    cells = {"static": params["static_posterior"]["forward_lstm"],
             "rnn": params["dynamic_posterior"]["rnn_cell"],
             "prior": params["prior"]["step"]["lstm_0"]}
    for name, cell in cells.items():
        kernels = [np.ravel(v["kernel"]) for v in cell.values()]
        biases = np.concatenate([np.ravel(v["bias"]) for v in cell.values() if "bias" in v])
        kernels = np.concatenate(kernels)
        assert np.abs(kernels).max() <= bound and np.abs(kernels).max() > 0.95 * bound, name
        np.testing.assert_allclose(kernels.var(), bound ** 2 / 3, rtol=0.15)
        assert np.abs(biases).max() <= 2 * bound
        np.testing.assert_allclose(biases.var(), 2 * bound ** 2 / 3, rtol=0.3)
    # The heads keep the authors' N(0, 0.01^2) (init_weights touches Linear layers).
    assert np.std(params["dynamic_posterior"]["head"]["mean"]["kernel"]) < 0.02
    flax_params = dsvae.DSVAE(static_dim=4, dynamic_dim=8, hidden_dim=hidden, modality="speech",
                              num_features=16).init({"params": KEY, "sample": KEY},
                                                    jnp.zeros((2, 5, 16)))["params"]
    assert np.abs(flax_params["prior"]["step"]["lstm_0"]["hi"]["bias"]).max() == 0.0


def test_unknown_switch_values_are_refused():
    config = cdsvae_shapes.get_config("smoke")
    for field, value, message in (
            ("model", ("dynamic_posterior", "gru"), "dynamic_posterior must be one of"),
            ("model", ("static_head_activation", "relu"), "static_head_activation must be one"),
            ("model", ("recurrent_init", "torch"), "recurrent_init must be one of"),
            ("cdsvae", ("mws_estimator", "frames"), "mws_estimator must be one of")):
        bad = config.copy_and_resolve_references()
        bad[field][value[0]] = value[1]
        with pytest.raises(errors.UserInputError, match=message):
            configuration.validate(bad)


def test_cdsvae_with_every_code_switch_trains():
    """The `:code` model on a fixed batch: one trace, finite, and the loss goes down."""
    config = smoke_config(cdsvae_shapes, 8, model__dynamic_posterior="rnn_bilstm",
                          model__static_head_activation="leaky_relu",
                          cdsvae__mws_estimator="per_frame_code")
    history = train_on_fixed_batch(config, 12)
    losses = [float(h["loss"]) for h in history]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


@pytest.mark.parametrize("method", ["cdsvae", "spyl"])
def test_losses_pass_their_mws_estimator(method, monkeypatch):
    """The config's `mws_estimator` reaches the estimator in C-DSVAE's and SPYL's loss."""
    from experiments import spyl_shapes
    from seqdis_jax import models

    module = {"cdsvae": cdsvae_shapes, "spyl": spyl_shapes}[method]
    config = smoke_config(module, 4, **{f"{method}__mws_estimator": "per_frame_code"})
    seen = []
    original = dsvae.mws_static_dynamic
    monkeypatch.setattr(dsvae, "mws_static_dynamic",
                        lambda out, n, estimator="sequence": seen.append(estimator)
                        or original(out, n, estimator))
    from method_testing import setup

    _, model, _, batch, state = setup(config)
    jax.eval_shape(lambda: models.get_method(config.method).loss(LossInputs(  # traced only
        model, state.params, state.batch_stats, {"x": jnp.asarray(batch["video"]) / 255.0},
        KEY, config, train=True)))
    assert seen == ["per_frame_code"]


def test_rnn_on_bilstm_posterior_runs_in_bfloat16():
    """model.compute_dtype=bfloat16 with the authors' RNN posterior: the scan's carry keeps
    one dtype (it raised before), and the heads' output stays within bf16 rounding of
    float32."""
    from seqdis_jax.nn.recurrent import RNNDynamicPosterior

    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 8))
    outs = {}
    for dtype in (None, jnp.bfloat16):
        module = RNNDynamicPosterior(4, 6, dtype=dtype)
        params = module.init(jax.random.PRNGKey(1), x)
        outs[dtype] = module.apply(params, x)
    for a, b in zip(outs[jnp.bfloat16], outs[None]):
        np.testing.assert_allclose(a.astype(jnp.float32), b, atol=3e-2)
