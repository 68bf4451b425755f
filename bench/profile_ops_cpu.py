"""Where the frame networks' CPU time goes, per XLA operation kind (issue 20).

    python bench/profile_ops_cpu.py 0.25 encoder gemm    # width, network, cpu_conv_lowering

Traces 3 forward + backward passes (train mode, 256 frames, float32) with `jax.profiler`, reads
the trace back with jaxlib's profile reader, and prints the wall time per call beside the time
the operations took summed over all threads, grouped by operation kind (XLA's fusion names with
their numbers removed: `ynn_fusion` are the matrix products, `*slice*` / `concatenate*` / `*pad*`
the data movement around them, the rest mostly BatchNorm and LeakyReLU).
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
from jax._src.lib import _profile_data

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqdis_jax.nn.video import FrameDecoder, FrameEncoder  # noqa: E402

CALLS = 3


def main() -> None:
    width = float(sys.argv[1]) if len(sys.argv) > 1 else 0.25
    network = sys.argv[2] if len(sys.argv) > 2 else "encoder"
    lowering = sys.argv[3] if len(sys.argv) > 3 else "gemm"
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

    grad = jax.jit(jax.grad(loss))
    params = variables["params"]
    for _ in range(2):
        jax.block_until_ready(grad(params, inputs))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            start = time.perf_counter()
            for _ in range(CALLS):
                jax.block_until_ready(grad(params, inputs))
            wall = (time.perf_counter() - start) / CALLS
        trace = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
        profile = _profile_data.ProfileData.from_file(trace)
    by_kind: collections.Counter = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                if "Thunk" in event.name or "Await" in event.name:
                    continue  # the executor's own spans contain the operations
                by_kind[re.sub(r"[._]?\d+$", "", event.name)] += event.duration_ns
    busy = sum(by_kind.values()) / CALLS / 1e6
    print(f"{network} width={width} lowering={lowering}: wall {1e3 * wall:.0f} ms per call "
          f"(traced), operations {busy:.0f} ms summed over threads "
          f"({jax.local_devices()[0].platform}, {os.cpu_count()} CPUs)")
    for kind, ns in by_kind.most_common(12):
        print(f"  {ns / CALLS / 1e6:7.1f} ms  {kind}")


if __name__ == "__main__":
    main()
