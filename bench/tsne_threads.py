"""Seconds of the t-SNE evaluator's fit (`seqdis_jax.evaluators.tsne.embed`, scikit-learn's
`TSNE`) under threadpoolctl limits: the OpenMP runtime's default (every core) against one thread,
alternating, on random codes of several sizes. Run it once with the machine idle and once
beside a busy process (a training run) to see what `config.eval.tsne_threads` guards against.

    python bench/tsne_threads.py                      # 16 x 8, 1000 x 64, 2664 x 128
    python bench/tsne_threads.py --sizes=16x8,300x64 --repeats=1

One JSON line per fit, then one summary line (median seconds per size and limit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax.evaluators.tsne import embed  # noqa: E402


def fit_seconds(x: np.ndarray, threads: int | None) -> float:
    start = time.perf_counter()
    embed(x, 0, threads)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="16x8,1000x64,2664x128",
                        help="comma-separated NxD: N codes of D dimensions")
    parser.add_argument("--repeats", type=int, default=2, help="fits per size and limit")
    args = parser.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
        if any(len(size) != 2 or min(size) < 1 for size in sizes):
            raise ValueError
    except ValueError:
        parser.error(f"--sizes={args.sizes!r}: give comma-separated NxD with positive N and D, "
                     "e.g. 16x8,1000x64")
    rng = np.random.default_rng(0)
    medians = {}
    for n, dim in sizes:
        x = rng.normal(size=(n, dim)).astype(np.float32)
        seconds: dict[str, list[float]] = {"default": [], "one_thread": []}
        for _ in range(args.repeats):
            for name, threads in (("default", None), ("one_thread", 1)):
                seconds[name].append(fit_seconds(x, threads))
                print(json.dumps({"codes": n, "dims": dim, "threads": name,
                                  "seconds": round(seconds[name][-1], 3)}), flush=True)
        medians[f"{n}x{dim}"] = {k: round(statistics.median(v), 3) for k, v in seconds.items()}
    summary = {"cpu_count": os.cpu_count(), "median_seconds": medians}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
