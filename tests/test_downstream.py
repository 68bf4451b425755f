"""Downstream predictors on frozen codes: they learn what is learnable, stay at chance on
noise, are reproducible per seed, compile once per shape, and reject bad inputs."""

import numpy as np
import pytest

from seqdis_jax import downstream

STEPS = 300  # enough for these toy tasks; keeps each test to a few seconds on a CPU


def _sequences(n, t=6, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t, d)).astype(np.float32)


def test_regression_beats_predicting_the_mean():
    rng = np.random.default_rng(1)
    x_train, x_test = _sequences(512, seed=2), _sequences(256, seed=3)
    # Targets in arbitrary units (offset and scale): the mean of feature 0 over time + noise.
    target = lambda x: 5.0 + 3.0 * (x[:, :, 0].mean(1) + 0.05 * rng.normal(size=len(x)))
    y_train, y_test = target(x_train), target(x_test)
    baseline = np.mean(np.abs(y_test - y_train.mean()))
    result = downstream.fit_and_score(x_train, y_train, x_test, y_test, "regression",
                                      steps=STEPS)
    assert set(result) == {"mae"}
    assert result["mae"] < 0.4 * baseline, (result, baseline)


def test_binary_separable_and_random_labels():
    rng = np.random.default_rng(6)
    x_train, x_test = _sequences(512, seed=4), _sequences(512, seed=5)
    y_train, y_test = rng.integers(0, 2, 512), rng.integers(0, 2, 512)
    # Separable by feature 1: shifted by +-1 at every step (its time-mean by +-1 +- 0.4).
    x_train[:, :, 1] += 2 * y_train[:, None] - 1
    x_test[:, :, 1] += 2 * y_test[:, None] - 1
    result = downstream.fit_and_score(x_train, y_train, x_test, y_test, "binary", steps=STEPS)
    assert set(result) == {"auroc", "auprc", "accuracy"}
    assert result["auroc"] > 0.95 and result["auprc"] > 0.95 and result["accuracy"] > 0.9
    noise = downstream.fit_and_score(x_train, rng.integers(0, 2, 512), x_test,
                                     rng.integers(0, 2, 512), "binary", steps=STEPS)
    assert 0.4 < noise["auroc"] < 0.6, noise


def _static_classes(n, seed, num_classes=4):
    """Class c encoded in a static code (N, 1, 4): a noisy one-hot."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    codes = 2.0 * np.eye(num_classes)[labels] + 0.5 * rng.normal(size=(n, num_classes))
    return codes[:, None, :].astype(np.float32), labels


def test_multiclass_from_a_static_code():
    (x_train, y_train), (x_test, y_test) = _static_classes(400, 7), _static_classes(200, 8)
    result = downstream.fit_and_score(x_train, y_train, x_test, y_test, "multiclass", 4,
                                      steps=STEPS)
    assert set(result) == {"accuracy"}
    assert result["accuracy"] > 0.9, result
    # An (N, D) static code is the same length-1 sequence.
    flat = downstream.fit_and_score(x_train[:, 0], y_train, x_test[:, 0], y_test, "multiclass",
                                    4, steps=STEPS)
    assert flat == result


def test_seeds_reproducible_and_no_retrace():
    (x_train, y_train), (x_test, y_test) = _static_classes(400, 7), _static_classes(200, 8)
    args = (x_train, y_train, x_test, y_test, "multiclass", 4)
    first = downstream.fit_and_score(*args, steps=STEPS, seed=0)
    traces = dict(downstream._trace_counts)
    # Equal shapes, another seed, learning rate and test set: no new trace.
    downstream.fit_and_score(*args[:2], x_test[::-1], y_test[::-1], *args[4:], steps=STEPS,
                             seed=5, learning_rate=3e-3)
    again = downstream.fit_and_score(*args, steps=STEPS, seed=0)
    assert dict(downstream._trace_counts) == traces
    assert again == first
    summary = downstream.fit_and_score_seeds(*args, steps=STEPS, seeds=(0, 1))
    assert set(summary) == {"accuracy", "accuracy_std"}
    assert dict(downstream._trace_counts) == traces
    other = downstream.fit_and_score(*args, steps=STEPS, seed=1)
    assert summary["accuracy"] == pytest.approx((first["accuracy"] + other["accuracy"]) / 2)
    assert summary["accuracy_std"] == pytest.approx(abs(first["accuracy"] - other["accuracy"]) / 2)


def test_predict_pads_the_last_batch():
    (x_train, y_train), (x_test, y_test) = _static_classes(400, 7), _static_classes(200, 8)
    base = downstream.fit_and_score(x_train, y_train, x_test, y_test, "multiclass", 4,
                                    steps=STEPS, eval_batch_size=64)  # 64+64+64+8 padded
    full = downstream.fit_and_score(x_train, y_train, x_test, y_test, "multiclass", 4,
                                    steps=STEPS)
    assert base == full


@pytest.mark.parametrize("change, match", [
    (dict(kind="ordinal"), "Unknown task kind"),
    (dict(train_targets=np.zeros(9)), r"train_targets must have shape \(10,\)"),
    (dict(test_inputs=np.zeros((4, 5, 2))), "differ in feature size"),
    (dict(train_inputs=np.zeros((10, 5))[:, :, None, None]), "must be"),
    (dict(train_targets=np.ones(10)), "one class only"),
    (dict(test_targets=np.zeros(4)), "one class only"),
    (dict(train_targets=np.full(10, 2)), "0/1"),
    (dict(kind="multiclass"), "num_classes"),
    (dict(kind="multiclass", num_classes=2, test_targets=np.array([0, 1, 2, 0])),
     r"integers in \[0, 2\)"),
    (dict(train_inputs=np.full((10, 5, 3), np.nan)), "finite"),
])
def test_bad_inputs_raise_one_value_error(change, match):
    args = dict(train_inputs=np.zeros((10, 5, 3)), train_targets=np.arange(10) % 2,
                test_inputs=np.zeros((4, 5, 3)), test_targets=np.array([0, 1, 0, 1]),
                kind="binary", num_classes=None)
    args.update(change)
    with pytest.raises(ValueError, match=match) as info:
        downstream.fit_and_score(**args, steps=1)
    assert "\n" not in str(info.value)
