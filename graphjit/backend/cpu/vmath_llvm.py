"""The LLVM intrinsics and exponent-bit tricks vmath.py's functions are written with: a
fused multiply-add, fabs, copysign, scaling by a power of two, and the reduction of x to
2**k * m for the logarithms (see [vmath algorithms] in vmath.py). Each is a Numba
``@intrinsic`` on float32 and float64 alike (the integer type as wide as the float, its
mantissa bits and bias come from ``_int_type``)."""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _float_args(*args) -> bool:
    return isinstance(args[0], types.Float) and all(a == args[0] for a in args)


def _int_type(fty):
    """The integer type as wide as an llvmlite float type, its mantissa bits and bias."""
    if isinstance(fty, ir.FloatType):
        return ir.IntType(32), 23, 127
    return ir.IntType(64), 52, 1023


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c, fused where the target has an FMA instruction (``llvm.fmuladd``)."""
    if not _float_args(a, b, c):
        return None

    def codegen(context, builder, sig, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [t], ir.FunctionType(t, [t, t, t]))
        return builder.call(fn, args)
    return a(a, b, c), codegen


@intrinsic
def _fabs(typingctx, x):
    if not _float_args(x):
        return None

    def codegen(context, builder, sig, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fabs", [t], ir.FunctionType(t, [t]))
        return builder.call(fn, args)
    return x(x), codegen


@intrinsic
def _copysign(typingctx, mag, sgn):
    if not _float_args(mag, sgn):
        return None

    def codegen(context, builder, sig, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.copysign", [t], ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)
    return mag(mag, sgn), codegen


@intrinsic
def _scale2(typingctx, p, n):
    """p * 2**n for an integer-valued float n in [-2 * (bias + mantissa bits), 2 * bias + 2]:
    two factors 2**(n >> 1) and 2**(n - (n >> 1)) built from their exponent bits, both normal
    numbers, so a subnormal result is rounded once."""
    if not _float_args(p, n):
        return None

    def codegen(context, builder, sig, args):
        pv, nv = args
        fty = pv.type
        ity, mant, bias = _int_type(fty)
        ni = builder.fptosi(nv, ity)
        n1 = builder.ashr(ni, ir.Constant(ity, 1))
        n2 = builder.sub(ni, n1)

        def pow2(k):
            bits = builder.shl(builder.add(k, ir.Constant(ity, bias)), ir.Constant(ity, mant))
            return builder.bitcast(bits, fty)
        return builder.fmul(builder.fmul(pv, pow2(n1)), pow2(n2))
    return p(p, n), codegen


@intrinsic
def _pow2_of_rint(typingctx, k):
    """2**m for k = 1.5 * 2**mant + bias + m (the sum that rounded a number to an integer),
    m in [1 - bias, bias]: k's low mantissa bits are bias + m, and shifting them into the
    exponent field pushes the rest out. One shift, no float->int conversion, so a NaN k
    (from a NaN input, which then makes the caller's other operands NaN too) gives some
    bits rather than LLVM poison."""
    if not _float_args(k):
        return None

    def codegen(context, builder, sig, args):
        kv = args[0]
        ity, mant, bias = _int_type(kv.type)
        bits = builder.shl(builder.bitcast(kv, ity), ir.Constant(ity, mant))
        return builder.bitcast(bits, kv.type)
    return k(k), codegen


@intrinsic
def _xorsign(typingctx, y, x):
    """y with its sign bit flipped where x's is set: copysign(y, x) for a y with a clear sign
    bit, in two bit operations (and, xor) where copysign takes three."""
    if not _float_args(y, x):
        return None

    def codegen(context, builder, sig, args):
        yv, xv = args
        ity = _int_type(yv.type)[0]
        sign = builder.and_(builder.bitcast(xv, ity), ir.Constant(ity, 1 << (ity.width - 1)))
        return builder.bitcast(builder.xor(builder.bitcast(yv, ity), sign), yv.type)
    return y(y, x), codegen


def _sqrt_half_bits(fty):
    # The bits of (about) sqrt(1/2): the log reduction's mantissas lie in [this, 2 * this).
    return 0x3F3504F3 if isinstance(fty, ir.FloatType) else 0x3FE6A09E00000000


def _reduced_bits(builder, xv):
    """bits(x) + bits(1) - bits(sqrt(1/2)): its exponent field is k and x = 2**k * m."""
    fty = xv.type
    ity, mant, bias = _int_type(fty)
    one_bits = bias << mant
    bits = builder.bitcast(xv, ity)
    return builder.add(bits, ir.Constant(ity, one_bits - _sqrt_half_bits(fty))), ity, mant, bias


@intrinsic
def _log_mantissa(typingctx, x):
    """m in [sqrt(1/2), sqrt(2)) with x = 2**k * m, for a positive normal (finite) x."""
    if not _float_args(x):
        return None

    def codegen(context, builder, sig, args):
        xv = args[0]
        ix, ity, mant, bias = _reduced_bits(builder, xv)
        frac = builder.and_(ix, ir.Constant(ity, (1 << mant) - 1))
        bits = builder.add(frac, ir.Constant(ity, _sqrt_half_bits(xv.type)))
        return builder.bitcast(bits, xv.type)
    return x(x), codegen


@intrinsic
def _log_exponent(typingctx, x):
    """k (as a float) with x = 2**k * m, m in [sqrt(1/2), sqrt(2)), for a positive x."""
    if not _float_args(x):
        return None

    def codegen(context, builder, sig, args):
        xv = args[0]
        ix, ity, mant, bias = _reduced_bits(builder, xv)
        k = builder.sub(builder.lshr(ix, ir.Constant(ity, mant)), ir.Constant(ity, bias))
        return builder.sitofp(k, xv.type)
    return x(x), codegen
