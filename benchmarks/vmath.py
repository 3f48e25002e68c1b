"""The vectorisable math functions of graphjit.backend.cpu.vmath against the scalar libm calls.

    python benchmarks/vmath.py [--n 4000000] [--repeats 50]

For float32 and float64, per function (exp, log, log1p, tanh, erf) it prints the median
time of one pass over N elements (out[i] = f(x[i])) of: a Numba loop calling ``math.f``
(what the generated kernels compiled to before), the same loop calling the vmath function,
and NumPy's ufunc (``scipy.special.erf`` for erf) with ``out=``; the vmath loop's time per
element (``--n 4096`` keeps the arrays in L1, as a fused kernel's rows are); its speedup over
both; and whether the vmath loop's machine code uses packed SIMD arithmetic on ymm/zmm
registers (``vfmadd...ps``/``vmulpd`` ...), i.e. whether LLVM vectorised it. The loops are
compiled with the generated kernels' flags (error_model="numpy", no fastmath).
"""
from __future__ import annotations

import argparse
import math
import re
import time

import numba
import numpy as np
from scipy import special

from common import median_seconds
from graphjit.backend.cpu import vmath

FUNCTIONS = {  # name: (math function, NumPy function, input range)
    "exp": (math.exp, np.exp, (-80.0, 80.0)),
    "log": (math.log, np.log, (1e-3, 1e3)),
    "log1p": (math.log1p, np.log1p, (-0.9, 100.0)),
    "tanh": (math.tanh, np.tanh, (-10.0, 10.0)),
    "erf": (math.erf, special.erf, (-5.0, 5.0)),
}


def make_loop(fn):
    @numba.njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])
    return loop


_PACKED = re.compile(r"\bv(?:fn?m(?:add|sub)\d+|mul|add|sub|div)p[sd]\s+[^\n]*%[yz]mm")


def vectorised(loop) -> bool:
    """Whether the compiled loop does packed arithmetic on 256/512-bit registers."""
    return bool(_PACKED.search(loop.inspect_asm(loop.signatures[0])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4_000_000)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    print(f"numba {numba.__version__}, numpy {np.__version__}, N = {args.n}, "
          f"median of {args.repeats} runs")
    print(f"{'dtype':8}{'fn':7}{'math.* loop':>13}{'vmath loop':>13}{'numpy':>11}"
          f"{'ns/elem':>9}{'vs math':>9}{'vs numpy':>10}  vectorised  compile")
    for dtype in (np.float32, np.float64):
        dt_name = np.dtype(dtype).name
        for name, (math_fn, np_fn, (lo, hi)) in FUNCTIONS.items():
            x = rng.uniform(lo, hi, args.n).astype(dtype)
            out = np.empty_like(x)
            scalar_loop = make_loop(math_fn)
            vec_loop = make_loop(getattr(vmath, vmath.vectorised_call(f"math.{name}", dt_name)))
            scalar_loop(x, out)
            t0 = time.perf_counter()
            vec_loop(x, out)
            compile_s = time.perf_counter() - t0
            t_math = median_seconds(lambda: scalar_loop(x, out), args.repeats)
            t_vec = median_seconds(lambda: vec_loop(x, out), args.repeats)
            t_np = median_seconds(lambda: np_fn(x, out=out), args.repeats)
            print(f"{dt_name:8}{name:7}{t_math * 1e3:10.2f} ms{t_vec * 1e3:10.2f} ms"
                  f"{t_np * 1e3:8.2f} ms{t_vec / args.n * 1e9:9.3f}"
                  f"{t_math / t_vec:8.1f}x{t_np / t_vec:9.1f}x"
                  f"  {'yes' if vectorised(vec_loop) else 'NO':10}  {compile_s:.2f} s")


if __name__ == "__main__":
    main()
