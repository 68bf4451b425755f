"""Judge classifiers: the supervised sequence classifiers that score generated sequences.

Architecture of the authors' Sprites judge `classifier_Sprite_all` (REFERENCE_FACTS.md
section 1): the DCGAN-64 frame encoder (g = 128) -> bidirectional LSTM (hidden 256), whose last
forward and backward states are concatenated -> one head per labelled factor,
Linear(2H -> 256) -> ReLU -> Linear(-> classes). The authors ship no script to train it; here it
is trained with full supervision on the training split (`--mode=judge`, `train_judge`, on
the fit loop of fit.py) and stored with Orbax beside a `judge.json` that names the data it was
trained on, so it is reused by every run on the same dataset and refused for any other
(`restore_judge`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from seqdis_jax import checkpointing, evaluators, fit, optim, parallel, train_step
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import RECORD_KEY
from seqdis_jax.errors import JudgeMismatchError, MissingCheckpointError
from seqdis_jax.models.method import LossInputs, LossOutput, Method
from seqdis_jax.nn.recurrent import bidirectional_last_states
from seqdis_jax.nn.video import FrameEncoder

Array = jax.Array

METADATA_FILE = "judge.json"
judge_conv_init = nn.initializers.lecun_normal()  # not the VAEs' N(0, 0.01^2): see FrameEncoder


# Options of the built-in shapes generator that change what a sequence looks like.
GENERATOR_OPTIONS = ("image_size", "shape_scale", "motion_set", "shapes")


class Judge(nn.Module):
    """Sequence classifier with one softmax head per factor; returns {factor: logits}."""

    factors: tuple[tuple[str, int], ...]  # (name, number of classes), in head order
    feature_dim: int = 128
    hidden_dim: int = 256
    head_dim: int = 256
    width: float = 1.0

    @nn.compact
    def __call__(self, video: Array, train: bool = False) -> dict[str, Array]:
        b, t = video.shape[:2]
        frames = video.reshape((b * t,) + video.shape[2:])
        features = FrameEncoder(self.feature_dim, self.width, kernel_init=judge_conv_init,
                                name="encoder")(frames, train)
        summary = bidirectional_last_states(features.reshape(b, t, -1), self.hidden_dim)
        logits = {}
        for name, classes in self.factors:
            # Flax's default (LeCun) init: two stacked N(0, 0.01^2) layers, the authors' init
            # for their VAEs' Linear layers, shrink the gradient reaching the encoder ~1e4-fold
            # and the judge barely trains (measured: colour 36% after 200 steps on shapes).
            h = nn.relu(nn.Dense(self.head_dim, name=f"{name}_hidden")(summary))
            logits[name] = nn.Dense(classes, name=f"{name}_out")(h)
        return logits


def factors_of(dataset: Any) -> tuple[tuple[str, int], ...]:
    """(name, classes) for every labelled factor of a registry `Dataset`, static first."""
    names = tuple(dataset.static_factors) + tuple(dataset.dynamic_factors)
    return tuple((name, int(dataset.num_classes[name])) for name in names)


def build(config: ml_collections.ConfigDict, dataset: Any) -> Judge:
    j = config.judge
    return Judge(
        factors=factors_of(dataset),
        feature_dim=j.feature_dim,
        hidden_dim=j.hidden_dim,
        head_dim=j.head_dim,
        width=j.width,
    )


def loss_fn(inputs: LossInputs) -> LossOutput:
    """Sum over factors of the softmax cross-entropy; metrics: each factor's and accuracy."""
    logits, batch_stats = inputs.apply(inputs.x)
    metrics, loss = {}, 0.0
    for name, value in logits.items():
        labels = inputs.batch[name]
        xent = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(value, labels))
        metrics[f"xent_{name}"] = xent
        metrics[f"accuracy_{name}"] = jnp.mean(jnp.argmax(value, -1) == labels)
        loss = loss + xent
    metrics["loss"] = loss
    return loss, (metrics, batch_stats)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The standard Adam (`optim.adam_of`) of the judge's training section
    `config.judge.train`."""
    return optim.adam_of(config.judge.train)


def as_method(dataset: Any) -> Method:
    """The judge of `dataset` as a `Method`, so the fit loop (fit.py) trains it as it trains
    a model, with `optimizer`."""
    return Method(name="judge", build=lambda config: build(config, dataset), loss=loss_fn,
                  optimizer=optimizer)


def data_signature(config: ml_collections.ConfigDict, dataset: Any) -> dict[str, Any]:
    """What a judge must agree on with the data it scores: dataset, image size, factors, and
    the options of a generated dataset (GENERATOR_OPTIONS, where the config has them)."""
    signature = dict(
        dataset=config.data.name,
        video_shape=list(dataset.video_shape),
        factors=[list(f) for f in factors_of(dataset)],
        pixel_scale=float(config.data.pixel_scale),
    )
    options = {k: list(v) if isinstance(v, (tuple, list)) else v  # as judge.json holds it
               for k, v in ((k, config.data[k]) for k in GENERATOR_OPTIONS if k in config.data)}
    if options:  # absent for prepared datasets, so their judges' metadata is unchanged
        signature["generator"] = options
    return signature


def judge_architecture(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {k: config.judge[k] for k in ("feature_dim", "hidden_dim", "head_dim", "width")}


def write_metadata(judge_dir: str, metadata: dict[str, Any]) -> None:
    """judge.json, atomically, from process 0 only."""
    if jax.process_index() != 0:
        return
    path = os.path.join(judge_dir, METADATA_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def read_metadata(judge_dir: str) -> dict[str, Any] | None:
    path = os.path.join(judge_dir, METADATA_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)



def check_compatible(metadata: dict[str, Any], config: ml_collections.ConfigDict,
                     dataset: Any, judge_dir: str) -> None:
    """Refuses a judge trained on another dataset, image size or label set."""
    expected = data_signature(config, dataset) | {"architecture": judge_architecture(config)}
    differing = [k for k in expected if metadata.get(k) != expected[k]]
    if differing:
        details = "; ".join(f"{k}: judge has {metadata.get(k)!r}, run needs {expected[k]!r}"
                            for k in differing)
        raise JudgeMismatchError(
            f"The judge in {judge_dir} does not fit this run ({details}). Point "
            "config.judge.workdir at a judge trained for this dataset, or train one there with "
            "--mode=judge."
        )


def train_judge(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Trains the judge of `config.data` into `config.judge.workdir` with full supervision
    on the training split (the fit loop, on the schedule of `config.judge.train` and batches
    of `config.judge.batch_size`), then measures its test accuracy per factor and writes
    judge.json. A judge that already reached `config.judge.train.num_steps` there is only
    re-measured."""
    judge_dir = os.path.abspath(config.judge.workdir)
    train_data = data_registry.load(config.data, "train")
    existing = read_metadata(judge_dir)
    if existing is not None:
        check_compatible(existing, config, train_data, judge_dir)
    os.makedirs(judge_dir, exist_ok=True)
    method = as_method(train_data)
    model = method.build(config)
    keys = (RECORD_KEY,) + tuple(name for name, _ in factors_of(train_data))
    state, seconds = fit.fit(method, model, config, config.judge.train, config.judge.batch_size,
                             train_data, judge_dir, keys, record_machine=False)
    test_data = data_registry.load(config.data, "test")
    accuracy = evaluators.judge_accuracy(
        config, model, {"params": state.params, "batch_stats": state.batch_stats}, test_data
    )
    metadata = data_signature(config, train_data) | {
        "architecture": judge_architecture(config),
        "step": int(state.step),
        "test_accuracy": accuracy,
        "train_seconds": seconds,
    }
    write_metadata(judge_dir, metadata)
    fit.log("Judge test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    return {f"judge/test_accuracy/{k}": v for k, v in accuracy.items()} | {
        "judge/train_seconds": seconds}


def restore_judge(
    config: ml_collections.ConfigDict, dataset: Any
) -> tuple[Judge, dict[str, Any], dict[str, Any]]:
    """(judge module, variables, judge.json) from `config.judge.workdir`; trains the judge
    first when it is missing and `config.judge.train_if_missing` is set."""
    judge_dir = os.path.abspath(config.judge.workdir)
    metadata = read_metadata(judge_dir)
    if metadata is None:
        if not config.judge.train_if_missing:
            raise MissingCheckpointError(
                f"No trained judge in {judge_dir} (config.judge.workdir). Train it with: "
                f"python -m experiments.main --config=<this config> --mode=judge "
                f"(or set --config.judge.train_if_missing=True)."
            )
        fit.log(f"No judge in {judge_dir}: training one (config.judge.train_if_missing).")
        train_judge(config)
        metadata = read_metadata(judge_dir)
    check_compatible(metadata, config, dataset, judge_dir)
    model = build(config, dataset)
    shape = (config.judge.batch_size,) + tuple(dataset.video_shape)
    manager = checkpointing.make_manager(judge_dir, 1, 1, create=False)
    target, _ = train_step.sharded_restore_target(model, optimizer(config), shape,
                                                  parallel.mesh_from_config(config))
    state = checkpointing.restore(manager, target, step=metadata["step"])
    manager.close()
    return model, {"params": state.params, "batch_stats": state.batch_stats}, metadata
