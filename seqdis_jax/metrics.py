"""Disentanglement metrics of the papers, as pure functions of arrays.

- `judge_scores`: accuracy, Inception Score, H(y|x) and H(y) of judge predictions on generated
  sequences (C-DSVAE App. B; SPYL App. A.2; DBSE A.2).
- `equal_error_rate` / `verification_eer`: cosine-similarity verification EER (C-DSVAE 4.4,
  R-WAE App. C, SPYL B.5).
- `latent_classification`: scikit-learn classifiers on the latent codes (SPYL 5.5, App. B.9).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

_EPS = 1e-12


def judge_scores(probs: Array, labels: Array) -> dict[str, Array]:
    """Scores of a judge's class probabilities p(y|x) (N, K) against the labels (N,).

    acc = mean[argmax p(y|x) == label];  IS = exp(E_x KL[p(y|x) || p(y)]);
    H(y|x) = E_x[-sum_y p(y|x) log p(y|x)];  H(y) = -sum_y p(y) log p(y),  p(y) = E_x p(y|x).
    (KL uses the dataset marginal p(y), C-DSVAE App. B.) Jittable.
    """
    probs = jnp.asarray(probs, jnp.float32)
    log_probs = jnp.log(probs + _EPS)
    marginal = jnp.mean(probs, axis=0)
    log_marginal = jnp.log(marginal + _EPS)
    kl = jnp.sum(probs * (log_probs - log_marginal[None, :]), axis=-1)
    return dict(
        accuracy=jnp.mean(jnp.argmax(probs, axis=-1) == labels),
        inception_score=jnp.exp(jnp.mean(kl)),
        entropy_y_given_x=jnp.mean(-jnp.sum(probs * log_probs, axis=-1)),
        entropy_y=-jnp.sum(marginal * log_marginal),
    )


def cosine_similarity_matrix(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, N) cosine similarities."""
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)
    return v @ v.T


def equal_error_rate(scores: np.ndarray, targets: np.ndarray) -> float:
    """The rate at which false acceptance equals false rejection, for scores where a higher
    score means "same class" (targets True). Computed on `sklearn.metrics.roc_curve` and
    linearly interpolated between the two ROC points where FPR - FNR changes sign."""
    from sklearn.metrics import roc_curve

    targets = np.asarray(targets, bool)
    if targets.all() or not targets.any():
        raise ValueError("EER needs both target (same-class) and non-target pairs.")
    fpr, tpr, _ = roc_curve(targets, np.asarray(scores, np.float64))
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from -1 (threshold +inf) to +1 (threshold -inf)
    k = int(np.argmax(diff >= 0.0))
    if k == 0 or diff[k] == 0.0:
        return float(fpr[k])
    # Intersect the segment between ROC points k-1 and k with FPR = FNR.
    w = diff[k - 1] / (diff[k - 1] - diff[k])
    return float(fpr[k - 1] + w * (fpr[k] - fpr[k - 1]))


def verification_eer(vectors: np.ndarray, identity: np.ndarray) -> float:
    """EER of cosine-similarity verification over all unordered pairs i < j; a pair is a
    target when both sequences share `identity` (e.g. the speaker)."""
    sims = cosine_similarity_matrix(vectors)
    i, j = np.triu_indices(len(identity), k=1)
    return equal_error_rate(sims[i, j], identity[i] == identity[j])


def _classifier(name: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    # Default settings, as SPYL App. B.9; only the forest's seed is fixed for reproducibility.
    factories = {
        "svc": lambda: SVC(),
        "random_forest": lambda: RandomForestClassifier(random_state=seed),
        "knn": lambda: KNeighborsClassifier(),
    }
    if name not in factories:
        raise ValueError(f"Unknown latent classifier {name!r}; choose from {sorted(factories)}.")
    return factories[name]()


def latent_classification(
    features: np.ndarray,
    labels: np.ndarray,
    classifiers: Sequence[str] = ("svc", "random_forest", "knn"),
    seeds: Sequence[int] = tuple(range(10)),
    test_fraction: float = 0.2,
) -> dict[str, tuple[float, float]]:
    """Test accuracy (mean, std over `seeds`) of each classifier predicting `labels` (N,)
    from `features` (N, D) on random 80/20 splits (SPYL 5.5)."""
    from sklearn.model_selection import train_test_split

    features = np.asarray(features, np.float64).reshape(len(labels), -1)
    results = {}
    for name in classifiers:
        accuracies = []
        for seed in seeds:
            x_tr, x_te, y_tr, y_te = train_test_split(
                features, labels, test_size=test_fraction, random_state=seed
            )
            accuracies.append(float(np.mean(_classifier(name, seed).fit(x_tr, y_tr).predict(x_te)
                                            == y_te)))
        results[name] = (float(np.mean(accuracies)), float(np.std(accuracies)))
    return results
