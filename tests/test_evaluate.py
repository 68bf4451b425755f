"""The evaluator registry's label checks, the judge's refusal of other data, and the judge
trained on shapes."""

import dataclasses
import json

import pytest

from experiments import shapes as shapes_config
from seqdis_jax import evaluate, judge, train
from seqdis_jax.data import registry


def _shapes_test_set():
    config = shapes_config.get_config("smoke")
    return config, registry.load(config.data, "test")


def test_all_expands_to_what_the_labels_allow():
    _, dataset = _shapes_test_set()
    everything = evaluate.select_evaluators(("all",), dataset)
    assert set(everything) == set(evaluate.EVALUATORS)
    unlabelled = dataclasses.replace(dataset, static_factors=(), dynamic_factors=())
    assert set(evaluate.select_evaluators(("all",), unlabelled)) == {
        "reconstruction", "grids", "mutual_information", "downstream"}
    static_only = dataclasses.replace(dataset, dynamic_factors=())
    assert set(evaluate.select_evaluators(("all",), static_only)) == set(evaluate.EVALUATORS)
    dynamic_only = dataclasses.replace(dataset, static_factors=())  # e.g. Jester
    assert set(evaluate.select_evaluators(("all",), dynamic_only)) == set(
        evaluate.EVALUATORS) - {"verification_eer"}


def test_judged_generation_is_for_video_only():
    _, dataset = _shapes_test_set()
    for modality in ("speech", "series"):
        selected = evaluate.select_evaluators(("all",), dataset, modality)
        assert set(selected) == set(evaluate.EVALUATORS) - {"judge_generation"}
        with pytest.raises(ValueError, match="'judge_generation' applies to \\['video'\\]"):
            evaluate.select_evaluators(("judge_generation",), dataset, modality)


def test_an_evaluator_needing_a_missing_label_is_refused_by_name():
    _, dataset = _shapes_test_set()
    dynamic_only = dataclasses.replace(dataset, static_factors=())
    with pytest.raises(evaluate.MissingLabelError, match="'verification_eer' needs a static"):
        evaluate.select_evaluators(("verification_eer",), dynamic_only)
    unlabelled = dataclasses.replace(dataset, static_factors=(), dynamic_factors=())
    with pytest.raises(evaluate.MissingLabelError, match="'latent_classification' needs a"):
        evaluate.select_evaluators(("latent_classification",), unlabelled)
    with pytest.raises(ValueError, match="Unknown evaluator"):
        evaluate.select_evaluators(("fid",), dataset)


def test_judge_for_other_data_is_refused(tmp_path):
    config, dataset = _shapes_test_set()
    metadata = judge.data_signature(config, dataset) | {
        "architecture": judge.judge_architecture(config)}
    judge.check_compatible(metadata, config, dataset, str(tmp_path))  # its own data: accepted
    other = dict(metadata, dataset="sprites")
    with pytest.raises(judge.JudgeMismatchError, match="dataset: judge has 'sprites'"):
        judge.check_compatible(other, config, dataset, str(tmp_path))
    smaller = dict(metadata, video_shape=[8, 32, 32, 3])
    with pytest.raises(judge.JudgeMismatchError, match="video_shape"):
        judge.check_compatible(smaller, config, dataset, str(tmp_path))
    wider = config.copy_and_resolve_references()
    wider.judge.width = 1.0
    with pytest.raises(judge.JudgeMismatchError, match="architecture"):
        judge.check_compatible(metadata, wider, dataset, str(tmp_path))


def test_missing_judge_names_the_command(tmp_path):
    config, dataset = _shapes_test_set()
    config.judge.workdir = str(tmp_path / "nojudge")
    config.judge.train_if_missing = False
    with pytest.raises(train.MissingCheckpointError, match="--mode=judge"):
        train.restore_judge(config, dataset)


@pytest.mark.slow
def test_shapes_judge_reaches_99_percent_on_every_factor(tmp_path):
    """The default shapes judge (experiments/shapes.py) on the full shapes splits."""
    config = shapes_config.get_config()
    config.judge.workdir = str(tmp_path / "judge")
    results = train.train_judge(config)
    accuracy = json.loads((tmp_path / "judge" / judge.METADATA_FILE).read_text())[
        "test_accuracy"]
    assert set(accuracy) == {"shape", "color", "size", "motion"}
    for factor, value in accuracy.items():
        assert value >= 0.99, (factor, value, results)


def test_speech_verification_averages_each_utterance_first():
    """Speaker-separable codes (DSVAE/SPYL B.5 protocol): one vector per utterance, the mean of
    its segments' codes; s holds the speaker, d only noise."""
    import numpy as np

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
    ctx = evaluate.EvalContext(config=None, workdir="", model=None, variables={},
                               dataset=dataset, rng=None, _codes=codes)
    grouped = evaluate.verification_eer(ctx)
    ungrouped = evaluate.verification_eer(
        dataclasses.replace(ctx, dataset=dataclasses.replace(dataset, group=None)))
    assert grouped["eer/static"] < ungrouped["eer/static"]
    assert grouped["eer/static"] < 0.1
    assert grouped["eer/dynamic"] > 0.25  # d is noise: near chance
    assert grouped["eer/gap"] == pytest.approx(grouped["eer/dynamic"] - grouped["eer/static"])
