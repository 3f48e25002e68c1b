"""Compiled programs' matrix products call NumPy's OpenBLAS ([The BLAS of compiled programs] in
graphjit/_blas.py, backend/cpu/blas.py): every GEMM form the kernels emit (plain, transposed
operands folded in, a batch as one GEMM, a batch loop with broadcast offsets, float32 and
float64) against float64 NumPy; the threads graphjit holds to one are that library's; and
``GRAPHJIT_BLAS=numba`` (what runs where NumPy has no such OpenBLAS) gives the same values
through Numba's ``np.dot``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphjit as gj
from graphjit import _blas
from graphjit.backend.cpu import blas, compile_graph
from graphjit.ir import parse_graph

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

needs_numpy_openblas = pytest.mark.skipif(
    _blas.numpy_openblas() is None or not blas.enabled(),
    reason="NumPy has no ILP64 OpenBLAS here (or GRAPHJIT_BLAS=numba): kernels call np.dot")


def products(a, b, c, d, x, y, z):
    """a [5,7], b [7,3], c [3,7], d [5,4], x [2,5,7], y [2,7,3], z [3,2,7,3]."""
    return a @ b, a @ c.t(), a.t() @ d, (d.t() @ a).t() * 2.0, x @ b, x @ y, x @ z


def _inputs(dtype, seed):
    rng = np.random.default_rng(seed)
    shapes = [(5, 7), (7, 3), (3, 7), (5, 4), (2, 5, 7), (2, 7, 3), (3, 2, 7, 3)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _reference(arrays):
    a, b, c, d, x, y, z = [v.astype(np.float64) for v in arrays]
    return [a @ b, a @ c.T, a.T @ d, (d.T @ a).T * 2.0, x @ b, x @ y, x @ z]


COMPILED = gj.compile(products)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_every_gemm_form_matches_float64_numpy(dtype, rtol):
    for seed in (0, 1):
        arrays = _inputs(dtype, seed)
        got = COMPILED(*[gj.tensor(v) for v in arrays])
        for g, want in zip(got, _reference(arrays)):
            assert g.dtype == gj.from_numpy(arrays[0]).dtype
            np.testing.assert_allclose(g.numpy(), want, rtol=rtol, atol=rtol * 10)


@needs_numpy_openblas
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_kernels_call_numpys_cblas_gemm(dtype):
    program = compile_graph(parse_graph(f'''
    graph f(%a: {dtype}[6,75] {{arg}}, %b: {dtype}[75,40] {{arg}}) {{
      %0 = matmul(%a, %b) : {dtype}[6,40]
      return %0
    }}'''))
    name = "cblas_sgemm" if dtype == "f32" else "cblas_dgemm"
    assert f"{name}(101, 111, 111, 6, 40, 75" in program.source
    assert "np.dot" not in program.source
    np_dtype = np.float32 if dtype == "f32" else np.float64
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((6, 75)).astype(np_dtype), rng.standard_normal((75, 40)).astype(
        np_dtype)
    (out,), _ = program([a, b])
    tol = 1e-4 if dtype == "f32" else 1e-12  # 75 products of normal numbers summed
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=tol, atol=tol)


@needs_numpy_openblas
def test_the_threads_held_to_one_are_those_of_the_library_the_programs_call():
    from graphjit.backend.cpu.threads import _blas_limit
    lib = blas.program_openblas()
    assert lib is _blas.numpy_openblas() and "openblas64_" in os.path.basename(lib.path)
    limit = _blas_limit()
    if limit is not None:
        assert limit.lib is lib
        before = lib.get_num_threads()
        limit.enter()
        try:
            assert lib.get_num_threads() == 1
        finally:
            limit.leave()
        assert lib.get_num_threads() == before


_NUMBA_BLAS = textwrap.dedent("""
    import json
    import numpy as np
    import graphjit as gj
    from graphjit.backend.cpu import blas, compile_graph
    from graphjit.ir import parse_graph
    from tests.backend.cpu.test_blas import COMPILED, _inputs, _reference
    program = compile_graph(parse_graph('''
    graph f(%a: f32[6,75] {arg}, %b: f32[40,75] {arg}) {
      %0 = permute(%b, dims=[1, 0]) : f32[75,40]
      %1 = matmul(%a, %0) : f32[6,40]
      return %1
    }'''))
    worst = 0.0
    for dtype in (np.float32, np.float64):
        arrays = _inputs(dtype, 2)
        got = COMPILED(*[gj.tensor(v) for v in arrays])
        for g, want in zip(got, _reference(arrays)):
            worst = max(worst, float(np.max(np.abs(g.numpy() - want) / (1 + np.abs(want)))))
    print(json.dumps({"cblas": blas.cblas() is not None, "source_np_dot": "np.dot" in
                      program.source, "source_cblas": "cblas_" in program.source,
                      "worst": worst}))
""")


def test_graphjit_blas_numba_calls_numbas_np_dot_with_the_same_values():
    env = dict(os.environ, GRAPHJIT_BLAS="numba",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _NUMBA_BLAS], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"cblas": False, "source_np_dot": True, "source_cblas": False,
                      "worst": report["worst"]}
    assert report["worst"] < 1e-5
