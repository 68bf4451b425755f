"""Disentanglement metrics of the papers, as pure functions of arrays.

- `judge_scores`: accuracy, Inception Score, H(y|x) and H(y) of judge predictions on generated
  sequences (C-DSVAE App. B; SPYL App. A.2; DBSE A.2); `balanced_subset`: the first k sequences
  of each class, on which the authors' code computes IS, H(y|x) and H(y).
- `equal_error_rate` / `verification_eer`: cosine-similarity verification EER (C-DSVAE 4.4,
  R-WAE App. C, SPYL B.5).
- `latent_classification`: scikit-learn classifiers on the latent codes (SPYL 5.5, App. B.9).
- `auroc` / `auprc` (scikit-learn's, with this module's input checks) / `mean_absolute_error`:
  scores of the downstream predictors trained on the frozen codes (DBSE Tables 2-3, SPYL
  Table 2; `seqdis_jax.downstream`).
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


SMALLEST_CLASS = -1  # `balanced_subset(labels, SMALLEST_CLASS)`: k = the smallest class's count


class ClassTooSmallError(ValueError):
    """A class has fewer sequences than the balanced subset takes from each class."""


def balanced_subset(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` sequences of each class present in `labels` (N,),
    ascending (dataset order kept), or with `per_class` = SMALLEST_CLASS (-1) as many per class
    as the smallest present class has: the class-balanced subset of the C-DSVAE, SPYL and DBSE
    code (`nSample_per_cls = min(...)` over `np.unique(label_gt)`, then the first
    `nSample_per_cls` of each). Classes absent from `labels` are ignored, as there. Raises
    ClassTooSmallError naming the short classes."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("balanced_subset needs at least one label.")
    if per_class != SMALLEST_CLASS and per_class < 1:
        raise ValueError(f"per_class must be >= 1 or SMALLEST_CLASS (-1), got {per_class}.")
    classes, counts = np.unique(labels, return_counts=True)
    k = int(counts.min()) if per_class == SMALLEST_CLASS else int(per_class)
    short = {int(c): int(n) for c, n in zip(classes, counts) if n < k}
    if short:
        raise ClassTooSmallError(
            f"{len(short)} of the {len(classes)} classes have fewer than {k} sequences "
            f"(class: count {short}; {labels.size} sequences in all).")
    # Rank of each sequence within its class, in dataset order (a stable sort keeps it).
    order = np.argsort(labels, kind="stable")
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.empty(labels.size, np.int64)
    rank[order] = np.arange(labels.size) - starts
    return np.flatnonzero(rank < k)


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


def _classifier(name: str, seed: int, num_train: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    # Default settings, as SPYL App. B.9; only the forest's seed is fixed for reproducibility.
    factories = {
        "svc": lambda: SVC(),
        "random_forest": lambda: RandomForestClassifier(random_state=seed),
        # sklearn's 5 neighbours, fewer only when the split has fewer training points.
        "knn": lambda: KNeighborsClassifier(min(5, num_train)),
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
    groups: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Test accuracy (mean, std over `seeds`) of each classifier predicting `labels` (N,)
    from `features` (N, D) on random 80/20 splits (SPYL 5.5); with `groups` (N,), splits
    that keep each group together (e.g. a character's sequences)."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    features = np.asarray(features, np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels)
    results = {}
    for name in classifiers:
        accuracies = []
        for seed in seeds:
            if groups is None:
                x_tr, x_te, y_tr, y_te = train_test_split(
                    features, labels, test_size=test_fraction, random_state=seed
                )
            else:
                rows_tr, rows_te = next(GroupShuffleSplit(
                    1, test_size=test_fraction, random_state=seed).split(features, labels, groups))
                x_tr, x_te, y_tr, y_te = (features[rows_tr], features[rows_te], labels[rows_tr],
                                          labels[rows_te])
            classifier = _classifier(name, seed, len(y_tr)).fit(x_tr, y_tr)
            accuracies.append(float(np.mean(classifier.predict(x_te) == y_te)))
        results[name] = (float(np.mean(accuracies)), float(np.std(accuracies)))
    return results


def _binary_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores float64 (N,), labels bool (N,)), checked: equal 1-D shapes, finite scores,
    labels in {0, 1} (or bool)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"Scores and labels must be 1-D of equal length; got shapes "
                         f"{scores.shape} and {labels.shape}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("Scores must be finite.")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("Binary labels must be 0/1 or bool.")
    return scores.astype(np.float64), labels.astype(bool)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` (N,), higher meaning positive, for `labels` (N,)
    in {0, 1} (`sklearn.metrics.roc_auc_score`): the Mann-Whitney form P(score_pos >
    score_neg) + P(score_pos = score_neg) / 2, a tie counting half. Raises ValueError when only
    one class is present (sklearn's own error there names neither fix nor metric)."""
    from sklearn.metrics import roc_auc_score

    scores, labels = _binary_scores(scores, labels)
    if labels.all() or not labels.any():
        raise ValueError("AUROC needs both positive and negative labels; only one class is "
                         "present.")
    return float(roc_auc_score(labels, scores))


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of `scores` (N,) for `labels` (N,) in {0, 1}
    (`sklearn.metrics.average_precision_score`): sum_n (R_n - R_{n-1}) P_n over the distinct
    score thresholds from the highest down (a group of tied scores enters at one threshold;
    R_0 = 0). Chance level is the positive rate. Raises ValueError without a positive label
    (where sklearn would warn and return 0)."""
    from sklearn.metrics import average_precision_score

    scores, labels = _binary_scores(scores, labels)
    if not labels.any():
        raise ValueError("AUPRC needs at least one positive label.")
    return float(average_precision_score(labels, scores))


def mean_absolute_error(pred: np.ndarray, target: np.ndarray) -> float:
    """mean |pred - target| over every element; the shapes must be equal."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"Predictions {pred.shape} and targets {target.shape} differ in shape.")
    return float(np.mean(np.abs(pred - target)))
