"""Vectorisable exp, log, log1p, tanh and erf for the generated CPU kernels.

With the llvmlite of PyPI (no SVML) Numba compiles ``math.exp(x)`` and friends to calls
of the C library, one element at a time, so a loop over them does not vectorise: 4M float32
``tanh`` take tens of milliseconds where arithmetic takes well under one. The functions here
compute the same results with arithmetic only: no branches (each ``a if c else b`` becomes
a select, a vector blend once the loop is vectorised), no loops and no calls; inlined into
the caller's loop (by Numba: see below), the loop vectorises (``vmulps``/``vfmadd`` on
ymm/zmm registers). Each dtype has its own function, computing in that dtype (float32 stays
float32: every constant is a typed global).

    from graphjit.backend.cpu.vmath import exp_f32
    out[i] = exp_f32(x0)            # instead of math.exp(x0) for a float32 x0

``vectorised_call("math.exp", "float32")`` gives the name to use in generated source and
``NAMES`` the names a generated module imports (``IMPORT_LINE`` imports them all).

Accuracy: at most 1 ulp from the correctly rounded result, for every function and both
dtypes, with or without FMA instructions (for float32 checked on every float32 input, for
float64 against mpmath on about a million samples over the whole range; most results are
correctly rounded: all but 0.2-0.7% in float32). tests/backend/cpu/test_vmath.py checks this
over dense, tiny, huge, subnormal and random-bit-pattern inputs.

Special values follow C99/NumPy: NaN gives NaN; exp(inf) = inf, exp(-inf) = 0, overflow
gives inf and underflow 0 (through the subnormals, rounded once); log(0) = -inf,
log(x < 0) = NaN, log(inf) = inf; log1p(-1) = -inf, log1p(x < -1) = NaN; tanh(+-inf) = +-1;
erf(+-inf) = +-1; the sign of zero is kept by log1p, tanh and erf.

# NOTE: [vmath algorithms]
- exp: n = rint(x / ln 2), r = x - n ln2 (Cody-Waite: ln 2 split in a head whose product
  with n is exact and a tail), exp(r) = 1 + r + r^2 P(r) on |r| <= ln2/2 (minimax), times
  2^n built from the exponent bits in two factors so subnormal results round once and
  n = 128 (1024) still reaches the overflow to inf. x is clamped first so the float->int
  conversion is always in range.
- log: x = 2^k m with m in [sqrt(1/2), sqrt(2)) from the bits (subnormals scaled by 2^25 or
  2^54 first), f = m - 1, s = f / (2 + f), log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)),
  plus k ln 2 in two parts: the fdlibm/musl scheme, with coefficients refitted here.
- log1p: the same core on u = 1 + x, plus the rounding error of u, c/u with
  c = x - (u - 1) (or 1 - (u - x) when u >= 2); f = x itself while 1 + x is within
  [sqrt(1/2), sqrt(2)) (musl's log1pf).
- tanh: x + x^3 P(x^2) for |x| < 0.625, else sign(x) (1 - 2 / (exp(2|x|) + 1)) in float64.
  float32 (the hot function of GELU kernels) computes both on a = |x| and puts x's sign
  back at the end, which keeps -0.0 without a select, and needs none of exp_f32's
  generality: on t = min(a, 9.5) (tanh rounds to 1 from 9.01) exp(2t) = 2^n exp(2r),
  r = t - n ln2/2, stays far from overflow and underflow, so there is no second clamp and
  no NaN select (a NaN runs through the arithmetic), and 2^(n+1) is the rint sum k's bits
  shifted once. d = exp(2t) + 1 = 2^(n+1) w + (2^n + 1), w = (exp(2r) - 1)/2, is rounded
  once and tanh = (d - 2) / d: d - 2 is exact for 4 < d < 2^25 (here d >= exp(1.25) + 1;
  d >= 2^25 means |x| >= 8.66, where the result is 1 or the float below it either way),
  so the division is the only other rounding, where 1 - 2/d has two. exp's error reaches
  tanh weighted by 2e/(e^2 - 1) (e = exp(2t) >= 3.49), which lets w be of degree 5
  (exp_f32's is 6), in Estrin's form (a shorter dependency chain, same operations). That
  leaves up to 0.90 ulp before the final rounding (near |x| = 0.625, with or without FMA),
  so the 1-ulp bound rests on the exhaustive check (0.17% of float32 inputs not correctly
  rounded, 0.16% before). The loop does 35 instructions per 8 elements where it did 53
  with exp_f32: ``python benchmarks/vmath.py`` (float32 tanh, Zen 3 VM) 5.4 -> 4.0 ms over
  4M elements, and with ``--n 4096 --repeats 20000`` (in L1, as a fused kernel's rows)
  1.25 -> 0.96 ns per element.
- erf: x + x P(x^2) for |x| below 0.921875 (f32) or 0.84375 (f64); above,
  sign(x) (1 - exp(Q(|x|))) with Q a polynomial fit of log(erfc), weighted by
  erfc/erf, the relative size of erfc's error in the result: one fit on [0.92, 3.95] for
  float32, three intervals selected per element for float64 (erf rounds to 1 beyond).
The coefficients are minimax fits made once, offline: a Remez exchange in mpmath (50 digits)
on the intervals and with the weights above (relative error of the result), each
coefficient rounded to the dtype in turn and the remaining ones refitted. tanh_f32's w
was fitted the same way but with Lawson's algorithm in float64 (ample for a float32 fit):
exp(s) = 1 + s + s^2 E(s) on |s| <= ln2/2, weighted by 2e/(e^2 - 1) at the smallest
e = 2^n exp(s) each s meets (n = 2 from s = -0.136, n = 3 below), E's coefficients then
scaled by 2^(j+1) for the half argument r = s/2 (exact). Every branch is
computed for every element and the result selected, which is what vectorised code does
anyway.

The polynomials use ``llvm.fmuladd`` (a fused multiply-add where the CPU has one, a multiply
and an add otherwise; both are within the bound above). There is no fastmath anywhere:
it would let LLVM reassociate the carefully ordered sums and drop the NaN/inf handling.

Calling them: they are ``numba.njit(error_model="numpy", inline="always")`` functions, so
Numba inlines their bodies into the calling function (a kernel compiled with
``no_cpython_wrapper=True`` too) and LLVM sees one loop to vectorise; a ``cache=True``
driver caches the result (this is an importable module, so the cache can reference it).
The argument must have the function's dtype: ``exp_f32`` of a float64 or an int is a
Numba typing error, not a silent conversion. They can also be called from Python, one
scalar at a time (slowly: tests, debugging).
"""
from __future__ import annotations

import numba
import numpy as np

from .vmath_llvm import (_copysign, _fabs, _fma, _log_exponent, _log_mantissa, _pow2_of_rint,
                         _scale2, _xorsign)

__all__ = ["NAMES", "IMPORT_LINE", "vectorised_call",
           "exp_f32", "exp_f64", "log_f32", "log_f64", "log1p_f32", "log1p_f64",
           "tanh_f32", "tanh_f64", "erf_f32", "erf_f64"]

# inline="always": Numba inlines the body into the caller's IR. Left to LLVM's inliner, the
# larger functions (erf_f64) stay calls, and a loop calling them runs unvectorised, ~10x
# slower.
_jit = numba.njit(error_model="numpy", inline="always")


# --- float32 ---------------------------------------------------------------------------

_f = np.float32
_ZERO_F32, _HALF_F32, _ONE_F32, _TWO_F32 = _f(0.0), _f(0.5), _f(1.0), _f(2.0)
_INF_F32, _NAN_F32 = _f(np.inf), _f(np.nan)

_LOG2E_F32 = _f(1.4426950408889634)
_RINT_F32 = _f(12582912.0)                   # 1.5 * 2**23: (y + it) - it rounds y to an integer
_LN2_HI_F32 = _f(0.693145751953125)          # 0x3f317200: n * it is exact for |n| < 2**15
_LN2_LO_F32 = _f(1.428606765330187e-06)
_EXP_LO_F32 = _f(-104.0)                     # exp(x) rounds to 0 below -103.97
_EXP_HI_F32 = _f(89.0)                       # and to inf above 88.72
_EXP_P_F32 = tuple(_f(c) for c in (
    0.4999999403953552, 0.1666652262210846, 0.04166818782687187, 0.008368538692593575,
    0.001382749411277473))


@_jit
def exp_f32(x):
    xc = _EXP_HI_F32 if x > _EXP_HI_F32 else x
    xc = _EXP_LO_F32 if xc < _EXP_LO_F32 else xc
    xc = _ZERO_F32 if xc != xc else xc       # NaN: computed as exp(0), selected below
    n = (xc * _LOG2E_F32 + _RINT_F32) - _RINT_F32
    r = xc - n * _LN2_HI_F32
    r = r - n * _LN2_LO_F32
    c = _EXP_P_F32
    p = _fma(c[4], r, c[3])
    p = _fma(p, r, c[2])
    p = _fma(p, r, c[1])
    p = _fma(p, r, c[0])
    y = _fma(p, r * r, r) + _ONE_F32
    y = _scale2(y, n)
    return x if x != x else y


_MIN_NORMAL_F32 = _f(np.finfo(np.float32).tiny)
_TWO_25_F32, _M25_F32 = _f(2.0 ** 25), _f(-25.0)
_LN2_HI_LOG_F32 = _f(0.693138122558593750)   # 0x3f317180: k * it is exact
_LN2_LO_LOG_F32 = _f(9.0580006144e-06)
_LOG_R_F32 = tuple(_f(c) for c in (
    0.6666666865348816, 0.39999663829803467, 0.28577911853790283, 0.22853216528892517))


@_jit
def _log_core_f32(f, k, c):
    """log(2**k * (1 + f)) + c, f in [sqrt(1/2) - 1, sqrt(2) - 1), c a small correction."""
    s = f / (_TWO_F32 + f)
    z = s * s
    lg = _LOG_R_F32
    R = _fma(lg[3], z, lg[2])
    R = _fma(R, z, lg[1])
    R = _fma(R, z, lg[0])
    R = R * z
    hfsq = _HALF_F32 * f * f
    return s * (hfsq + R) + (k * _LN2_LO_LOG_F32 + c) - hfsq + f + k * _LN2_HI_LOG_F32


@_jit
def log_f32(x):
    sub = x < _MIN_NORMAL_F32
    xs = x * _TWO_25_F32 if sub else x
    k = _log_exponent(xs) + (_M25_F32 if sub else _ZERO_F32)
    y = _log_core_f32(_log_mantissa(xs) - _ONE_F32, k, _ZERO_F32)
    y = -_INF_F32 if x == _ZERO_F32 else y
    y = _NAN_F32 if x < _ZERO_F32 else y
    return y if x < _INF_F32 else x + x      # +inf and NaN


_SQRT_HALF_M1_F32 = _f(-0.29289323091506958)  # musl: 1 + x in [sqrt(1/2), sqrt(2)) for x in
_SQRT2_M1_F32 = _f(0.41421353816986084)       # [this, _SQRT2_M1_F32)
_TINY_LOG1P_F32 = _f(2.0 ** -24)              # log1p(x) rounds to x below
_M1_F32 = _f(-1.0)
_K_CORR_F32 = _f(25.0)                        # u's rounding error is negligible from 2**25


@_jit
def log1p_f32(x):
    u = x + _ONE_F32
    k = _log_exponent(u)
    c = (_ONE_F32 - (u - x)) if k >= _TWO_F32 else (x - (u - _ONE_F32))
    c = _ZERO_F32 if k >= _K_CORR_F32 else c / u
    f = _log_mantissa(u) - _ONE_F32
    near = (x >= _SQRT_HALF_M1_F32) & (x < _SQRT2_M1_F32)
    f = x if near else f
    k = _ZERO_F32 if near else k
    c = _ZERO_F32 if near else c
    y = _log_core_f32(f, k, c)
    y = x if _fabs(x) < _TINY_LOG1P_F32 else y
    y = -_INF_F32 if x == _M1_F32 else y
    y = _NAN_F32 if x < _M1_F32 else y
    return y if x < _INF_F32 else x + x


_TANH_SMALL_F32 = _f(0.625)
_TANH_P_F32 = tuple(_f(c) for c in (
    -0.33333292603492737, 0.1333165168762207, -0.0537535697221756, 0.02067677304148674,
    -0.005741245578974485))
# The large branch: exp(2t) = 2**n exp(2r), r = t - n ln2/2, on t = min(|x|, 9.5).
_TANH_CLAMP_F32 = _f(9.5)                     # tanh rounds to 1 from 9.01; n <= 27 below
_TANH_2LOG2E_F32 = _f(2.885390043258667)      # 2 log2(e)
_TANH_RINT_F32 = _f(12583040.0)               # 1.5 * 2**23 + 128: low bits of k = n + 1 + bias
_TANH_NLN2_HI_F32 = _f(-0.3465728759765625)   # -ln2/2 in two parts (exp's, halved): n * the
_TANH_NLN2_LO_F32 = _f(-7.143033826650935e-07)  # head is exact for n < 2**9
_TANH_E_F32 = tuple(_f(c) for c in (            # (exp(2r) - 1) / 2 = r + r^2 E(r)
    0.9999871850013733, 0.6666837930679321, 0.33502283692359924, 0.13300086557865143))


@_jit
def tanh_f32(x):
    a = _fabs(x)
    z = a * a
    c = _TANH_P_F32
    p = _fma(c[4], z, c[3])
    p = _fma(p, z, c[2])
    p = _fma(p, z, c[1])
    p = _fma(p, z, c[0])
    small = _fma(a * z, p, a)                 # exactly a below 2**-12, +0.0 for +-0.0
    t = _TANH_CLAMP_F32 if a > _TANH_CLAMP_F32 else a     # NaN stays NaN
    k = _fma(t, _TANH_2LOG2E_F32, _TANH_RINT_F32)
    n = k - _TANH_RINT_F32
    r = _fma(n, _TANH_NLN2_HI_F32, t)
    r = _fma(n, _TANH_NLN2_LO_F32, r)
    e = _TANH_E_F32
    r2 = r * r
    w = _fma(_fma(r2, _fma(e[3], r, e[2]), _fma(e[1], r, e[0])), r2, r)
    s2 = _pow2_of_rint(k)                     # 2**(n + 1): 2**n exp(2r) = s2 (1/2 + w)
    d = _fma(s2, w, _fma(s2, _HALF_F32, _ONE_F32))         # exp(2t) + 1, rounded once
    large = (d - _TWO_F32) / d                # d - 2 exact while d < 2**25 (NOTE)
    y = small if a < _TANH_SMALL_F32 else large            # NaN: large is NaN
    return _xorsign(y, x)                     # y >= +0.0: x's sign, -0.0 kept


_ERF_SMALL_F32 = _f(0.921875)
_ERF_ONE_F32 = _f(3.95)                       # erf rounds to 1 from 3.92
_ERF_P_F32 = tuple(_f(c) for c in (
    0.12837916612625122, -0.3761262893676758, 0.11283625662326813, -0.026855729520320892,
    0.005192392505705357, -0.0008049514726735651, 7.99504850874655e-05))
_ERF_Q_F32 = tuple(_f(c) for c in (
    0.00016132828022819012, -1.129511833190918, -0.6331800222396851, -0.10874087363481522,
    0.02569374442100525, -0.004567328374832869, 0.0005905935540795326,
    -5.399004294304177e-05, 2.8733647923218086e-06))


@_jit
def erf_f32(x):
    a = _fabs(x)
    z = x * x
    c = _ERF_P_F32
    p = _fma(c[6], z, c[5])
    p = _fma(p, z, c[4])
    p = _fma(p, z, c[3])
    p = _fma(p, z, c[2])
    p = _fma(p, z, c[1])
    p = _fma(p, z, c[0])
    small = _fma(x, p, x)
    t = _ERF_ONE_F32 if a > _ERF_ONE_F32 else a   # NaN stays NaN
    q = _ERF_Q_F32
    e = _fma(q[8], t, q[7])
    e = _fma(e, t, q[6])
    e = _fma(e, t, q[5])
    e = _fma(e, t, q[4])
    e = _fma(e, t, q[3])
    e = _fma(e, t, q[2])
    e = _fma(e, t, q[1])
    e = _fma(e, t, q[0])                      # log(erfc(t))
    large = _copysign(_ONE_F32 - exp_f32(e), x)
    return small if a < _ERF_SMALL_F32 else large


# --- float64 ---------------------------------------------------------------------------

_d = np.float64
_ZERO_F64, _HALF_F64, _ONE_F64, _TWO_F64 = _d(0.0), _d(0.5), _d(1.0), _d(2.0)
_INF_F64, _NAN_F64 = _d(np.inf), _d(np.nan)

_LOG2E_F64 = _d(1.4426950408889634)
_RINT_F64 = _d(6755399441055744.0)            # 1.5 * 2**52
_LN2_HI_F64 = _d(6.93147180369123816490e-01)  # fdlibm: n * it is exact for |n| < 2**20
_LN2_LO_F64 = _d(1.90821492927058770002e-10)
_EXP_LO_F64 = _d(-746.0)                      # exp(x) rounds to 0 below -745.13
_EXP_HI_F64 = _d(710.0)                       # and to inf above 709.78
_EXP_P_F64 = tuple(_d(c) for c in (
    0.500000000000001, 0.1666666666666542, 0.04166666666654792, 0.00833333333419232,
    0.0013888888936724978, 0.0001984126792270398, 2.4801501477758088e-05,
    2.755902643236636e-06, 2.7627082259742773e-07, 2.4544693912018262e-08))


@_jit
def exp_f64(x):
    xc = _EXP_HI_F64 if x > _EXP_HI_F64 else x
    xc = _EXP_LO_F64 if xc < _EXP_LO_F64 else xc
    xc = _ZERO_F64 if xc != xc else xc
    n = (xc * _LOG2E_F64 + _RINT_F64) - _RINT_F64
    r = xc - n * _LN2_HI_F64
    r = r - n * _LN2_LO_F64
    c = _EXP_P_F64
    p = _fma(c[9], r, c[8])
    p = _fma(p, r, c[7])
    p = _fma(p, r, c[6])
    p = _fma(p, r, c[5])
    p = _fma(p, r, c[4])
    p = _fma(p, r, c[3])
    p = _fma(p, r, c[2])
    p = _fma(p, r, c[1])
    p = _fma(p, r, c[0])
    y = _fma(p, r * r, r) + _ONE_F64
    y = _scale2(y, n)
    return x if x != x else y


_MIN_NORMAL_F64 = _d(np.finfo(np.float64).tiny)
_TWO_54_F64, _M54_F64 = _d(2.0 ** 54), _d(-54.0)
_LOG_R_F64 = tuple(_d(c) for c in (
    0.666666666666671, 0.39999999999540903, 0.2857142871911147, 0.2222220064116004,
    0.18183468712489373, 0.15316267408821277, 0.14775579491579027))


@_jit
def _log_core_f64(f, k, c):
    s = f / (_TWO_F64 + f)
    z = s * s
    lg = _LOG_R_F64
    R = _fma(lg[6], z, lg[5])
    R = _fma(R, z, lg[4])
    R = _fma(R, z, lg[3])
    R = _fma(R, z, lg[2])
    R = _fma(R, z, lg[1])
    R = _fma(R, z, lg[0])
    R = R * z
    hfsq = _HALF_F64 * f * f
    return s * (hfsq + R) + (k * _LN2_LO_F64 + c) - hfsq + f + k * _LN2_HI_F64


@_jit
def log_f64(x):
    sub = x < _MIN_NORMAL_F64
    xs = x * _TWO_54_F64 if sub else x
    k = _log_exponent(xs) + (_M54_F64 if sub else _ZERO_F64)
    y = _log_core_f64(_log_mantissa(xs) - _ONE_F64, k, _ZERO_F64)
    y = -_INF_F64 if x == _ZERO_F64 else y
    y = _NAN_F64 if x < _ZERO_F64 else y
    return y if x < _INF_F64 else x + x


_SQRT_HALF_M1_F64 = _d(-0.2928932188134524)
_SQRT2_M1_F64 = _d(0.41421356237309503)
_TINY_LOG1P_F64 = _d(2.0 ** -54)
_M1_F64 = _d(-1.0)
_K_CORR_F64 = _d(54.0)


@_jit
def log1p_f64(x):
    u = x + _ONE_F64
    k = _log_exponent(u)
    c = (_ONE_F64 - (u - x)) if k >= _TWO_F64 else (x - (u - _ONE_F64))
    c = _ZERO_F64 if k >= _K_CORR_F64 else c / u
    f = _log_mantissa(u) - _ONE_F64
    near = (x >= _SQRT_HALF_M1_F64) & (x < _SQRT2_M1_F64)
    f = x if near else f
    k = _ZERO_F64 if near else k
    c = _ZERO_F64 if near else c
    y = _log_core_f64(f, k, c)
    y = x if _fabs(x) < _TINY_LOG1P_F64 else y
    y = -_INF_F64 if x == _M1_F64 else y
    y = _NAN_F64 if x < _M1_F64 else y
    return y if x < _INF_F64 else x + x


_TANH_SMALL_F64 = _d(0.625)
_TINY_TANH_F64 = _d(2.0 ** -27)
_TANH_P_F64 = tuple(_d(c) for c in (
    -0.33333333333333326, 0.13333333333331204, -0.05396825396667562, 0.021869488482344504,
    -0.0088632344931352, 0.003592115536638984, -0.001455734650852073, 0.000589484958113572,
    -0.00023709575533622997, 9.169419553017749e-05, -3.031385467558782e-05,
    6.094336903537274e-06))


@_jit
def tanh_f64(x):
    a = _fabs(x)
    z = x * x
    c = _TANH_P_F64
    p = _fma(c[11], z, c[10])
    p = _fma(p, z, c[9])
    p = _fma(p, z, c[8])
    p = _fma(p, z, c[7])
    p = _fma(p, z, c[6])
    p = _fma(p, z, c[5])
    p = _fma(p, z, c[4])
    p = _fma(p, z, c[3])
    p = _fma(p, z, c[2])
    p = _fma(p, z, c[1])
    p = _fma(p, z, c[0])
    small = _fma(x * z, p, x)
    large = _copysign(_ONE_F64 - _TWO_F64 / (exp_f64(a + a) + _ONE_F64), x)
    y = small if a < _TANH_SMALL_F64 else large
    return x if a < _TINY_TANH_F64 else y


_ERF_SMALL_F64 = _d(0.84375)
_ERF_ONE_F64 = _d(6.0)                        # erf rounds to 1 from 5.93
_ERF_P_F64 = tuple(_d(c) for c in (
    0.12837916709551256, -0.37612638903183254, 0.11283791670928267, -0.02686617063946645,
    0.005223977563984832, -0.0008548323121718904, 0.00012055177994922927,
    -1.4921677578963649e-05, 1.6396216206953702e-06, -1.5678009465256313e-07,
    1.0622498719940305e-08))
# log(erfc(t)) = Q(t - centre) on [0.84375, 1.75), [1.75, 3), [3, 6]
_ERF_SPLIT1_F64, _ERF_SPLIT2_F64 = _d(1.75), _d(3.0)
_ERF_CENTRE_F64 = (_d(1.296875), _d(2.375), _d(4.5))
_ERF_Q0_F64 = tuple(_d(c) for c in (
    -2.708369952327063, -3.149574688939462, -0.8753056858856915, -0.031260818332195586,
    0.007423426514629553, -0.0015380657093969753, 0.00024286594377636737,
    -1.3712254264867404e-05, -8.789448820722166e-06, 4.520849327751294e-06,
    -1.3205265747640861e-06, 2.3890170331815265e-07, -2.2523868421528433e-09))
_ERF_Q1_F64 = tuple(_d(c) for c in (
    -7.152456769440199, -5.117233735839136, -0.939610430987101, -0.01200970298749162,
    0.0024475166408674037, -0.0004830893251548753, 8.899094588478833e-05,
    -1.4608666110621295e-05, 1.9311019555938146e-06, -1.292945140433215e-07,
    -3.0375079202756686e-08, 1.8265876633339333e-08, -6.6356619430479014e-09))
_ERF_Q2_F64 = tuple(_d(c) for c in (
    -22.349768303435848, -9.212401935913697, -0.9783687487221692, -0.0028433227511152487,
    0.00038702421698365237, 7.329484597279422e-06, 0.00022301847683970264,
    0.0003236399163800225, 0.00029685644542231103, 0.00017222409969848223,
    6.244688035812655e-05, 1.2931745395816822e-05, 1.170570247154177e-06))


@_jit
def _pick(in1, in2, a, b, c):
    return c if in2 else (b if in1 else a)


@_jit
def erf_f64(x):
    a = _fabs(x)
    z = x * x
    c = _ERF_P_F64
    p = _fma(c[10], z, c[9])
    p = _fma(p, z, c[8])
    p = _fma(p, z, c[7])
    p = _fma(p, z, c[6])
    p = _fma(p, z, c[5])
    p = _fma(p, z, c[4])
    p = _fma(p, z, c[3])
    p = _fma(p, z, c[2])
    p = _fma(p, z, c[1])
    p = _fma(p, z, c[0])
    small = _fma(x, p, x)
    t = _ERF_ONE_F64 if a > _ERF_ONE_F64 else a
    in1 = t >= _ERF_SPLIT1_F64
    in2 = t >= _ERF_SPLIT2_F64
    q0, q1, q2 = _ERF_Q0_F64, _ERF_Q1_F64, _ERF_Q2_F64
    m = _ERF_CENTRE_F64
    u = t - _pick(in1, in2, m[0], m[1], m[2])
    e = _fma(_pick(in1, in2, q0[12], q1[12], q2[12]), u, _pick(in1, in2, q0[11], q1[11], q2[11]))
    e = _fma(e, u, _pick(in1, in2, q0[10], q1[10], q2[10]))
    e = _fma(e, u, _pick(in1, in2, q0[9], q1[9], q2[9]))
    e = _fma(e, u, _pick(in1, in2, q0[8], q1[8], q2[8]))
    e = _fma(e, u, _pick(in1, in2, q0[7], q1[7], q2[7]))
    e = _fma(e, u, _pick(in1, in2, q0[6], q1[6], q2[6]))
    e = _fma(e, u, _pick(in1, in2, q0[5], q1[5], q2[5]))
    e = _fma(e, u, _pick(in1, in2, q0[4], q1[4], q2[4]))
    e = _fma(e, u, _pick(in1, in2, q0[3], q1[3], q2[3]))
    e = _fma(e, u, _pick(in1, in2, q0[2], q1[2], q2[2]))
    e = _fma(e, u, _pick(in1, in2, q0[1], q1[1], q2[1]))
    e = _fma(e, u, _pick(in1, in2, q0[0], q1[0], q2[0]))  # log(erfc(t))
    large = _copysign(_ONE_F64 - exp_f64(e), x)
    return small if a < _ERF_SMALL_F64 else large


# --- use from generated code -----------------------------------------------------------

_REPLACEMENTS = {
    "exp": ("exp_f32", "exp_f64"),
    "log": ("log_f32", "log_f64"),
    "log1p": ("log1p_f32", "log1p_f64"),
    "tanh": ("tanh_f32", "tanh_f64"),
    "erf": ("erf_f32", "erf_f64"),
}
_DTYPES = {"float32": 0, "f32": 0, "float64": 1, "f64": 1}

NAMES = tuple(name for pair in _REPLACEMENTS.values() for name in pair)
IMPORT_LINE = f"from graphjit.backend.cpu.vmath import {', '.join(NAMES)}"


def vectorised_call(fn_name: str, dtype_name: str) -> str | None:
    """The name of this module's replacement for the scalar function ``fn_name``
    (``"math.exp"``; ``"np.exp"``, ``"numpy.exp"`` and ``"exp"`` too) computing in
    ``dtype_name`` (``"float32"``/``"float64"``, or ``"f32"``/``"f64"``), or None when
    there is none (sqrt, sin, ... or an integer dtype): keep the original call then."""
    module, _, name = fn_name.rpartition(".")
    if module not in ("", "math", "np", "numpy"):
        return None
    pair = _REPLACEMENTS.get(name)
    index = _DTYPES.get(dtype_name)
    if pair is None or index is None:
        return None
    return pair[index]
