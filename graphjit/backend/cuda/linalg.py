"""matmul on CUDA: 16 x 16 tiles of both operands staged in shared memory (4 x 4 on the
simulator, see [Launch sizes] in runtime.py), batches on the grid's third axis with
broadcast batch offsets (core/linalg.py)."""
from __future__ import annotations

from ...shapes import numel
from ..core.linalg import batch_strides, matmul_sizes
from ..core.literals import literal, np_type
from . import runtime
from .kernel import emits, offset, unflatten


@emits("matmul")
def emit_matmul(node, k) -> None:
    a, b = node.inputs
    m, kk, n, batch = matmul_sizes(node)
    if numel(node.out.shape) == 0:
        k.no_kernel = True
        return
    if kk == 0:
        k.fill(literal(0, node.out.dtype))  # a sum over nothing
        k.no_kernel = True
        return
    t = runtime.tile()
    nb, mt, nt = numel(batch), -(-m // t), -(-n // t)
    cap = runtime.max_blocks()
    k.launch((min(nt, cap), min(mt, cap), min(nb, 65535, cap)), (t, t))
    dt = np_type(node.out.dtype)
    zero = literal(0, node.out.dtype)
    sa, sb = batch_strides(a, b, batch, m, kk, n)
    ta, tb = k.fresh("ta"), k.fresh("tb")
    k.line(f"{ta} = cuda.shared.array(({t}, {t}), {dt})")
    k.line(f"{tb} = cuda.shared.array(({t}, {t}), {dt})")
    tx, ty = k.fresh("tx"), k.fresh("ty")
    k.line(f"{tx} = cuda.threadIdx.x")
    k.line(f"{ty} = cuda.threadIdx.y")
    z, bi, bj = k.fresh("z"), k.fresh("bi"), k.fresh("bj")
    with k.block(f"for {z} in range(cuda.blockIdx.z, {nb}, cuda.gridDim.z):"):
        idx = unflatten(k, z, batch, list(range(len(batch))))
        a0, b0 = k.fresh("a0"), k.fresh("b0")
        k.line(f"{a0} = {offset(idx, sa)}")
        k.line(f"{b0} = {offset(idx, sb)}")
        with k.block(f"for {bi} in range(cuda.blockIdx.y, {mt}, cuda.gridDim.y):"), \
                k.block(f"for {bj} in range(cuda.blockIdx.x, {nt}, cuda.gridDim.x):"):
            i, j, acc, p0, p = (k.fresh("i"), k.fresh("j"), k.fresh("acc"), k.fresh("p0"),
                                k.fresh("p"))
            k.line(f"{i} = {bi} * {t} + {ty}")
            k.line(f"{j} = {bj} * {t} + {tx}")
            k.line(f"{acc} = {zero}")
            with k.block(f"for {p0} in range(0, {kk}, {t}):"):
                with k.block(f"if {i} < {m} and {p0} + {tx} < {kk}:"):
                    k.line(f"{ta}[{ty}, {tx}] = {k.ins[0]}[{a0} + {i} * {kk} + {p0} + {tx}]")
                with k.block("else:"):
                    k.line(f"{ta}[{ty}, {tx}] = {zero}")
                with k.block(f"if {p0} + {ty} < {kk} and {j} < {n}:"):
                    k.line(f"{tb}[{ty}, {tx}] = {k.ins[1]}[{b0} + ({p0} + {ty}) * {n} + {j}]")
                with k.block("else:"):
                    k.line(f"{tb}[{ty}, {tx}] = {zero}")
                k.line("cuda.syncthreads()")
                with k.block(f"for {p} in range({t}):"):
                    k.line(f"{acc} += {ta}[{ty}, {p}] * {tb}[{p}, {tx}]")
                k.line("cuda.syncthreads()")
            with k.block(f"if {i} < {m} and {j} < {n}:"):
                k.line(f"{k.out}[{z} * {m * n} + {i} * {n} + {j}] = {acc}")
