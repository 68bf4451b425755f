"""float32 matrix products through OpenBLAS on XLA:CPU, for the convolutions' weight gradients.

Autodiff of a GEMM convolution's product ``P @ W`` gives the weight gradient ``P^T @ dY``: a
contraction over the long frames x positions axis into a small (k^2 C_in, C_out) matrix.
XLA:CPU runs it as an Eigen ``dot`` at about half the speed of OpenBLAS's sgemm on the same
shapes (`python bench/weight_grad_cpu.py`, docs/results.md, issue 20), while its own kernel
(YNNPACK) is as fast as OpenBLAS for the forward and input-gradient products. `at_b` computes
``a^T @ b`` with numpy's bundled OpenBLAS, called from an XLA FFI handler (`cpu_blas.cc`), so
it stays inside the compiled step: no host callback, no Python at run time.

The handler is compiled on first use with the system's C++ compiler into a cache folder
(``$SEQDIS_JAX_CACHE`` or ``~/.cache/seqdis_jax``) and registered for the CPU platform only.
Where that fails (no compiler, no OpenBLAS in numpy's wheel), `available()` says why and the
callers keep XLA's product.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

_SOURCE = Path(__file__).with_name("cpu_blas.cc")
_TARGET = "seqdis_sgemm"
# (symbol, 64-bit integers): numpy's OpenBLAS wheels, then a plain CBLAS
_SGEMM_SYMBOLS = (("scipy_cblas_sgemm64_", True), ("scipy_cblas_sgemm", False),
                  ("cblas_sgemm", False))


def _openblas_libraries() -> list[str]:
    """numpy's bundled OpenBLAS first (numpy.libs), then scipy's."""
    found = []
    for module in ("numpy", "scipy"):
        try:
            root = Path(__import__(module).__file__).parent.parent
        except ImportError:
            continue
        found += sorted(glob.glob(str(root / f"{module}.libs" / "lib*openblas*.so*")))
    return found


def _compile() -> Path:
    """The handler's shared library, built once per source and jaxlib version."""
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + jax.__version__.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SEQDIS_JAX_CACHE", Path.home() / ".cache" / "seqdis_jax"))
    library = cache / f"cpu_blas_{key}.so"
    if library.exists():
        return library
    cache.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CXX", "c++")
    # Build beside the target and rename: parallel test workers never load a half-written file
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = Path(tmp) / library.name
        cmd = [compiler, "-O2", "-shared", "-fPIC", "-std=c++17", "-w",
               f"-I{jax.ffi.include_dir()}", str(_SOURCE), "-o", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        os.replace(out, library)
    return library


@functools.cache
def _load() -> str | None:
    """Builds, loads and registers the handler; None when it works, else the reason it does
    not."""
    libraries = _openblas_libraries()
    sgemm = None
    for path in libraries:
        blas = ctypes.CDLL(path)
        for symbol, int64 in _SGEMM_SYMBOLS:
            if hasattr(blas, symbol):
                sgemm = (ctypes.cast(getattr(blas, symbol), ctypes.c_void_p), int64)
                break
        if sgemm:
            break
    if sgemm is None:
        return (f"no OpenBLAS sgemm in numpy's or scipy's wheel (looked in {libraries or 'none'})")
    try:
        handler = ctypes.CDLL(str(_compile()))
    except (OSError, RuntimeError) as e:
        return f"building the FFI handler {_SOURCE.name} failed: {e}"
    handler.seqdis_set_sgemm(sgemm[0], ctypes.c_int(int(sgemm[1])))
    jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(handler.SeqdisSgemm), platform="cpu")
    return None


def available() -> bool:
    """Whether `at_b` runs OpenBLAS here (the first call builds the handler)."""
    return _load() is None


@functools.cache
def _warn_once(reason: str) -> None:
    logging.warning("cpu_conv_lowering='blas': %s; the weight gradients use XLA's product "
                    "instead.", reason)


def at_b(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^T @ b`` for float32 matrices a (K, M), b (K, N) -> (M, N), through OpenBLAS on the
    CPU (`lax.dot_general` where the handler is not available). CPU programs only: call it
    inside `lax.platform_dependent`'s ``cpu`` branch."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"at_b needs matrices (K, M) and (K, N), got {a.shape} and {b.shape}.")
    if a.dtype != jnp.float32 or b.dtype != jnp.float32:
        raise ValueError(f"at_b is float32 only, got {a.dtype} and {b.dtype}.")
    reason = _load()
    if reason is not None:
        _warn_once(reason)
        return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())))
    out = jax.ShapeDtypeStruct((a.shape[1], b.shape[1]), jnp.float32)
    return jax.ffi.ffi_call(_TARGET, out, vmap_method="sequential")(
        a, b, trans_a=np.int32(1), trans_b=np.int32(0))
