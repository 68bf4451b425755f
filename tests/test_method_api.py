"""The method interface (seqdis_jax/models/method.py): a method defined here, in the test file,
is added through the registry alone -- no file of the package changes -- and then its config
section, its checks, its optimiser and its loss are what the library uses: it validates, trains
through `train.train_and_evaluate` (the real step, loop, checkpoints and an evaluator) and its
loss goes down."""

import json
import math
import os

import ml_collections
import optax
import pytest

from experiments import shapes
from experiments.base import use_method
from seqdis_jax import configuration, models, train
from seqdis_jax.errors import UserInputError
from seqdis_jax.models import LossInputs, LossOutput, Method, dsvae, loss_output


def toy_default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.beta = 0.1  # one weight on both KL terms
    c.learning_rate = 3e-3
    return c


def toy_checks(config: ml_collections.ConfigDict) -> None:
    if not config.toy.beta >= 0:
        raise ValueError(f"config.toy.beta must be >= 0, got {config.toy.beta}.")


def toy_loss(inputs: LossInputs) -> LossOutput:
    """A beta-VAE on the DSVAE network: squared error + beta (KL_s + KL_d)."""
    out, batch_stats = inputs.forward()
    recon = dsvae.output_reconstruction_error(inputs.x, out)
    kl = sum(dsvae.kl_terms(out))
    return loss_output(recon + inputs.config.toy.beta * kl, batch_stats, reconstruction=recon,
                       kl=kl)


TOY = Method(name="toy", build=dsvae.build, loss=toy_loss, default_config=toy_default_config,
             checks=toy_checks,
             optimizer=lambda config: optax.adam(config.toy.learning_rate))


@pytest.fixture
def toy():
    models.register(TOY)
    yield TOY
    models.METHODS.pop(TOY.name)


def _toy_config(steps: int = 24) -> ml_collections.ConfigDict:
    config = shapes.get_config("smoke")  # 64x64 frames at 1/16 width, batch 4
    use_method(config, "toy")
    config.train.num_steps = steps
    config.train.log_every = 4
    config.train.checkpoint_every = steps
    config.eval.mi_every = 0
    config.eval.evaluators = ("reconstruction",)
    return config


def test_a_method_registered_from_outside_the_package_trains_end_to_end(toy, tmp_path):
    config = _toy_config()
    assert config.method == "toy" and config.toy == toy_default_config()
    assert models.get_method("toy") is toy
    configuration.validate(config)
    workdir = str(tmp_path)

    results = train.train_and_evaluate(config, workdir)

    assert results["step"] == config.train.num_steps
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(config.train.num_steps)))
    assert math.isfinite(results["test/reconstruction"])
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        logged = [r for r in map(json.loads, f) if r["split"] == "train"]
    losses = [r["loss"] for r in logged]
    assert len(losses) == config.train.num_steps // config.train.log_every
    assert all(math.isfinite(v) for v in losses)
    assert {"reconstruction", "kl", "grad_norm"} <= set(logged[0])  # the toy's own terms
    assert losses[-1] < losses[0], losses


def test_the_registered_method_checks_its_own_section(toy):
    config = _toy_config()
    config.toy.beta = -1.0
    with pytest.raises(UserInputError, match="config.toy.beta must be >= 0"):
        configuration.validate(config)
    del config["toy"]
    with pytest.raises(UserInputError, match=r"get_method\('toy'\)\.configure\(config\)"):
        configuration.validate(config)


def test_its_optimizer_is_the_one_train_uses(toy):
    config = _toy_config()
    config.toy.learning_rate = 0.5
    tx = train.make_optimizer(config, toy)
    update, _ = tx.update({"w": 1.0}, tx.init({"w": 0.0}))
    # Adam's first step is -lr * sign(g): the toy's rate, not config.train.learning_rate.
    assert float(update["w"]) == pytest.approx(-0.5, rel=1e-4)


def test_a_name_is_registered_once(toy):
    with pytest.raises(ValueError, match="already registered"):
        models.register(toy)
    with pytest.raises(ValueError, match="already registered"):
        models.register(Method(name="dsvae", build=dsvae.build, loss=toy_loss))
