"""seqdis_jax.load: a trained run used from Python (seqdis_jax/api.py), and the example
script examples/swap_figure.py on it.

One tiny run trained by the launcher (experiments/shapes.py:smoke, 4 steps, a --config
override) serves the module; the other methods and modalities get a freshly initialised
checkpoint written the way training writes it (TrainState with its optimizer state), all of
them with `-m slow`, the series DBSE in the default suite.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import seqdis_jax
from experiments import cdsvae_shapes, dbse_shapes, rwae_shapes, spyl_shapes
from seqdis_jax import api, checkpointing, configuration, errors, models, train
from seqdis_jax.data import pipeline
from seqdis_jax.data import registry as data_registry
from tests import test_modalities

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 7  # the --config override given at training (it changes no compiled program)


def _run(*args: str) -> subprocess.CompletedProcess:
    """A subprocess sharing the tests' persistent compilation cache (tests/conftest.py)."""
    cache = jax.config.jax_compilation_cache_dir
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=cache,
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "shapes"
    result = _run("-m", "experiments.main", "--config=experiments/shapes.py:smoke",
                  f"--workdir={path}", "--config.eval.evaluators=()", f"--config.seed={SEED}")
    assert result.returncode == 0, result.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def model(workdir):
    return seqdis_jax.load(str(workdir))


@pytest.fixture(scope="module")
def video(model):
    """Two test sequences as the dataset stores them (uint8 frames). Every call here takes
    batches of two, so each entry point compiles once."""
    source = data_registry.load(model.config.data, "test").source
    return np.stack([source[i][pipeline.RECORD_KEY] for i in (0, 3)])


def test_config_comes_back_as_saved_with_the_override(model, workdir):
    with open(workdir / "config.json", encoding="utf-8") as f:
        saved = json.load(f)
    assert json.loads(model.config.to_json()) == saved
    assert model.config.seed == SEED
    assert model.config.eval.evaluators == ()  # JSON lists come back as the configs' tuples
    assert configuration.load_config(str(workdir)).to_dict() == model.config.to_dict()
    assert model.step == 4
    assert repr(model).startswith("TrainedModel(method='dsvae', data='shapes'")


def test_only_params_and_batch_stats_are_restored(workdir, model, monkeypatch):
    assert set(model.variables) == {"params", "batch_stats"}
    assert not hasattr(model, "opt_state") and not hasattr(model, "state")
    # The same values as the training code's full restore (optimizer state and all).
    _, state, _ = train.restore_checkpoint(model.config, str(workdir))
    full = {"params": state.params, "batch_stats": state.batch_stats}
    jax.tree.map(np.testing.assert_array_equal, model.variables, full)
    # No optimizer is built, and only params and batch_stats are asked of Orbax.
    requested = []
    restore = ocp.CheckpointManager.restore

    def spy(self, step, args=None):
        requested.append(sorted(args["state"].item))
        return restore(self, step, args=args)

    def no_optimizer(*args, **kwargs):
        raise AssertionError("load built an optimizer")

    monkeypatch.setattr(optax, "adam", no_optimizer)
    monkeypatch.setattr(ocp.CheckpointManager, "restore", spy)
    earlier = seqdis_jax.load(str(workdir), step=2)
    assert requested == [["batch_stats", "params"]]
    assert earlier.step == 2
    assert not np.array_equal(jax.tree.leaves(earlier.variables)[0],
                              jax.tree.leaves(model.variables)[0])


def test_encode_and_decode_follow_the_models_own_path(model, video):
    codes = model.encode(video, seed=3)
    m, t = model.module, video.shape[1]
    assert codes.s_mean.shape == codes.s_sample.shape == (2, m.static_dim)
    assert codes.d_mean.shape == codes.d_sample.shape == (2, t, m.dynamic_dim)

    @jax.jit
    def reference(variables, x, rng):  # the reconstruction evaluator's path, same draws
        out = m.apply(variables, x, False, rngs={"sample": rng})
        return out, m.apply(variables, out["s_mean"], out["d_mean"], False,
                            method=m.decode_distribution)[0]

    x = pipeline.model_inputs({"video": video}, 255.0)["x"]
    out, from_means = reference(model.variables, x, jax.random.PRNGKey(3))
    for got, key in zip(codes, ("s_mean", "s", "d_mean", "d")):
        np.testing.assert_allclose(got, out[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.decode(codes.s_mean, codes.d_mean), from_means, atol=1e-5)
    decoded = model.decode(codes.s_sample, codes.d_sample)
    assert decoded.shape == video.shape and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, out["reconstruction"], atol=1e-5)
    # Frames already in the model scale give the same codes as the stored uint8 frames.
    np.testing.assert_allclose(model.encode(np.asarray(x), seed=3).s_mean, codes.s_mean,
                               atol=1e-6)


def test_swap_exchanges_the_codes_of_two_batches(model, video):
    ab, ba = model.swap(video, video[::-1])
    assert ab.shape == ba.shape == video.shape
    a, b = model.encode(video), model.encode(video[::-1])
    np.testing.assert_allclose(ab, model.decode(a.s_mean, b.d_mean), atol=1e-5)
    np.testing.assert_allclose(ba, model.decode(b.s_mean, a.d_mean), atol=1e-5)
    with pytest.raises(errors.UserInputError, match="pass as many of each"):
        model.swap(video, video[:1])


def test_generate_draws_what_is_not_given(model, video):
    frames = video.shape[2:]
    assert model.generate(2).shape == (2, 8) + frames  # T of the dataset
    np.testing.assert_array_equal(model.generate(2, seed=1), model.generate(2, seed=1))
    assert not np.allclose(model.generate(2, seed=1), model.generate(2, seed=2))
    codes = model.encode(video)
    fixed_s = model.generate(2, s=codes.s_mean[0], num_steps=5)
    assert fixed_s.shape == (2, 5) + frames
    assert model.generate(2, d=codes.d_mean[0]).shape == (2, 8) + frames
    np.testing.assert_allclose(model.generate(2, s=codes.s_mean, d=codes.d_mean),
                               model.decode(codes.s_mean, codes.d_mean), atol=1e-6)


def _one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_steps_workdirs_and_inputs_are_one_line_errors(workdir, model, video, tmp_path):
    with pytest.raises(errors.UserInputError) as e:
        seqdis_jax.load(str(workdir), step=3)
    assert "[2, 4]" in _one_line(e)
    with pytest.raises(errors.UserInputError, match="does not exist") as e:
        seqdis_jax.load(str(tmp_path / "missing"))
    _one_line(e)
    with pytest.raises(errors.UserInputError, match="config.json") as e:
        seqdis_jax.load(str(tmp_path))
    _one_line(e)
    configuration.save_config(model.config, str(tmp_path))
    with pytest.raises(errors.MissingCheckpointError, match="train into it first") as e:
        seqdis_jax.load(str(tmp_path))
    _one_line(e)
    for call, match in ((lambda: model.encode(video[0]), r"x\[None\]"),
                        (lambda: model.decode(np.zeros((2, 3)), np.zeros((2, 8, 4))),
                         rf"\(B, {model.config.model.static_dim}\)"),
                        (lambda: model.generate(0), "positive")):
        with pytest.raises(errors.UserInputError, match=match) as e:
            call()
        _one_line(e)


def test_swap_figure_example_writes_a_png(workdir, tmp_path):
    out = tmp_path / "swap.png"
    result = _run("examples/swap_figure.py", f"--workdir={workdir}", f"--out={out}", "--b=3")
    assert result.returncode == 0, result.stderr[-3000:]
    from PIL import Image

    with Image.open(out) as image:  # 4 rows of 8 frames of 64x64, labels on the left
        assert image.size[0] > 8 * 64 and image.size[1] > 4 * 64
    bad = _run("examples/swap_figure.py", f"--workdir={workdir}", "--step=3")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("error: step=3")


def _video_config(module, method_options=None):
    config = module.get_config("smoke")
    for path, value in (method_options or {}).items():
        section, field = path.split(".")
        config[section][field] = value
    return config


CONFIGS = {
    "cdsvae": lambda: _video_config(cdsvae_shapes),
    "spyl": lambda: _video_config(spyl_shapes),
    "dbse_middle": lambda: _video_config(dbse_shapes, {"dbse.anchor": "middle"}),
    "rwae_actions": lambda: _video_config(rwae_shapes, {"rwae.num_actions": 3}),
    "speech_dsvae": lambda: test_modalities.speech_config("dsvae"),
    "series_dbse": lambda: test_modalities.series_config("dbse"),
}


# ~10 s of CPU each: the series DBSE (no conv; DBSE's clamped prior) runs in the default
# suite, the others with -m slow.
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=() if name == "series_dbse" else pytest.mark.slow)
    for name in sorted(CONFIGS)])
def test_every_method_and_modality_loads_encodes_and_generates(name, tmp_path):
    config = CONFIGS[name]()
    configuration.validate(config)
    method = models.get_method(config.method)
    module = method.build(config)
    video = (2, 6) + api._frame_shape(config)  # B = 2, T = 6
    state = train.create_train_state(module, train.make_optimizer(config, method),
                                     np.zeros(video, np.float32), jax.random.PRNGKey(0))
    manager = checkpointing.make_manager(str(tmp_path), 1, 1)
    checkpointing.save(manager, 1, state, force=True)
    manager.close()
    configuration.save_config(config, str(tmp_path))

    model = seqdis_jax.load(str(tmp_path))
    x = np.random.default_rng(0).uniform(size=video).astype(np.float32)
    codes = model.encode(x)
    assert codes.s_mean.shape == (2, config.model.static_dim)
    assert codes.d_sample.shape == (2, 6, model.dynamic_code_dim)
    assert model.decode(codes.s_mean, codes.d_mean).shape == video
    assert all(y.shape == video for y in model.swap(x, x[::-1]))
    assert model.generate(3, num_steps=6).shape == (3,) + video[1:]
    assert model.generate(2, s=codes.s_mean, num_steps=4).shape == (2, 4) + video[2:]


def test_rate_by_checkpoint_times_every_kept_state_on_one_step(workdir, capsys):
    """bench/rate_by_checkpoint.py (issue 20) on this module's run: fresh, steps 2 and 4, and
    their flushed copies, one compiled step; and its subnormal count against numpy."""
    from tests.test_bench import load_bench_script

    bench = load_bench_script("rate_by_checkpoint")
    summary = bench.main([f"--workdir={workdir}", "--checkpoints=2,4", "--flush", "--steps=2",
                          "--rounds=1"])
    names = ["fresh", "step_2", "step_2_flushed", "step_4", "step_4_flushed"]
    assert list(summary["steps_per_s"]) == names and min(summary["steps_per_s"].values()) > 0
    tiny = np.finfo(np.float32).tiny
    tree = {"a": np.array([0, tiny / 2, -tiny / 4, tiny, 1], np.float32), "b": np.arange(3)}
    assert bench.subnormals(tree) == 2
    np.testing.assert_array_equal(bench.flushed(tree)["a"], [0, 0, 0, tiny, 1])
    with pytest.raises(SystemExit, match=r"no checkpoint of step\(s\) \[3\]"):
        bench.main([f"--workdir={workdir}", "--checkpoints=3"])
    assert "step_4_flushed" in capsys.readouterr().out
