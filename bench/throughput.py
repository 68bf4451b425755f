"""Training throughput: sequences/s, step time and achieved FLOP/s per method and batch size.

    python bench/throughput.py                                   # paper methods, batch 32 and 128
    python bench/throughput.py --methods=dsvae,spyl --batch_sizes=64 --dtype=bfloat16
    python bench/throughput.py --config_variant=cpu --batch_sizes=16 --json=/tmp/bench.json
    python bench/throughput.py --mesh_data=-1 --mesh_fsdp=2      # parameters sharded over 2
    python bench/throughput.py --multihost ...                   # every host of a TPU slice

The same command runs on one CPU, N GPUs or a TPU slice: the batch is split over a
('data', 'fsdp') mesh of every device (seqdis_jax/parallel.py), as in training.

Each (method, batch size) builds the method's Sprites config (experiments/<method>_sprites.py,
variant --config_variant: `default` = paper width, `cpu`, `smoke`), the train state laid out on
the mesh and a synthetic uint8 batch (B, --frames, 64, 64, 3) split over the devices; then
lowers and compiles the jitted train step (seqdis_jax/train.py:make_train_step) once, runs
--warmup steps and times --steps more, one at a time (`jax.block_until_ready`), all with that
one compiled executable (it cannot recompile: a changed input layout would raise).

Output: one JSON line per measurement on stdout (and a JSON list in --json), a table on stderr.
  step_ms_median, step_ms_mean   wall time of one step
  sequences_per_s                batch_size / median step time
  flops_per_device               XLA's cost analysis of the compiled step (`compiled.
                                 cost_analysis()['flops']`). Under a mesh this is the
                                 SPMD-partitioned program that *one* device runs (checked with
                                 --xla_force_host_platform_device_count=2: a matmul whose batch
                                 is split over 2 devices reports half the FLOPs of 1 device).
  flops_per_step                 flops_per_device x devices: what all devices execute in one step,
                                 work that data parallelism repeats on every device (the Adam
                                 update, the replicated small loss terms) counted on each.
  flops_per_step_logical         the cost analysis of the unpartitioned program
                                 (`lowered.cost_analysis()`): the step's FLOPs counted once.
  tflops_per_s                   flops_per_step / median step time / 1e12 (all devices together).
XLA's cost analysis counts the body of a while loop once, not once per iteration: the LSTM
recurrences (`lax.scan` over T frames) are counted for one step of T, so FLOPs are a lower
bound; the convolutions over all B*T frames, which dominate at Sprites sizes, are counted in full.
A `lax.cond` counts its costliest branch (R-WAE's alternating phases: one phase per step).
Steps are timed one by one, host dispatch included; numbers on a shared CPU vary with its load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from experiments import (  # noqa: E402
    cdsvae_sprites,
    dbse_sprites,
    rwae_gan_sprites,
    rwae_sprites,
    sprites,
    spyl_sprites,
)
from seqdis_jax import configuration, errors, models, parallel, train  # noqa: E402
from seqdis_jax.configuration import PRECISIONS, set_precision  # noqa: E402
from seqdis_jax.errors import UserInputError  # noqa: E402

CONFIGS = {"dsvae": sprites, "cdsvae": cdsvae_sprites, "spyl": spyl_sprites,
           "dbse": dbse_sprites, "rwae": rwae_sprites, "rwae_gan": rwae_gan_sprites}
PAPER_METHODS = ("dsvae", "cdsvae", "spyl", "dbse", "rwae")
VARIANTS = ("default", "cpu", "smoke")
FRAME_SHAPE = (64, 64, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(PAPER_METHODS),
                        help=f"comma-separated, of {sorted(CONFIGS)}")
    parser.add_argument("--batch_sizes", default="32,128",
                        help="comma-separated global batch sizes")
    parser.add_argument("--config_variant", default="default",
                        help=f"variant of each method's Sprites config: {list(VARIANTS)}")
    parser.add_argument("--frames", type=int, default=8, help="T, frames per sequence")
    parser.add_argument("--dtype", default="float32",
                        help="float32, bfloat16 (model.compute_dtype) or bf16_products (a "
                        "float32 network, bf16 convolution products: model.product_dtype)")
    parser.add_argument("--width", type=float, default=None,
                        help="override config.model.width (conv channel multiplier)")
    parser.add_argument("--plain_conv_transpose", action="store_true",
                        help="decoder with nn.ConvTranspose instead of FastConvTranspose")
    parser.add_argument("--mesh_data", type=int, default=-1,
                        help="devices on the 'data' axis (-1: every device fsdp leaves)")
    parser.add_argument("--mesh_fsdp", type=int, default=1,
                        help="devices on the 'fsdp' axis (parameters sharded)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--json", default="", help="also write the records as a JSON list here")
    parser.add_argument("--compiler_option", action="append", default=[], metavar="KEY=VALUE",
                        help="XLA option for compiling the step, repeatable (e.g. "
                             "xla_backend_optimization_level=0: faster CPU compiles for tests)")
    parser.add_argument("--multihost", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host slices)")
    return parser.parse_args(argv)


def _split(text: str, name: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UserInputError(f"--{name} is empty.")
    return items


def check_args(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    """The methods and batch sizes; raises UserInputError naming the fix."""
    methods = _split(args.methods, "methods")
    unknown = [m for m in methods if m not in CONFIGS]
    if unknown:
        raise UserInputError(
            f"Unknown method(s) {unknown} in --methods; choose from {sorted(CONFIGS)}.")
    try:
        batch_sizes = [int(b) for b in _split(args.batch_sizes, "batch_sizes")]
    except ValueError:
        raise UserInputError(
            f"--batch_sizes={args.batch_sizes!r} must be comma-separated integers.") from None
    if min(batch_sizes) < 1:
        raise UserInputError(f"--batch_sizes must be >= 1, got {batch_sizes}.")
    if args.config_variant not in VARIANTS:
        raise UserInputError(
            f"Unknown --config_variant={args.config_variant!r}; choose one of {list(VARIANTS)}.")
    if args.dtype not in PRECISIONS:
        raise UserInputError(f"--dtype must be one of {sorted(PRECISIONS)}, got {args.dtype!r}.")
    if args.frames < 1:
        raise UserInputError(f"--frames must be >= 1, got {args.frames}.")
    if args.steps < 1 or args.warmup < 0:
        raise UserInputError(
            f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}.")
    if args.width is not None and not args.width > 0:
        raise UserInputError(f"--width must be > 0, got {args.width}.")
    compiler_options(args.compiler_option)
    return methods, batch_sizes


def compiler_options(pairs: list[str]) -> dict[str, Any]:
    """--compiler_option KEY=VALUE pairs -> `Lowered.compile(compiler_options=...)`."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"--compiler_option={pair!r} must be KEY=VALUE.")
        if value.lower() in ("true", "false"):
            options[key] = value.lower() == "true"
            continue
        for kind in (int, float):
            try:
                options[key] = kind(value)
                break
            except ValueError:
                pass
        else:
            options[key] = value
    return options


def build_config(method: str, batch_size: int, args: argparse.Namespace):
    """The method's Sprites config of --config_variant with the benchmark's overrides."""
    config = CONFIGS[method].get_config(args.config_variant)
    config.data.batch_size = batch_size
    set_precision(config, args.dtype)
    config.model.fast_conv_transpose = not args.plain_conv_transpose
    if args.width is not None:
        config.model.width = args.width
    config.mesh.data = args.mesh_data
    config.mesh.fsdp = args.mesh_fsdp
    configuration.validate(config)
    return config


def flops_of(cost: Any) -> float:
    """'flops' of a cost analysis: a dict (current jax, e.g. 0.10), a list with one dict per
    program (older jax), or None (a backend without one: nan)."""
    if cost is None:
        return float("nan")
    if isinstance(cost, (list, tuple)):
        return float(sum(c.get("flops", 0.0) for c in cost if c)) if cost else float("nan")
    return float(cost.get("flops", float("nan")))


def _number(x: float) -> float | None:
    """nan (no cost analysis) as JSON null rather than the non-standard NaN."""
    return None if x != x else x


def _memory_mib(compiled: Any) -> dict[str, float]:
    """Per-device buffer sizes XLA planned for the step (absent where unsupported)."""
    try:
        memory = compiled.memory_analysis()
    except Exception:  # not every backend / jax version implements it
        return {}
    if memory is None:
        return {}
    fields = {"temp_mib": "temp_size_in_bytes", "argument_mib": "argument_size_in_bytes",
              "output_mib": "output_size_in_bytes"}
    return {k: round(getattr(memory, v) / 2**20, 1) for k, v in fields.items()
            if hasattr(memory, v)}


def synthetic_batch(shape: tuple[int, ...], sharding: jax.sharding.Sharding) -> dict[str, Any]:
    """Random uint8 video, the same on every process, split over the mesh (each process
    places only its own devices' slices, so this works on multi-host slices too)."""
    host = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return {"video": parallel.host_array(host, sharding)}


def measure(method_name: str, batch_size: int, args: argparse.Namespace,
            mesh: jax.sharding.Mesh) -> dict[str, Any]:
    """Compiles the step of one (method, batch size) once and times it."""
    config = build_config(method_name, batch_size, args)
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    shape = (batch_size, args.frames) + FRAME_SHAPE

    start = time.perf_counter()
    _, state_sharding = train.sharded_restore_target(model, tx, shape, mesh)
    state = train.create_train_state(
        model, tx, jnp.zeros(shape, jnp.float32), jax.random.PRNGKey(0),
        out_shardings=state_sharding)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    params = int(sum(x.size for x in jax.tree.leaves(state.params)))

    batch_sharding = parallel.batch_sharding(mesh)
    batch = synthetic_batch(shape, batch_sharding)
    rng = jax.device_put(jax.random.PRNGKey(1), parallel.replicated(mesh))
    step = train.make_train_step(method, model, tx, config, state_sharding=state_sharding,
                                 batch_sharding=batch_sharding)
    start = time.perf_counter()
    lowered = step.lower(state, batch, rng)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    options = compiler_options(args.compiler_option)
    compiled = lowered.compile(compiler_options=options or None)
    compile_s = time.perf_counter() - start
    flops_per_device = flops_of(compiled.cost_analysis())
    try:
        flops_logical = flops_of(lowered.cost_analysis())
    except Exception:  # informational only
        flops_logical = float("nan")

    # The state is donated: every call consumes the previous state's buffers.
    for _ in range(args.warmup):
        state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(state)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch, rng)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    skipped = float(jax.device_get(metrics["skipped"]))

    median, mean = statistics.median(times), statistics.mean(times)
    flops_per_step = flops_per_device * mesh.size
    device = jax.devices()[0]
    return dict(
        method=method_name,
        batch_size=batch_size,
        frames=args.frames,
        dtype=args.dtype,
        config_variant=args.config_variant,
        width=float(config.model.width),
        decoder="nn.ConvTranspose" if args.plain_conv_transpose else "FastConvTranspose",
        compiler_options=options,
        devices=mesh.size,
        processes=jax.process_count(),
        platform=device.platform,
        device_kind=device.device_kind,
        mesh={k: int(v) for k, v in mesh.shape.items()},
        params=params,
        init_s=round(init_s, 3),
        lower_s=round(lower_s, 3),
        compile_s=round(compile_s, 3),
        warmup_steps=args.warmup,
        timed_steps=args.steps,
        step_ms_median=round(median * 1e3, 3),
        step_ms_mean=round(mean * 1e3, 3),
        step_ms_min=round(min(times) * 1e3, 3),
        step_ms_max=round(max(times) * 1e3, 3),
        sequences_per_s=round(batch_size / median, 3),
        flops_per_device=_number(flops_per_device),
        flops_per_step=_number(flops_per_step),
        flops_per_step_logical=_number(flops_logical),
        tflops_per_s=_number(round(flops_per_step / median / 1e12, 6)),
        last_step_skipped=skipped,
        **_memory_mib(compiled),
        jax=jax.__version__,
        cpu_count=os.cpu_count(),
    )


def format_table(records: list[dict[str, Any]]) -> str:
    header = (f"{'method':<9}{'batch':>6}{'dtype':>10}{'dev':>5}{'compile s':>11}"
              f"{'step ms':>10}{'seq/s':>10}{'GFLOP/step':>12}{'TFLOP/s':>10}")
    lines = [header, "-" * len(header)]
    for r in records:
        if "error" in r:
            lines.append(f"{r['method']:<9}{r['batch_size']:>6}  error: {r['error']}")
            continue
        lines.append(
            f"{r['method']:<9}{r['batch_size']:>6}{r['dtype']:>10}{r['devices']:>5}"
            f"{r['compile_s']:>11.1f}{r['step_ms_median']:>10.1f}{r['sequences_per_s']:>10.1f}"
            f"{(r['flops_per_step'] or float('nan')) / 1e9:>12.1f}"
            f"{r['tflops_per_s'] or float('nan'):>10.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (method, batch size); argument and mesh problems raise before any compile."""
    methods, batch_sizes = check_args(args)
    try:
        mesh = parallel.make_mesh(args.mesh_data, args.mesh_fsdp)
        for batch_size in batch_sizes:
            parallel.check_batch_size(batch_size, mesh)
    except errors.MeshError as e:  # its message names the config fields; say the flags
        message = str(e)
        renames = (("config.mesh.data", "--mesh_data"), ("config.mesh.fsdp", "--mesh_fsdp"),
                   ("config.data.batch_size=", "the batch size "))
        for field, flag in renames:
            message = message.replace(field, flag)
        raise errors.MeshError(message) from None
    for method in methods:  # config problems (e.g. a method without that variant) up front
        try:
            build_config(method, batch_sizes[0], args)
        except ValueError as e:
            raise UserInputError(f"{method}: {e}") from None
    lead = jax.process_index() == 0
    records = []
    for method in methods:
        for batch_size in batch_sizes:
            try:
                record = measure(method, batch_size, args, mesh)
            except jax.errors.JaxRuntimeError as e:  # e.g. out of memory at a large batch
                message = str(e).strip().splitlines()[0][:300]
                record = dict(method=method, batch_size=batch_size, error=message)
                if lead:
                    print(f"error: {method} batch {batch_size}: {message}", file=sys.stderr)
            records.append(record)
            if lead:
                print(json.dumps(record), flush=True)
    if lead and args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    if lead:
        print(format_table(records), file=sys.stderr, flush=True)
    return records


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Runs the benchmark; a user error prints one line and exits with status 2, a step that
    failed at run time (its record has 'error') makes the exit status 1 from the command line."""
    args = parse_args(argv)
    if args.multihost:
        jax.distributed.initialize()
    # As the launcher (experiments/main.py:configure_jax): fast-compiling random numbers.
    jax.config.update("jax_threefry_partitionable", False)
    try:
        return run(args)
    except UserInputError as e:  # errors.MeshError included
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    results = main()
    sys.exit(1 if any("error" in r for r in results) else 0)

