"""The evaluator registry's label checks, the judge's refusal of other data, the judge
trained on shapes, and judge_generation's protocols on a stand-in model and judge."""

import dataclasses
import json
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import shapes as shapes_config
from seqdis_jax import errors, evaluators, judge, metrics
from seqdis_jax.data import pipeline, registry
from seqdis_jax.evaluators import generation


def _shapes_test_set():
    config = shapes_config.get_config("smoke")
    return config, registry.load(config.data, "test")


def test_all_expands_to_what_the_labels_allow():
    _, dataset = _shapes_test_set()
    everything = evaluators.select_evaluators(("all",), dataset)
    assert set(everything) == set(evaluators.EVALUATORS)
    unlabelled = dataclasses.replace(dataset, static_factors=(), dynamic_factors=())
    assert set(evaluators.select_evaluators(("all",), unlabelled)) == {
        "reconstruction", "grids", "mutual_information", "downstream"}
    static_only = dataclasses.replace(dataset, dynamic_factors=())
    assert set(evaluators.select_evaluators(("all",), static_only)) == set(evaluators.EVALUATORS)
    dynamic_only = dataclasses.replace(dataset, static_factors=())  # e.g. Jester
    assert set(evaluators.select_evaluators(("all",), dynamic_only)) == set(
        evaluators.EVALUATORS) - {"verification_eer"}


def test_judged_generation_is_for_video_only():
    _, dataset = _shapes_test_set()
    for modality in ("speech", "series"):
        selected = evaluators.select_evaluators(("all",), dataset, modality)
        assert set(selected) == set(evaluators.EVALUATORS) - {"judge_generation", "judge_swap"}
        for name in ("judge_generation", "judge_swap"):
            with pytest.raises(ValueError, match=f"'{name}' applies to \\['video'\\]"):
                evaluators.select_evaluators((name,), dataset, modality)


def test_an_evaluator_needing_a_missing_label_is_refused_by_name():
    _, dataset = _shapes_test_set()
    dynamic_only = dataclasses.replace(dataset, static_factors=())
    with pytest.raises(errors.MissingLabelError, match="'verification_eer' needs a static"):
        evaluators.select_evaluators(("verification_eer",), dynamic_only)
    unlabelled = dataclasses.replace(dataset, static_factors=(), dynamic_factors=())
    with pytest.raises(errors.MissingLabelError, match="'latent_classification' needs a"):
        evaluators.select_evaluators(("latent_classification",), unlabelled)
    with pytest.raises(ValueError, match="Unknown evaluator"):
        evaluators.select_evaluators(("fid",), dataset)


def test_judge_for_other_data_is_refused(tmp_path):
    config, dataset = _shapes_test_set()
    metadata = judge.data_signature(config, dataset) | {
        "architecture": judge.judge_architecture(config)}
    judge.check_compatible(metadata, config, dataset, str(tmp_path))  # its own data: accepted
    other = dict(metadata, dataset="sprites")
    with pytest.raises(errors.JudgeMismatchError, match="dataset: judge has 'sprites'"):
        judge.check_compatible(other, config, dataset, str(tmp_path))
    smaller = dict(metadata, video_shape=[8, 32, 32, 3])
    with pytest.raises(errors.JudgeMismatchError, match="video_shape"):
        judge.check_compatible(smaller, config, dataset, str(tmp_path))
    # A judge of the same frame size but another form of the generated data.
    one_shape = dict(metadata, generator=dict(metadata["generator"], shapes=["circle"]))
    with pytest.raises(errors.JudgeMismatchError, match="generator: judge has"):
        judge.check_compatible(one_shape, config, dataset, str(tmp_path))
    wider = config.copy_and_resolve_references()
    wider.judge.width = 1.0
    with pytest.raises(errors.JudgeMismatchError, match="architecture"):
        judge.check_compatible(metadata, wider, dataset, str(tmp_path))


def test_missing_judge_names_the_command(tmp_path):
    config, dataset = _shapes_test_set()
    config.judge.workdir = str(tmp_path / "nojudge")
    config.judge.train_if_missing = False
    with pytest.raises(errors.MissingCheckpointError, match="--mode=judge"):
        judge.restore_judge(config, dataset)


@pytest.mark.slow
def test_shapes_judge_reaches_99_percent_on_every_factor(tmp_path):
    """The default shapes judge (experiments/shapes.py) on the full shapes splits."""
    config = shapes_config.get_config()
    config.judge.workdir = str(tmp_path / "judge")
    results = judge.train_judge(config)
    accuracy = json.loads((tmp_path / "judge" / judge.METADATA_FILE).read_text())[
        "test_accuracy"]
    assert set(accuracy) == {"shape", "color", "size", "motion"}
    for factor, value in accuracy.items():
        assert value >= 0.99, (factor, value, results)


def test_speech_verification_averages_each_utterance_first():
    """Speaker-separable codes (DSVAE/SPYL B.5 protocol): one vector per utterance, the mean of
    its segments' codes; s holds the speaker, d only noise."""
    rng = np.random.default_rng(0)
    speakers, utterances, segments = 4, 3, 5
    centres = rng.normal(size=(speakers, 8)) * 3
    speaker = np.repeat(np.arange(speakers), utterances * segments)
    utterance = np.repeat(np.arange(speakers * utterances), segments)
    # Segment noise large enough that single segments are often misverified.
    s = centres[speaker] + rng.normal(size=(len(speaker), 8)) * 4
    d = rng.normal(size=(len(speaker), 6, 4))
    dataset = registry.Dataset(source=None, video_shape=(6, 4), static_factors=("speaker",),
                               dynamic_factors=(), num_classes={"speaker": speakers},
                               group="utterance")
    codes = {"s_mean": s, "d_mean": d, "speaker": speaker, "utterance": utterance}
    ctx = evaluators.EvalContext(config=None, workdir="", model=None, variables={},
                               dataset=dataset, rng=None, _codes=codes)
    grouped = evaluators.verification_eer(ctx)
    ungrouped = evaluators.verification_eer(
        dataclasses.replace(ctx, dataset=dataclasses.replace(dataset, group=None)))
    assert grouped["eer/static"] < ungrouped["eer/static"]
    assert grouped["eer/static"] < 0.1
    assert grouped["eer/dynamic"] > 0.25  # d is noise: near chance
    assert grouped["eer/gap"] == pytest.approx(grouped["eer/dynamic"] - grouped["eer/static"])


# --------------------------------------------------------------------------------------------
# judge_generation's protocols (eval.judge_balanced_per_class, eval.judge_limit), on a stand-in
# model and judge whose probabilities are known: the judged motion depends on d only and the
# judged colour on s only, so fix_dynamics and fix_static do not depend on the sampled factor.

_MOTION = np.array([0] * 20 + [1] * 12 + [2] * 8)  # unbalanced: 20 / 12 / 8
_COLOR = np.array([0, 1] * 15 + [1] * 10)  # 15 / 25
_W_MOTION = 3 * np.eye(4, 3) + np.random.default_rng(0).normal(size=(4, 3))
_W_COLOR = np.random.default_rng(1).normal(size=(4, 2)) * 3


class _StandInModel:
    """encode: s = the first frame, d = the frames; decode passes (s, d) to the judge."""

    def __init__(self):
        self.calls = 0

    def encode(self):
        pass

    def decode(self):
        pass

    def sample_dynamics(self):
        pass

    def apply(self, variables, *args, method=None, rngs=None):
        self.calls += 1
        if method == self.encode:
            return {"s_mean": args[0][:, 0], "d_mean": args[0]}
        if method == self.decode:
            return {"s": args[0], "d": args[1]}
        assert method == self.sample_dynamics
        b, t = args
        return jax.random.normal(rngs["sample"], (b, t, 4)), None


class _StandInJudge:
    @staticmethod
    def apply(variables, x):
        return {"motion": jnp.mean(x["d"], axis=1) @ _W_MOTION, "color": x["s"] @ _W_COLOR}


def _stand_in_context(**eval_fields):
    video = np.random.default_rng(2).normal(size=(40, 3, 4)).astype(np.float32)
    video[:, :, :3] += 2.0 * np.eye(3, dtype=np.float32)[_MOTION][:, None]  # judged fairly well
    source = pipeline.InMemorySource({"video": video, "motion": _MOTION, "color": _COLOR})
    dataset = registry.Dataset(source=source, video_shape=(3, 4), static_factors=("color",),
                               dynamic_factors=("motion",), num_classes={"motion": 3, "color": 2})
    config = ml_collections.ConfigDict(dict(
        data=dict(pixel_scale=1.0), judge=dict(min_accuracy=0.0),
        eval=dict(batch_size=16, limit=40, judge_repeats=2, **eval_fields)))
    metadata = {"test_accuracy": {"motion": 1.0, "color": 1.0}}
    model = _StandInModel()
    ctx = evaluators.EvalContext(
        config=config, workdir="", model=model, variables={}, dataset=dataset,
        rng=jax.random.PRNGKey(0), judge_loader=lambda: (_StandInJudge, {}, metadata))
    softmax = lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)
    probs = {"motion": softmax(video.astype(np.float64).mean(1) @ _W_MOTION),
             "color": softmax(video[:, 0].astype(np.float64) @ _W_COLOR)}
    return ctx, probs


def _authors_is_and_entropies(p_yx, eps=1e-16):
    """The authors' numpy formulas (C-DSVAE test_sprite_cls.py, eps 1e-16)."""
    p_y = p_yx.mean(axis=0)
    return dict(
        inception_score=np.exp(np.mean(np.sum(p_yx * (np.log(p_yx + eps) - np.log(p_y + eps)),
                                              axis=1))),
        entropy_y_given_x=-np.mean(np.sum(p_yx * np.log(p_yx + eps), axis=1)),
        entropy_y=-np.sum(p_y * np.log(p_y + eps)))


_FACTORS = (("fix_dynamics", "motion", _MOTION), ("fix_static", "color", _COLOR))


def test_judge_generation_without_balancing_scores_every_sequence():
    """k = 0 (and configs without the new fields) keep the former results: every metric over
    every scored sequence, under the former names."""
    ctx, probs = _stand_in_context(judge_balanced_per_class=0, judge_limit=0)
    results = evaluators.judge_generation(ctx)
    for prefix, name, labels in _FACTORS:
        want = _authors_is_and_entropies(probs[name])
        want["accuracy"] = np.mean(probs[name].argmax(1) == labels)
        for metric, value in want.items():
            assert results[f"{prefix}/{name}/{metric}"] == pytest.approx(value, rel=1e-5)
            assert results[f"{prefix}/{name}/{metric}_std"] == pytest.approx(0.0, abs=1e-5)
    assert not [k for k in results if "balanced" in k]
    assert results["judge/num_sequences"] == 40
    old_ctx, _ = _stand_in_context()  # a config from before the fields existed
    assert evaluators.judge_generation(old_ctx) == results


@pytest.mark.parametrize("per_class, used", [(-1, {"motion": 8, "color": 15}),
                                             (5, {"motion": 5, "color": 5})])
def test_judge_generation_balances_is_and_entropies_per_class(per_class, used):
    """IS, H(y|x), H(y) on the first k sequences of each class of the judged factor's labels
    (`*_balanced`); accuracy over every scored sequence, as the authors' code does."""
    ctx, probs = _stand_in_context(judge_balanced_per_class=per_class)
    results = evaluators.judge_generation(ctx)
    for prefix, name, labels in _FACTORS:
        k = used[name]
        index = np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(3)]))
        assert results[f"{prefix}/{name}/balanced_per_class"] == k
        for metric, value in _authors_is_and_entropies(probs[name][index]).items():
            assert results[f"{prefix}/{name}/{metric}_balanced"] == pytest.approx(value, rel=1e-5)
            assert f"{prefix}/{name}/{metric}" not in results
        assert results[f"{prefix}/{name}/accuracy"] == pytest.approx(
            np.mean(probs[name].argmax(1) == labels))
    # The unbalanced motion labels make the subset matter.
    everything = _authors_is_and_entropies(probs["motion"])["entropy_y"]
    assert results["fix_dynamics/motion/entropy_y_balanced"] > everything + 0.02


def test_judge_generation_refuses_a_class_too_small_before_generating():
    ctx, _ = _stand_in_context(judge_balanced_per_class=10, judge_limit=None)
    with pytest.raises(metrics.ClassTooSmallError) as error:
        evaluators.judge_generation(ctx)
    assert str(error.value) == (
        "config.eval.judge_balanced_per_class=10 takes 10 sequences of each 'motion' class from "
        "every test sequence, but 1 of the 3 classes have fewer than 10 sequences (class: count "
        "{2: 8}; 40 sequences in all). Lower it, set it to -1 (as many as the smallest class "
        "has) or score more sequences (config.eval.judge_limit; None: all).")
    assert ctx.model.calls == 0  # nothing was generated
    for fields, match in (({"judge_balanced_per_class": -2}, "judge_balanced_per_class must"),
                          ({"judge_limit": -1}, "judge_limit must be None")):
        bad, _ = _stand_in_context(**fields)
        with pytest.raises(ValueError, match=match):
            evaluators.judge_generation(bad)


def test_judge_limit_is_separate_from_eval_limit():
    for judge_limit, eval_limit, scored in ((0, 24, 24), (None, 24, 40), (16, None, 16)):
        ctx, _ = _stand_in_context(judge_limit=judge_limit)
        ctx.config.eval.limit = eval_limit
        assert evaluators.judge_generation(ctx)["judge/num_sequences"] == scored


def test_sprites_configs_use_the_authors_protocol_on_every_test_sequence():
    from experiments import sprites

    for variant in ("default", "cpu"):
        config = sprites.get_config(variant)
        assert config.eval.judge_balanced_per_class == metrics.SMALLEST_CLASS
        assert config.eval.judge_limit is None
    assert sprites.get_config("cpu").eval.limit == 1000  # latent evaluators stay at 1000
    smoke = sprites.get_config("smoke")  # small, and runs the balanced path in the smoke tests
    assert evaluators.judge_limit(smoke) == smoke.eval.limit == 16
    assert smoke.eval.judge_balanced_per_class == metrics.SMALLEST_CLASS
    assert shapes_config.get_config().eval.judge_balanced_per_class == 0  # others unchanged


# --------------------------------------------------------------------------------------------
# The judged-accuracy curve (eval.judge_every) and ranking checkpoints by it.


def test_judge_curve_scores_an_evenly_spread_subset():
    """On the stand-in, the judged motion depends on d only and the colour on s only, so the
    curve's accuracies are the closed-form predictions' on its subset of sequences."""
    ctx, probs = _stand_in_context()
    ctx.config.eval.judge_curve_sequences = 10
    curve = evaluators.make_judge_curve(ctx.config, ctx.model, ctx.dataset, ctx.judge_loader)
    state = types.SimpleNamespace(params={}, batch_stats={}, step=0)
    values = curve(state)
    index = np.linspace(0, 39, 10).astype(int)
    assert len(set(index)) == 10 and index[0] == 0 and index[-1] == 39
    expected_motion = np.mean(np.argmax(probs["motion"][index], 1) == _MOTION[index])
    expected_color = np.mean(np.argmax(probs["color"][index], 1) == _COLOR[index])
    assert values == pytest.approx({
        "judge_curve/fix_dynamics/motion/accuracy": expected_motion,
        "judge_curve/fix_dynamics/mean_accuracy": expected_motion,
        "judge_curve/fix_static/color/accuracy": expected_color,
        "judge_curve/fix_static/mean_accuracy": expected_color})
    assert sorted(curve.names) == sorted(values)
    ctx.config.eval.judge_curve_sequences = 0
    with pytest.raises(ValueError, match="judge_curve_sequences must be a positive count"):
        evaluators.make_judge_curve(ctx.config, ctx.model, ctx.dataset, ctx.judge_loader)


def test_swap_partners_share_the_fewest_labels():
    """Nine motions in turn per character (Sprites' test order): the shift N/2 would pair each
    sequence with its own motion; the partners chosen (shift N/2 + 1) share none."""
    motion = np.tile(np.arange(9), 20)  # N = 180, N/2 = 90 = 10 x 9
    partner = generation.swap_partners({"motion": motion})
    assert not np.any(motion == motion[partner])
    assert partner[0] == 91 and set(partner) == set(range(180))


def test_judge_swap_takes_motion_from_d_and_appearance_from_the_partners_s():
    """The stand-in judges motion from d and colour from s, so swapping real codes scores the
    closed-form predictions: sequence i's own motion, its partner i + N/2's colour."""
    ctx, probs = _stand_in_context()
    results = evaluators.judge_swap(ctx)
    partner = generation.swap_partners({"motion": _MOTION, "color": _COLOR})
    assert results["swap/num_sequences"] == 40
    assert results["swap/motion/accuracy"] == pytest.approx(
        np.mean(np.argmax(probs["motion"], 1) == _MOTION))
    assert results["swap/color/accuracy"] == pytest.approx(
        np.mean(np.argmax(probs["color"][partner], 1) == _COLOR[partner]))
    assert results["swap/mean_static_accuracy"] == results["swap/color/accuracy"]
    # The other source's labels: the partner's motion, sequence i's own colour.
    assert results["swap/motion/follows_other_code"] == pytest.approx(
        np.mean(np.argmax(probs["motion"], 1) == _MOTION[partner]))
    assert results["swap/color/follows_other_code"] == pytest.approx(
        np.mean(np.argmax(probs["color"][partner], 1) == _COLOR))
    assert results["swap/motion/labels_agree"] == np.mean(_MOTION == _MOTION[partner])
    assert results["swap/color/labels_agree"] == np.mean(_COLOR == _COLOR[partner])
    # The same rates over the pairs whose two labels differ only, in plain numpy.
    for name, labels, judged, source, other in (
            ("motion", _MOTION, np.argmax(probs["motion"], 1), np.arange(40), partner),
            ("color", _COLOR, np.argmax(probs["color"][partner], 1), partner, np.arange(40))):
        differ = labels != labels[partner]
        assert differ.any() and not differ.all()
        assert results[f"swap/{name}/pairs_where_labels_differ"] == differ.sum()
        assert results[f"swap/{name}/accuracy_where_labels_differ"] == pytest.approx(
            np.mean((judged == labels[source])[differ]))
        assert results[f"swap/{name}/follows_other_code_where_labels_differ"] == pytest.approx(
            np.mean((judged == labels[other])[differ]))


def test_factor_parts_split_sprites_motion_into_action_and_direction():
    """Sprites' motion = 3 * action + direction (data/sprites.py); its declared parts give
    back both digits, and part_hits compares them elementwise."""
    from seqdis_jax.data import sprites

    parts = sprites.SPEC.factor_parts["motion"]
    motion = np.arange(9)
    split = registry.factor_part_labels(motion, parts)
    assert list(split) == ["action", "direction"]
    np.testing.assert_array_equal(split["action"], motion // 3)
    np.testing.assert_array_equal(split["direction"], motion % 3)
    dataset = types.SimpleNamespace(factor_parts=sprites.SPEC.factor_parts)
    hits = generation.part_hits(dataset, "motion", np.array([[0, 4, 8]]), np.array([2, 4, 6]))
    np.testing.assert_array_equal(hits["action"], [[True, True, True]])
    np.testing.assert_array_equal(hits["direction"], [[False, True, False]])
    assert generation.part_hits(dataset, "skin", np.array([1]), np.array([1])) == {}


def test_judge_evaluators_score_the_parts_of_a_product_factor():
    """A factor declared as a product is scored per part by judge_generation, judge_swap and
    the judged curve: here motion = 3 * sign + value with one sign, so the part `value` is the
    motion itself and the part `sign` is always right."""
    ctx, _ = _stand_in_context()
    ctx.dataset = dataclasses.replace(
        ctx.dataset, factor_parts={"motion": (("sign", 1), ("value", 3))})
    results = evaluators.judge_generation(ctx)
    for suffix in ("", "_std"):
        assert results[f"fix_dynamics/motion/value/accuracy{suffix}"] == pytest.approx(
            results[f"fix_dynamics/motion/accuracy{suffix}"])
    assert results["fix_dynamics/motion/sign/accuracy"] == 1.0
    assert not any(k.startswith("fix_static/color/") and k.count("/") > 2 for k in results)
    swap = evaluators.judge_swap(ctx)
    for key in ("accuracy", "follows_other_code", "labels_agree"):
        assert swap[f"swap/motion/value/{key}"] == swap[f"swap/motion/{key}"]
        assert swap[f"swap/motion/sign/{key}"] == 1.0
    for key in ("accuracy", "follows_other_code"):
        assert swap[f"swap/motion/value/{key}_where_labels_differ"] == swap[
            f"swap/motion/{key}_where_labels_differ"]
        assert np.isnan(swap[f"swap/motion/sign/{key}_where_labels_differ"])  # one sign
    assert swap["swap/motion/sign/pairs_where_labels_differ"] == 0
    ctx.config.eval.judge_curve_sequences = 10
    curve = evaluators.make_judge_curve(ctx.config, ctx.model, ctx.dataset, ctx.judge_loader)
    point = curve(types.SimpleNamespace(params={}, batch_stats={}))
    assert sorted(point) == sorted(curve.names)
    assert point["judge_curve/fix_dynamics/motion/value/accuracy"] == point[
        "judge_curve/fix_dynamics/motion/accuracy"]
    assert point["judge_curve/fix_dynamics/mean_accuracy"] == point[
        "judge_curve/fix_dynamics/motion/accuracy"]


def test_swap_pairs_differ_in_the_most_static_labels():
    from seqdis_jax.evaluators.grids import _swap_pairs

    shape = np.array([1, 1, 2, 2, 0, 0, 2, 2])
    color = np.array([3, 3, 0, 0, 5, 4, 5, 3])
    pairs = _swap_pairs([shape, color], 8)
    # 0 (1, 3) -> 2 (2, 0), the first later one differing in both; 1 -> 3 likewise; 4 (0, 5)
    # -> 7 (2, 3), the only one left differing in both; 5 and 6 remain.
    assert pairs == [(0, 2), (1, 3), (4, 7), (5, 6)]
    assert sorted(i for pair in pairs for i in pair) == list(range(8))
    assert _swap_pairs([], 5) == [(0, 1), (2, 3)]
