"""CUDA kernels per node: the emitters, and the ``CudaKernelWriter`` they write through.

# NOTE: [CUDA kernels]
Buffers are flat 1-D device arrays, as on the CPU ([Flat buffers] in backend/cpu/kernel.py):
shapes live in the index arithmetic, ``reshape`` and ``detach`` are the input's buffer. Each
kernel is a ``@cuda.jit`` function ``k(in0, ..., out)`` whose loops are grid-stride loops
(see [Launch sizes] in runtime.py), so the launch sizes are a speed choice only:

- elementwise ops and fused bodies without a reduction: one thread per element of the
  domain. Each step is its op's ``OpDef.scalar`` expression (the CPU's text, with
  ``math.*`` left to libdevice), intermediate values in registers;
- fused bodies with reductions (and lone sum/amax/amin whose reduced dims are innermost or
  outermost): one block per row of the domain (the kept dims), its threads striding over
  the row's elements. The passes of ``step_phases`` run in order; each pass's reductions
  are per-thread accumulators folded by a tree in shared memory (``syncthreads`` between
  levels), whose root every thread then reads, so the per-row steps after it (``1 / sum``)
  and the next pass see the row's value. Column reductions (beside row ones) and totals
  combine into their result with atomics, the result filled with the identity first;
- matmul: 16 x 16 tiles of both operands staged in shared memory, batches on the grid's
  third axis (broadcast batch offsets);
- index / index_backward: one thread per gathered element; index_backward adds with
  atomics (repeated indices accumulate). An index out of range cannot raise inside a
  kernel: the thread sets the program's ``err`` flag to the error code of the index
  tensor holding it (one code per index tensor of each node, numbered by codegen.py;
  unless an earlier flag is set: the first error is the one reported, as on the CPU,
  which names the tensor too), and the driver
  checks the flag before the first kernel that writes into an input's buffer (an
  in-place update), or the program after the last launch, and raises the IndexError, so a
  failing step leaves every tensor as it was (see codegen.py, program.py);
- shape ops (permute, expand, slice, slice_backward, cat), iota, argmax and reductions over
  middle dims: one thread per result element, its source found by index arithmetic.
"""
from __future__ import annotations

from ...errors import GraphjitError
from ...ir.fused import (REDUCTIONS, body_graph, column_dims, domain, reduction_layout,
                         reduced_dims, step_phases, total_dims)
from ...ir.graph import Graph
from ...ops.index import describe_key
from ...shapes import numel
from ..cpu.elementwise import scalar_expression, typed_expression
from ..cpu.fused import _domain_strides, _split
from ..cpu.index import index_plan
from ..cpu.loops import affine, broadcast_strides, c_strides, literal, max_value, min_value, np_type
from ..cpu.reduce import combine
from ..writer import Namer, SourceWriter
from . import runtime

EMITTERS: dict = {}
# Names a kernel module defines at top level; kernel locals must not shadow them.
MODULE_GLOBALS = ("math", "np", "cuda", "k")
ALIAS_OPS = ("reshape", "detach")


def emits(*op_names):
    def register(fn):
        for name in op_names:
            EMITTERS[name] = fn
        return fn
    return register


def emitter_for(op):
    if op.name in EMITTERS:
        return EMITTERS[op.name]
    if op.kind == "elementwise" and op.scalar is not None:
        return emit_elementwise
    return None


class CudaKernelWriter:
    """The kernel being written for one node: parameters, body, launch sizes, and what the
    driver does around it (fill a result first, no kernel at all)."""

    def __init__(self, node, name: str):
        self.node = node
        self.name = name
        self.ins = [f"in{i}" for i in range(len(node.inputs))]
        self.outs = ["out"] if len(node.outs) == 1 else [f"out{j}" for j in range(len(node.outs))]
        self.code = SourceWriter(indent=1)
        self.grid = (1,)
        self.block = (1,)
        self.alias_of = None     # the output is input i's buffer (no kernel)
        self.fills = {}          # output position -> literal the driver fills it with first
        self.no_kernel = False   # the fills (or nothing) compute the node
        # The IndexError messages this kernel may flag, one per index tensor it checks: the
        # kernel flags ERROR_BASE + position (from 1); codegen numbers them (see NOTE).
        self.errors = []
        self._names = Namer(list(MODULE_GLOBALS) + self.ins + self.outs + ["err"])

    @property
    def out(self) -> str:
        return self.outs[0]

    def line(self, text: str = "") -> None:
        self.code.line(text)

    def block_(self, header: str):
        return self.code.block(header)

    def fresh(self, hint: str) -> str:
        return self._names.fresh(hint)

    def launch(self, grid, block) -> None:
        self.grid, self.block = tuple(grid), tuple(block)

    @property
    def params(self) -> list:
        return self.ins + self.outs + (["err"] if self.errors else [])

    @property
    def body(self) -> str:
        return self.code.text() if self.code.lines else "    pass\n"


def unflatten(k, flat: str, shape, dims) -> dict:
    """Lines setting one index variable per dim in ``dims`` (of ``shape``) from ``flat``,
    the C-order position over those dims; size-1 dims get None."""
    idx = {}
    sizes = [shape[d] for d in dims]
    for pos, d in enumerate(dims):
        if shape[d] == 1:
            idx[d] = None
            continue
        inner = numel(sizes[pos + 1:])
        outermost = all(shape[e] == 1 for e in dims[:pos])
        expr = flat if inner == 1 else f"{flat} // {inner}"
        if not outermost:
            expr = f"({expr}) % {shape[d]}"
        var = k.fresh(f"i{d}_")
        k.line(f"{var} = {expr}")
        idx[d] = var
    return idx


def offset(idx: dict, strides, base: int = 0) -> str:
    return affine(base, [(idx.get(d), st) for d, st in enumerate(strides)])


def grid_stride(k, work: int, block: int, hint: str = "e"):
    """``for e in range(first, work, step):`` over one thread per work item."""
    k.launch((runtime.grid_for(work, block),), (block,))
    var = k.fresh(hint)
    return var, k.block_(f"for {var} in range(cuda.grid(1), {work}, cuda.gridsize(1)):")


# ---- elementwise and fused bodies ------------------------------------------------------------

def single_op_body(node) -> Graph:
    """A one-step body for an elementwise op or a lone reduction (so both share the fused
    kernels)."""
    g = Graph("body")
    ins = [g.add_input(v.type, f"i{j}", "arg") for j, v in enumerate(node.inputs)]
    g.outputs = [g.add_node(node.op, ins, dict(node.attrs), node.out_type)]
    return g


def emit_elementwise(node, k) -> None:
    emit_body(k, single_op_body(node))


@emits("fused")
def emit_fused(node, k) -> None:
    emit_body(k, body_graph(node.attrs["body"], [v.type for v in node.inputs]))


INV, ROW, ELEM = 0, 1, 2

# Ops whose registry scalar expression (the CPU kernels') does not suit CUDA kernels, with
# the text used instead. sign: ``(x > 0) - (x < 0)`` subtracts bools, which Numba's CUDA
# target allows but its simulator (NumPy bool scalars) rejects; the branches give the same
# values, and NaN for NaN as NumPy's sign does.
CUDA_SCALAR = {
    "sign": lambda x: f"(1 if {x} > 0 else (-1 if {x} < 0 else {x}))",
}


def cuda_scalar_expression(step, operands) -> str:
    """The step's scalar expression for a CUDA kernel: the op's ``OpDef.scalar`` text (or
    ``CUDA_SCALAR``'s), literals typed, ``math.*`` left to libdevice."""
    custom = CUDA_SCALAR.get(step.op.name)
    if custom is None:
        return scalar_expression(step, operands, vectorise=False)
    compute = step.inputs[-1].dtype if step.inputs else step.out.dtype
    return typed_expression(custom(*operands, **step.attrs), compute, vectorise=False)


class _Body:
    def __init__(self, k, body):
        self.k, self.body = k, body
        self.dom = tuple(domain(body))
        self.dims = reduced_dims(body)
        self.cols = column_dims(body)
        self.total = total_dims(body)
        # A block per row: the rows are the kept dims, a row's elements the reduced ones,
        # whichever end of the domain they are at. (The CPU's ``_split`` puts the reduced
        # dims first for an "outer" layout, its loop order there: not the rows here.)
        if self.dims is not None:
            self.row_dims, self.elem_dims = _split(self.dom, self.dims, "inner")
        else:
            self.row_dims, self.elem_dims = [], list(range(len(self.dom)))
        self.inputs = {v: i for i, v in enumerate(body.inputs)}
        self.outs_of = {}
        for v, out in zip(body.outputs, k.outs):
            self.outs_of.setdefault(v, []).append(out)
        self.names = {}
        self.loaded = [{}]
        self.idx = {}
        self.level = self._levels()

    def _reduces(self, step, dims) -> bool:
        return (dims is not None and step.op.name in REDUCTIONS
                and tuple(sorted(step.attrs["dims"])) == dims)

    def kind(self, step) -> str:
        """"row", "column" or "total" for a reduction step."""
        if self._reduces(step, self.cols):
            return "column"
        if self._reduces(step, self.total) and self.total != self.dims:
            return "total"
        return "row"

    def strides(self, v, read_as):
        return _domain_strides(v.shape, read_as, self.dom, self.dims)

    def read_as(self, step):
        return self.dom if step.op.name in REDUCTIONS else tuple(step.out.shape)

    def _levels(self) -> dict:
        level = {}
        elem = set(self.elem_dims)
        outputs = set(self.body.outputs)
        for s in self.body.nodes:
            if s.op.name in REDUCTIONS:
                level[s] = ROW
                continue
            lv = INV
            for v in s.inputs:
                if v.node is not None:
                    lv = max(lv, level[v.node])
                else:
                    st = self.strides(v, self.read_as(s))
                    if any(st[d] for d in elem):
                        lv = ELEM
                    elif any(st):
                        lv = max(lv, ROW)
            if tuple(s.out.shape) == self.dom and numel(self.dom) > 1 and (lv > INV or s.out in outputs):
                lv = ELEM
            level[s] = lv
        return level

    # ---- code ---------------------------------------------------------------------------

    def operand(self, v, read_as) -> str:
        if v.node is not None:
            return self.names[v]
        key = (self.inputs[v], self.strides(v, read_as))
        for scope in self.loaded:
            if key in scope:
                return scope[key]
        var = self.k.fresh(f"x{key[0]}_")
        self.k.line(f"{var} = {self.k.ins[key[0]]}[{offset(self.idx, key[1])}]")
        self.loaded[-1][key] = var
        return var

    def compute(self, step) -> None:
        operands = [self.operand(v, self.read_as(step)) for v in step.inputs]
        if step.op.name == "expand":
            self.names[step.out] = operands[0]
            return
        expr = cuda_scalar_expression(step, operands)
        if step.out.dtype.is_floating_point:
            expr = f"{np_type(step.out.dtype)}({expr})"
        var = self.k.fresh(f"t{self.body.nodes.index(step)}_")
        self.k.line(f"{var} = {expr}")
        self.names[step.out] = var

    def store(self, v, guard: str | None = None) -> None:
        outs = self.outs_of.get(v, ())
        if not outs:
            return
        if tuple(v.shape) == self.dom:
            st = c_strides(self.dom)
        elif v.node is not None and self.kind(v.node) == "column":
            st = _domain_strides(v.shape, v.shape, self.dom, self.cols)
        else:
            st = _domain_strides(v.shape, v.shape, self.dom, self.dims)
        lines = [f"{out}[{offset(self.idx, st)}] = {self.names[v]}" for out in outs]
        if guard:
            with self.k.block_(f"if {guard}:"):
                for text in lines:
                    self.k.line(text)
        else:
            for text in lines:
                self.k.line(text)

    def scope(self):
        body = self

        class _Scope:
            def __enter__(self):
                body.loaded.append({})

            def __exit__(self, *exc):
                body.loaded.pop()
        return _Scope()


def emit_body(k, body) -> None:
    b = _Body(k, body)
    if numel(b.dom) == 0:
        # Nothing to compute; a reduction over no elements is its identity.
        for s in body.nodes:
            if s.op.name in REDUCTIONS and s.out in b.outs_of:
                for j, v in enumerate(body.outputs):
                    if v is s.out:
                        k.fills[j] = _identity(s)
        k.no_kernel = True
        return
    steps = body.nodes
    # Invariant steps: once per thread, before any loop.
    for s in steps:
        if b.level[s] == INV:
            b.compute(s)
    first = "cuda.grid(1) == 0"
    for s in steps:
        if b.level[s] == INV:
            b.store(s.out, guard=first)
    if b.dims is None:
        _emit_map(k, b)
    else:
        _emit_rows(k, b)


def _emit_map(k, b) -> None:
    n = numel(b.dom)
    if not any(b.level[s] == ELEM for s in b.body.nodes):
        k.launch((1,), (1,))  # one element: the invariant steps did it
        return
    e, loop = grid_stride(k, n, runtime.threads())
    with loop, b.scope():
        b.idx = unflatten(k, e, b.dom, list(range(len(b.dom))))
        for s in b.body.nodes:
            if b.level[s] == ELEM:
                b.compute(s)
        for s in b.body.nodes:
            if b.level[s] == ELEM:
                b.store(s.out)


def _identity(step) -> str:
    if step.op.name == "sum":
        return literal(0, step.out.dtype)
    return min_value(step.out.dtype) if step.op.name == "amax" else max_value(step.out.dtype)


def _emit_rows(k, b) -> None:
    rows = numel([b.dom[d] for d in b.row_dims])
    length = numel([b.dom[d] for d in b.elem_dims])
    threads = runtime.reduction_threads(length)
    k.launch((runtime.grid_for(rows, 1),), (threads,))
    steps = b.body.nodes
    phase = step_phases(steps, b.dom)
    reductions = [s for s in steps if s.op.name in REDUCTIONS]
    tree = [s for s in reductions if b.kind(s) != "column"]
    passes = max(phase[s] for s in steps if b.level[s] == ELEM or s in reductions) + 1
    tid = k.fresh("tid")
    k.line(f"{tid} = cuda.threadIdx.x")
    shared = {}
    for s in tree:
        shared[s] = k.fresh(f"sm{steps.index(s)}_")
        k.line(f"{shared[s]} = cuda.shared.array({threads}, {np_type(s.out.dtype)})")
    for j, v in enumerate(b.body.outputs):
        if v.node in reductions and b.kind(v.node) != "row":
            k.fills[j] = _identity(v.node)
    q = k.fresh("q")
    leader = f"{tid} == 0"
    with k.block_(f"for {q} in range(cuda.blockIdx.x, {rows}, cuda.gridDim.x):"), b.scope():
        b.idx = unflatten(k, q, b.dom, b.row_dims)
        row_idx = dict(b.idx)
        for p in range(passes + 1):
            # Per-row steps whose inputs are ready before pass p (after the last pass: those
            # that read its reductions).
            for s in steps:
                if b.level[s] == ROW and s.op.name not in REDUCTIONS and phase[s] == p:
                    b.compute(s)
                    b.store(s.out, guard=leader)
            if p == passes:
                break
            here = [s for s in reductions if phase[s] == p]
            acc = {}
            for s in here:
                acc[s] = k.fresh(f"acc{steps.index(s)}_")
                k.line(f"{acc[s]} = {_identity(s)}")
            j = k.fresh("j")
            with k.block_(f"for {j} in range({tid}, {length}, {threads}):"), b.scope():
                b.idx = dict(row_idx)
                b.idx.update(unflatten(k, j, b.dom, b.elem_dims))
                saved = dict(b.names)
                for s in steps:
                    if b.level[s] == ELEM and phase[s] <= p:
                        b.compute(s)
                for s in steps:
                    if b.level[s] == ELEM and phase[s] == p:
                        b.store(s.out)
                for s in here:
                    value = b.operand(s.inputs[0], b.dom)
                    if s.inputs[0].dtype is not s.out.dtype:
                        value = f"{np_type(s.out.dtype)}({value})"
                    if b.kind(s) == "column":
                        st = _domain_strides(s.out.shape, s.out.shape, b.dom, b.cols)
                        for out in b.outs_of.get(s.out, ()):
                            _atomic_combine(k, s, out, offset(b.idx, st), value)
                    else:
                        for text in combine(s.op.name, acc[s], value):
                            k.line(text)
                b.names = saved
            b.idx = row_idx
            mine = [s for s in here if b.kind(s) != "column"]
            if not mine:
                continue
            for s in mine:
                k.line(f"{shared[s]}[{tid}] = {acc[s]}")
            k.line("cuda.syncthreads()")
            half = threads // 2
            while half >= 1:
                with k.block_(f"if {tid} < {half}:"):
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
                var = k.fresh(f"t{steps.index(s)}_")
                k.line(f"{var} = {shared[s]}[0]")
                b.names[s.out] = var
            k.line("cuda.syncthreads()")  # every thread has read the roots before reuse
            for s in mine:
                if b.kind(s) == "total":
                    for out in b.outs_of.get(s.out, ()):
                        with k.block_(f"if {leader}:"):
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
    with k.block_(f"if {v} != {v}:"):
        k.line(f"{out}[{index}] = {v}")
    with k.block_("else:"):
        k.line(f"{atomic}({out}, {index}, {v})")


@emits("sum", "amax", "amin")
def emit_reduce(node, k) -> None:
    x = node.inputs[0]
    dims = tuple(sorted(node.attrs["dims"]))
    if numel(x.shape) == 0 or reduction_layout(tuple(x.shape), dims) is not None:
        emit_body(k, single_op_body(node))
        return
    # Reduced dims in the middle: one thread per result element, looping over its inputs.
    shape = tuple(x.shape)
    kept = [d for d in range(len(shape)) if d not in dims]
    out_n = numel([shape[d] for d in kept])
    xs = c_strides(shape)
    e, loop = grid_stride(k, out_n, runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, kept)
        acc = k.fresh("acc")
        k.line(f"{acc} = {_identity(node)}")
        r = k.fresh("r")
        with k.block_(f"for {r} in range({numel([shape[d] for d in dims])}):"):
            idx.update(unflatten(k, r, shape, list(dims)))
            value = f"{k.ins[0]}[{offset(idx, xs)}]"
            if x.dtype is not node.out.dtype:
                value = f"{np_type(node.out.dtype)}({value})"
            v = k.fresh("v")
            k.line(f"{v} = {value}")
            for text in combine(node.op.name, acc, v):
                k.line(text)
        k.line(f"{k.out}[{e}] = {acc}")


@emits("argmax")
def emit_argmax(node, k) -> None:
    x = node.inputs[0]
    shape, dim = tuple(x.shape), node.attrs["dim"]
    if dim is None:
        shape, dim = (numel(shape),), 0
    dim = dim % len(shape)
    kept = [d for d in range(len(shape)) if d != dim]
    xs = c_strides(shape)
    e, loop = grid_stride(k, numel([shape[d] for d in kept]), runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, kept)
        base = k.fresh("base")
        k.line(f"{base} = {offset(idx, xs)}")
        best, at, r, v = k.fresh("best"), k.fresh("at"), k.fresh("r"), k.fresh("v")
        k.line(f"{best} = {k.ins[0]}[{base}]")
        k.line(f"{at} = 0")
        with k.block_(f"for {r} in range(1, {shape[dim]}):"):
            k.line(f"{v} = {k.ins[0]}[{base} + {r} * {xs[dim]}]")
            # The first maximum, and the first NaN (NumPy's argmax).
            with k.block_(f"if {v} > {best} or ({v} != {v} and {best} == {best}):"):
                k.line(f"{best} = {v}")
                k.line(f"{at} = {r}")
        k.line(f"{k.out}[{e}] = {at}")


# ---- matrix products ---------------------------------------------------------------------------

@emits("matmul")
def emit_matmul(node, k) -> None:
    a, b = node.inputs
    out_shape = tuple(node.out.shape)
    m, kk, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = out_shape[:-2]
    if numel(out_shape) == 0:
        k.no_kernel = True
        return
    if kk == 0:
        k.fills[0] = literal(0, node.out.dtype)
        k.no_kernel = True
        return
    t = runtime.tile()
    nb, mt, nt = numel(batch), -(-m // t), -(-n // t)
    cap = runtime.max_blocks()
    k.launch((min(nt, cap), min(mt, cap), min(nb, 65535, cap)), (t, t))
    dt = np_type(node.out.dtype)
    zero = literal(0, node.out.dtype)
    sa = tuple(s * m * kk for s in broadcast_strides(a.shape[:-2], batch))
    sb = tuple(s * kk * n for s in broadcast_strides(b.shape[:-2], batch))
    ta, tb = k.fresh("ta"), k.fresh("tb")
    k.line(f"{ta} = cuda.shared.array(({t}, {t}), {dt})")
    k.line(f"{tb} = cuda.shared.array(({t}, {t}), {dt})")
    tx, ty = k.fresh("tx"), k.fresh("ty")
    k.line(f"{tx} = cuda.threadIdx.x")
    k.line(f"{ty} = cuda.threadIdx.y")
    z, bi, bj = k.fresh("z"), k.fresh("bi"), k.fresh("bj")
    with k.block_(f"for {z} in range(cuda.blockIdx.z, {nb}, cuda.gridDim.z):"):
        idx = unflatten(k, z, batch, list(range(len(batch))))
        a0, b0 = k.fresh("a0"), k.fresh("b0")
        k.line(f"{a0} = {offset(idx, sa)}")
        k.line(f"{b0} = {offset(idx, sb)}")
        with k.block_(f"for {bi} in range(cuda.blockIdx.y, {mt}, cuda.gridDim.y):"), \
                k.block_(f"for {bj} in range(cuda.blockIdx.x, {nt}, cuda.gridDim.x):"):
            i, j, acc, p0, p = (k.fresh("i"), k.fresh("j"), k.fresh("acc"), k.fresh("p0"),
                                k.fresh("p"))
            k.line(f"{i} = {bi} * {t} + {ty}")
            k.line(f"{j} = {bj} * {t} + {tx}")
            k.line(f"{acc} = {zero}")
            with k.block_(f"for {p0} in range(0, {kk}, {t}):"):
                with k.block_(f"if {i} < {m} and {p0} + {tx} < {kk}:"):
                    k.line(f"{ta}[{ty}, {tx}] = {k.ins[0]}[{a0} + {i} * {kk} + {p0} + {tx}]")
                with k.block_("else:"):
                    k.line(f"{ta}[{ty}, {tx}] = {zero}")
                with k.block_(f"if {p0} + {ty} < {kk} and {j} < {n}:"):
                    k.line(f"{tb}[{ty}, {tx}] = {k.ins[1]}[{b0} + ({p0} + {ty}) * {n} + {j}]")
                with k.block_("else:"):
                    k.line(f"{tb}[{ty}, {tx}] = {zero}")
                k.line("cuda.syncthreads()")
                with k.block_(f"for {p} in range({t}):"):
                    k.line(f"{acc} += {ta}[{ty}, {p}] * {tb}[{p}, {tx}]")
                k.line("cuda.syncthreads()")
            with k.block_(f"if {i} < {m} and {j} < {n}:"):
                k.line(f"{k.out}[{z} * {m * n} + {i} * {n} + {j}] = {acc}")


# ---- gather and scatter ----------------------------------------------------------------------

def _emit_index(node, k, x_shape, idx_types, accumulate: bool) -> None:
    key = node.attrs["key"]
    plan = index_plan(x_shape, key, [t.shape for t in idx_types])
    gathered = tuple(node.inputs[0].shape if accumulate else node.out.shape)
    if plan.shape != gathered:
        raise GraphjitError(f"CUDA backend: planned shape {plan.shape} for key "
                            f"{describe_key(key, idx_types)} on {tuple(x_shape)} differs from the "
                            f"IR's {gathered}", op=node.op.name)
    n = numel(plan.shape)
    if accumulate:
        k.fills[0] = literal(0, node.out.dtype)
    if n == 0:
        k.no_kernel = True
        return
    x_strides, r_strides = c_strides(x_shape), c_strides(plan.shape)
    e, loop = grid_stride(k, n, runtime.threads())
    messages = []
    with loop:
        ridx = unflatten(k, e, plan.shape, list(range(len(plan.shape))))
        by_pos = {p: ridx.get(p) for p in range(len(plan.dims))}
        adv = [by_pos[p] for p, r in enumerate(plan.dims) if r[0] == "adv"]
        terms = []
        bad = k.fresh("bad")  # 0, or the code of the first index tensor out of range
        if plan.arrays:
            k.line(f"{bad} = 0")
        for m, (t, d) in enumerate(plan.arrays, start=1):
            size = x_shape[d]
            bst = broadcast_strides(idx_types[t].shape, plan.bshape)
            var = k.fresh(f"j{t}_")
            k.line(f"{var} = {k.ins[t + 1]}[{affine(0, zip(adv, bst))}]")
            with k.block_(f"if {var} < 0:"):
                k.line(f"{var} += {size}")
            with k.block_(f"if {bad} == 0 and ({var} < 0 or {var} >= {size}):"):
                k.line(f"{bad} = ERROR_BASE + {m}")
            terms.append((var, x_strides[d]))
            messages.append(f"index tensor {t} ({describe_key((('t', t),), idx_types)[1:-1]}) "
                            f"has an index out of range [-{size}, {size}) for dim {d} of a "
                            f"tensor of shape {tuple(x_shape)}")
        for p, r in enumerate(plan.dims):
            if r[0] == "slice":
                terms.append((by_pos[p], r[3] * x_strides[r[1]]))
        start = plan.base + sum(r[2] * x_strides[r[1]] for r in plan.dims if r[0] == "slice")
        x_at = affine(start, terms)
        r_at = affine(0, [(by_pos[p], r_strides[p]) for p in range(len(plan.dims))])
        move = (f"cuda.atomic.add({k.out}, {x_at}, {k.ins[0]}[{r_at}])" if accumulate
                else f"{k.out}[{r_at}] = {k.ins[0]}[{x_at}]")
        if not plan.arrays:
            k.line(move)
        else:
            with k.block_(f"if {bad} == 0:"):
                k.line(move)
            with k.block_("else:"):
                k.line(f"cuda.atomic.cas(err, 0, 0, {bad})")  # the first flag set stays
            k.errors = messages


@emits("index")
def emit_index(node, k) -> None:
    x, *idx = node.inputs
    _emit_index(node, k, tuple(x.shape), [t.type for t in idx], accumulate=False)


@emits("index_backward")
def emit_index_backward(node, k) -> None:
    _, *idx = node.inputs
    _emit_index(node, k, tuple(node.attrs["shape"]), [t.type for t in idx], accumulate=True)


# ---- shape ops, creation -------------------------------------------------------------------------

@emits("reshape", "detach")
def emit_alias(node, k) -> None:
    k.alias_of = 0


def _copy(k, shape, src: str, src_strides, src_base=0, dst=None, dst_strides=None, dst_base=0):
    """``dst[...] = src[...]`` for every element of ``shape``, one thread each."""
    n = numel(shape)
    if n == 0:
        return
    e, loop = grid_stride(k, n, runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, list(range(len(shape))))
        dst = dst or k.out
        to = e if dst_strides is None else offset(idx, dst_strides, dst_base)
        k.line(f"{dst}[{to}] = {src}[{offset(idx, src_strides, src_base)}]")


def _done_if_empty(node, k) -> bool:
    if numel(node.out.shape) == 0:
        k.no_kernel = True
        return True
    return False


@emits("permute")
def emit_permute(node, k) -> None:
    if _done_if_empty(node, k):
        return
    xs = c_strides(node.inputs[0].shape)
    _copy(k, tuple(node.out.shape), k.ins[0], tuple(xs[d] for d in node.attrs["dims"]))


@emits("expand")
def emit_expand(node, k) -> None:
    if _done_if_empty(node, k):
        return
    _copy(k, tuple(node.out.shape), k.ins[0],
          broadcast_strides(node.inputs[0].shape, node.out.shape))


@emits("slice")
def emit_slice(node, k) -> None:
    if _done_if_empty(node, k):
        return
    xs = c_strides(node.inputs[0].shape)
    a = node.attrs
    _copy(k, tuple(node.out.shape), k.ins[0],
          tuple(s * step for s, step in zip(xs, a["steps"])),
          sum(start * s for start, s in zip(a["starts"], xs)))


@emits("slice_backward")
def emit_slice_backward(node, k) -> None:
    k.fills[0] = literal(0, node.out.dtype)
    g = node.inputs[0]
    if numel(g.shape) == 0:
        k.no_kernel = True
        return
    a = node.attrs
    os_ = c_strides(node.out.shape)
    _copy(k, tuple(g.shape), k.ins[0], c_strides(g.shape), 0, k.out,
          tuple(s * step for s, step in zip(os_, a["steps"])),
          sum(start * s for start, s in zip(a["starts"], os_)))


@emits("cat")
def emit_cat(node, k) -> None:
    if _done_if_empty(node, k):
        return
    dim = node.attrs["dim"] % len(node.out.shape)
    os_ = c_strides(node.out.shape)
    at = 0
    biggest = max(numel(v.shape) for v in node.inputs)
    k.launch((runtime.grid_for(biggest, runtime.threads()),), (runtime.threads(),))
    for i, v in enumerate(node.inputs):
        shape = tuple(v.shape)
        n = numel(shape)
        if n:
            e = k.fresh("e")
            with k.block_(f"for {e} in range(cuda.grid(1), {n}, cuda.gridsize(1)):"):
                idx = unflatten(k, e, shape, list(range(len(shape))))
                k.line(f"{k.out}[{offset(idx, os_, at * os_[dim])}] = {k.ins[i]}[{e}]")
        at += shape[dim]


@emits("full")
def emit_full(node, k) -> None:
    k.fills[0] = literal(node.attrs["value"], node.out.dtype)
    k.no_kernel = True


@emits("iota")
def emit_iota(node, k) -> None:
    shape, dim = tuple(node.attrs["shape"]), node.attrs["dim"]
    if _done_if_empty(node, k):
        return
    e, loop = grid_stride(k, numel(shape), runtime.threads())
    with loop:
        inner = numel(shape[dim + 1:])
        value = f"{e} // {inner}" if inner != 1 else e
        k.line(f"{k.out}[{e}] = ({value}) % {shape[dim]}")
