"""Config validation and the workdir's `config.json`: checked before anything is written."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from seqdis_jax import evaluators, models
from seqdis_jax.data import registry as data_registry
from seqdis_jax.errors import UserInputError
from seqdis_jax.models.dsvae import DYNAMIC_POSTERIORS, MODALITIES
from seqdis_jax.nn import conv
from seqdis_jax.nn.recurrent import RECURRENT_INITS, STATIC_HEAD_ACTIVATIONS

CONFIG_FILE = "config.json"
# Fields a resumed or re-evaluated run may change without invalidating the checkpoint.
MUTABLE_PREFIXES = ("train.num_steps", "train.log_every", "train.checkpoint_every",
                    "train.keep_checkpoints", "train.best_", "train.keep_best",
                    "train.validation_batches", "train.max_skips", "mesh.", "eval.", "judge.")
# Fields added after runs were saved, with the value that means what those runs did.
ADDED_FIELDS = {"model.modality": "video", "data.num_features": 0,
                "rwae.decoder_fusion": "framewise", "model.dynamic_posterior": "lstm",
                "model.static_head_activation": "linear", "cdsvae.mws_estimator": "sequence",
                "spyl.mws_estimator": "sequence", "dbse.anchor_decode": "shared",
                "model.recurrent_init": "flax", "model.cpu_conv_lowering": "gemm",
                "model.product_dtype": "float32"}


# Named precisions (benchmarks, bench/bf16_drift.py): (model.compute_dtype, model.product_dtype).
# "bfloat16" runs activations and products in bf16; "bf16_products" keeps a float32 network and
# multiplies only the frame networks' convolutions in bf16 (sums in float32).
PRECISIONS = {"float32": ("float32", "float32"), "bfloat16": ("bfloat16", "float32"),
              "bf16_products": ("float32", "bfloat16")}


def set_precision(config: ml_collections.ConfigDict, name: str) -> None:
    """Sets model.compute_dtype and model.product_dtype to the named PRECISIONS entry."""
    if name not in PRECISIONS:
        raise UserInputError(f"precision must be one of {sorted(PRECISIONS)}, got {name!r}.")
    config.model.compute_dtype, config.model.product_dtype = PRECISIONS[name]


def _positive(config: ml_collections.ConfigDict, *names: str) -> None:
    for name in names:
        value = config
        for part in name.split("."):
            value = value[part]
        if not value > 0:
            raise UserInputError(f"config.{name} must be > 0, got {value!r}; set "
                                 f"--config.{name} to a positive value.")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks values that the flag parser cannot (ranges, names of registered things)."""
    if config.method not in models.METHODS:
        raise UserInputError(
            f"Unknown method {config.method!r}; config.method must be one of "
            f"{sorted(models.METHODS)}."
        )
    try:
        models.get_method(config.method).validate(config)
    except ValueError as e:
        raise UserInputError(str(e)) from None
    if config.data.name not in data_registry.DATASETS:
        raise UserInputError(
            f"Unknown dataset {config.data.name!r}; config.data.name must be one of "
            f"{sorted(data_registry.DATASETS)}."
        )
    unknown = [e for e in config.eval.evaluators if e != "all" and e not in
               evaluators.EVALUATORS]
    if unknown:
        raise UserInputError(
            f"Unknown evaluator(s) {unknown}; config.eval.evaluators may hold 'all' or "
            f"{sorted(evaluators.EVALUATORS)}."
        )
    modality = config.model.get("modality", "video")
    if modality not in MODALITIES:
        raise UserInputError(
            f"config.model.modality must be one of {MODALITIES}, got {modality!r}.")
    if modality != "video" and not config.data.get("num_features", 0) > 0:
        raise UserInputError(
            f"config.model.modality={modality!r} needs config.data.num_features > 0 (the "
            "features per time step, e.g. 200 spectral bins).")
    for field, allowed in (("dynamic_posterior", DYNAMIC_POSTERIORS),
                           ("static_head_activation", STATIC_HEAD_ACTIVATIONS),
                           ("recurrent_init", RECURRENT_INITS)):
        value = config.model.get(field, allowed[0])
        if value not in allowed:
            raise UserInputError(f"config.model.{field} must be one of {allowed}, got "
                                 f"{value!r}.")
    for field in ("compute_dtype", "product_dtype"):
        value = config.model.get(field, "float32")
        if value not in ("float32", "bfloat16"):
            raise UserInputError(
                f"config.model.{field} must be 'float32' or 'bfloat16', got {value!r}.")
    if modality != "video" and config.model.get("product_dtype", "float32") != "float32":
        # Only the frame convolutions take bf16 products; the speech and series networks
        # are Dense/LSTM stacks that would silently stay float32.
        raise UserInputError(
            f"config.model.product_dtype='bfloat16' applies to the video frame convolutions "
            f"only, and config.model.modality is {modality!r}; set "
            "config.model.product_dtype='float32' (or config.model.compute_dtype='bfloat16' "
            "for a bf16 network).")
    if config.model.get("cpu_conv_lowering", "gemm") not in conv.LOWERINGS:
        raise UserInputError(
            f"config.model.cpu_conv_lowering must be one of {conv.LOWERINGS}, got "
            f"{config.model.cpu_conv_lowering!r}.")
    _positive(
        config, "data.batch_size", "data.num_train", "data.num_test", "data.pixel_scale",
        "model.static_dim", "model.dynamic_dim", "model.hidden_dim", "model.feature_dim",
        "model.width", "model.prior_layers", "train.learning_rate", "train.log_every",
        "train.checkpoint_every", "train.keep_checkpoints", "eval.batch_size",
        "eval.grid_sequences", "eval.judge_repeats", "eval.latent_seeds", "eval.mi_batch_size",
        "judge.batch_size", "judge.feature_dim", "judge.hidden_dim", "judge.head_dim",
        "judge.width", "judge.train.learning_rate", "judge.train.log_every",
        "judge.train.checkpoint_every", "judge.train.keep_checkpoints",
    )
    if config.train.get("best_mode", "min") not in ("min", "max"):
        raise UserInputError(
            f"config.train.best_mode must be 'min' or 'max', got {config.train.best_mode!r}.")
    for name, minimum in (("max_skips", 1), ("keep_best", 0), ("validation_batches", 0)):
        if name in config.train and config.train[name] < minimum:
            raise UserInputError(
                f"config.train.{name} must be >= {minimum}, got {config.train[name]}.")
    if config.eval.get("tsne_threads", 1) < 0:
        raise UserInputError(
            f"config.eval.tsne_threads must be >= 0, got {config.eval.tsne_threads}; set "
            "--config.eval.tsne_threads=1 (one thread, the default) or 0 (every core).")
    if config.eval.mi_every < 0:
        raise UserInputError(f"config.eval.mi_every must be >= 0, got {config.eval.mi_every}.")
    if not 0.0 <= config.judge.min_accuracy <= 1.0:
        raise UserInputError(
            f"config.judge.min_accuracy must be in [0, 1], got {config.judge.min_accuracy}.")
    if config.train.num_steps < 0:
        raise UserInputError(f"config.train.num_steps must be >= 0, got {config.train.num_steps}.")
    if config.data.name == "shapes" and config.data.batch_size > config.data.num_train:
        raise UserInputError(
            f"config.data.batch_size ({config.data.batch_size}) exceeds config.data.num_train "
            f"({config.data.num_train}); lower the batch size."
        )
    if config.eval.grid_sequences < 2:
        raise UserInputError("config.eval.grid_sequences must be >= 2 for the swap grid.")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _jsonable(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return json.loads(config.to_json())


def check_workdir_compatible(config: ml_collections.ConfigDict, workdir: str) -> None:
    """A workdir that holds a run with a different model/data/loss config is refused, so a
    mistyped --workdir cannot resume (or overwrite) someone else's checkpoint."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        saved = _flatten(json.load(f))
    current = _flatten(_jsonable(config))
    differing = sorted(
        k
        for k in set(saved) | set(current)
        if saved.get(k) != current.get(k) and not k.startswith(MUTABLE_PREFIXES)
        # A field added to the library after the run was saved, left off or at the value
        # that reproduces the old behaviour, is no change.
        and not (k not in saved
                 and (current.get(k) in (False, None) or _is_added_default(k, current)))
    )
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differing)
        raise UserInputError(
            f"--workdir {workdir} holds a run with a different config ({details}). "
            "Use a new --workdir, or pass the config that run used."
        )


def _is_added_default(key: str, current: dict[str, Any]) -> bool:
    return key in ADDED_FIELDS and current.get(key) == ADDED_FIELDS[key]


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes the resolved config as `config.json` (atomically; process 0 of a multi-host
    run)."""
    if jax.process_index() != 0:
        return
    path = os.path.join(workdir, CONFIG_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(_jsonable(config), f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def _from_json(value: Any) -> Any:
    # JSON has no tuples: the configs' sequences (shapes, evaluators, ...) are tuples.
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir` (`save_config`), with every override it was given;
    JSON lists come back as tuples. A workdir without one raises UserInputError."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise UserInputError(
            f"{os.path.abspath(workdir)} holds no {CONFIG_FILE}: pass the --workdir of a run "
            "trained with `python -m experiments.main --mode=train`.")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise UserInputError(f"{path} cannot be read ({e}); it is written by a training run: "
                             "train into a new --workdir.") from None
    return ml_collections.ConfigDict(_from_json(saved))
