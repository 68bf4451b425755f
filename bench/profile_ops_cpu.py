"""Where the CPU time goes, per XLA operation kind (issue 20): the frame networks, or a whole
training step.

    python bench/profile_ops_cpu.py 0.25 encoder gemm    # width, network, cpu_conv_lowering
    python bench/profile_ops_cpu.py step dsvae default float32 [top]   # method, variant, dtype

Traces 3 calls (the networks: forward + backward, train mode, 256 frames; a step: the
method's Sprites config at batch 32, `model.compute_dtype` = dtype) with `jax.profiler`, reads
the trace back with jaxlib's profile reader, and prints the wall time per call beside the time
the operations took summed over the threads that ran them, grouped by operation kind (XLA's
fusion names with their numbers removed: `ynn_fusion` are the matrix products, `*slice*` /
`concatenate*` / `*pad*` the data movement around them, the rest mostly BatchNorm and
LeakyReLU; `convert*` the dtype conversions). A step's profile also lists its `top` most costly
single operations with the source op (HLO `op_name`) each came from.

It also prints the wall time the matrix products cover, the union of their intervals over all
threads (`products_wall_ms`), beside their per-thread sum: where the two agree, the products
ran one at a time and their sum is their share of the wall time; where the union is smaller,
they overlapped on the threads. The wall time no operation covers is the executor's overhead
between operations and the host's between calls.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax._src.lib import _profile_data

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax.nn.video import FrameDecoder, FrameEncoder  # noqa: E402

CALLS = 3


PRODUCT_KINDS = ("ynn_fusion", "dot")  # the matrix products, by their kind's name prefix


def is_product(name: str) -> bool:
    return name.startswith(PRODUCT_KINDS)


def covered_ns(spans: list[tuple[int, int]]) -> int:
    """Length of the union of [start, end) intervals: the wall time at least one covers."""
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def profile(fn, *args) -> tuple[float, collections.Counter, dict[str, list]]:
    """(wall seconds per call, {operation name: ns summed over threads and calls},
    {"products": [(start_ns, end_ns)...], "all": [...]} of the operations' intervals)."""
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            start = time.perf_counter()
            for _ in range(CALLS):
                jax.block_until_ready(fn(*args))
            wall = (time.perf_counter() - start) / CALLS
        trace = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
        data = _profile_data.ProfileData.from_file(trace)
    by_name: collections.Counter = collections.Counter()
    spans: dict[str, list] = {"products": [], "all": []}
    for plane in data.planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                if "Thunk" in event.name or "Await" in event.name:
                    continue  # the executor's own spans contain the operations
                if event.name.startswith("ThreadpoolListener"):
                    continue  # markers of the thread pool, not operations
                by_name[event.name] += event.duration_ns
                interval = (event.start_ns, event.end_ns)
                spans["all"].append(interval)
                if is_product(event.name):
                    spans["products"].append(interval)
    return wall, by_name, spans


def report(title: str, wall: float, by_name: collections.Counter, spans: dict[str, list],
           top: int = 0, hlo: str = "") -> None:
    by_kind: collections.Counter = collections.Counter()
    for name, ns in by_name.items():
        by_kind[re.sub(r"[._]?\d+$", "", name)] += ns
    busy = sum(by_kind.values()) / CALLS / 1e6
    print(f"{title}: wall {1e3 * wall:.0f} ms per call (traced), operations {busy:.0f} ms "
          f"summed over threads ({jax.local_devices()[0].platform}, {os.cpu_count()} CPUs)")
    products_sum = sum(ns for kind, ns in by_kind.items() if is_product(kind)) / CALLS / 1e6
    print(f"  matrix products: {products_sum:.0f} ms summed over threads, "
          f"products_wall_ms {covered_ns(spans['products']) / CALLS / 1e6:.0f} (the union of "
          f"their intervals); any operation running: "
          f"{covered_ns(spans['all']) / CALLS / 1e6:.0f} ms of the wall time; "
          f"{len(spans['all']) / CALLS:.0f} operations per call")
    for kind, ns in by_kind.most_common(12):
        print(f"  {ns / CALLS / 1e6:7.1f} ms  {kind}")
    for name, ns in by_name.most_common(top):
        line = re.search(r"\n\s*%?" + re.escape(name) + r" = [^\n]*", hlo)
        source = re.search(r'op_name="([^"]+)"', line.group(0)) if line else None
        where = source.group(1)[-100:] if source else ""
        print(f"  {ns / CALLS / 1e6:7.1f} ms  {name:30s} {where}")


def networks(width: float, network: str, lowering: str) -> None:
    frames = 256
    if network == "encoder":
        module = FrameEncoder(128, width, None, conv_lowering=lowering)
        inputs, target = jax.random.uniform(jax.random.PRNGKey(0), (frames, 64, 64, 3)), 0.0
    elif network == "decoder":
        module = FrameDecoder(3, width, None, conv_lowering=lowering)
        inputs, target = jax.random.normal(jax.random.PRNGKey(1), (frames, 160)), 0.5
    else:
        raise SystemExit(f"network must be 'encoder' or 'decoder', got {network!r}")
    variables = module.init(jax.random.PRNGKey(0), inputs, True)

    def loss(params, inputs):
        y, _ = module.apply({"params": params, "batch_stats": variables["batch_stats"]},
                            inputs, True, mutable=["batch_stats"])
        return jnp.sum((y.astype(jnp.float32) - target) ** 2)

    wall, by_name, spans = profile(jax.jit(jax.grad(loss)), variables["params"], inputs)
    report(f"{network} width={width} lowering={lowering}", wall, by_name, spans)


def build_step(method_name: str, variant: str, dtype: str):
    """The method's jitted Sprites train step at batch 32 with `model.compute_dtype` = dtype,
    and its arguments (state, a uint8 batch, rng)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from throughput import CONFIGS  # the methods' Sprites configs

    from seqdis_jax import models, train

    config = CONFIGS[method_name].get_config(variant)
    config.data.batch_size = 32
    config.model.compute_dtype = dtype
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    shape = (32, 8, 64, 64, 3)
    state = train.create_train_state(model, tx, jnp.zeros(shape), jax.random.PRNGKey(0))
    train_step = train.make_train_step(method, model, tx, config)
    batch = {"video": np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)}
    return train_step, (state, batch, jax.random.PRNGKey(1))


def step(method_name: str, variant: str, dtype: str, top: int) -> None:
    train_step, (state, batch, rng) = build_step(method_name, variant, dtype)
    hlo = train_step.lower(state, batch, rng).compile().as_text() if top else ""
    holder = [state]  # the step donates its state: each call continues from the last

    def one_step():
        holder[0], metrics = train_step(holder[0], batch, rng)
        return metrics

    wall, by_name, spans = profile(one_step)
    report(f"{method_name} :{variant} {dtype} step, batch 32", wall, by_name, spans, top, hlo)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "step":
        method_name = sys.argv[2] if len(sys.argv) > 2 else "dsvae"
        variant = sys.argv[3] if len(sys.argv) > 3 else "cpu"
        dtype = sys.argv[4] if len(sys.argv) > 4 else "float32"
        step(method_name, variant, dtype, int(sys.argv[5]) if len(sys.argv) > 5 else 0)
        return
    width = float(sys.argv[1]) if len(sys.argv) > 1 else 0.25
    network = sys.argv[2] if len(sys.argv) > 2 else "encoder"
    lowering = sys.argv[3] if len(sys.argv) > 3 else "gemm"
    networks(width, network, lowering)


if __name__ == "__main__":
    main()
