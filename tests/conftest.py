"""Shared fixtures for the op and autograd tests (cheap: no compilation, no big data)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import graphjit as gj


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test's node id: fresh data per test, reproducible
    across runs and independent of test order."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests that change the default dtype or grad mode cannot leak it into later tests."""
    dtype = gj.get_default_dtype()
    grad_mode = gj.is_grad_enabled()
    yield
    gj.set_default_dtype(dtype)
    gj.set_grad_enabled(grad_mode)
