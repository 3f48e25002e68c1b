"""Every row of the op table (tests/op_table.py), run eagerly on CUDA tensors and compared
with the same row run eagerly on CPU tensors: forward values, and the gradients of a random
weighting of the output (``out.backward(w)``, ``w`` on the device) with respect to each
floating input that requires grad.

A row runs in each dtype it lists (float32 and float64 for most; int64 or bool for some),
forward and, for rows with gradients, backward. The CPU results come from the same input
arrays through the CPU eager interpreter (itself checked against the NumPy references in
tests/ops/test_ops.py), computed independently of the CUDA backend: a wrong kernel fails here.
Results and gradients must be on the CUDA device, inputs must come back unchanged.

Without a GPU this runs on Numba's CUDA simulator, where every simulated thread is a Python
thread (the launch sizes are small there: [Launch sizes] in graphjit/backend/cuda/runtime.py):

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda/test_ops_cuda.py -q
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import graphjit as gj
import graphjit.cuda
from graphjit.errors import GraphjitError
from graphjit.testing import assert_close

from op_table import CASES

if not graphjit.cuda.is_available():
    pytest.skip(f"no CUDA device ({graphjit.cuda.why_unavailable()})", allow_module_level=True)

NP_TO_GJ = {np.dtype(np.float32): gj.float32, np.dtype(np.float64): gj.float64,
            np.dtype(np.int64): gj.int64, np.dtype(np.bool_): gj.bool}

# CUDA vs CPU eager. The kernels compute each op's scalar expression in the op's dtype, as
# the CPU does, but libdevice's exp/log/tanh/erf/pow may differ from NumPy's by an ulp, and
# reductions add in another order (per-thread partial sums folded by a tree), so floating
# values get a tolerance: float32 rtol 1e-5 / atol 1e-6, float64 near machine precision.
# Integers and bools must be equal.
TOL = {"float32": (1e-5, 1e-6), "float64": (1e-12, 1e-14)}
# Rows needing more in float32, each with its reason (none so far).
LOOSER: dict = {}


# ---- known bugs outside the CUDA kernels -------------------------------------------------------
# A row hit by one is marked xfail(strict): it still checks everything it can (values are
# compared even where a shape or device is wrong), then raises KnownBug, so a new failure of
# the row still fails the test, and the row XPASSes (a failure, being strict) once the bug is
# fixed: then delete the entry.

class KnownBug(AssertionError):
    pass


KNOWN_BUGS: dict = {}  # name -> what is wrong, where (none open)
_BY_ROW: dict = {}      # name -> the rows it hits


def _expected_bugs(case, dtype) -> set:
    return {name for name, rows in _BY_ROW.items() if case.name in rows}


def _params():
    out = []
    for c in CASES:
        for d in c.dtypes:
            bugs = sorted(_expected_bugs(c, d))
            marks = [pytest.mark.xfail(raises=KnownBug, strict=True,
                                       reason="; ".join(KNOWN_BUGS[b] for b in bugs))] if bugs else []
            out.append(pytest.param(c, d, bugs, id=f"{c.name}-{d}", marks=marks))
    return out


# ---- the test ------------------------------------------------------------------------------------

@pytest.fixture(autouse=True, scope="module")
def _quick_thread_switches():
    """The simulator's block manager busy-polls its Python threads for ``syncthreads``; with
    the interpreter's default 5 ms switch interval much of a launch is spent waiting for
    the GIL. 1 ms takes about a quarter off this file's time (no effect on a GPU)."""
    before = sys.getswitchinterval()
    if graphjit.cuda.is_simulator():
        sys.setswitchinterval(0.001)
    yield
    sys.setswitchinterval(before)


def _tol(case, dtype):
    if dtype not in TOL:
        return 0.0, 0.0
    if dtype == "float32" and case.name in LOOSER:
        return LOOSER[case.name]
    return TOL[dtype]


def _leaves(case, arrays, device):
    tensors = []
    for a in arrays:
        t = gj.tensor(a, dtype=NP_TO_GJ[a.dtype])
        if device == "cuda":
            t = t.to("cuda")
        if case.grad and a.dtype.kind == "f":
            t.requires_grad_()
        tensors.append(t)
    return tensors


@pytest.mark.parametrize("case,dtype,bugs", _params())
def test_cuda_matches_cpu(case, dtype, bugs, rng):
    arrays = case.make_inputs(rng, np.dtype(dtype))
    seen = set()

    def symptom(bug, ok):
        if not ok:
            seen.add(bug)
            assert bug in bugs, f"{case.name} ({dtype}): unexpected {bug}: {KNOWN_BUGS[bug]}"

    def where(what):
        return lambda m: f"{case.name} ({dtype}) {what}: {m}"

    # CPU reference run.
    cpu_in = _leaves(case, arrays, "cpu")
    out_cpu = case.fn(*cpu_in)
    w = None
    if case.grad and out_cpu.requires_grad:
        w = gj.tensor(rng.uniform(-1.0, 1.0, size=out_cpu.shape), dtype=out_cpu.dtype)
        out_cpu.backward(w)

    # The same on CUDA.
    dev_in = _leaves(case, arrays, "cuda")
    for j, (t, a) in enumerate(zip(dev_in, arrays)):
        assert t.device.type == "cuda"
        symptom("zero_d_to_device", tuple(t.shape) == a.shape)
    try:
        out = case.fn(*dev_in)
    except GraphjitError as e:
        if "cpu_index_tensor" in bugs and "same device" in str(e):
            raise KnownBug(str(e)) from e
        raise
    assert out.device.type == "cuda", f"{case.name} ({dtype}): result on {out.device}"
    assert out.dtype is out_cpu.dtype, f"{case.name} ({dtype}): dtype {out.dtype}, cpu {out_cpu.dtype}"
    assert out.requires_grad == out_cpu.requires_grad
    rtol, atol = _tol(case, out.dtype.name)
    assert_close(out.cpu(), out_cpu, rtol=rtol, atol=atol, msg=where("value"))
    for t, a in zip(dev_in, arrays):  # the op left its inputs alone
        np.testing.assert_array_equal(t.detach().numpy().reshape(a.shape), a)

    if w is not None:
        w_dev = w.to("cuda")
        symptom("zero_d_to_device", tuple(w_dev.shape) == tuple(w.shape))
        if "zero_d_to_device" in seen and tuple(w_dev.shape) != tuple(w.shape):
            raise KnownBug(f"{case.name}: the weights moved to cuda have shape {w_dev.shape}")
        out.backward(w_dev)
        for j, (t, t_cpu) in enumerate(zip(dev_in, cpu_in)):
            g, g_cpu = t.grad, t_cpu.grad
            if g_cpu is None:
                assert g is None, f"{case.name} ({dtype}): input {j} got a gradient only on cuda"
                continue
            assert g is not None, f"{case.name} ({dtype}): input {j} got no gradient on cuda"
            assert g.dtype is g_cpu.dtype, f"{case.name} ({dtype}): grad {j} is {g.dtype}"
            symptom("zeros_like_on_cpu", g.device.type == "cuda")
            symptom("zero_d_to_device", tuple(g.shape) == tuple(g_cpu.shape))
            rtol, atol = _tol(case, g.dtype.name)
            assert_close(g.cpu().reshape(g_cpu.shape), g_cpu, rtol=rtol, atol=atol,
                         msg=where(f"grad of input {j}"))
    if seen:
        raise KnownBug(", ".join(sorted(seen)))
