"""Where the CPU time goes, per XLA operation kind (issue 20): the frame networks, or a whole
training step.

    python bench/profile_ops_cpu.py 0.25 encoder gemm    # width, network, cpu_conv_lowering
    python bench/profile_ops_cpu.py step dsvae default float32 [top]   # method, variant, dtype

Traces 3 calls (the networks: forward + backward, train mode, 256 frames; a step: the
method's Sprites config at batch 32 at the precision dtype: float32, bfloat16 or bf16_products,
`configuration.PRECISIONS`) with `jax.profiler`, reads
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
between operations and the host's between calls. A step's profile also counts the operations
that run inside while loops (the `lax.scan`s of the recurrent networks), from the compiled
HLO's loop bodies, and the part of the time with no operation running that falls between two
of them.
"""

from __future__ import annotations

import bisect
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


END_MARK = "end: "  # the executor's mark of an operation's completion: "end: dot.20"
PRODUCT_KINDS = ("ynn_fusion", "dot")  # the matrix products, by their kind's name prefix


def is_product(name: str) -> bool:
    return name.startswith(PRODUCT_KINDS)


def is_operation(event_name: str) -> bool:
    """Whether a trace event on an XLA thread is an operation: not the executor's own spans
    (`*Thunk*`, `*Await*`, which contain the operations), not the thread pool's markers
    (`ThreadpoolListener*`) and not the sub-microsecond `end: <operation>` marks the executor
    puts after an operation (about 3,500 per DSVAE `:cpu` step on jax 0.10.2; counted as
    operations before 2026-12-07)."""
    if "Thunk" in event_name or "Await" in event_name:
        return False
    return not event_name.startswith(("ThreadpoolListener", END_MARK))


def loop_instructions(hlo: str) -> set[str]:
    """Names of the instructions of a compiled HLO module that sit in a while loop's body or
    condition (every `lax.scan` becomes one): a profile event carries its instruction's name."""
    loops = set(re.findall(r"condition=%?([\w.\-]+), body=%?([\w.\-]+)", hlo))
    loop_computations = {name for pair in loops for name in pair}
    inside, current = set(), None
    for line in hlo.splitlines():
        header = re.match(r"(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header and not line.startswith(" "):
            current = header.group(1)
            continue
        instruction = re.match(r"\s+(?:ROOT )?%?([\w.\-]+) = ", line)
        if instruction and current in loop_computations:
            inside.add(instruction.group(1))
    return inside


def gaps(named: list[tuple[int, int, str]]) -> list[tuple[int, str, str]]:
    """The stretches with no operation running, as [(length_ns, operation before, operation
    after)...], over [(start_ns, end_ns, name)...] of all threads."""
    found, reach, last = [], None, ""
    for start, end, name in sorted(named):
        if reach is not None and start > reach:
            found.append((start - reach, last, name))
        if reach is None or end > reach:
            reach, last = end, name
    return found


def gaps_ns(named: list[tuple[int, int, str]], inside: set[str]) -> tuple[int, int]:
    """(wall time with no operation running, the part of it between two operations that are
    both in `inside`) over [(start_ns, end_ns, name)...] of all threads."""
    found = gaps(named)
    return (sum(length for length, _, _ in found),
            sum(length for length, before, after in found
                if before in inside and after in inside))


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


def profile(fn, *args) -> tuple[float, collections.Counter, list[tuple[int, int, str]]]:
    """(wall seconds per call, {operation name: ns summed over threads and calls},
    [(start_ns, end_ns, name)...] of the operations' intervals)."""
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
    events = [(event.start_ns, event.end_ns, event.name)
              for plane in data.planes for line in plane.lines if line.name != "python"
              for event in line.events]
    return wall, *operations(events)


def operations(events: list[tuple[int, int, str]]
               ) -> tuple[collections.Counter, list[tuple[int, int, str]]]:
    """`profile`'s operations from a trace's events [(start_ns, end_ns, name)...]: each
    operation runs from its event's start to its `end: <name>` mark, the first one after
    that start (an asynchronous operation, such as XLA:CPU's Eigen `dot`, returns from its
    event at launch and ends at its mark, up to tens of ms later, with other operations
    running meanwhile); without a mark before the operation's next run, to its event's
    end."""
    marks: dict[str, list[int]] = collections.defaultdict(list)
    for start, _, name in events:
        if name.startswith(END_MARK):
            marks[name[len(END_MARK):]].append(start)
    starts: dict[str, list[int]] = collections.defaultdict(list)
    for start, _, name in events:
        if is_operation(name):
            starts[name].append(start)
    for times in (*marks.values(), *starts.values()):
        times.sort()
    by_name: collections.Counter = collections.Counter()
    named = []
    for start, end, name in events:
        if not is_operation(name):
            continue
        times, again = marks.get(name, []), starts[name]
        after = bisect.bisect_left(times, start)
        following = bisect.bisect_right(again, start)  # the operation's next run, if any
        if after < len(times) and (following == len(again) or times[after] <= again[following]):
            end = max(end, times[after])
        by_name[name] += end - start
        named.append((start, end, name))
    return by_name, named


def intervals(named: list[tuple[int, int, str]], products_only: bool = False
              ) -> list[tuple[int, int]]:
    """The [(start_ns, end_ns)...] of `operations`' named intervals (of the products only)."""
    return [(start, end) for start, end, name in named
            if not products_only or is_product(name)]


def report(title: str, wall: float, by_name: collections.Counter, named: list,
           top: int = 0, hlo: str = "") -> None:
    by_kind: collections.Counter = collections.Counter()
    for name, ns in by_name.items():
        by_kind[re.sub(r"[._]?\d+$", "", name)] += ns
    busy = sum(by_kind.values()) / CALLS / 1e6
    print(f"{title}: wall {1e3 * wall:.0f} ms per call (traced), operations {busy:.0f} ms "
          f"summed over threads ({jax.local_devices()[0].platform}, {os.cpu_count()} CPUs)")
    products_sum = sum(ns for kind, ns in by_kind.items() if is_product(kind)) / CALLS / 1e6
    products_wall = covered_ns(intervals(named, products_only=True)) / CALLS / 1e6
    print(f"  matrix products: {products_sum:.0f} ms summed over threads, "
          f"products_wall_ms {products_wall:.0f} (the union of "
          f"their intervals); any operation running: "
          f"{covered_ns(intervals(named)) / CALLS / 1e6:.0f} ms of the wall time; "
          f"{len(named) / CALLS:.0f} operations per call")
    if hlo:
        looped = loop_instructions(hlo)
        in_loops = [ns for name, ns in by_name.items() if name in looped]
        count = sum(1 for start, end, name in named if name in looped)
        idle, idle_in_loops = gaps_ns(named, looped)
        print(f"  inside while loops (the scans): {count / CALLS:.0f} operations per call, "
              f"{sum(in_loops) / CALLS / 1e6:.0f} ms summed over threads; no operation "
              f"running: {idle / CALLS / 1e6:.0f} ms per call, {idle_in_loops / CALLS / 1e6:.0f}"
              f" ms of it between two operations of the loops")
        longest = collections.Counter()
        for length, before, after in gaps(named):
            longest[(before, after)] += length
        for (before, after), ns in longest.most_common(top):
            print(f"  {ns / CALLS / 1e6:7.1f} ms  no operation running between {before} and "
                  f"{after}")
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

    wall, by_name, named = profile(jax.jit(jax.grad(loss)), variables["params"], inputs)
    report(f"{network} width={width} lowering={lowering}", wall, by_name, named)


def build_step(method_name: str, variant: str, dtype: str):
    """The method's jitted Sprites train step at batch 32 at precision dtype,
    and its arguments (state, a uint8 batch, rng)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from throughput import CONFIGS  # the methods' Sprites configs

    from seqdis_jax import configuration, models, train

    config = CONFIGS[method_name].get_config(variant)
    config.data.batch_size = 32
    configuration.set_precision(config, dtype)  # float32, bfloat16 or bf16_products
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
    hlo = train_step.lower(state, batch, rng).compile().as_text()
    holder = [state]  # the step donates its state: each call continues from the last

    def one_step():
        holder[0], metrics = train_step(holder[0], batch, rng)
        return metrics

    wall, by_name, named = profile(one_step)
    report(f"{method_name} :{variant} {dtype} step, batch 32", wall, by_name, named, top, hlo)


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
