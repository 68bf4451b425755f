"""Downstream tasks on frozen codes (DBSE 5.3, Tables 2-3; SPYL 5.4, Table 2).

After a disentanglement model is trained, its codes of the train split (s as a length-1
sequence, or d_1:T, or the raw features for the "RF" baseline) are the inputs of a small
predictor, trained from scratch and scored on the codes of the test split:

- ETTh1 oil temperature: regression, MAE.
- Air Quality average daily rain: regression, MAE; month of the year from s: 12-way accuracy.
- PhysioNet in-hospital mortality: binary, AUROC and AUPRC; ICU unit from s: 4-way accuracy.

`fit_and_score` trains one `SequencePredictor` with Adam in a single jitted function (a
`jax.lax.scan` over the steps, minibatches drawn with `jax.random` on device) and returns the
test scores; `fit_and_score_seeds` repeats it over seeds (the papers report mean +- std).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqdis_jax import metrics

Array = jax.Array

KINDS = ("regression", "binary", "multiclass")
METRICS = {"regression": ("mae",), "binary": ("auroc", "auprc", "accuracy"),
           "multiclass": ("accuracy",)}

_STD_FLOOR = 1e-8

# How many times each jitted function has been traced (a Python side effect runs only while
# tracing); the tests read it to check that equal shapes do not recompile.
_trace_counts: collections.Counter[str] = collections.Counter()


def _check_kind(kind: str, num_classes: int | None) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown task kind {kind!r}; choose from {list(KINDS)}.")
    if kind == "multiclass" and (num_classes is None or num_classes < 2):
        raise ValueError(f"A multiclass task needs num_classes >= 2; got {num_classes!r}.")
    if kind != "multiclass" and num_classes is not None:
        raise ValueError(f"num_classes is for multiclass tasks only; got {num_classes!r} for "
                         f"a {kind} task.")


class SequencePredictor(nn.Module):
    """A small RNN trained on the frozen codes (SPYL 5.4: "we train a simple RNN classifier
    in which we utilize the latent representations"; DBSE 5.3: "a simple predictor network").

    An LSTM (`hidden` units) scanned over time on (N, T, D) inputs; its last hidden state
    goes through Linear(num_outputs). A static code s is a length-1 sequence (N, 1, D).
    Returns (N, num_outputs): regression values, binary logits or class logits.
    """

    num_outputs: int
    hidden: int = 32

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        rnn = nn.RNN(nn.OptimizedLSTMCell(self.hidden, name="lstm"))
        (_, h_last), _ = rnn(inputs, return_carry=True)
        return nn.Dense(self.num_outputs, name="head")(h_last)


def _loss(kind: str, outputs: Array, targets: Array) -> Array:
    if kind == "regression":
        # L1 on the standardised targets: MAE is the reported score, and the L1 minimiser
        # (the conditional median) is the predictor of least expected absolute error, where
        # L2 would fit the mean; it is also robust to heavy tails (daily rain is mostly 0).
        return jnp.mean(jnp.abs(outputs - targets))
    if kind == "binary":
        return jnp.mean(optax.sigmoid_binary_cross_entropy(outputs[:, 0], targets))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, targets))


@functools.partial(jax.jit, static_argnames=("kind", "num_outputs", "hidden", "steps",
                                             "batch_size"))
def _train(inputs: Array, targets: Array, key: Array, learning_rate: Array, *, kind: str,
           num_outputs: int, hidden: int, steps: int, batch_size: int) -> tuple[Any, Array]:
    """`steps` Adam updates of a fresh `SequencePredictor` on minibatches of `batch_size`
    indices drawn uniformly (with replacement) on device; one `lax.scan`, no host round trip.
    Returns (params, per-step training losses)."""
    _trace_counts["train"] += 1
    model = SequencePredictor(num_outputs, hidden)
    init_key, data_key = jax.random.split(key)
    params = model.init(init_key, inputs[:1])["params"]
    tx = optax.adam(learning_rate)

    def loss_fn(params, x, y):
        return _loss(kind, model.apply({"params": params}, x), y)

    def step(carry, i):
        params, opt_state = carry
        idx = jax.random.randint(jax.random.fold_in(data_key, i), (batch_size,), 0,
                                 inputs.shape[0])
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs[idx], targets[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    return params, losses


@functools.partial(jax.jit, static_argnames=("num_outputs", "hidden"))
def _apply(params: Any, inputs: Array, *, num_outputs: int, hidden: int) -> Array:
    _trace_counts["predict"] += 1
    return SequencePredictor(num_outputs, hidden).apply({"params": params}, inputs)


def predict(params: Any, inputs: np.ndarray, num_outputs: int, hidden: int = 32,
            batch_size: int = 1024) -> np.ndarray:
    """(N, T, D) -> (N, num_outputs) outputs of a trained predictor, in jitted batches of
    `min(batch_size, N)` (the last one padded, so one compilation per input shape)."""
    n = len(inputs)
    size = max(1, min(batch_size, n))
    outputs = []
    for start in range(0, n, size):
        batch = inputs[start:start + size]
        pad = size - len(batch)
        if pad:
            batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
        out = _apply(params, batch, num_outputs=num_outputs, hidden=hidden)
        outputs.append(np.asarray(out)[:size - pad])
    return np.concatenate(outputs) if outputs else np.zeros((0, num_outputs), np.float32)


def _as_sequences(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:  # a static code (N, D) is a length-1 sequence
        x = x[:, None, :]
    if x.ndim != 3:
        raise ValueError(f"{name} must be (N, T, D) sequences or (N, D) static codes; got shape "
                         f"{x.shape}.")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite numbers (impute missing values first).")
    return x.astype(np.float64)


def _check_targets(y: np.ndarray, n: int, kind: str, num_classes: int | None,
                   name: str) -> None:
    if len(y) != n or (y.ndim != 1 and not (kind == "regression" and y.ndim == 2)):
        raise ValueError(f"{name} must have shape ({n},)"
                         + (" or (N, K)" if kind == "regression" else "")
                         + f" to match its inputs; got {y.shape}.")
    if not np.all(np.isfinite(y.astype(np.float64))):
        raise ValueError(f"{name} must be finite.")
    if kind == "binary":
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"Binary {name} must be 0/1 or bool.")
        if len(np.unique(y)) < 2:
            raise ValueError(f"Binary {name} hold one class only; AUROC needs both.")
    if kind == "multiclass" and (not np.all(y == np.round(y)) or y.min() < 0
                                 or y.max() >= num_classes):
        raise ValueError(f"Multiclass {name} must be integers in [0, {num_classes}).")


def _prepare(train_inputs, train_targets, test_inputs, test_targets, kind, num_classes):
    """Checked and standardised arrays: (train_x, train_y, test_x, test_y, y_mean, y_std)."""
    _check_kind(kind, num_classes)
    train_x = _as_sequences(train_inputs, "train_inputs")
    test_x = _as_sequences(test_inputs, "test_inputs")
    if train_x.shape[2] != test_x.shape[2]:
        raise ValueError(f"Train and test inputs differ in feature size: {train_x.shape} vs "
                         f"{test_x.shape}.")
    train_y, test_y = np.asarray(train_targets), np.asarray(test_targets)
    _check_targets(train_y, len(train_x), kind, num_classes, "train_targets")
    _check_targets(test_y, len(test_x), kind, num_classes, "test_targets")
    if kind == "regression" and train_y.shape[1:] != test_y.shape[1:]:
        raise ValueError(f"Train and test targets differ in shape: {train_y.shape} vs "
                         f"{test_y.shape}.")
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError("Train and test splits must be non-empty.")
    # Each input feature standardised with the train split's mean and std over N and T.
    mean = train_x.mean(axis=(0, 1))
    std = np.maximum(train_x.std(axis=(0, 1)), _STD_FLOOR)
    train_x = ((train_x - mean) / std).astype(np.float32)
    test_x = ((test_x - mean) / std).astype(np.float32)
    y_mean = y_std = None
    if kind == "regression":
        train_y = train_y.astype(np.float64).reshape(len(train_y), -1)
        y_mean = train_y.mean(axis=0)
        y_std = np.maximum(train_y.std(axis=0), _STD_FLOOR)
        train_y = ((train_y - y_mean) / y_std).astype(np.float32)
    elif kind == "binary":
        train_y = train_y.astype(np.float32)
    else:
        train_y = train_y.astype(np.int32)
    return train_x, train_y, test_x, test_y, y_mean, y_std


def fit_and_score(train_inputs: np.ndarray, train_targets: np.ndarray, test_inputs: np.ndarray,
                  test_targets: np.ndarray, kind: str, num_classes: int | None = None, *,
                  steps: int = 1000, batch_size: int = 64, learning_rate: float = 1e-3,
                  seed: int = 0, hidden: int = 32, eval_batch_size: int = 1024
                  ) -> dict[str, float]:
    """Trains a `SequencePredictor` on (train_inputs, train_targets) and scores it on the test
    split.

    Inputs are (N, T, D) sequences (codes d_1:T, or raw features) or (N, D) static codes
    (taken as length-1 sequences); every feature is standardised with the train split's mean
    and std over N and T. Targets: regression (N,) or (N, K) reals (standardised with the
    train mean/std for training, predictions mapped back); binary (N,) 0/1; multiclass (N,)
    integers in [0, num_classes). Losses: L1, sigmoid and softmax cross-entropy.

    Returns the test scores: regression {"mae"} (in the targets' units); binary {"auroc",
    "auprc", "accuracy"} (logit > 0); multiclass {"accuracy"}. Bad inputs raise ValueError.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got {steps} and {batch_size}.")
    train_x, train_y, test_x, test_y, y_mean, y_std = _prepare(
        train_inputs, train_targets, test_inputs, test_targets, kind, num_classes)
    num_outputs = {"regression": train_y.reshape(len(train_y), -1).shape[1], "binary": 1,
                   "multiclass": num_classes}[kind]
    params, _ = _train(train_x, train_y, jax.random.PRNGKey(seed),
                       jnp.asarray(learning_rate, jnp.float32), kind=kind,
                       num_outputs=num_outputs, hidden=hidden, steps=steps,
                       batch_size=batch_size)
    outputs = predict(params, test_x, num_outputs, hidden, eval_batch_size).astype(np.float64)
    if kind == "regression":
        pred = (outputs * y_std + y_mean).reshape(test_y.shape)
        return {"mae": metrics.mean_absolute_error(pred, test_y)}
    if kind == "binary":
        logits, labels = outputs[:, 0], test_y.astype(bool)
        return {"auroc": metrics.auroc(logits, labels), "auprc": metrics.auprc(logits, labels),
                "accuracy": float(np.mean((logits > 0) == labels))}
    return {"accuracy": float(np.mean(np.argmax(outputs, axis=-1) == test_y))}


def fit_and_score_seeds(train_inputs: np.ndarray, train_targets: np.ndarray,
                        test_inputs: np.ndarray, test_targets: np.ndarray, kind: str,
                        num_classes: int | None = None, *, seeds: Sequence[int] = (0, 1, 2),
                        **kwargs: Any) -> dict[str, float]:
    """`fit_and_score` once per seed (initialisation and minibatches): {metric: mean over
    seeds, metric + "_std": std over seeds (population std, as `latent_classification`)}.
    `kwargs` are `fit_and_score`'s keywords (steps, batch_size, learning_rate, ...)."""
    if not seeds:
        raise ValueError("fit_and_score_seeds needs at least one seed.")
    runs = [fit_and_score(train_inputs, train_targets, test_inputs, test_targets, kind,
                          num_classes, seed=seed, **kwargs) for seed in seeds]
    results = {}
    for name in runs[0]:
        values = [run[name] for run in runs]
        results[name] = float(np.mean(values))
        results[f"{name}_std"] = float(np.std(values))
    return results
