"""Our training step against the PyTorch reference (bench/torch_reference.py), side by side in
one run on the same machine: the speed ratio per method, batch, width and dtype.

    pip install -e .[bench] --extra-index-url https://download.pytorch.org/whl/cpu  # torch (CPU)
    python bench/compare_torch.py                              # dsvae, cdsvae, dbse; batch 32
    python bench/compare_torch.py --methods=cdsvae --batches=32,128 --variants=default,cpu
    python bench/compare_torch.py --dtypes=float32,bfloat16 --rounds=3 --json=/tmp/cmp.json
    git worktree add /tmp/before HEAD~1 && python bench/compare_torch.py --baseline=/tmp/before

For each (method, batch, variant) it starts two worker processes, ours (JAX) and the reference
(PyTorch, float32), each building its step at the same sizes (our config
experiments/<method>_sprites.py:<variant> with the authors' posterior of `:code`; the
reference is given the same widths and sizes), running --warmup untimed steps (compilation)
and then waiting. The driver then asks them in turn, A B A B ..., for --steps_per_round timed
steps each, for --rounds rounds, so that both see the same machine state; only one worker runs
at a time. Each `dtype` of ours is a separate worker (`configuration.PRECISIONS`: bfloat16 =
`model.compute_dtype`: bf16 activations and matrix products with float32 accumulation, float32
parameters and Adam; bf16_products = `model.product_dtype`: a float32 network whose frame
convolutions multiply in bf16).
--baseline=DIR adds our step as another checkout of this repository computes it (rows `before
...`, its own bench/compare_torch.py as the worker), so that a change is measured before and
after in the same run.

--malloc=default,tuned runs every worker twice, with glibc's malloc defaults and with the
tunables `experiments.main` restarts with (seqdis_jax/cpu_malloc.py; rows `... malloc-tuned`);
the ratio's denominator is always the first torch row.

Printed per row: the median and minimum step time of each, `torch / ours` on medians (> 1: ours
is faster), and the sustained GFLOP/s of our step (XLA's cost analysis of the compiled step,
the same model FLOPs as the reference's; recurrences counted for one scan iteration, so a
lower bound) next to XLA's own float32 2048^2 matmul GFLOP/s measured in the same run.
Workers use every core (`torch.set_num_threads(os.cpu_count())`; XLA's default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
from seqdis_jax import cpu_malloc  # noqa: E402  (light: no jax)

METHODS = ("dsvae", "cdsvae", "dbse")
FRAMES = 8


# --- workers ----------------------------------------------------------------------------------

def our_config(method: str, variant: str, batch: int, dtype: str = "float32"):
    """Our Sprites config of `method` at `variant`'s sizes with the `:code` model switches (the
    authors' networks and losses), so that it computes what bench/torch_reference.py does."""
    sys.path.insert(0, ROOT)
    from experiments import base, cdsvae_sprites, dbse_sprites, sprites
    from seqdis_jax import configuration

    module = {"dsvae": sprites, "cdsvae": cdsvae_sprites, "dbse": dbse_sprites}[method]
    config = module.get_config(variant)
    if method == "dsvae":  # the C-DSVAE authors' network without their contrastive terms
        base.set_cdsvae_code_posterior(config)
        config.model.static_head_activation = "leaky_relu"
    if method == "cdsvae":
        cdsvae_sprites.set_code_switches(config)
    if method == "dbse":
        dbse_sprites.set_code_switches(config)
        if variant == "default":
            code = dbse_sprites.get_config("code")
            config.model.hidden_dim = code.model.hidden_dim
            config.model.feature_dim = code.model.feature_dim
    config.data.batch_size = batch
    configuration.set_precision(config, dtype)
    return config


def torch_sizes(config) -> dict:
    m = config.model
    return dict(width=float(m.width), feature_dim=int(m.feature_dim),
                static_dim=int(m.static_dim), dynamic_dim=int(m.dynamic_dim),
                hidden_dim=int(m.hidden_dim))


def jax_worker(method: str, variant: str, batch: int, dtype: str, lowering: str,
               warmup: int) -> None:
    sys.path.insert(0, ROOT)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from seqdis_jax import models, train

    config = our_config(method, variant, batch, dtype)
    config.model.cpu_conv_lowering = lowering
    algo = models.get_method(config.method)
    model = algo.build(config)
    tx = train.make_optimizer(config, algo)
    shape = (batch, FRAMES, 64, 64, 3)
    state = train.create_train_state(model, tx, jnp.zeros(shape), jax.random.PRNGKey(0))
    step = train.make_train_step(algo, model, tx, config)
    batch_data = {"video": np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)}
    rng = jax.random.PRNGKey(1)
    compiled = step.lower(state, batch_data, rng).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))

    def run() -> float:
        nonlocal state
        start = time.perf_counter()
        state, metrics = compiled(state, batch_data, rng)
        jax.block_until_ready((state, metrics))
        return time.perf_counter() - start

    a = jnp.ones((2048, 2048), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(a))
    matmul_times = []
    for _ in range(5):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a))
        matmul_times.append(time.perf_counter() - start)
    info = dict(flops=flops, matmul_gflops=2 * 2048**3 / min(matmul_times) / 1e9,
                params=int(sum(x.size for x in jax.tree.leaves(state.params))))
    _serve(run, warmup, info)


def torch_worker(method: str, variant: str, batch: int, warmup: int, bf16: bool) -> None:
    import torch

    sys.path.insert(0, HERE)
    import torch_reference

    torch.set_num_threads(os.cpu_count() or 1)
    config = our_config(method, variant, batch)
    sizes = torch_sizes(config)
    width = sizes.pop("width")
    step = torch_reference.make_step(method, batch, FRAMES, width, bf16=bf16, **sizes)

    def run() -> float:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start

    info = dict(params=torch_reference.count_parameters(method, width, flax_biases=True,
                                                        **sizes),
                torch=torch.__version__)
    _serve(run, warmup, info)


def _serve(run, warmup: int, info: dict) -> None:
    """Warm up, report ready, then run `k` timed steps per request line until EOF."""
    for _ in range(warmup):
        run()
    print(json.dumps(dict(ready=True, **info)), flush=True)
    for line in sys.stdin:
        k = int(line)
        print(json.dumps(dict(times=[run() for _ in range(k)])), flush=True)


# --- driver -----------------------------------------------------------------------------------

def malloc_env(setting: str) -> dict[str, str]:
    """The environment of a worker: glibc's malloc defaults, or the tunables the launchers
    restart with (`seqdis_jax.cpu_malloc`)."""
    env = {k: v for k, v in os.environ.items() if k != cpu_malloc.ENV}
    if setting == "tuned":
        env[cpu_malloc.ENV] = cpu_malloc.TUNABLES
    return env


class Worker:
    def __init__(self, name: str, args: list[str], root: str = ROOT, malloc: str = "default"):
        self.name = name + (" malloc-tuned" if malloc == "tuned" else "")
        script = os.path.join(root, "bench", "compare_torch.py")
        self.proc = subprocess.Popen([sys.executable, script, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=root,
                                     env=malloc_env(malloc))
        self.info = self._read()
        self.times: list[float] = []

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited (code {self.proc.wait()}); run it "
                               "alone to see its error")
        return json.loads(line)

    def run(self, k: int) -> None:
        self.proc.stdin.write(f"{k}\n")
        self.proc.stdin.flush()
        self.times += self._read()["times"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def compare(method: str, batch: int, variant: str, dtypes: list[str], args) -> list[dict]:
    common = ["--method", method, "--batch", str(batch), "--variant", variant,
              "--warmup", str(args.warmup)]
    mallocs = args.malloc.split(",")
    workers = [Worker("torch float32", ["--worker=torch", *common], malloc=m) for m in mallocs]
    if args.torch_bf16:
        workers += [Worker("torch bf16 autocast", ["--worker=torch", "--bf16", *common],
                           malloc=m) for m in mallocs]
    roots = [("ours", ROOT)] + ([("before", args.baseline)] if args.baseline else [])
    workers += [Worker(f"{who} {d} {lowering}",
                       ["--worker=jax", "--dtype", d, "--lowering", lowering, *common], root,
                       malloc=m)
                for d in dtypes for who, root in roots for lowering in args.lowerings.split(",")
                for m in mallocs]
    try:
        for _ in range(args.rounds):  # A B A B ...
            for w in workers:
                w.run(args.steps_per_round)
    finally:
        for w in workers:
            w.close()
    reference = statistics.median(workers[0].times)
    rows = []
    for w in workers:
        median = statistics.median(w.times)
        row = dict(method=method, batch=batch, variant=variant, who=w.name,
                   median_s=round(median, 3), min_s=round(min(w.times), 3),
                   times=[round(t, 3) for t in w.times],
                   torch_over_this=round(reference / median, 2), params=w.info["params"])
        if "flops" in w.info:
            row.update(gflops_per_s=round(w.info["flops"] / median / 1e9, 1),
                       step_gflop=round(w.info["flops"] / 1e9, 1),
                       xla_matmul_2048_gflops_per_s=round(w.info["matmul_gflops"], 1))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def print_table(path: str) -> None:
    """Markdown rows of a --json file; GFLOP/s from one FLOP count per (method, batch, variant)
    for every row, so that rows compare at equal work: that of the float32 `xla` program if the
    file has one, else the float32 `before` program's, else our float32 program's."""
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    flops = {}
    for pattern in ("ours float32", "before float32", " float32 xla"):  # the last found wins
        flops.update({(r["method"], r["batch"], r["variant"]): r["step_gflop"] for r in rows
                      if pattern in r["who"] and "step_gflop" in r})
    print("| method | batch | width | who | step (s), median (min) | torch fp32 / this | GFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        key = (r["method"], r["batch"], r["variant"])
        rate = f"{flops[key] / r['median_s']:.0f}" if key in flops else ""
        width = {"default": "paper", "cpu": "`:cpu`"}.get(r["variant"], r["variant"])
        print(f"| {r['method']} | {r['batch']} | {width} | {r['who']} | {r['median_s']:.3f} "
              f"({r['min_s']:.3f}) | {r['torch_over_this']:.2f} | {rate} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batches", default="32")
    parser.add_argument("--variants", default="default", help="default (full width), cpu")
    parser.add_argument("--dtypes", default="float32",
                        help="ours: float32, bfloat16, bf16_products")
    parser.add_argument("--lowerings", default="gemm",
                        help="ours: model.cpu_conv_lowering, gemm (default) and/or xla (before)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps_per_round", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--torch_bf16", action="store_true",
                        help="also time the reference under torch.autocast(bfloat16)")
    parser.add_argument("--malloc", default="default",
                        help="glibc malloc of every worker: default, tuned (the tunables "
                             "experiments.main restarts with, seqdis_jax/cpu_malloc.py) or both")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="also time our step as this other checkout computes it")
    parser.add_argument("--json", default=None)
    parser.add_argument("--table", default=None, metavar="JSON",
                        help="print the markdown table of a saved --json file and exit")
    # worker mode (internal)
    parser.add_argument("--worker", choices=("jax", "torch"), default=None)
    parser.add_argument("--method", default="dsvae")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--variant", default="default")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--lowering", default="gemm")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    if args.baseline:
        args.baseline = os.path.abspath(os.path.expanduser(args.baseline))
        if not os.path.isfile(os.path.join(args.baseline, "bench", "compare_torch.py")):
            parser.error(f"--baseline={args.baseline} is not a checkout of this repository "
                         "(no bench/compare_torch.py); make one with `git worktree add DIR REV`.")
    if args.table:
        return print_table(args.table)
    if args.worker == "jax":
        return jax_worker(args.method, args.variant, args.batch, args.dtype, args.lowering,
                          args.warmup)
    if args.worker == "torch":
        return torch_worker(args.method, args.variant, args.batch, args.warmup, args.bf16)

    sys.path.insert(0, ROOT)
    from seqdis_jax.machine import cpu_summary

    model = cpu_summary()
    print(json.dumps(dict(cpu=model, cores=os.cpu_count(), date=time.strftime("%Y-%m-%d"))),
          flush=True)
    rows = []
    for method in args.methods.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for variant in args.variants.split(","):
                rows += compare(method, batch, variant, args.dtypes.split(","), args)
    print(f"\n{'method':7} {'batch':>5} {'variant':8} {'who':26} {'median s':>9} {'min s':>7} "
          f"{'torch/this':>10} {'GFLOP/s':>8} {'matmul':>7}", file=sys.stderr)
    for r in rows:
        print(f"{r['method']:7} {r['batch']:5d} {r['variant']:8} {r['who']:26} "
              f"{r['median_s']:9.3f} {r['min_s']:7.3f} {r['torch_over_this']:10.2f} "
              f"{r.get('gflops_per_s', ''):>8} {r.get('xla_matmul_2048_gflops_per_s', ''):>7}",
              file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(cpu=model, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
