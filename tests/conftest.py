"""Shared fixtures and suite-wide checks (fresh seeded data per test, global state restored,
the verifier after every pass, every compiled graph round-trips through its text form), and
the ``--update-snapshots`` option of tests/snapshots.py."""
from __future__ import annotations

import os
import zlib

# The CUDA tests (tests/cuda) run on Numba's CUDA simulator unless NUMBA_ENABLE_CUDASIM=0
# is set (a real GPU); Numba reads the variable when it is first imported, i.e. just below.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import graphjit as gj  # noqa: E402

# The IR verifier runs after every compiler pass in the test suite (debug mode).
os.environ.setdefault("GRAPHJIT_VERIFY", "1")
# Compiled functions run native code from their first call, so what a test checks does not
# depend on when a background compile finishes (graphjit/jit/tiers.py); tests/jit/
# test_tiered.py runs the other tiers explicitly. GRAPHJIT_TIERED=interpret runs the whole
# suite on the NumPy tier instead.
os.environ.setdefault("GRAPHJIT_TIERED", "0")
# Every test lowers its programs (passes, code generation) instead of finding them in the
# lowering cache, so a test that changes a module's tunable (passes.fuse.MAX_ARGUMENTS...)
# gets what it asked for; tests/jit/test_lowering_cache.py turns the cache on, and
# GRAPHJIT_LOWERING_CACHE=1 runs the whole suite with it ([The lowering cache]).
os.environ.setdefault("GRAPHJIT_LOWERING_CACHE", "0")


def pytest_addoption(parser):
    parser.addoption("--update-snapshots", action="store_true", default=False,
                     help="rewrite the files under tests/snapshots/ with the text the tests "
                          "produce now, instead of comparing with them (tests/snapshots.py)")


def pytest_configure(config):
    import snapshots
    snapshots.update = config.getoption("--update-snapshots")


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test's node id: fresh data per test, reproducible
    across runs and independent of test order."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests that change the default dtype or grad mode cannot leak it into later tests, nor
    a tiered test its programs run once, queued to be compiled for the next process into a
    cache folder the test removes ([Tiered execution])."""
    from graphjit.backend.cpu import tiered
    dtype = gj.get_default_dtype()
    grad_mode = gj.is_grad_enabled()
    yield
    gj.set_default_dtype(dtype)
    gj.set_grad_enabled(grad_mode)
    tiered._FILLS.clear()


@pytest.fixture(autouse=True, scope="session")
def _every_compiled_graph_round_trips():
    """Every graph any test hands to the CPU backend (through ``graphjit.compile``) must pass
    the verifier and print -> parse -> print to the same text."""
    from graphjit.backend import cpu
    from graphjit.ir import parse_graph, print_graph, verify

    original = cpu.compile_graph

    def checked(graph, name=None, **options):
        verify(graph)
        text = print_graph(graph)
        again = print_graph(parse_graph(text))
        assert again == text, f"graph {graph.name} does not round-trip through its text form"
        return original(graph, name, **options)

    cpu.compile_graph = checked
    yield
    cpu.compile_graph = original
