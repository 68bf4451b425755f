"""R-WAE's decoder input (App. G, Fig. 8(d)): concat(s, d_t) -> FC -> LSTM (a `lax.scan`) ->
frame decoder, against a plain-numpy Dense + LSTM recurrence; "framewise" is DSVAE's decoder
exactly; the fusion is stepped with the decoder group; bad settings are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_testing import setup, smoke_config

from experiments import rwae_shapes
from seqdis_jax import configuration, train
from seqdis_jax.errors import UserInputError
from seqdis_jax.models import dsvae, rwae
from seqdis_jax.nn.video import FrameDecoder

B, T = 3, 5


def _config(**overrides):
    return smoke_config(rwae_shapes, 4, **overrides)


def _codes(config, seed=0, extra=0):
    rs = np.random.RandomState(seed)
    s = rs.normal(size=(B, config.model.static_dim)).astype(np.float32)
    d = rs.normal(size=(B, T, config.model.dynamic_dim + extra)).astype(np.float32)
    return jnp.asarray(s), jnp.asarray(d)


def _init(model, x):
    return model.init({"params": jax.random.PRNGKey(0), "sample": jax.random.PRNGKey(1)}, x, False)


def _video(config):
    return jnp.zeros((2, T, 64, 64, config.data.channels), jnp.float32)


def _primitives(jaxpr):
    """Names of every primitive in a jaxpr, sub-jaxprs (scan, cond, pjit bodies) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for v in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(v, "jaxpr", v)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


def _np_fusion(params, z):
    """Dense, then the LSTM of flax's OptimizedLSTMCell (gates i, f, g, o; input kernels ii..io
    without bias, recurrent kernels hi..ho with bias), from a zero state, in float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(z, np.float64) @ p["fc"]["kernel"] + p["fc"]["bias"]
    lstm, sigmoid = p["lstm"], lambda a: 1.0 / (1.0 + np.exp(-a))
    h = c = np.zeros((x.shape[0], p["fc"]["kernel"].shape[1]))
    outputs = []
    for t in range(x.shape[1]):
        gate = lambda k, t=t, h=h: (x[:, t] @ lstm[f"i{k}"]["kernel"] + h @ lstm[f"h{k}"]["kernel"]
                                    + lstm[f"h{k}"]["bias"])
        i, f, g, o = sigmoid(gate("i")), sigmoid(gate("f")), np.tanh(gate("g")), sigmoid(gate("o"))
        c = f * c + i * g
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


@pytest.mark.parametrize("overrides,extra", [
    ({}, 0), ({"rwae__num_actions": 3}, 3), ({"rwae__fusion_dim": 10}, 0)],
    ids=["default", "weakly_supervised", "fusion_dim"])
def test_fused_decoder_input_and_output_shapes(overrides, extra):
    config = _config(**overrides)
    assert config.rwae.decoder_fusion == "fc_lstm"  # the default
    model = rwae.build(config)
    variables = _init(model, _video(config))
    hidden = config.rwae.fusion_dim or config.model.feature_dim  # the paper's h_t
    z_dim = config.model.static_dim + config.model.dynamic_dim + extra
    fusion = variables["params"]["fusion"]
    assert fusion["fc"]["kernel"].shape == (z_dim, hidden)
    for gate in "ifgo":
        assert fusion["lstm"][f"i{gate}"]["kernel"].shape == (hidden, hidden)
        assert fusion["lstm"][f"h{gate}"]["kernel"].shape == (hidden, hidden)
    # The frame decoder reads h_t.
    assert variables["params"]["decoder"]["upconv1"]["kernel"].shape[2] == hidden
    s, d = _codes(config, extra=extra)
    h = model.apply(variables, s, d, method=model.decoder_input)
    assert h.shape == (B, T, hidden)
    frames = model.apply(variables, s, d, False, method=model.decode)
    assert frames.shape == (B, T, 64, 64, config.data.channels)
    out = model.apply(variables, _video(config), False, rngs={"sample": jax.random.PRNGKey(2)})
    assert out["reconstruction"].shape == _video(config).shape


@pytest.mark.parametrize("modality", ["speech", "series"])
def test_the_fusion_feeds_every_modality_decoder(modality):
    features = 6
    model = rwae.RWAE(static_dim=4, dynamic_dim=3, hidden_dim=8, modality=modality,
                      num_features=features, critic_hidden=(8,))
    x = jnp.zeros((2, T, features), jnp.float32)
    variables = _init(model, x)
    assert variables["params"]["fusion"]["fc"]["kernel"].shape == (7, 8)  # hidden_dim
    out = model.apply(variables, x, False, rngs={"sample": jax.random.PRNGKey(2)})
    assert out["reconstruction"].shape == x.shape
    assert ("reconstruction_logvar" in out) == (modality == "series")


def test_the_fusion_is_a_scan_equal_to_a_numpy_lstm():
    config = _config()
    model = rwae.build(config)
    variables = _init(model, _video(config))
    # Random fusion parameters of order one, so every gate matters.
    leaves, treedef = jax.tree.flatten(variables["params"]["fusion"])
    keys = jax.random.split(jax.random.PRNGKey(5), len(leaves))
    fusion = treedef.unflatten([0.5 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])
    variables = {**variables, "params": {**variables["params"], "fusion": fusion}}
    s, d = _codes(config)

    decode = lambda v, s, d: model.apply(v, s, d, False, method=model.decode)
    assert "scan" in _primitives(jax.make_jaxpr(decode)(variables, s, d).jaxpr)

    z = np.concatenate([np.broadcast_to(np.asarray(s)[:, None], (B, T, s.shape[-1])), d], -1)
    expected = _np_fusion(fusion, z)
    h = model.apply(variables, s, d, method=model.decoder_input)
    np.testing.assert_allclose(h, expected, atol=2e-5)
    # The frame decoder on the numpy h_t gives the model's frames.
    frame_decoder = FrameDecoder(config.data.channels, config.model.width)
    frames = frame_decoder.apply(
        {"params": variables["params"]["decoder"],
         "batch_stats": variables["batch_stats"]["decoder"]},
        jnp.asarray(expected.reshape(B * T, -1), jnp.float32), False)
    np.testing.assert_allclose(decode(variables, s, d),
                               np.asarray(frames).reshape((B, T) + frames.shape[1:]), atol=1e-5)
    # x_t depends on d_<=t: a change of d_1 reaches the last frame, not the frames before it.
    later = np.asarray(decode(variables, s, d.at[:, 2].add(1.0)))
    before = np.asarray(decode(variables, s, d))
    np.testing.assert_allclose(later[:, :2], before[:, :2], atol=1e-6)
    assert not np.allclose(later[:, -1], before[:, -1])


def test_framewise_is_dsvae_decoder_exactly():
    config = _config(rwae__decoder_fusion="framewise")
    model, base = rwae.build(config), dsvae.build(config)
    x = _video(config)
    variables, base_variables = _init(model, x), _init(base, x)
    params = variables["params"]
    assert "fusion" not in params
    assert set(params) == set(base_variables["params"]) | {"critic"}
    shared = {k: v for k, v in params.items() if k != "critic"}
    jax.tree.map(np.testing.assert_array_equal, shared, base_variables["params"])
    s, d = _codes(config)
    decode = lambda m, v: m.apply(v, s, d, False, method=m.decode)
    np.testing.assert_array_equal(decode(model, variables), decode(base, base_variables))
    assert decode(model, variables).shape == (B, T, 64, 64, config.data.channels)
    h = model.apply(variables, s, d, method=model.decoder_input)
    assert h.shape == (B, T, config.model.static_dim + config.model.dynamic_dim)
    assert "scan" not in _primitives(
        jax.make_jaxpr(lambda v: decode(model, v))(variables).jaxpr)


def test_the_fusion_is_stepped_with_the_decoder_group():
    assert rwae.group_of("fusion") == "decoder"
    config = _config()
    method, model, tx, batch, state = setup(config)
    assert rwae.param_labels(state.params)["fusion"] == "decoder"
    # Its Adam moments live in the decoder's optimiser state only.
    paths = {g: [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(
        state.opt_state.inner_states[g])] for g in rwae.GROUPS}
    assert any("'fusion'" in p for p in paths["decoder"])
    assert not any("'fusion'" in p for g in ("encoder", "critic") for p in paths[g])
    # Moved on the decoder step (the (L+1)-th) only.
    step = train.make_train_step(method, model, tx, config)
    for i in range(config.rwae.critic_steps + 1):
        before = jax.device_get(state.params["fusion"])
        state, _ = step(state, batch, jax.random.PRNGKey(i))
        moved = any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), before,
                                                 jax.device_get(state.params["fusion"]))))
        assert moved == (i == config.rwae.critic_steps), i


def test_an_unknown_fusion_is_refused_naming_the_choices():
    config = rwae_shapes.get_config("smoke")
    config.rwae.decoder_fusion = "lstm"
    with pytest.raises(UserInputError) as error:
        configuration.validate(config)
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert "config.rwae.decoder_fusion" in message and "'lstm'" in message
    assert all(repr(name) in message for name in rwae.DECODER_FUSIONS)
    config.rwae.decoder_fusion = "framewise"
    config.rwae.fusion_dim = -1
    with pytest.raises(UserInputError, match="fusion_dim"):
        configuration.validate(config)
    # The module itself refuses it too.
    model = rwae.RWAE(static_dim=4, dynamic_dim=3, decoder_fusion="lstm")
    with pytest.raises(ValueError, match="fc_lstm"):
        _init(model, _video(config))
