"""Shared pytest fixtures: tiny DSVAE configs and models."""

from __future__ import annotations

import os
import sys

import jax
import pytest

# As the launcher does (experiments/main.py:configure_jax): fast-compiling random numbers.
jax.config.update("jax_threefry_partitionable", False)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `experiments` is importable when tests run from any directory
    sys.path.insert(0, ROOT)


@pytest.fixture
def smoke_config():
    from experiments import shapes

    return shapes.get_config("smoke")
