"""Every experiment config: all variants build and validate; each `:smoke` variant runs end to
end through the launcher and its Orbax checkpoint reloads in --mode=eval with identical
metrics."""

import importlib
import json
import os
import pkgutil

import pytest

import experiments
from experiments import main as launcher
from seqdis_jax import configuration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHEETS = os.path.join(ROOT, "..", "shared", "data", "sprites_lpc")
CONFIG_MODULES = sorted(
    m.name for m in pkgutil.iter_modules(experiments.__path__) if m.name not in ("main", "base")
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


def _prepare_data(config, tmp_path_factory):
    """Overrides that point a smoke config at data it can read."""
    if config.data.name == "sprites":
        if not os.path.isdir(SHEETS):
            pytest.skip(f"LPC sheets not found at {SHEETS}")
        from data_prep import sprites as prep

        data_dir = str(tmp_path_factory.mktemp("tfds"))
        prep.prepare(SHEETS, data_dir, num_characters=2)
        return {"data.data_dir": data_dir}
    return {}


@pytest.mark.parametrize("name", CONFIG_MODULES)
def test_smoke_variant_trains_and_its_checkpoint_reloads(name, tmp_path_factory):
    module = importlib.import_module(f"experiments.{name}")
    config = module.get_config("smoke")
    overrides = _prepare_data(config, tmp_path_factory)
    overrides["judge.workdir"] = str(tmp_path_factory.mktemp("judge"))
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    workdir = str(tmp_path_factory.mktemp(name) / "run")
    trained = launcher.run(config, workdir, "train")
    assert trained["step"] == config.train.num_steps
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(config.train.num_steps)))
    reloaded = launcher.run(config, workdir, "eval")
    for key in ("test/reconstruction", "test/kl_static", "fix_dynamics/motion/accuracy"):
        assert reloaded[key] == pytest.approx(trained[key], rel=1e-6), key
    on_disk = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    assert on_disk["step"] == config.train.num_steps
