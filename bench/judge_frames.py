"""How much the Sprites judge's motion verdict depends on each frame (issue 21, diagnosis).

    python bench/judge_frames.py --judge=DIR                         # the judge on real data
    python bench/judge_frames.py --judge=DIR --config=experiments/dbse_sprites.py:cpu \
        --workdir=RUN [--checkpoint=best]                            # and on a run's samples

Part 1, real test sequences: the judge's motion accuracy when frame t is replaced by a blank
(black) frame, by frame t of another test sequence (a different character, i + N/2), or by its
neighbour (frame t+1, the last by t-1), one row per t. A frame the verdict depends on drops it.

Part 2, with --workdir: the run's fix-d / sample-s sequences (posterior-mean d_1:T of every
test sequence, s ~ N(0, I), one draw), judged as generated, with frame 0 replaced by frame 1 of
the same generated sequence, and with each frame t replaced by its neighbour. If only frame 0
is broken (e.g. DBSE's anchor frame decoded from (s, 0)), replacing it restores the accuracy.

Prints one JSON object: the accuracies and the sequence count.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax import configuration, errors, train  # noqa: E402
from seqdis_jax import judge as judge_lib  # noqa: E402
from seqdis_jax.data import registry  # noqa: E402
from seqdis_jax.data.pipeline import eval_batches, model_inputs  # noqa: E402


def load_config(spec: str):
    path, _, variant = spec.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return module.get_config(variant or None)


def replaced(video: jnp.ndarray, t: int, how: str, other: jnp.ndarray) -> jnp.ndarray:
    """`video` (B, T, ...) with frame t replaced: 'blank', 'other' (that frame of `other`) or
    'neighbour' (frame t + 1; the last frame takes t - 1)."""
    if how == "blank":
        frame = jnp.zeros_like(video[:, t])
    elif how == "other":
        frame = other[:, t]
    else:
        frame = video[:, t + 1] if t + 1 < video.shape[1] else video[:, t - 1]
    return video.at[:, t].set(frame)


def motion_accuracy(judge, judge_variables, videos: list[jnp.ndarray], labels: np.ndarray,
                    factor: str) -> float:
    predict = jax.jit(lambda v, x: jnp.argmax(judge.apply(v, x)[factor], -1))
    predicted = np.concatenate([np.asarray(predict(judge_variables, v)) for v in videos])
    return float(np.mean(predicted == labels))


def run_and_judge_arguments(description: str, workdir_help: str, workdir_required: bool
                            ) -> argparse.ArgumentParser:
    """The flags of the judge-diagnosis scripts (this one, motion_parts.py)."""
    parser = argparse.ArgumentParser(description=description)
    path = os.path.expanduser  # `--judge=~/x`: the shell leaves a `~` after `=` unexpanded
    parser.add_argument("--judge", required=True, type=path,
                        help="the judge's workdir (a trained judge: it is never trained here)")
    parser.add_argument("--config", default=None,
                        help="experiments/X.py[:variant]; default: the run's own config.json "
                             "(with its overrides), else experiments/sprites.py:cpu")
    parser.add_argument("--workdir", default=None, required=workdir_required, type=path,
                        help=workdir_help)
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--limit", type=int, default=None, help="test sequences (all)")
    parser.add_argument("--data_dir", default=None, type=path)
    return parser


def load_test_set_and_judge(args: argparse.Namespace):
    """(config, the test split, judge, judge variables) of the parsed flags."""
    judge_dir = os.path.abspath(args.judge)
    if judge_lib.read_metadata(judge_dir) is None:
        raise errors.MissingCheckpointError(
            f"no trained judge in {judge_dir} (--judge); pass the workdir of a trained judge "
            f"(`python -m experiments.main --config=... --mode=judge` trains one).")
    if args.config is None and args.workdir and os.path.exists(
            os.path.join(args.workdir, configuration.CONFIG_FILE)):
        config = configuration.load_config(args.workdir)
    else:
        config = load_config(args.config or "experiments/sprites.py:cpu")
    config.judge.workdir = judge_dir
    config.judge.train_if_missing = False  # these scripts only read a judge
    if args.data_dir:
        config.data.data_dir = args.data_dir
    dataset = registry.load(config.data, "test")
    judge, judge_variables, _ = judge_lib.restore_judge(config, dataset)
    return config, dataset, judge, judge_variables


def main() -> None:
    args = run_and_judge_arguments(__doc__.split("\n")[0], "a trained run (part 2)",
                                   False).parse_args()
    config, dataset, judge, judge_variables = load_test_set_and_judge(args)
    (factor,) = dataset.dynamic_factors
    videos, labels = [], []
    for batch in eval_batches(dataset.source, config.eval.batch_size, args.limit):
        mask = batch["mask"]
        videos.append(jnp.asarray(model_inputs(batch, config.data.pixel_scale)["x"][mask]))
        labels.append(np.asarray(batch[factor])[mask])
    labels = np.concatenate(labels)
    n, frames = len(labels), videos[0].shape[1]
    everything = jnp.concatenate(videos)
    partner = everything[(np.arange(n) + n // 2) % n]
    sizes = np.cumsum([0] + [len(v) for v in videos])
    others = [partner[a:b] for a, b in zip(sizes[:-1], sizes[1:])]
    report = {"sequences": n, "real": {"as_is": motion_accuracy(
        judge, judge_variables, videos, labels, factor)}}
    for how in ("blank", "other", "neighbour"):
        report["real"][how] = [motion_accuracy(
            judge, judge_variables, [replaced(v, t, how, o) for v, o in zip(videos, others)],
            labels, factor) for t in range(frames)]
    if args.workdir:
        model, state, _ = train.restore_checkpoint(config, args.workdir, args.checkpoint)
        variables = {"params": state.params, "batch_stats": state.batch_stats}

        @jax.jit
        def fix_d_sample_s(video, rng):
            out = model.apply(variables, video, False, rngs={"sample": rng},
                              method=model.encode)
            s = jax.random.normal(rng, out["s_mean"].shape)
            return model.apply(variables, s, out["d_mean"], False, method=model.decode)

        generated = [fix_d_sample_s(v, jax.random.PRNGKey(i)) for i, v in enumerate(videos)]
        report["generated"] = {
            "step": int(state.step),
            "as_is": motion_accuracy(judge, judge_variables, generated, labels, factor),
            "neighbour": [motion_accuracy(
                judge, judge_variables, [replaced(g, t, "neighbour", g) for g in generated],
                labels, factor) for t in range(frames)]}
    print(json.dumps(report, indent=1))


def run_main(main_function) -> None:
    """Runs a diagnosis script's main; a bad flag or input (no judge, no prepared data, no such
    checkpoint) ends with the launcher's one `error:` line and exit status 2."""
    from experiments.main import exit_with_error, known_errors

    input_errors, failures = known_errors()
    try:
        main_function()
    except input_errors + failures as e:
        exit_with_error(e, input_errors)


if __name__ == "__main__":
    run_main(main)
