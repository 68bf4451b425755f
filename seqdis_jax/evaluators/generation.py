"""Judge-based generation metrics (C-DSVAE App. B; SPYL App. A.2; DBSE A.2 and Table 4):
`fix_dynamics/*`, `fix_static/*`, `judge/*` (judge_generation), `swap/*` (judge_swap), and the
training curve `judge_curve/*` (make_judge_curve).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqdis_jax import metrics as metrics_lib
from seqdis_jax import parallel
from seqdis_jax.data import registry as data_registry
from seqdis_jax.data.pipeline import RECORD_KEY, eval_batches, model_inputs
from seqdis_jax.evaluators.base import EvalContext, register


def judge_accuracy(
    config: ml_collections.ConfigDict, judge: Any, judge_variables: Any,
    dataset: data_registry.Dataset,
) -> dict[str, float]:
    """The judge's accuracy per factor on every sequence of `dataset`, its batches split over
    the mesh of `config.mesh`."""
    mesh = parallel.mesh_from_config(config)

    def predict(judge_variables, x):
        return {k: jnp.argmax(v, -1) for k, v in judge.apply(judge_variables, x).items()}

    predict = parallel.gathered_jit(predict, mesh)
    correct: dict[str, int] = {}
    count = 0
    for batch in eval_batches(dataset.source, config.eval.batch_size, multiple=mesh.size):
        x = parallel.place_rows(model_inputs(batch, config.data.pixel_scale)["x"], mesh)
        predictions = jax.device_get(predict(judge_variables, x))
        mask = batch["mask"]
        for name, pred in predictions.items():
            correct[name] = correct.get(name, 0) + int(np.sum((pred == batch[name])[mask]))
        count += int(mask.sum())
    return {name: c / count for name, c in correct.items()}


def _trusted_factors(metadata: dict[str, Any], names: Sequence[str], minimum: float
                     ) -> list[str]:
    """Factors whose judge reached `minimum` test accuracy; warns about the others."""
    trusted = []
    for name in names:
        accuracy = metadata["test_accuracy"][name]
        if accuracy >= minimum:
            trusted.append(name)
        else:
            print(f"Warning: the judge's test accuracy on {name!r} is {accuracy:.4f} < "
                  f"{minimum} (config.judge.min_accuracy); {name!r} is not scored. Train the "
                  "judge longer (--mode=judge with more config.judge.train.num_steps).",
                  file=sys.stderr, flush=True)
    return trusted


BALANCED_METRICS = ("inception_score", "entropy_y_given_x", "entropy_y")


def part_hits(dataset: data_registry.Dataset, factor: str, judged: np.ndarray,
              truth: np.ndarray) -> dict[str, np.ndarray]:
    """{part: judged part == true part}, elementwise, for a factor the dataset declares as a
    product (`Dataset.factor_parts`, e.g. Sprites' motion: action, direction); {} otherwise."""
    parts = dataset.factor_parts.get(factor)
    if not parts:
        return {}
    judged_parts = data_registry.factor_part_labels(judged, parts)
    true_parts = data_registry.factor_part_labels(truth, parts)
    return {part: judged_parts[part] == true_parts[part] for part in judged_parts}


def judge_limit(config: ml_collections.ConfigDict) -> int | None:
    """Test sequences `judge_generation` scores: `eval.judge_limit` (None: all; 0 or unset: as
    `eval.limit`, the other evaluators' count)."""
    limit = config.eval.get("judge_limit", 0)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(
            f"config.eval.judge_limit must be None (every test sequence), 0 (as "
            f"config.eval.limit) or a positive count, got {limit!r}.")
    return config.eval.limit if limit == 0 else limit


def balanced_per_class(config: ml_collections.ConfigDict) -> int:
    """`eval.judge_balanced_per_class` (0 or unset: off), checked."""
    per_class = config.eval.get("judge_balanced_per_class", 0)
    if not isinstance(per_class, int) or per_class < metrics_lib.SMALLEST_CLASS:
        raise ValueError(
            f"config.eval.judge_balanced_per_class must be 0 (IS and entropies on every scored "
            f"sequence), -1 (on as many of each class as the smallest class has) or a positive "
            f"count per class, got {per_class!r}.")
    return per_class


def judge_balanced_subset(labels: np.ndarray, per_class: int, factor: str,
                          limit: int | None) -> np.ndarray:
    """`metrics.balanced_subset` of one factor's labels, its error naming the config fix."""
    try:
        return metrics_lib.balanced_subset(labels, per_class)
    except metrics_lib.ClassTooSmallError as e:
        scored = "every test sequence" if limit is None else f"the first {limit} test sequences"
        raise metrics_lib.ClassTooSmallError(
            f"config.eval.judge_balanced_per_class={per_class} takes {per_class} sequences of "
            f"each {factor!r} class from {scored}, but {e} Lower it, set it to -1 (as many as "
            f"the smallest class has) or score more sequences (config.eval.judge_limit; None: "
            f"all).") from None


def _generate_and_judge_fn(model: Any, judge: Any, repeats: int, mesh: jax.sharding.Mesh
                           ) -> Callable:
    """jit(variables, judge_variables, video, rng) -> (fix-d probabilities, fix-s probabilities),
    each {factor: (repeats, B, K)}, replicated on `mesh`: for each of `repeats` draws, the
    judge's class probabilities of x decoded from (s ~ N(0, I), posterior-mean d_1:T) and from
    (posterior-mean s, prior-sampled d_1:T)."""

    def generate_and_judge(variables, judge_variables, video, rng):
        post_rng, rng = jax.random.split(rng)
        out = model.apply(variables, video, False, rngs={"sample": post_rng}, method=model.encode)
        s_mean, d_mean = out["s_mean"], out["d_mean"]
        b, t = d_mean.shape[:2]
        decode = lambda s, d: model.apply(variables, s, d, False, method=model.decode)
        judge_probs = lambda x: {k: jax.nn.softmax(v, -1)
                                 for k, v in judge.apply(judge_variables, x).items()}

        def one_repeat(key):
            static_key, prior_key = jax.random.split(key)
            s_random = jax.random.normal(static_key, s_mean.shape)
            d_prior, _ = model.apply(variables, b, t, method=model.sample_dynamics,
                                     rngs={"sample": prior_key})
            return judge_probs(decode(s_random, d_mean)), judge_probs(decode(s_mean, d_prior))

        # Repeats run one after another (lax.map) so memory stays that of one batch.
        return jax.lax.map(one_repeat, jax.random.split(rng, repeats))

    return parallel.gathered_jit(generate_and_judge, mesh)


@register("judge_generation", needs_labels="any", needs_judge=True, modalities=("video",))
def judge_generation(ctx: EvalContext) -> dict[str, Any]:
    """Conditional generation scored by the judge, `eval.judge_repeats` times (mean, std), on
    the first `eval.judge_limit` test sequences (None: all; 0: `eval.limit`).

    fix_dynamics: for every test sequence keep the posterior means of d_1:T, draw s ~ N(0, I),
      decode, and judge the dynamic labels (Acc, IS, H(y|x), H(y) of C-DSVAE Table 1).
    fix_static: keep the posterior mean of s, take d_1:T from the learned prior (its ancestral
      means, as the authors decode), decode, and judge the static labels (DBSE Table 4's
      "Accuracy Static"; IS and entropies too).

    Protocol (`eval.judge_balanced_per_class`, k): with k = 0 every metric is over all scored
    sequences (`<prefix>/<factor>/{accuracy, inception_score, entropy_y_given_x, entropy_y}`).
    With k > 0, or k = -1 for as many as the smallest class has, IS, H(y|x) and H(y) are over
    the first k scored sequences of each class of the factor's true labels (the authors' code:
    C-DSVAE test_sprite_cls.py, SPYL / DBSE `check_cls`), and named
    `{inception_score, entropy_y_given_x, entropy_y}_balanced`, with the k used in
    `<prefix>/<factor>/balanced_per_class`; accuracy stays over every scored sequence, as there.
    (Their static pass balances the action head by action; here each static factor's head is
    balanced by its own labels.) `judge/num_sequences` is the count scored. A factor the
    dataset declares as a product (`Dataset.factor_parts`: Sprites' motion = action x
    direction) is also scored per part, `<prefix>/<factor>/<part>/accuracy` (and `_std`).
    """
    if ctx.judge_loader is None:
        raise ValueError("judge_generation needs a judge; run it through train/evaluate.")
    limit, per_class = judge_limit(ctx.config), balanced_per_class(ctx.config)
    judge, judge_variables, metadata = ctx.judge_loader()
    minimum = ctx.config.judge.min_accuracy
    dynamic = _trusted_factors(metadata, ctx.dataset.dynamic_factors, minimum)
    static = _trusted_factors(metadata, ctx.dataset.static_factors, minimum)
    if per_class > 0:  # a class too small for k fails here, before the generation
        n = len(ctx.dataset.source) if limit is None else min(limit, len(ctx.dataset.source))
        true_labels: dict[str, list[int]] = {name: [] for name in dynamic + static}
        for i in range(n):
            record = ctx.dataset.source[i]
            for name, values in true_labels.items():
                values.append(int(record[name]))
        for name, values in true_labels.items():
            judge_balanced_subset(np.array(values), per_class, name, limit)
    generate_and_judge = _generate_and_judge_fn(ctx.model, judge,
                                                ctx.config.eval.judge_repeats, ctx.devices())

    fixed_d: dict[str, list[np.ndarray]] = {}
    fixed_s: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[np.ndarray]] = {}
    count = 0
    batches = ctx.batches(ctx.config.eval.batch_size, limit)
    for i, batch in enumerate(batches):
        probs_d, probs_s = jax.device_get(generate_and_judge(
            ctx.variables, judge_variables, ctx.x(batch), jax.random.fold_in(ctx.rng, i)))
        mask = batch["mask"]
        count += int(mask.sum())
        for name in dynamic + static:
            labels.setdefault(name, []).append(np.asarray(batch[name])[mask])
            fixed_d.setdefault(name, []).append(probs_d[name][:, mask])
            fixed_s.setdefault(name, []).append(probs_s[name][:, mask])

    results: dict[str, Any] = {}
    scores = jax.vmap(metrics_lib.judge_scores, (0, None))  # each repeat's scores
    for prefix, factors, probs in (("fix_dynamics", dynamic, fixed_d),
                                   ("fix_static", static, fixed_s)):
        for name in factors:
            y = np.concatenate(labels[name])
            p = np.concatenate(probs[name], axis=1)  # (R, N, K)
            per_repeat = jax.device_get(scores(p, y))
            if per_class:
                index = judge_balanced_subset(y, per_class, name, limit)
                balanced = jax.device_get(scores(p[:, index], y[index]))
                for metric in BALANCED_METRICS:
                    del per_repeat[metric]
                    per_repeat[f"{metric}_balanced"] = balanced[metric]
                results[f"{prefix}/{name}/balanced_per_class"] = len(index) // len(np.unique(y))
            for part, hits in part_hits(ctx.dataset, name, np.argmax(p, -1), y).items():
                per_repeat[f"{part}/accuracy"] = hits.mean(axis=1)
            for metric, values in per_repeat.items():
                results[f"{prefix}/{name}/{metric}"] = float(np.mean(values))
                results[f"{prefix}/{name}/{metric}_std"] = float(np.std(values))
    if static:
        results["fix_static/mean_static_accuracy"] = float(np.mean(
            [results[f"fix_static/{n}/accuracy"] for n in static]))
    results["judge/num_sequences"] = count
    results.update({f"judge/test_accuracy/{k}": v for k, v in metadata["test_accuracy"].items()})
    return results


SWAP_SHIFTS = 16  # judge_swap tries the shifts N/2 .. N/2 + 15


def swap_partners(labels: dict[str, np.ndarray]) -> np.ndarray:
    """judge_swap's partner of each of N sequences: i + k (mod N), with the shift k among
    N/2 .. N/2 + SWAP_SHIFTS - 1 whose pairs share a label least often (the largest share over
    the factors; the first such k on ties). With Sprites' test set, which lists each
    character's 9 motions in turn, k = N/2 = 1332 would pair every sequence with its own
    motion and make the motion accuracy meaningless."""
    n = len(next(iter(labels.values())))

    def shared(k: int) -> float:
        return max((float(np.mean(y == np.roll(y, -k))) for y in labels.values()), default=0.0)

    shift = min(range(n // 2, min(n // 2 + SWAP_SHIFTS, n)), key=shared)
    return (np.arange(n) + shift) % n


@register("judge_swap", needs_labels="any", needs_judge=True, modalities=("video",))
def judge_swap(ctx: EvalContext) -> dict[str, Any]:
    """Swaps between real test sequences, judged: for each of the first `eval.limit` test
    sequences i, decode (s of partner j, d_1:T of i) and judge it; j = i + k (mod N) with the
    shift k of `swap_partners` (about N/2: far in the dataset's order, another character on
    Sprites, and sharing as few judged labels with i as such a shift can).

    `swap/<dynamic factor>/accuracy`: the judged dynamic label equals i's (the motion came
    with d); `swap/<static factor>/accuracy`: the judged static label equals j's (the
    appearance came with s); `swap/mean_static_accuracy`. `swap/<factor>/follows_other_code`:
    the judged label equals the other source's instead (a motion that came with s, an
    appearance with d); `swap/<factor>/labels_agree`: how often i and j share the label (both
    counts include those); `swap/<factor>/{accuracy, follows_other_code}_where_labels_differ`:
    the same over the `pairs_where_labels_differ` only (NaN if none), where the judged label
    can follow one source only; a product factor (`Dataset.factor_parts`) also per part,
    `swap/<factor>/<part>/...`. Against
    judge_generation's fix_dynamics, which draws
    s ~ N(0, I), this separates a hole in the static prior (real s swap well, sampled s do
    not) from entanglement (both fail)."""
    if ctx.judge_loader is None:
        raise ValueError("judge_swap needs a judge; run it through train/evaluate.")
    judge, judge_variables, metadata = ctx.judge_loader()
    minimum = ctx.config.judge.min_accuracy
    dynamic = _trusted_factors(metadata, ctx.dataset.dynamic_factors, minimum)
    static = _trusted_factors(metadata, ctx.dataset.static_factors, minimum)
    codes = ctx.codes()
    n = len(codes["s_mean"])
    partner = swap_partners({f: codes[f] for f in dynamic + static})
    model = ctx.model

    @jax.jit
    def judge_swapped(variables, judge_variables, s, d):
        x = model.apply(variables, s, d, False, method=model.decode)
        return {k: jnp.argmax(v, -1) for k, v in judge.apply(judge_variables, x).items()}

    size = ctx.config.eval.batch_size
    predicted: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, size):
        index = np.arange(start, min(start + size, n))
        out = jax.device_get(judge_swapped(ctx.variables, judge_variables,
                                           codes["s_mean"][partner[index]],
                                           codes["d_mean"][index]))
        for name, values in out.items():
            predicted.setdefault(name, []).append(values)
    results: dict[str, Any] = {}
    own, other = np.arange(n), partner
    for name, source, wrong in ([(f, own, other) for f in dynamic]
                                + [(f, other, own) for f in static]):
        judged = np.concatenate(predicted[name])
        # The factor came with the other code instead: entanglement, measured. Where the two
        # sources share the label both count (`labels_agree` is that share), so each rate is
        # also given over the pairs whose labels differ, where it can follow one source only.
        # A product factor's parts are scored alike (`swap/<factor>/<part>/...`).
        truths = {"accuracy": codes[name][source], "follows_other_code": codes[name][wrong]}
        scored = {"": ({key: judged == truth for key, truth in truths.items()},
                       codes[name][own] == codes[name][other])}
        part_scores = {key: part_hits(ctx.dataset, name, judged, truth)
                       for key, truth in truths.items()}
        for part, agree in part_hits(ctx.dataset, name, codes[name][own],
                                     codes[name][other]).items():
            scored[f"/{part}"] = ({key: hits[part] for key, hits in part_scores.items()}, agree)
        for suffix, (hits_by_key, agree) in scored.items():
            prefix, differ = f"swap/{name}{suffix}", ~agree
            for key, hits in hits_by_key.items():
                results[f"{prefix}/{key}"] = float(np.mean(hits))
                results[f"{prefix}/{key}_where_labels_differ"] = (
                    float(np.mean(hits[differ])) if differ.any() else float("nan"))
            results[f"{prefix}/labels_agree"] = float(np.mean(agree))
            results[f"{prefix}/pairs_where_labels_differ"] = int(differ.sum())
    if static:
        results["swap/mean_static_accuracy"] = float(np.mean(
            [results[f"swap/{f}/accuracy"] for f in static]))
    results["swap/num_sequences"] = n
    return results


JUDGE_CURVE_PREFIX = "judge_curve"


def judge_curve_sequences(config: ml_collections.ConfigDict) -> int:
    """`eval.judge_curve_sequences`, checked: the test sequences the judged curve scores."""
    n = config.eval.get("judge_curve_sequences", 300)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"config.eval.judge_curve_sequences must be a positive count of test "
                         f"sequences, got {n!r}.")
    return n


def make_judge_curve(config: ml_collections.ConfigDict, model: Any,
                     dataset: data_registry.Dataset,
                     judge_loader: Callable[[], tuple[Any, Any, dict[str, Any]]]
                     ) -> Callable[[Any], dict[str, float]]:
    """state -> judged generation accuracy on a fixed validation set, for training curves and
    for ranking checkpoints (C-DSVAE Sec. 4.2 picks its checkpoint by such a score).

    The set is every k-th test sequence, `eval.judge_curve_sequences` of them (spread over the
    whole split, which is ordered by character), with one fixed draw (R = 1): keys
    `judge_curve/fix_dynamics/<factor>/accuracy` (fix d_1:T, sample s; the judged dynamic
    labels), `judge_curve/fix_static/<factor>/accuracy`, and their means over factors
    `judge_curve/fix_dynamics/mean_accuracy` / `judge_curve/fix_static/mean_accuracy` (a
    product factor's parts, `Dataset.factor_parts`, as
    `judge_curve/<prefix>/<factor>/<part>/accuracy`, outside the means). Only
    factors the judge reads with `judge.min_accuracy` are scored, as in judge_generation.
    `dataset` is the test split; `judge_loader()` gives (judge, its variables, judge.json).
    """
    judge, judge_variables, metadata = judge_loader()
    minimum = config.judge.min_accuracy
    dynamic = _trusted_factors(metadata, dataset.dynamic_factors, minimum)
    static = _trusted_factors(metadata, dataset.static_factors, minimum)
    total = len(dataset.source)
    index = np.linspace(0, total - 1, min(judge_curve_sequences(config), total)).astype(int)
    records = [dataset.source[int(i)] for i in index]
    x = model_inputs({RECORD_KEY: np.stack([r[RECORD_KEY] for r in records])},
                     config.data.pixel_scale)["x"]
    labels = {name: np.array([int(r[name]) for r in records]) for name in dynamic + static}
    mesh = parallel.mesh_from_config(config)
    generate_and_judge = _generate_and_judge_fn(model, judge, 1, mesh)
    size = config.eval.batch_size
    batches = [parallel.place_rows(x[i:i + size], mesh) for i in range(0, len(x), size)]
    rng = jax.random.PRNGKey(config.get("seed", 0) + 2)

    def curve(state) -> dict[str, float]:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        fixed_d, fixed_s = [], []
        for i, batch in enumerate(batches):
            probs_d, probs_s = jax.device_get(generate_and_judge(
                variables, judge_variables, batch, jax.random.fold_in(rng, i)))
            fixed_d.append(probs_d)
            fixed_s.append(probs_s)
        results = {}
        for prefix, factors, probs in (("fix_dynamics", dynamic, fixed_d),
                                       ("fix_static", static, fixed_s)):
            accuracies = []
            for name in factors:
                predicted = np.concatenate([np.argmax(p[name][0], -1) for p in probs])
                accuracies.append(float(np.mean(predicted == labels[name])))
                results[f"{JUDGE_CURVE_PREFIX}/{prefix}/{name}/accuracy"] = accuracies[-1]
                for part, hits in part_hits(dataset, name, predicted, labels[name]).items():
                    results[f"{JUDGE_CURVE_PREFIX}/{prefix}/{name}/{part}/accuracy"] = float(
                        np.mean(hits))
            if accuracies:
                results[f"{JUDGE_CURVE_PREFIX}/{prefix}/mean_accuracy"] = float(
                    np.mean(accuracies))
        return results

    curve.names = [f"{JUDGE_CURVE_PREFIX}/{prefix}/{name}{part}/accuracy"
                   for prefix, factors in (("fix_dynamics", dynamic), ("fix_static", static))
                   for name in factors
                   for part in ("", *(f"/{p}" for p, _ in dataset.factor_parts.get(name, ())))
                   ] + [
        f"{JUDGE_CURVE_PREFIX}/{prefix}/mean_accuracy"
        for prefix, factors in (("fix_dynamics", dynamic), ("fix_static", static)) if factors]
    return curve
