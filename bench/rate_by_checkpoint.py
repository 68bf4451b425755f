"""Is a late checkpoint slower to train than an early one? Training steps per second from
several kept checkpoints of one run (and a fresh initialisation), the same real training
batches, the same compiled step, interleaved A B C A B C in one process (issue 20: DBSE
`:cpu` logged 2.1 steps/s early in its 10,000 steps and 1.4 late).

    python bench/rate_by_checkpoint.py --workdir=RUN                  # first and last kept
    python bench/rate_by_checkpoint.py --workdir=RUN --checkpoints=1000,10000 --steps=30

A difference between checkpoints, in one process, points at the training state (values the
step meets: subnormal floats, for one, which x86 handles far slower unless flushed to zero);
no difference points at the process or the machine over hours. Each state's count of
subnormal float32 values (0 < |x| < 1.18e-38) in its parameters and optimiser state is
printed beside its rate; `--flush` adds each checkpoint again with those values set to zero.
One JSON line per timed block, then one summary line (median steps/s per state).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax import configuration, models, train  # noqa: E402
from seqdis_jax.data import registry  # noqa: E402
from seqdis_jax.data.pipeline import RECORD_KEY, train_iterator  # noqa: E402
from seqdis_jax.train_step import create_train_state, make_train_step  # noqa: E402

TINY = np.finfo(np.float32).tiny


def subnormals(tree) -> int:
    """How many float32 values of `tree` are subnormal (nonzero, below the smallest normal)."""
    count = 0
    for leaf in jax.tree.leaves(tree):
        if hasattr(leaf, "dtype") and leaf.dtype == np.float32:
            a = np.abs(np.asarray(leaf))
            count += int(np.count_nonzero((a > 0) & (a < TINY)))
    return count


def flushed(tree):
    """`tree` with its subnormal float32 values set to zero."""
    def flush(leaf):
        if hasattr(leaf, "dtype") and leaf.dtype == np.float32:
            a = np.asarray(leaf)
            return np.where(np.abs(a) < TINY, np.float32(0), a)
        return leaf
    return jax.tree.map(flush, tree)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a run trained by experiments.main")
    parser.add_argument("--checkpoints", default="",
                        help="comma-separated steps (default: the first and last kept)")
    parser.add_argument("--no_fresh", action="store_true", help="leave out a fresh init")
    parser.add_argument("--flush", action="store_true",
                        help="also time each checkpoint with its subnormals set to zero")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    config = configuration.load_config(args.workdir)
    manager = train.ranked_manager(config, args.workdir)
    kept = sorted(manager.all_steps())
    manager.close()
    if not kept:
        sys.exit(f"{args.workdir} has no checkpoints; train it first (experiments.main).")
    wanted = ([int(s) for s in args.checkpoints.split(",")] if args.checkpoints
              else sorted({kept[0], kept[-1]}))
    missing = [s for s in wanted if s not in kept]
    if missing:
        sys.exit(f"no checkpoint of step(s) {missing} in {args.workdir}; kept: {kept}")

    states = {}  # name -> host copy of the train state (the step donates its input)
    for step in wanted:
        model, state, _ = train.restore_checkpoint(config, args.workdir, step)
        states[f"step_{step}"] = jax.device_get(state)
        if args.flush:
            states[f"step_{step}_flushed"] = flushed(states[f"step_{step}"])
    method = models.get_method(config.method)
    tx = train.make_optimizer(config, method)  # as the run's (restore_checkpoint's) optimiser
    train_data = registry.load(config.data, "train")
    batch_size = config.data.batch_size
    batches = []
    data = train_iterator(train_data.source, batch_size, config.seed)
    for _ in range(args.steps):
        batches.append({RECORD_KEY: jnp.asarray(next(data)[RECORD_KEY])})
    if not args.no_fresh:
        fresh = create_train_state(model, tx, jnp.zeros(batches[0][RECORD_KEY].shape,
                                                        jnp.float32), jax.random.PRNGKey(0))
        states = {"fresh": jax.device_get(fresh), **states}
    counts = {name: subnormals((s.params, s.opt_state)) for name, s in states.items()}
    step_fn = make_train_step(method, model, tx, config)
    rng = jax.random.PRNGKey(1)
    jax.block_until_ready(step_fn(jax.device_put(next(iter(states.values()))), batches[0], rng))

    rates: dict[str, list[float]] = {name: [] for name in states}
    for round_ in range(args.rounds):
        for name, host_state in states.items():
            state = jax.device_put(host_state)
            state, _ = step_fn(state, batches[0], rng)  # one untimed step: caches, pages
            jax.block_until_ready(state)
            start = time.perf_counter()
            for batch in batches:
                state, metrics = step_fn(state, batch, rng)
            jax.block_until_ready((state, metrics))
            rates[name].append(args.steps / (time.perf_counter() - start))
            print(json.dumps({"round": round_, "state": name,
                              "steps_per_s": round(rates[name][-1], 3)}), flush=True)
    summary = {
        "workdir": os.path.abspath(args.workdir), "method": config.method,
        "batch": batch_size, "steps_per_block": args.steps,
        "steps_per_s": {k: round(statistics.median(v), 3) for k, v in rates.items()},
        "subnormals_in_state": counts,
        "skipped": int(jax.device_get(metrics.get("skipped", 0))),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
