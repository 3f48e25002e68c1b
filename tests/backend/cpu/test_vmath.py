"""graphjit.backend.cpu.vmath: accuracy in ulps, special values, use from generated kernels.

Each function is compiled once, in one Numba loop over a NumPy array (``_loop``); the
references are NumPy's float64 functions rounded to float32 for float32, and for float64
NumPy's extended-precision (long double) functions rounded to float64, or ``math.erf``.
"""
from __future__ import annotations

import functools
import math
import platform
import re

import numba
import numpy as np
import pytest
from scipy import special

from graphjit.backend.cpu import vmath

FUNCTIONS = ("exp", "log", "log1p", "tanh", "erf")
DTYPES = (np.float32, np.float64)
# Max ulps against the correctly rounded result: float32 checked exhaustively (every float32
# bit pattern) when the bounds were set, float64 against mpmath on samples. The tests allow
# one more ulp in float64 for the reference's own rounding (long double, then double).
MAX_ULPS = {np.float32: 1, np.float64: 2}


def _suffix(dtype):
    return "f32" if dtype == np.float32 else "f64"


@functools.lru_cache(maxsize=None)
def _loop(name, dtype):
    fn = getattr(vmath, f"{name}_{_suffix(dtype)}")

    @numba.njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])
    return loop


def _apply(name, x):
    out = np.empty_like(x)
    _loop(name, x.dtype.type)(x, out)
    return out


_NP = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "tanh": np.tanh}
_LONG_DOUBLE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant
_erf64 = np.frompyfunc(math.erf, 1, 1)


def _reference(name, x):
    with np.errstate(all="ignore"):
        if x.dtype == np.float32:
            fn = special.erf if name == "erf" else _NP[name]
            return fn(x.astype(np.float64)).astype(np.float32)
        if name == "erf":
            return _erf64(x).astype(np.float64)
        return _NP[name](x.astype(np.longdouble)).astype(np.float64)


def _ordered(a):
    """The float bits as integers ordered like the floats (-0.0 and 0.0 both 0)."""
    bits = 8 * a.itemsize
    i = a.view(np.int32 if bits == 32 else np.int64).astype(np.int64)
    return np.where(i < 0, -(i & ((1 << (bits - 1)) - 1)), i)


def ulp_distance(got, want):
    """Elementwise distance in ulps (counting representable floats between the two; inf is
    one past the largest float); 0 for two NaNs, inf for a NaN and a number."""
    d = np.abs(_ordered(got) - _ordered(want)).astype(np.float64)
    gn, wn = np.isnan(got), np.isnan(want)
    d[gn & wn] = 0
    d[gn ^ wn] = np.inf
    return d


def _inputs(dtype, n=100_000):
    """Dense [-100, 100]; uniform [-6, 6]; tiny magnitudes down through the subnormals;
    huge ones up to the largest float; random bit patterns (every float equally likely:
    NaNs, infs, subnormals included); each with both signs."""
    rng = np.random.default_rng(1234)
    fi = np.finfo(dtype)
    uint = np.uint32 if dtype == np.float32 else np.uint64
    sign = rng.choice(np.array([-1, 1], dtype), n)
    tiny_exp = rng.uniform(np.log2(float(fi.smallest_subnormal)), 0, n)
    huge_exp = rng.uniform(0, np.log2(float(fi.max)), n)
    return {
        "dense": np.linspace(-100, 100, n, dtype=np.float64).astype(dtype),
        "unit": rng.uniform(-6, 6, n).astype(dtype),
        "tiny": (sign * np.exp2(tiny_exp)).astype(dtype),
        "huge": (sign * np.exp2(huge_exp)).astype(dtype),
        "bits": rng.integers(0, np.iinfo(uint).max, n, dtype=uint, endpoint=True).view(dtype),
    }


@pytest.fixture(scope="module", params=DTYPES, ids=_suffix)
def inputs(request):
    return request.param, _inputs(request.param)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_accuracy_in_ulps(name, inputs):
    dtype, parts = inputs
    worst = {}
    for part, x in parts.items():
        if dtype == np.float64 and name == "erf":
            x = np.ascontiguousarray(x[::8])  # math.erf per element: keep the reference cheap
        d = ulp_distance(_apply(name, x), _reference(name, x))
        i = int(np.argmax(d))
        worst[part] = (d[i], x[i])
    bad = {p: w for p, w in worst.items() if w[0] > MAX_ULPS[dtype] + (not _LONG_DOUBLE)}
    assert not bad, f"{name} {dtype.__name__}: max ulps (at x) {bad}"


def test_tanh_f32_every_input_in_half_to_one():
    """Every float32 in [0.5, 1): the branch switch at 0.625 and exp's n = 2 -> 3 at 0.866,
    where tanh_f32's own exp leaves the least room (0.9 ulp before the final rounding)."""
    lo, hi = np.array([0.5, 1.0], np.float32).view(np.uint32)
    x = np.arange(lo, hi, dtype=np.uint32).view(np.float32)
    for xs in (x, -x):
        d = ulp_distance(_apply("tanh", xs), _reference("tanh", xs))
        i = int(np.argmax(d))
        assert d[i] <= MAX_ULPS[np.float32], f"{d[i]} ulps at x = {xs[i]!r}"


def _specials(dtype):
    fi = np.finfo(dtype)
    inf, nan = np.inf, np.nan
    big = float(fi.max)
    sub = float(fi.smallest_subnormal)
    exp_hi, exp_lo = (88.72283, -103.98) if dtype == np.float32 else (709.78, -745.14)
    return {
        "exp": [(nan, nan), (inf, inf), (-inf, 0.0), (0.0, 1.0), (-0.0, 1.0), (big, inf),
                (-big, 0.0), (exp_hi * 1.0001, inf), (exp_lo, 0.0), (1000.0, inf),
                (-1000.0, 0.0)],
        "log": [(nan, nan), (inf, inf), (-inf, nan), (0.0, -inf), (-0.0, -inf), (1.0, 0.0),
                (-1.0, nan), (-sub, nan), (-big, nan)],
        "log1p": [(nan, nan), (inf, inf), (-inf, nan), (0.0, 0.0), (-0.0, -0.0), (sub, sub),
                  (-sub, -sub), (-1.0, -inf), (-1.5, nan), (-big, nan)],
        "tanh": [(nan, nan), (inf, 1.0), (-inf, -1.0), (0.0, 0.0), (-0.0, -0.0), (sub, sub),
                 (-sub, -sub), (20.0, 1.0), (-20.0, -1.0), (big, 1.0), (-big, -1.0)],
        "erf": [(nan, nan), (inf, 1.0), (-inf, -1.0), (0.0, 0.0), (-0.0, -0.0), (10.0, 1.0),
                (-10.0, -1.0), (big, 1.0), (-big, -1.0)],
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=_suffix)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_special_values(name, dtype):
    cases = _specials(dtype)[name]
    x = np.array([c[0] for c in cases], dtype)
    want = np.array([c[1] for c in cases], dtype)
    got = _apply(name, x)
    same = (got == want) & (np.signbit(got) == np.signbit(want)) | np.isnan(got) & np.isnan(want)
    assert same.all(), f"{name}: x={x[~same]} got {got[~same]} want {want[~same]}"


def test_results_keep_the_dtype():
    for name in FUNCTIONS:
        for dtype in DTYPES:
            _loop(name, dtype)(np.ones(1, dtype), np.empty(1, dtype))
            fn = getattr(vmath, f"{name}_{_suffix(dtype)}")
            for cres in fn.overloads.values():
                sig = cres.signature
                assert sig.args == (numba.from_dtype(dtype),), sig
                assert sig.return_type == numba.from_dtype(dtype), sig


# The generated kernels' source shape (codegen.py): kernels without wrappers called by a
# cached driver; here compiled from source text that imports vmath like a generated module.
_KERNEL_SOURCE = '''
import math
import numpy as np
from numba import njit
{import_line}

@njit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def k0(in0, out0, out1, out2, out3):
    for i0 in range(in0.size):
        x0 = in0[i0]
        out0[i0] = (np.{t}(0.5) * x0 * (np.{t}(1.0) + {erf}(x0 * np.{t}(0.7071067811865476))))
        out1[i0] = (x0 / (np.{t}(1.0) + {exp}(-x0)))
        out2[i0] = (max(x0, np.{t}(0.0)) + {log1p}({exp}(-abs(x0))))
        out3[i0] = {tanh}({log}(abs(x0)))

@njit(error_model="numpy")
def run(x):
    v = np.empty((4, x.size), x.dtype)
    k0(x, v[0], v[1], v[2], v[3])
    return v
'''


@pytest.mark.parametrize("dtype", DTYPES, ids=_suffix)
def test_generated_kernel_matches_numpy(dtype):
    dt = np.dtype(dtype).name
    names = {f: vmath.vectorised_call(f"math.{f}", dt) for f in FUNCTIONS}
    src = _KERNEL_SOURCE.format(import_line=vmath.IMPORT_LINE, t=dt, **names)
    namespace = {}
    exec(compile(src, f"<generated {dt}>", "exec"), namespace)
    x = np.random.default_rng(0).uniform(-30, 30, 10_001).astype(dtype)
    got = namespace["run"](x)
    xd = x.astype(np.float64)
    with np.errstate(all="ignore"):
        want = np.stack([0.5 * xd * (1 + special.erf(xd / math.sqrt(2))),
                         xd / (1 + np.exp(-xd)),
                         np.maximum(xd, 0) + np.log1p(np.exp(-np.abs(xd))),
                         np.tanh(np.log(np.abs(xd)))])
    # Relative to |want| + |x|: 1 + erf(x) cancels for x << 0, leaving erf's absolute error.
    tol = 4 * np.finfo(dtype).eps * (np.abs(want) + np.abs(xd))
    err = np.abs(got - want)
    assert (err <= tol).all(), f"max err / tol per row {np.max(err / tol, axis=1)}"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="checks x86 SIMD instructions")
@pytest.mark.parametrize("dtype", DTYPES, ids=_suffix)
def test_loops_vectorise(dtype):
    """The functions are inlined and the loop vectorised: vector types in the LLVM IR, packed
    float arithmetic (on xmm, ymm or zmm registers, as wide as the CPU allows), no libm."""
    suffix = "ps" if dtype == np.float32 else "pd"
    packed = re.compile(rf"\bv?(?:mul|add|sub){suffix}\b|\bvfn?madd\w*{suffix}\b")
    libm = re.compile(r"@(?:llvm\.)?\w*(?:exp|log|log1p|tanh|erf)(?:f|\.f32|\.f64)?\(")
    for name in FUNCTIONS:
        fn = _loop(name, dtype)
        fn(np.ones(1, dtype), np.empty(1, dtype))
        ir = fn.inspect_llvm(fn.signatures[0])
        assert re.search(r"<\d+ x (?:float|double)>", ir), f"{name} did not vectorise"
        asm = fn.inspect_asm(fn.signatures[0])
        assert packed.search(asm), f"{name}: no packed {suffix} arithmetic"
        assert not libm.search(ir), f"{name} calls libm"


def test_vectorised_call():
    assert vmath.vectorised_call("math.exp", "float32") == "exp_f32"
    assert vmath.vectorised_call("math.erf", "float64") == "erf_f64"
    assert vmath.vectorised_call("np.log1p", "f32") == "log1p_f32"
    assert vmath.vectorised_call("math.tanh", "float64") == "tanh_f64"
    assert vmath.vectorised_call("math.sqrt", "float32") is None
    assert vmath.vectorised_call("math.exp", "int64") is None
    assert vmath.vectorised_call("cmath.exp", "float32") is None
    for name in FUNCTIONS:
        for dt in ("float32", "float64"):
            assert vmath.vectorised_call(f"math.{name}", dt) in vmath.NAMES
    assert set(vmath.NAMES) <= set(vmath.__all__)
    assert all(callable(getattr(vmath, n)) for n in vmath.NAMES)
    namespace = {}
    exec(vmath.IMPORT_LINE, namespace)
    assert all(n in namespace for n in vmath.NAMES)
