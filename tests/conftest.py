"""Shared pytest fixtures: tiny DSVAE configs and models."""

from __future__ import annotations

import os
import sys
import tempfile

import jax
import pytest

# XLA's LLVM back end without its optimisation passes: the tests' programs are small and run
# a few steps, so compiling them is most of their time. Measured on tests/test_rwae.py and
# tests/test_contrastive_methods.py with -n 2: 159 s -> 125 s (Intel Xeon, 2 cores,
# 2026-12-05). Inherited by the pytest-xdist workers and the tests' subprocesses.
# SEQDIS_TEST_XLA_OPT=1 tests the optimised back end.
FAST_COMPILE = "--xla_backend_optimization_level=0"
if (os.environ.get("SEQDIS_TEST_XLA_OPT", "") != "1"
        and FAST_COMPILE not in os.environ.get("XLA_FLAGS", "")):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

# As the launcher does (experiments/main.py:configure_jax): fast-compiling random numbers.
jax.config.update("jax_threefry_partitionable", False)

# One persistent XLA compilation cache for the whole test run (shared by pytest-xdist workers,
# which inherit the variable): the many smoke runs compile the same small programs again and
# again (train and reload, every config of a dataset). A fresh directory per run keeps CI
# hermetic; SEQDIS_TEST_XLA_CACHE="" disables it.
_CACHE_DIR = os.environ.setdefault(
    "SEQDIS_TEST_XLA_CACHE", tempfile.mkdtemp(prefix="seqdis_jax_test_xla_cache_"))
if _CACHE_DIR:
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `experiments` is importable when tests run from any directory
    sys.path.insert(0, ROOT)


@pytest.fixture
def smoke_config():
    from experiments import shapes

    return shapes.get_config("smoke")
