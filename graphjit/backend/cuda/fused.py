"""Fused bodies on CUDA (and elementwise ops and lone reductions, as one-step bodies).

The body's layout and the writing of its steps are the CPU's (core/fused.py); what differs
is how the domain is walked:

- no reduction: one thread per element of the domain, intermediate values in registers;
- reductions (a lone sum/amax/amin too, whose reduced dims are innermost or outermost):
  one block per row of the domain (the kept dims), its threads striding over the row's
  elements. The passes of ``step_phases`` run in order; each pass's reductions are
  per-thread accumulators folded by a tree in shared memory (``syncthreads`` between
  levels), whose root every thread then reads, so the per-row steps after it
  (``1 / sum``) and the next pass see the row's value. Column reductions (beside row
  ones) and totals combine into their result with atomics, the result filled with the
  identity first.
"""
from __future__ import annotations

from ...ir.fused import REDUCTIONS
from ...ir.graph import Graph
from ...shapes import numel
from ..core.fused import ELEM, INV, ROW, BodyWriter, FusedLayout, domain_strides
from ..core.literals import np_type
from ..core.reduce import combine, identity
from . import runtime
from .kernel import cuda_scalar, emits, grid_stride, unflatten


def single_op_body(node) -> Graph:
    """A one-step body for an elementwise op or a lone reduction (so both share the fused
    kernels)."""
    g = Graph("body")
    ins = [g.add_input(v.type, f"i{j}", "arg") for j, v in enumerate(node.inputs)]
    g.outputs = [g.add_node(node.op, ins, dict(node.attrs), node.out_type)]
    return g


@emits("fused")
def emit_fused(node, k) -> None:
    _emit(k, FusedLayout.of(node, rows="kept"))


def emit_body(k, body) -> None:
    """The kernel of a body graph (``single_op_body``)."""
    _emit(k, FusedLayout(body, rows="kept"))


def _identity(step) -> str:
    return identity(step.op.name, step.out.dtype)


def _emit(k, layout) -> None:
    b = BodyWriter(layout, k, cuda_scalar, suffix="_")
    body = layout.body
    if numel(layout.dom) == 0:
        # Nothing to compute; a reduction over no elements is its identity.
        for s in body.nodes:
            if s.op.name in REDUCTIONS and s.out in b.outs_of:
                for j, v in enumerate(body.outputs):
                    if v is s.out:
                        k.fill(_identity(s), j)
        k.no_kernel = True
        return
    level = layout.levels(per_thread=True)
    # Invariant steps: once per thread, before any loop.
    for s in body.nodes:
        if level[s] == INV:
            b.compute(s)
    first = "cuda.grid(1) == 0"
    for s in body.nodes:
        if level[s] == INV:
            b.store(s.out, guard=first)
    if layout.dims is None:
        _emit_map(k, b, level)
    else:
        _emit_rows(k, b, level)


def _emit_map(k, b, level) -> None:
    dom, steps = b.layout.dom, b.layout.body.nodes
    if not any(level[s] == ELEM for s in steps):
        k.launch((1,), (1,))  # one element: the invariant steps did it
        return
    e, loop = grid_stride(k, numel(dom), runtime.threads())
    with loop, b.scope():
        b.var = unflatten(k, e, dom, list(range(len(dom))))
        for s in steps:
            if level[s] == ELEM:
                b.compute(s)
        for s in steps:
            if level[s] == ELEM:
                b.store(s.out)


def _emit_rows(k, b, level) -> None:
    layout = b.layout
    dom, steps, phase = layout.dom, layout.body.nodes, layout.phase
    rows = numel([dom[d] for d in layout.row_dims])
    length = numel([dom[d] for d in layout.elem_dims])
    threads = runtime.reduction_threads(length)
    k.launch((runtime.grid_for(rows, 1),), (threads,))
    reductions = [s for s in steps if s.op.name in REDUCTIONS]
    tree = [s for s in reductions if not layout.is_column(s)]
    passes = max(phase[s] for s in steps if level[s] == ELEM or s in reductions) + 1
    tid = k.fresh("tid")
    k.line(f"{tid} = cuda.threadIdx.x")
    shared = {}
    for s in tree:
        shared[s] = k.fresh(f"sm{layout.index[s]}_")
        k.line(f"{shared[s]} = cuda.shared.array({threads}, {np_type(s.out.dtype)})")
    for j, v in enumerate(layout.body.outputs):
        if v.node in reductions and (layout.is_column(v.node) or layout.is_total(v.node)):
            k.fill(_identity(v.node), j)
    q = k.fresh("q")
    leader = f"{tid} == 0"
    with k.block(f"for {q} in range(cuda.blockIdx.x, {rows}, cuda.gridDim.x):"), b.scope():
        b.var = unflatten(k, q, dom, layout.row_dims)
        row_idx = dict(b.var)
        for p in range(passes + 1):
            # Per-row steps whose inputs are ready before pass p (after the last pass: those
            # that read its reductions).
            for s in steps:
                if level[s] == ROW and s.op.name not in REDUCTIONS and phase[s] == p:
                    b.compute(s)
                    b.store(s.out, guard=leader)
            if p == passes:
                break
            here = [s for s in reductions if phase[s] == p]
            acc = _row_pass(k, b, level, p, here, row_idx, threads, tid)
            b.var = row_idx
            mine = [s for s in here if not layout.is_column(s)]
            if mine:
                _tree(k, b, mine, acc, shared, threads, tid, leader)


def _row_pass(k, b, level, p, here, row_idx, threads, tid) -> dict:
    """Pass ``p`` over a row, each thread striding over its elements: the element steps of
    the pass, its stores, and the reductions ``here`` into per-thread accumulators (column
    ones into their results, by atomics). Returns the accumulators."""
    layout = b.layout
    dom, steps, phase = layout.dom, layout.body.nodes, layout.phase
    length = numel([dom[d] for d in layout.elem_dims])
    acc = {}
    for s in here:
        acc[s] = k.fresh(f"acc{layout.index[s]}_")
        k.line(f"{acc[s]} = {_identity(s)}")
    j = k.fresh("j")
    with k.block(f"for {j} in range({tid}, {length}, {threads}):"), b.scope():
        b.var = dict(row_idx)
        b.var.update(unflatten(k, j, dom, layout.elem_dims))
        saved = dict(b.names)
        for s in steps:
            if level[s] == ELEM and phase[s] <= p:
                b.compute(s)
        for s in steps:
            if level[s] == ELEM and phase[s] == p:
                b.store(s.out)
        for s in here:
            value = b.operand(s.inputs[0], dom)
            if s.inputs[0].dtype is not s.out.dtype:
                value = f"{np_type(s.out.dtype)}({value})"
            if layout.is_column(s):
                st = domain_strides(s.out.shape, s.out.shape, dom, layout.cols)
                for out in b.outs_of.get(s.out, ()):
                    _atomic_combine(k, s, out, b.offset(st), value)
            else:
                for text in combine(s.op.name, acc[s], value):
                    k.line(text)
        b.names = saved
    return acc


def _tree(k, b, mine, acc, shared, threads, tid, leader) -> None:
    """The block's per-thread accumulators of the row reductions ``mine`` folded by a tree
    in shared memory; every thread reads the root; the row's results stored (totals
    combined by atomics)."""
    layout = b.layout
    for s in mine:
        k.line(f"{shared[s]}[{tid}] = {acc[s]}")
    k.line("cuda.syncthreads()")
    half = threads // 2
    while half >= 1:
        with k.block(f"if {tid} < {half}:"):
            for s in mine:
                a, other = f"{shared[s]}[{tid}]", f"{shared[s]}[{tid} + {half}]"
                mine_var = k.fresh("v")
                k.line(f"{mine_var} = {other}")
                k.line(f"{acc[s]} = {a}")
                for text in combine(s.op.name, acc[s], mine_var):
                    k.line(text)
                k.line(f"{a} = {acc[s]}")
        k.line("cuda.syncthreads()")
        half //= 2
    for s in mine:
        var = k.fresh(f"t{layout.index[s]}_")
        k.line(f"{var} = {shared[s]}[0]")
        b.names[s.out] = var
    k.line("cuda.syncthreads()")  # every thread has read the roots before reuse
    for s in mine:
        if layout.is_total(s):
            for out in b.outs_of.get(s.out, ()):
                with k.block(f"if {leader}:"):
                    _atomic_combine(k, s, out, "0", b.names[s.out])
        else:
            b.store(s.out, guard=leader)


_ATOMIC = {"sum": "add", "amax": "max", "amin": "min"}


def _atomic_combine(k, step, out: str, index: str, value: str) -> None:
    """Combine ``value`` into ``out[index]`` with the atomic of the reduction ``step``.
    Float max/min propagate NaN, as the CPU's do: numba's atomic max/min leave the old
    value when either is NaN, so a NaN is stored plainly instead, and an atomic max/min
    after it keeps it (its compare-and-swap loop sees the NaN and stops)."""
    atomic = f"cuda.atomic.{_ATOMIC[step.op.name]}"
    if step.op.name == "sum" or not step.out.dtype.is_floating_point:
        k.line(f"{atomic}({out}, {index}, {value})")
        return
    v = k.fresh("a")
    k.line(f"{v} = {value}")
    with k.block(f"if {v} != {v}:"):
        k.line(f"{out}[{index}] = {v}")
    with k.block("else:"):
        k.line(f"{atomic}({out}, {index}, {v})")
