"""Every experiment config: all variants build and validate; each `:smoke` variant runs end to
end through the launcher and its Orbax checkpoint reloads in --mode=eval with identical
metrics."""

import fcntl
import hashlib
import importlib
import json
import os
import pkgutil

import ml_collections
import pytest

import experiments
from experiments import main as launcher
from seqdis_jax import configuration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHEETS = os.path.join(ROOT, "..", "shared", "data", "sprites_lpc")
CONFIG_MODULES = sorted(
    m.name for m in pkgutil.iter_modules(experiments.__path__)
    if m.name not in ("main", "base", "reproduce", "catalog")
)


def test_there_are_configs():
    assert {"shapes", "sprites", "cdsvae_shapes", "cdsvae_sprites", "spyl_shapes",
            "spyl_sprites"} <= set(CONFIG_MODULES)


@pytest.mark.parametrize("name", CONFIG_MODULES)
def test_every_variant_validates_and_documents_itself(name):
    module = importlib.import_module(f"experiments.{name}")
    assert "python -m experiments.main" in module.__doc__
    for variant in module.VARIANTS:
        configuration.validate(module.get_config(variant))


# Datasets prepared from a synthetic fixture of their published layout (tests/<name>_fixture.py).
FIXTURE_DATASETS = ("mug", "jester", "letters", "fsdd", "timit", "physionet")
_prepared_data_dirs: dict[str, str] = {}


def _prepare_data(config, tmp_path_factory):
    """Overrides that point a smoke config at data it can read (each dataset built once)."""
    name = config.data.name
    if name == "sprites":
        if not os.path.isdir(SHEETS):
            pytest.skip(f"LPC sheets not found at {SHEETS}")
        if name not in _prepared_data_dirs:
            from data_prep import sprites as prep

            data_dir = str(tmp_path_factory.mktemp("tfds"))
            prep.prepare(SHEETS, data_dir, num_characters=2)
            _prepared_data_dirs[name] = data_dir
        return {"data.data_dir": _prepared_data_dirs[name]}
    if name in FIXTURE_DATASETS:
        if name not in _prepared_data_dirs:
            fixture = importlib.import_module(f"{name}_fixture")  # tests/ is on sys.path
            data_dir = str(tmp_path_factory.mktemp(f"tfds_{name}"))
            fixture.prepare_for_tests(data_dir)
            _prepared_data_dirs[name] = data_dir
        return {"data.data_dir": _prepared_data_dirs[name]}
    if name == "smmnist" and not os.path.isdir(os.path.join(ROOT, config.data.source_dir)):
        pytest.skip(f"MNIST digits not found at {config.data.source_dir}")
    return {}


_judge_dirs: dict[str, str] = {}


def _shared_judge_dir(config, tmp_path_factory) -> str:
    """One judge per dataset and judge settings for the whole test run, shared by the
    pytest-xdist workers (each judge trains for 10-20 s, most of it compiling): the first
    smoke run of a dataset trains it under a file lock, later ones (in any worker) restore it.
    `config.data.data_dir` must already point at the prepared data."""
    from seqdis_jax import judge

    data = {k: v for k, v in config.data.to_dict().items()
            if k not in ("batch_size", "data_dir")}  # each worker prepares its own copy
    settings = {k: v for k, v in config.judge.to_dict().items() if k != "workdir"}
    key = json.dumps([data, settings], sort_keys=True, default=str)
    if key not in _judge_dirs:
        base = tmp_path_factory.getbasetemp()
        shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        judge_dir = shared / "shared_judges" / f"{config.data.name}_{digest}"
        judge_dir.parent.mkdir(exist_ok=True)
        with open(f"{judge_dir}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if judge.read_metadata(str(judge_dir)) is None:
                judge_config = ml_collections.ConfigDict(config.to_dict())
                judge_config.judge.workdir = str(judge_dir)
                judge.train_judge(judge_config)
        _judge_dirs[key] = str(judge_dir)
    return _judge_dirs[key]


# The evaluators whose metrics the reload compares, by the prefix of their metric names.
RELOAD_EVALUATORS = {"test/": "reconstruction", "fix_": "judge_generation",
                     "eer/": "verification_eer", "downstream/": "downstream"}


def _reload_evaluators(config) -> tuple[str, ...]:
    """The training run's evaluators up to the last one the reload compares (the reload runs
    fewer, to keep CI within its budget; the same restored weights give every evaluator the
    same numbers). A prefix of the list: evaluator i draws with fold_in(rng, i)."""
    from seqdis_jax import evaluators
    from seqdis_jax.data import registry

    names = evaluators.select_evaluators(config.eval.evaluators,
                                         registry.load(config.data, "test"),
                                         config.model.modality)
    last = max(i for i, name in enumerate(names) if name in RELOAD_EVALUATORS.values())
    return tuple(names[:last + 1])


def _train_and_reload(config, workdir):
    """Trains through the launcher, reloads the checkpoint in --mode=eval; returns both results
    after checking that the reload reproduces the evaluation exactly."""
    trained = launcher.run(config, workdir, "train")
    assert trained["step"] == config.train.num_steps
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(config.train.num_steps)))
    # Video is scored by its judge; speech and time series by judge-free metrics.
    scored = ("fix_",) if config.model.modality == "video" else ("eer/", "downstream/")
    assert "test/reconstruction" in trained
    assert any(k.startswith(scored) for k in trained), sorted(trained)
    reload_config = ml_collections.ConfigDict(config.to_dict())
    reload_config.eval.evaluators = _reload_evaluators(config)
    reloaded = launcher.run(reload_config, workdir, "eval")
    compared = [k for k in reloaded if k in trained and isinstance(trained[k], float)
                and k.startswith(tuple(RELOAD_EVALUATORS))]
    assert "test/reconstruction" in compared
    assert any(k.startswith(scored) for k in compared), sorted(reloaded)
    for key in compared:
        assert reloaded[key] == pytest.approx(trained[key], rel=1e-6, abs=1e-9), key
    on_disk = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    assert on_disk["step"] == config.train.num_steps
    return trained, reloaded


# The methods' shapes configs run the networks and losses their Sprites configs run in CI, on
# the data `shapes` runs in CI; they are slow-marked to keep CI within its 20 minutes
# (45-66 s each there): `python -m pytest -m slow tests/test_configs.py` runs them.
SHAPES_METHOD_CONFIGS = ("cdsvae_shapes", "dbse_shapes", "rwae_gan_shapes", "rwae_shapes",
                         "spyl_shapes")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SHAPES_METHOD_CONFIGS else name
    for name in CONFIG_MODULES])
def test_smoke_variant_trains_and_its_checkpoint_reloads(name, tmp_path_factory):
    module = importlib.import_module(f"experiments.{name}")
    config = module.get_config("smoke")
    for key, value in _prepare_data(config, tmp_path_factory).items():
        section, field = key.split(".")
        config[section][field] = value
    if config.model.modality == "video":
        config.judge.workdir = _shared_judge_dir(config, tmp_path_factory)
    _train_and_reload(config, str(tmp_path_factory.mktemp(name) / "run"))


MUG_METHOD_SMOKES = [v for v in importlib.import_module("experiments.mug").VARIANTS
                     if v.endswith("_smoke")]


# Slow (30-50 s each): every method's own smoke variant runs above on Sprites and on shapes,
# and every MUG variant validates in test_every_variant_validates_and_documents_itself.
@pytest.mark.slow
@pytest.mark.parametrize("variant", MUG_METHOD_SMOKES)
def test_every_mug_method_trains_on_the_fixture_build(variant, tmp_path_factory):
    """Each method's MUG settings (`experiments/mug.py:<method>_smoke`) train and are scored by
    the expression/subject judge; `:smoke` (C-DSVAE) also reloads its checkpoint above."""
    config = importlib.import_module("experiments.mug").get_config(variant)
    config.data.data_dir = _prepare_data(config, tmp_path_factory)["data.data_dir"]
    config.judge.workdir = _shared_judge_dir(config, tmp_path_factory)
    config.eval.evaluators = ("reconstruction", "judge_generation")
    trained = launcher.run(config, str(tmp_path_factory.mktemp(variant) / "run"), "train")
    assert trained["step"] == config.train.num_steps
    assert {"fix_dynamics/expression/accuracy", "fix_static/subject/accuracy"} <= set(trained)
