"""Records per second that `ArrayRecordSource` decodes from a prepared split: its own
tf.train.Example wire decoder (`array_record.decode_example`, used whenever every feature is
a fixed-shape tensor or a class label) against TFDS's decoder (the fallback), interleaved
A B A B in one process, the same random batches for both.

    python bench/decode_records.py                           # Sprites train, batch 32
    python bench/decode_records.py --dataset=fsdd --batch=64

One JSON line per round and one summary line (medians; `speedup` = wire / TFDS records/s).
Needs the dataset prepared (`python -m data_prep.sprites ...`); one thread, no JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from seqdis_jax.data import array_record  # noqa: E402


def records_per_second(source: array_record.ArrayRecordSource, batches: list[list[int]]) -> float:
    start = time.perf_counter()
    for indices in batches:
        source.__getitems__(indices)
    return sum(map(len, batches)) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="sprites")
    parser.add_argument("--split", default="train")
    parser.add_argument("--data_dir", default=array_record.default_data_dir())
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=50, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        source = array_record.load_split(args.dataset, args.data_dir, args.split)
    except array_record.NotPreparedError as e:
        sys.exit(f"{e}. Prepare it first (see data_prep/), or name another with --dataset.")
    if source.decoder != "wire":
        sys.exit(f"{args.dataset!r} has a feature the wire decoder does not read; every record "
                 "already goes through TFDS's decoder, so there is nothing to compare.")
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(source), min(args.batch, len(source)), replace=False).tolist()
               for _ in range(args.batches)]
    rates = {"wire": [], "tfds": []}
    records_per_second(source, batches[:2])  # warm the reader's file handles and caches
    for round_ in range(args.rounds):
        for decoder in ("wire", "tfds"):
            source.decoder = decoder
            rates[decoder].append(records_per_second(source, batches))
            print(json.dumps({"round": round_, "decoder": decoder,
                              "records_per_s": round(rates[decoder][-1], 1)}))
    source.decoder = "wire"
    wire_rate, tfds_rate = (statistics.median(rates[k]) for k in ("wire", "tfds"))
    summary = {"dataset": args.dataset, "split": args.split, "batch": args.batch,
               "records_per_round": args.batch * args.batches,
               "wire_records_per_s": round(wire_rate, 1),
               "tfds_records_per_s": round(tfds_rate, 1),
               "speedup": round(wire_rate / tfds_rate, 2)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
