"""Times one training step (fwd + bwd + Adam) of a method at full paper width, on one device.
(The numbers of docs/results.md's earlier sections; bench/throughput.py measures more: several
methods and batches, sharded over every device, FLOP/s, JSON.)

    python bench/train_step_cpu.py                       # DSVAE, FastConvTranspose decoder
    python bench/train_step_cpu.py --plain_conv_transpose  # nn.ConvTranspose decoder
    python bench/train_step_cpu.py --method=cdsvae --batch=128
    python bench/train_step_cpu.py --method=spyl --batch=32
    python bench/train_step_cpu.py --method=rwae --batch=32   # R-WAE(MMD); rwae_gan: R-WAE(GAN)
    python bench/train_step_cpu.py --variant=cpu --conv_lowering=xla  # config variant; lowering
    GLIBC_TUNABLES=... python bench/train_step_cpu.py  # malloc as the launchers set it (below)

Batch x 8 frames of 64x64x3; the method's settings and sizes are its Sprites `:default` config
(experiments/<method>_sprites.py: g = 128, ds = 256, dd = 32, hidden 256 for DSVAE, C-DSVAE and
SPYL; DBSE dd = 256; R-WAE g = 150, ds = 120, dd = 12).
Compiles once, warms up, then reports the median of --repeats steps (block_until_ready) and
prints one JSON line, with the minor page faults and system time per step (the kernel's share)
and whether glibc's malloc ran with the tunables `experiments.main` restarts with
(`seqdis_jax/cpu_malloc.py`; this script does not restart: set GLIBC_TUNABLES to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from throughput import CONFIGS  # noqa: E402  (the methods' Sprites configs; puts ROOT on the path)

from seqdis_jax import cpu_malloc, models, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain_conv_transpose", action="store_true")
    parser.add_argument("--conv_lowering", choices=("gemm", "xla"), default="gemm")
    parser.add_argument("--variant", default="default")
    parser.add_argument("--method", choices=sorted(CONFIGS), default="dsvae")
    args = parser.parse_args()
    jax.config.update("jax_threefry_partitionable", False)

    config = CONFIGS[args.method].get_config(args.variant)
    config.model.cpu_conv_lowering = args.conv_lowering
    config.data.batch_size = args.batch
    config.model.width = args.width
    config.model.fast_conv_transpose = not args.plain_conv_transpose
    method = models.get_method(config.method)
    model = method.build(config)
    tx = train.make_optimizer(config, method)
    shape = (args.batch, 8, 64, 64, 3)
    state = train.create_train_state(model, tx, jnp.zeros(shape), jax.random.PRNGKey(0))
    step = train.make_train_step(method, model, tx, config)
    batch = {"video": np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)}
    rng = jax.random.PRNGKey(1)

    start = time.perf_counter()
    state, _ = step(state, batch, rng)
    jax.block_until_ready(state)
    compile_and_first = time.perf_counter() - start
    times = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.repeats):
        start = time.perf_counter()
        state, metrics = step(state, batch, rng)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    result = dict(
        method=config.method,
        decoder="nn.ConvTranspose" if args.plain_conv_transpose else "FastConvTranspose",
        batch=args.batch,
        frames=8,
        width=args.width,
        params=int(sum(x.size for x in jax.tree.leaves(state.params))),
        compile_and_first_step_s=round(compile_and_first, 2),
        step_s_median=round(statistics.median(times), 3),
        step_s_all=[round(t, 3) for t in times],
        # the kernel's share: pages faulted in and system CPU time, per timed step
        minor_page_faults_per_step=round((after.ru_minflt - usage.ru_minflt) / args.repeats),
        system_s_per_step=round((after.ru_stime - usage.ru_stime) / args.repeats, 3),
        user_s_per_step=round((after.ru_utime - usage.ru_utime) / args.repeats, 3),
        malloc_tuned=cpu_malloc.active(),
        backend=jax.default_backend(),
        jax=jax.__version__,
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
