"""Which part of the Sprites motion a run's static code carries (issue 21, diagnosis).

    python bench/motion_parts.py --judge=DIR --config=experiments/sprites.py:cpu \
        --workdir=RUN [--checkpoint=best] [--repeats=3] [--limit=N]

A Sprites motion is an action (walk, spellcast, slash) seen from a direction (front, left,
right): motion = 3 * action + direction (seqdis_jax/data/sprites.py). The judge reads the
9 motions; this splits its verdicts into the two parts, on the run's test sequences:

- fix_d_sample_s: posterior-mean d_1:T of each sequence, s ~ N(0, I) (`--repeats` draws, as
  judge_generation's fix_dynamics): how often the judged action and direction are the
  sequence's own, and, per true direction, the judged directions' shares.
- swap: s (posterior mean) of a partner j, d_1:T of sequence i (as judge_swap; j shares as
  few actions and directions with i as `evaluators.generation.swap_partners` can find):
  how often each part is i's (it came with d) or j's (it came with s).
- latent: whether each code holds each part at all, decoded or not: SVC accuracy (sklearn's
  defaults, 80/20 splits, 3 seeds; `metrics.latent_classification`) of the action and the
  direction from the posterior mean of s and from that of d_1:T (flattened). Random splits
  put a character's other sequences in the training part, so a code that identifies the
  character but not the part reads *below* chance there (DBSE: action from s 0.087, chance
  0.33); `latent_svc_by_character` splits by character instead (the test split lists each
  character's 9 motions in turn), where such a code reads at chance.

Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from judge_frames import load_test_set_and_judge, run_and_judge_arguments, run_main  # noqa: E402

from seqdis_jax import metrics as metrics_lib  # noqa: E402
from seqdis_jax import train  # noqa: E402
from seqdis_jax.data import registry, sprites  # noqa: E402
from seqdis_jax.data.pipeline import eval_batches, model_inputs  # noqa: E402
from seqdis_jax.evaluators import generation  # noqa: E402


def parts(predicted: np.ndarray, own: np.ndarray, other: np.ndarray | None = None
          ) -> dict[str, float]:
    """Shares of judged motions whose action / direction / both equal `own`'s (and `other`'s)."""
    out = {"motion": float(np.mean(predicted == own)),
           "action": float(np.mean(predicted // 3 == own // 3)),
           "direction": float(np.mean(predicted % 3 == own % 3))}
    if other is not None:
        out |= {"action_from_s": float(np.mean(predicted // 3 == other // 3)),
                "direction_from_s": float(np.mean(predicted % 3 == other % 3)),
                "action_from_d_direction_from_s": float(np.mean(
                    (predicted // 3 == own // 3) & (predicted % 3 == other % 3)))}
    return out


def svc_by_character(codes: dict[str, np.ndarray], motion: np.ndarray) -> dict[str, float]:
    """SVC accuracy of each motion part from each code on 80/20 splits that keep each
    character's 9 sequences together (3 seeds), so that knowing the character does not help."""
    whole = len(motion) // 9 * 9
    if not np.array_equal(motion[:whole], np.tile(np.arange(9), whole // 9)):
        return {}  # not the test split's order: the characters are unknown
    parts = registry.factor_part_labels(motion, sprites.SPEC.factor_parts["motion"])
    characters = np.arange(len(motion)) // 9
    return {f"{part}_from_{code}": round(metrics_lib.latent_classification(
                features, labels, ("svc",), seeds=range(3), groups=characters)["svc"][0], 4)
            for code, features in codes.items() for part, labels in parts.items()}


def main() -> None:
    parser = run_and_judge_arguments(__doc__.split("\n")[0], "a trained Sprites run", True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config, dataset, judge, judge_variables = load_test_set_and_judge(args)
    model, state, _ = train.restore_checkpoint(config, args.workdir, args.checkpoint)
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    @jax.jit
    def encode(x):
        out = model.apply(variables, x, False, rngs={"sample": jax.random.PRNGKey(0)},
                          method=model.encode)
        return out["s_mean"], out["d_mean"]

    @jax.jit
    def judged_motion(s, d):
        x = model.apply(variables, s, d, False, method=model.decode)
        return jnp.argmax(judge.apply(judge_variables, x)["motion"], -1)

    s_means, d_means, labels = [], [], []
    for batch in eval_batches(dataset.source, config.eval.batch_size, args.limit):
        mask = batch["mask"]
        s, d = encode(jnp.asarray(model_inputs(batch, config.data.pixel_scale)["x"]))
        s_means.append(np.asarray(s)[mask])
        d_means.append(np.asarray(d)[mask])
        labels.append(np.asarray(batch["motion"])[mask])
    s_mean, d_mean, motion = (np.concatenate(a) for a in (s_means, d_means, labels))
    n, size = len(motion), config.eval.batch_size
    # judge_swap's partners, chosen to share the fewest actions and directions (the test set
    # lists each character's 9 motions in turn: i + N/2 would share every motion).
    partner = generation.swap_partners({"action": motion // 3, "direction": motion % 3})
    shift = int(partner[0])

    def judged(s_of: callable) -> np.ndarray:
        return np.concatenate([np.asarray(judged_motion(s_of(i, i + size), d_mean[i:i + size]))
                               for i in range(0, n, size)])

    sampled = np.stack([judged(lambda a, b, r=r: jax.random.normal(
        jax.random.fold_in(jax.random.PRNGKey(r), a), s_mean[a:b].shape))
        for r in range(args.repeats)])
    swapped = judged(lambda a, b: s_mean[partner[a:b]])
    direction_shares = {
        str(t): (np.bincount((sampled[:, motion % 3 == t] % 3).ravel(), minlength=3)
                 / sampled[:, motion % 3 == t].size).round(4).tolist() for t in range(3)}
    report = {"sequences": n, "step": int(state.step), "repeats": args.repeats,
              "swap_partner_shift": shift,
              "swap_actions_agree": float(np.mean(motion // 3 == motion[partner] // 3)),
              "swap_directions_agree": float(np.mean(motion % 3 == motion[partner] % 3)),
              "fix_d_sample_s": parts(sampled, motion[None]) | {
                  "judged_direction_shares_by_true_direction": direction_shares},
              "swap": parts(swapped, motion, motion[partner]),
              "latent_svc": {
                  f"{part}_from_{code}": round(metrics_lib.latent_classification(
                      features, labels, ("svc",), seeds=range(3))["svc"][0], 4)
                  for code, features in (("s", s_mean), ("d", d_mean))
                  for part, labels in registry.factor_part_labels(
                      motion, sprites.SPEC.factor_parts["motion"]).items()},
              "latent_svc_by_character": svc_by_character(
                  {"s": s_mean, "d": d_mean}, motion)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    run_main(main)
