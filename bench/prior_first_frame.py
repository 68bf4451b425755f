"""Why the first frame decoded from the learned prior's means is a smudge (issue 22).

    python bench/prior_first_frame.py --config=experiments/shapes.py --workdir=RUN

On 200 test sequences of a trained run: the mean absolute deviation of each decoded frame
from its own corner colour (a frame's "ink": 0 for a flat frame), for the inputs, their
reconstructions, and s with d_1:T from the prior's ancestral means and ancestral samples; and
the prior's mean of d_1 beside the spread of the posterior means of d_1 and d_2. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.judge_frames import load_config  # noqa: E402
from seqdis_jax import train  # noqa: E402
from seqdis_jax.data import registry  # noqa: E402
from seqdis_jax.data.pipeline import eval_batches, model_inputs  # noqa: E402


def ink(video) -> list[float]:
    video = np.asarray(video)
    corner = video[:, :, :2, :2].mean(axis=(2, 3), keepdims=True)
    return np.abs(video - corner).mean(axis=(0, 2, 3, 4)).round(4).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/shapes.py")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    config = load_config(args.config)
    model, state, _ = train.restore_checkpoint(config, args.workdir)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    batch = next(eval_batches(registry.load(config.data, "test").source, 200))
    x = jnp.asarray(model_inputs(batch, config.data.pixel_scale)["x"])
    out = model.apply(variables, x, False, rngs={"sample": jax.random.PRNGKey(0)},
                      method=model.encode)
    s, d = out["s_mean"], out["d_mean"]
    means, samples = model.apply(variables, d.shape[0], d.shape[1],
                                 method=model.sample_dynamics,
                                 rngs={"sample": jax.random.PRNGKey(1)})
    decode = lambda s, d: model.apply(variables, s, d, False, method=model.decode)
    spread = lambda a: {"mean": np.asarray(a.mean(0)).round(2).tolist(),
                        "std": np.asarray(a.std(0)).round(2).tolist()}
    print(json.dumps({
        "ink_per_frame": {"inputs": ink(x), "reconstructions": ink(decode(s, d)),
                          "prior_means": ink(decode(s, means)),
                          "prior_samples": ink(decode(s, samples))},
        "prior_mean_d1": np.asarray(means[0, 0]).round(2).tolist(),
        "posterior_mean_d1": spread(d[:, 0]), "posterior_mean_d2": spread(d[:, 1]),
        "prior_means_d2_over_the_batch": spread(means[:, 1]),
        "step": int(state.step)}, indent=1))


if __name__ == "__main__":
    main()
