"""float32 vs float64 gradients of the DCGAN frame encoder and decoder in train mode, for three
BatchNorm implementations (issue 19):

  torch       `nn.video.TorchBatchNorm` (this library): two-pass variance, closed-form backward;
  flax        `flax.linen.BatchNorm` with its default one-pass variance E[x^2] - E[x]^2;
  flax_2pass  `flax.linen.BatchNorm(use_fast_variance=False)`: two passes, autodiff backward.

`--smooth` replaces LeakyReLU(0.2) by 0.6 x + 0.4 x tanh(100 x) (the same slopes away from 0),
to separate the activation's kink (values within float32 rounding of 0 take the other branch in
float64) from accumulation error.

    python bench/gradient_precision.py --frames=256
    python bench/gradient_precision.py --frames=256 --smooth

Prints, per network and BatchNorm, the worst per-parameter relative error ||g32 - g64|| / ||g64||
(parameters whose float64 gradient is not ~0; a bias before BatchNorm has gradient 0) and the
global one over all parameters. Inputs and parameters are drawn as in tests/test_nn.py.
"""

from __future__ import annotations

import argparse
import types

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqdis_jax.nn import video


def relative_errors(apply, params, batch_stats, inputs) -> tuple[str, float, float]:
    def loss(params, inputs, batch_stats):
        out, _ = apply({"params": params, "batch_stats": batch_stats}, inputs, True,
                       mutable=["batch_stats"])
        weights = jnp.linspace(-1.0, 1.0, out.size, dtype=out.dtype).reshape(out.shape)
        return jnp.sum(out * weights) + jnp.sum(jnp.square(out - 0.5))

    g32 = jax.grad(loss)(params, inputs, batch_stats)
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
        g64 = jax.grad(loss)(to64(params), jnp.asarray(inputs, jnp.float64), to64(batch_stats))
        worst, worst_name, err2, norm2 = 0.0, "", 0.0, 0.0
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g32), jax.tree.leaves(g64)):
            reference = float(jnp.linalg.norm(b))
            if reference <= 1e-6:
                continue
            error = float(jnp.linalg.norm(a - b))
            err2, norm2 = err2 + error ** 2, norm2 + reference ** 2
            if error / reference > worst:
                worst, worst_name = error / reference, jax.tree_util.keystr(path)
    return worst_name, worst, (err2 / norm2) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--smooth", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_threefry_partitionable", False)  # as tests/conftest.py
    if args.smooth:
        smooth = types.SimpleNamespace(**{k: getattr(nn, k) for k in dir(nn)
                                          if not k.startswith("__")})
        smooth.leaky_relu = lambda x, _: 0.6 * x + 0.4 * x * jnp.tanh(100.0 * x)
        video.nn = smooth
    norms = {
        "torch": video._batch_norm,
        "flax": lambda train, dtype, name: nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name),
        "flax_2pass": lambda train, dtype, name: nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name,
            use_fast_variance=False),
    }
    frames = jax.random.uniform(jax.random.PRNGKey(0), (args.frames, 64, 64, 3), jnp.float32)
    latents = jax.random.normal(jax.random.PRNGKey(1), (args.frames, 24), jnp.float32)
    print(f"frames={args.frames} width={args.width} smooth={args.smooth}")
    print(f"{'network':<8} {'batchnorm':<11} {'worst parameter':<24} {'worst':>9} {'global':>9}")
    for name, make_norm in norms.items():
        video._batch_norm = make_norm
        for module, inputs in ((video.FrameEncoder(16, args.width), frames),
                               (video.FrameDecoder(3, args.width), latents)):
            variables = module.init(jax.random.PRNGKey(2), inputs, False)
            leaf, worst, overall = relative_errors(module.apply, variables["params"],
                                                   variables["batch_stats"], inputs)
            print(f"{type(module).__name__[5:]:<8} {name:<11} {leaf:<24} {worst:9.2e} "
                  f"{overall:9.2e}", flush=True)


if __name__ == "__main__":
    main()
