"""Every row of the op table, compiled vs eager: forward values and gradients.

One compiled function runs all rows at once (per dtype), so Numba compiles two programs
(the forward and, on first ``backward``, its compiled backward) instead of hundreds. Its
outputs carry the compiled backward as ``grad_fn``; ``backward`` of a random weighting of
every output gives each row's vector-Jacobian product, compared with eager mode's.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from graphjit.testing import assert_close

from op_table import CASES

NP_TO_GJ = {np.dtype(np.float32): gj.float32, np.dtype(np.float64): gj.float64,
            np.dtype(np.int64): gj.int64, np.dtype(np.bool_): gj.bool}

# Rows a static graph cannot hold, each with the reason (and a test of the error below).
NOT_COMPILED = {
    "index/bool_mask": "a boolean mask gives a data-dependent shape",
}
ROWS = [c for c in CASES if c.name not in NOT_COMPILED]
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-10, atol=1e-12)}


# Rows are compiled in chunks: Numba's compile time grows faster than linearly with the
# number of kernels in one module, and a failure then points at a few rows.
CHUNK = 24
CHUNKS = [ROWS[i:i + CHUNK] for i in range(0, len(ROWS), CHUNK)]


def _inputs(rows, dtype, seed):
    """Each row's sample arrays in ``dtype`` (None for rows absent from this run)."""
    rng = np.random.default_rng(seed)
    return [None if c is None else c.make_inputs(rng, np.dtype(dtype)) for c in rows]


def _tensors(rows, arrays_per_row):
    out = []
    for c, arrays in zip(rows, arrays_per_row):
        if arrays is None:
            out.append(None)
            continue
        out.append([gj.tensor(a, dtype=NP_TO_GJ[a.dtype], requires_grad=c.grad and a.dtype.kind == "f")
                    for a in arrays])
    return out


def _runner(rows):
    def run_rows(inputs):
        return [None if ins is None else c.fn(*ins) for c, ins in zip(rows, inputs)]
    first = next(c for c in rows if c is not None)
    run_rows.__name__ = run_rows.__qualname__ = f"op_rows_{ROWS.index(first)}"
    return run_rows


def _weighted_sum(rows, outputs, rng):
    total = None
    for c, out in zip(rows, outputs):
        if out is None or not c.grad or not out.requires_grad:
            continue
        w = gj.tensor(rng.uniform(-1.0, 1.0, size=out.shape), dtype=out.dtype)
        term = (out * w).sum()
        total = term if total is None else total + term
    return total


DTYPES = ["float32", "float64", "int64", "bool"]


_RESULTS: dict = {}


def results(dtype):
    """Eager and compiled outputs and gradients of every row in ``dtype``, on the same fresh
    inputs, computed once: {row name: {"eager": (output, grads), "compiled": (...)}}."""
    if dtype not in _RESULTS:
        _RESULTS[dtype] = _run_all(dtype)
    return _RESULTS[dtype]


def _run_all(dtype):
    found = {}
    for k, rows in enumerate(CHUNKS):
        rows = [c if dtype in c.dtypes else None for c in rows]
        if not any(rows):
            continue
        arrays = _inputs(rows, dtype, seed=100 * k + DTYPES.index(dtype))
        eager = _runner(rows)
        for mode, fn in (("eager", eager), ("compiled", gj.compile(eager))):
            tensors = _tensors(rows, arrays)
            outputs = fn(tensors)
            loss = _weighted_sum(rows, outputs, np.random.default_rng(k))
            if loss is not None:
                loss.backward()
            for c, out, ts in zip(rows, outputs, tensors):
                if out is not None:
                    found.setdefault(c.name, {})[mode] = (out, [t.grad for t in ts])
    return found


# Grouped by dtype, so each dtype's programs are compiled once, when its first row runs.
PAIRS = [pytest.param(c, d, id=f"{c.name}-{d}") for d in DTYPES for c in ROWS if d in c.dtypes]


@pytest.mark.parametrize("case,dtype", PAIRS)
def test_compiled_matches_eager(case, dtype):
    runs = results(dtype)
    (out_e, grads_e), (out_c, grads_c) = (runs[case.name][m] for m in ("eager", "compiled"))
    tol = TOL.get(out_e.dtype.name, dict(rtol=0, atol=0))
    assert_close(out_c, out_e, **tol, msg=lambda m: f"{case.name} value: {m}")
    assert out_c.requires_grad == out_e.requires_grad
    for k, (ge, gc) in enumerate(zip(grads_e, grads_c)):
        if ge is None:
            assert gc is None, f"{case.name}: input {k} got a gradient only when compiled"
        else:
            assert gc is not None, f"{case.name}: input {k} got no gradient when compiled"
            assert_close(gc, ge, **TOL[dtype], msg=lambda m: f"{case.name} grad of input {k}: {m}")


def test_boolean_mask_is_a_clear_trace_error():
    x = gj.ones(3, 4)
    f = gj.compile(lambda x: x[np.array([True, False, True])])
    with pytest.raises(gj.DTypeError, match="data-dependent shape.*graphjit.where"):
        f(x)
