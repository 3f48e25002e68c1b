"""The CPU backend against the reference interpreter (``ir.run_graph``) on random inputs.

Numba compilation is the slow part, so a few large graphs (every op, many shapes each) are
compiled once per module and checked on fresh random data; shapes stay tiny.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from graphjit import dtypes
from graphjit.ops import composite, scan, window
from graphjit.backend import source
from graphjit.backend.cpu import compile_graph, emitter_for, generate
from graphjit.backend.cpu.native import (buffer_view_in_python, load_address_in_python,
                                        object_addresses, run_kernel_in_python,
                                        run_row_in_python)
from graphjit.errors import GraphjitError
from graphjit.ir import Graph, GraphBuilder, parse_graph, run_graph, verify
from graphjit.ir.printer import format_node, value_names
from graphjit.ops import all_ops, api, registry
from graphjit.ops.index import build_key
from graphjit.shapes import TensorType, numel
from graphjit.testing import assert_close, make_array

F32, F64, I64, B8 = dtypes.float32, dtypes.float64, dtypes.int64, dtypes.bool_
ALL = ("s", None, None, None)  # the index-key entry of a full slice
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# The backend must match the reference interpreter this closely (transcendentals come from
# different libraries, and sums add in a different order).
TOLERANCE = {"float32": (1e-5, 1e-6), "float64": (1e-12, 1e-12)}


# ---- harness --------------------------------------------------------------------------------

class Built:
    """A graph and, per non-const input, how to draw a random value for it."""

    def __init__(self, graph, domains):
        self.graph = graph
        self.domains = domains

    def inputs(self, rng):
        out = []
        for v in self.graph.inputs:
            if v.role == "const":
                continue
            domain = self.domains[v.name]
            if callable(domain):
                out.append(np.asarray(domain(rng, v.shape), dtype=v.dtype.np))
            else:
                out.append(make_array(rng, v.shape, domain, v.dtype))
        return out


def build(name, specs, body) -> Built:
    """``specs``: ``(name, shape, dtype, domain[, role])`` per input; ``body(*values)`` runs
    under a GraphBuilder and returns outputs, or ``(outputs, [(input, new value), ...])``.
    A domain is a ``graphjit.testing`` domain name or ``fn(rng, shape) -> array``."""
    g = Graph(name)
    values, domains = [], {}
    for spec in specs:
        vname, shape, dtype, domain = spec[:4]
        values.append(g.add_input(TensorType(tuple(shape), dtype), vname,
                                  spec[4] if len(spec) > 4 else "arg"))
        domains[vname] = domain
    with registry.interpreter(GraphBuilder(g)):
        result = body(*values)
    outputs, updates = result if isinstance(result, tuple) else (result, [])
    g.outputs, g.updates = list(outputs), list(updates)
    verify(g)
    return Built(g, domains)


def integers(low, high):
    """A domain of int64 values in [low, high)."""
    return lambda rng, shape: rng.integers(low, high, size=shape)


def check_program(program, graph, inputs):
    """Run ``program`` and ``run_graph`` on ``inputs``: every output and update must match,
    with the right dtype and shape, and the inputs must come back unchanged."""
    saved = [np.array(a, copy=True) for a in inputs]
    outs, ups = program(inputs)
    for i, (a, b) in enumerate(zip(inputs, saved)):
        np.testing.assert_array_equal(a, b, err_msg=f"the program modified input {i}")
    ref_outs, ref_ups = run_graph(graph, saved)
    assert len(outs) == len(ref_outs) and len(ups) == len(ref_ups)
    names = value_names(graph)
    pairs = [(f"output {i}", v, a, e)
             for i, (v, a, e) in enumerate(zip(graph.outputs, outs, ref_outs))]
    pairs += [(f"update of %{t.name}", v, a, e)
              for (t, v), a, e in zip(graph.updates, ups, ref_ups)]
    for label, v, actual, expected in pairs:
        what = format_node(v.node, names) if v.node is not None else f"input %{v.name}"
        assert isinstance(actual, np.ndarray), f"{label} ({what}) is a {type(actual).__name__}"
        assert actual.dtype == v.dtype.np and actual.shape == tuple(v.shape), f"{label} ({what})"
        rtol, atol = TOLERANCE.get(v.dtype.name, (0.0, 0.0))
        assert_close(actual, expected, rtol=rtol, atol=atol,
                     msg=lambda text, label=label, what=what: f"{label} ({what}):\n{text}")
    return outs, ups


def run_generated_as_python(graph, inputs):
    """Run the generated module with Numba's JIT disabled: the same source, as plain Python
    (slow, but no compile time, so many small graphs can be checked)."""
    generated = generate(graph)
    namespace = {}
    saved, numba.config.DISABLE_JIT = numba.config.DISABLE_JIT, True
    try:
        exec(compile(generated.source, f"<{graph.name}>", "exec"), namespace)
    finally:
        numba.config.DISABLE_JIT = saved
    given = iter(inputs)
    args = [np.ascontiguousarray(graph.constants[v] if v.role == "const" else next(given))
            for v in generated.params]
    args = [a.reshape(-1) for a in args]
    args += [np.empty(n, dt.np) for n, dt in generated.result_buffers + generated.slots]
    # The driver's address table holds the kernels themselves, and run_kernel calls them
    # ([Kernel calls by address] in graphjit/backend/cpu/native.py); its buffers are views
    # made by ctypes from their arrays' addresses ([Driver arguments] there).
    namespace["run_kernel"] = run_kernel_in_python
    namespace["buffer_view"] = buffer_view_in_python
    namespace["load_address"] = load_address_in_python
    namespace["run_row"] = run_row_in_python
    kernels = [namespace[name] for name, _, _ in generated.kernel_table]
    namespace[generated.driver_name](object_addresses(args), kernels)
    results = [args[j].copy() if copy else args[j] for j, copy in generated.returns]
    return [r.reshape(v.shape) for r, v in zip(results, generated.results)]


def random_index_keys(rng, count):
    """Random advanced-index keys (NumPy-valid ones only) over a [4, 5, 3] tensor."""
    entries = [("t",), ("t",), ("s", None, None, None), ("s", 1, None, 2), ("s", None, None, -1),
               ("s", -2, 0, -1), ("i", 1), ("i", -1), ("n",), ("e",)]
    shapes = [(2, 3), (3,), (1, 3), (), (2, 1)]
    probe = np.zeros((4, 5, 3))
    found = []
    while len(found) < count:
        key, idx_shapes = [], []
        for _ in range(rng.integers(1, 5)):
            entry = entries[rng.integers(len(entries))]
            if entry[0] == "t":
                entry = ("t", len(idx_shapes))
                idx_shapes.append(shapes[rng.integers(len(shapes))])
            key.append(entry)
        if not idx_shapes:
            continue
        try:
            out_shape = probe[build_key(key, [np.zeros(s, np.int64) for s in idx_shapes])].shape
        except IndexError:
            continue
        found.append((tuple(key), idx_shapes, out_shape))
    return found


def iota(shape, dim, dtype):
    return registry.bind(registry.get("iota"), shape=tuple(shape), dim=dim, dtype=dtype)


# ---- graphs -----------------------------------------------------------------------------------

def elementwise_graph(dt) -> Built:
    """Every elementwise op in dtype ``dt`` (plus int64 and bool variants), with broadcasting."""
    other = F64 if dt is F32 else F32
    specs = [("x", (3, 4), dt, "real"), ("y", (4,), dt, "real"), ("z", (3, 1), dt, "nonzero"),
             ("p", (3, 4), dt, "positive"), ("u", (3, 4), dt, "unit"), ("c", (3, 4), B8, None),
             ("n", (3, 4), I64, "real"), ("m", (4,), I64, "nonzero"),
             ("w", (4,), dt, "real", "param")]

    def body(x, y, z, p, u, c, n, m, w):
        outs = [
            api.exp(x), api.log(p), api.log1p(u), api.sqrt(p), api.rsqrt(p), api.sin(x),
            api.cos(x), api.tanh(x), api.sigmoid(x), api.erf(x), api.relu(x),
            api.leaky_relu(x, 0.2), api.gelu(x), api.gelu(x, approximate="tanh"), api.silu(x),
            api.softplus(x, beta=2.0, threshold=1.0), api.clamp(x, -0.5, 0.5),
            api.clamp(x, min=-0.3), api.clamp(x, max=0.1), api.clamp(x, -math.inf, 0.25),
            api.abs(x), api.sign(z), api.neg(x), api.pow(x, 2), api.pow(x, 3), api.pow(p, 0.5),
            api.pow(p, -1.5), api.pow(p, x), api.detach(x), api.clone(x),
            # binary, broadcast every way
            api.add(x, y), api.sub(z, y), api.mul(x, z), api.div(x, z), api.maximum(x, y),
            api.minimum(z, x), api.add(x, 2.5), api.sub(1.0, x), api.div(y, 3.0),
            # comparisons, where, casts from and to this dtype
            api.lt(x, y), api.le(x, z), api.gt(y, z), api.eq(api.sign(z), z),
            api.where(c, x, y), api.where(api.gt(x, 0.0), x, 0.0),
            api.cast(x, I64), api.cast(x, B8), api.cast(c, dt), api.cast(n, dt), api.cast(x, other),
            api.full((2, 3), 1.5, dt), api.full((2,), -math.inf, dt), iota((3, 2), 0, dt),
            composite.floor(api.mul(x, 3.0)), composite.ceil(api.mul(x, 3.0)),
            composite.round(api.mul(x, 3.0)), composite.trunc(api.mul(x, 3.0)),
        ]
        if dt is F32:  # int64 and bool ops do not depend on the float dtype: test them once
            outs += [
                api.eq(n, m), api.ne(n, m), api.ge(n, 0), api.logical_and(c, api.lt(x, y)),
                api.logical_or(c, api.gt(x, 0.5)), api.logical_not(c),
                api.add(c, api.lt(x, 0.0)), api.mul(c, api.lt(x, 0.0)),
                api.cast(c, I64), api.cast(n, B8), api.add(n, m), api.sub(n, m), api.mul(n, m),
                api.neg(n), api.abs(n), api.sign(n), api.relu(n), api.maximum(n, m),
                api.minimum(n, 1), api.clamp(n, -2, 3), api.pow(n, 2), api.full((), 7, I64),
                api.full((2, 2), True, B8), iota((2, 3, 4), 1, I64), iota((5,), 0, I64),
            ]
        return outs, [(w, api.sub(w, api.mul(y, 0.1)))]

    return build(f"elementwise_{dt.short}", specs, body)


def reduce_linalg_shape_graph() -> Built:
    """Reductions over dim tuples with and without keepdim, matmul shapes, movement ops."""
    specs = [("x", (2, 3, 4), F32, "distinct"), ("d", (2, 3, 4), F64, "distinct"),
             ("n", (2, 3, 4), I64, "real"), ("b", (2, 3, 4), B8, None),
             ("a2", (3, 4), F32, "real"), ("b2", (4, 5), F32, "real"),
             ("a3", (2, 3, 4), F32, "real"), ("b3", (2, 4, 5), F32, "real"),
             ("a4", (2, 1, 3, 4), F32, "real"), ("b4", (3, 4, 5), F32, "real"),
             ("ai", (3, 4), I64, "real"), ("bi", (2, 4, 5), I64, "real"),
             ("a64", (2, 3, 4), F64, "real"), ("b64", (4, 2), F64, "real"),
             ("ae", (3, 0), F32, "real"), ("be", (0, 2), F32, "real"),
             ("s", (3, 1), F32, "real"), ("x2", (2, 2, 4), F32, "real"),
             ("g", (2, 2, 2), F32, "real"), ("seed", (), I64, integers(-2**62, 2**62)),
             ("offset", (), I64, integers(0, 2**40))]

    def body(x, d, n, b, a2, b2, a3, b3, a4, b4, ai, bi, a64, b64, ae, be, s, x2, g, seed,
             offset):
        return [
            api.sum(x), api.sum(x, 0), api.sum(x, 1, keepdim=True), api.sum(x, 2),
            api.sum(x, (0, 2), keepdim=True), api.sum(x, (1, 2)), api.sum(x, (0, 1)),
            api.sum(d, (0, 2)), api.sum(d, 2, keepdim=True), api.sum(n, 1), api.sum(b, (0, 2)),
            api.sum(n, ()), api.sum(api.reshape(x, (2, 1, 12)), 1),
            api.amax(x, 1), api.amax(x, (0, 2), keepdim=True), api.amax(d), api.amin(x, 2),
            api.amin(n, (0, 1)), api.amin(d, 0, keepdim=True), api.amax(n, 2),
            api.argmax(x), api.argmax(x, 0), api.argmax(x, 1, keepdim=True), api.argmax(d, 2),
            api.argmax(n, 1), api.argmax(n, keepdim=True),
            api.matmul(a2, b2), api.matmul(a3, b3), api.matmul(a4, b4), api.matmul(a2, b3),
            api.matmul(a3, b2), api.matmul(ai, bi), api.matmul(a64, b64), api.matmul(ae, be),
            api.matmul(api.transpose(a3, 1, 2), a3),
            api.reshape(x, (6, 4)), api.permute(x, (2, 0, 1)), api.permute(d, (1, 0, 2)),
            api.expand(s, (2, 3, 4)), api.expand(api.reshape(s, (3,)), (2, 3)),
            api.slice_(x, (0, 1, 0), (2, 3, 4), (1, 1, 2)),
            api.slice_(n, (1, 0, 1), (2, 3, 4), (1, 2, 2)),
            api.getitem(x, (slice(None), 2)),
            api.slice_backward(g, (2, 3, 4), (0, 1, 0), (2, 3, 4), (1, 1, 2)),
            api.cat([x, x2], 1), api.cat([x, x], 0), api.cat([x, x2, x], 1),
            api.cat([n, n], 2), api.stack([a2, a2], 1),
            # sliding windows: padding (-inf for max pooling), stride, dilation
            window.unfold(a4, (2, 3), (1, 1), (1, 2), (1, 0, 2, 1), -math.inf),
            window.unfold(api.reshape(d, (1, 2, 3, 4)), (2, 2), (1, 2), (2, 1), (0, 1, 0, 0)),
            window.fold(window.unfold(api.reshape(x, (1, 2, 3, 4)), (2, 2), (1, 1), (1, 1), (1, 1, 0, 1)), (3, 4),
                        (2, 2), (1, 1), (1, 1), (1, 1, 0, 1)),
            window.fold(window.unfold(api.reshape(d, (1, 2, 3, 4)), (2, 3), (1, 1), (2, 2), (0, 1, 1, 1)), (3, 4),
                        (2, 3), (1, 1), (2, 2), (0, 1, 1, 1)),
            # random numbers: a partial last block, both dtypes
            registry.bind(registry.get("rand_uniform"), seed, offset, shape=(3, 5),
                          dtype=F32),
            registry.bind(registry.get("rand_uniform"), seed, offset, shape=(2, 4),
                          dtype=F64),
        ]

    return build("reduce_linalg_shape", specs, body)


def _specials(rng, shape):
    """Ties, NaNs, infinities and both zeros: what a sort must order as NumPy does."""
    return rng.choice([np.nan, -np.inf, np.inf, -0.0, 0.0, 1.0, -1.0, 2.0], size=shape)


def scan_graph() -> Built:
    """cumsum (both directions), prod (over dim tuples, with zeros) and argsort (both
    orders, ties, NaN) along every dim, in every dtype, 0-d and size-1 dims too."""
    specs = [("x", (2, 3, 4), F32, "real"), ("d", (2, 3, 4), F64, "real"),
             ("n", (2, 3, 4), I64, "real"), ("b", (2, 3, 4), B8, None),
             ("w", (3, 5), F64, _specials), ("z", (2, 3), F64, integers(-1, 2)),
             ("s", (), F32, "real")]

    def body(x, d, n, b, w, z, s):
        outs = [scan.cumsum(s, 0), scan.bind_prod(s, (), False), scan.argsort(s, 0),
                scan.argsort(api.reshape(x, (2, 1, 12)), 1), scan.bind_prod(z, (1,), True),
                scan.bind_prod(z, (0, 1), False), scan.bind_prod(d, (0, 2), False)]
        for dim in range(3):
            for v in (x, d, n, b):
                outs += [scan.cumsum(v, dim), scan.cumsum(v, dim, reverse=True),
                         scan.bind_prod(v, (dim,), dim == 1)]
            for v in (x, d, n):
                outs += [scan.argsort(v, dim), scan.argsort(v, dim, descending=True)]
        for dim in range(2):
            outs += [scan.argsort(w, dim), scan.argsort(w, dim, descending=True)]
        return outs

    return build("scans", specs, body)


def index_graph() -> Built:
    """Every advanced-index key shape, gather, and index_backward with repeated indices."""
    specs = [("x", (4, 5, 6), F32, "real"), ("x2", (4, 5), F32, "real"),
             ("idx", (3,), I64, integers(-4, 4)), ("idx2", (2, 3), I64, integers(-4, 4)),
             ("tg", (4,), I64, integers(0, 5)), ("gi", (4, 3), I64, integers(0, 5)),
             ("rep", (5,), I64, integers(0, 2)), ("n", (4, 5, 6), I64, "real"),
             ("g1", (5, 5, 6), F32, "real"), ("g2", (2, 3, 5), F32, "real"),
             ("g3", (4, 3, 1, 6), F32, "real")]

    def body(x, x2, idx, idx2, tg, gi, rep, n, g1, g2, g3):
        ar = api.constant(np.arange(4, dtype=np.int64))  # a const input of the graph
        gx = api.getitem
        return [
            gx(x, idx), gx(x2, (ar, tg)), gx(x, (slice(None), idx)),
            gx(x, (idx, slice(None), idx2)),            # separated: advanced dims go first
            gx(x, (idx2, idx)),                         # adjacent, broadcast [2,3] with [3]
            gx(x, (Ellipsis, idx)), gx(x, (None, idx, Ellipsis, 1)), gx(x, (1, slice(None), idx)),
            gx(x, (idx, 1)), gx(x, (slice(None), None, idx2)), gx(x, (slice(None, None, -1), idx)),
            gx(x, (slice(3, 0, -2), idx, slice(1, 5, 2))), gx(x, idx2), gx(x, (-1, idx)),
            gx(x, (idx, Ellipsis, idx)), gx(n, (idx2, slice(None), idx)),
            api.gather(x2, 1, gi),
            api.index_backward(g1, (4, 5, 6), [rep], (("t", 0),)),
            api.index_backward(g2, (4, 5, 6), [idx2, idx], (("t", 0), ALL, ("t", 1))),
            api.index_backward(g3, (4, 5, 6), [idx], (ALL, ("t", 0), ("n",), ("e",))),
        ]

    return build("indexing", specs, body)


def fused_elementwise_graph(dtype):
    """The elementwise graph with chains added (each op's result fed through two more ops of
    its own shape, so every op lands inside a fused body), then fused. Returns (Built, the
    graph before fusion): the reference runs the unfused graph."""
    from passes.fuse import fuse

    built = elementwise_graph(dtype)
    g = built.graph
    with registry.interpreter(GraphBuilder(g)):
        chained = []
        for v in g.outputs:
            if v.dtype.is_floating_point:
                chained.append(api.add(api.mul(v, 0.5), v))
            else:
                chained.append(api.logical_not(api.logical_not(v)) if v.dtype is B8 else
                               api.add(api.mul(v, 2), v))
    g.outputs = chained
    verify(g)
    before = copy_graph(g)
    fuse(g)
    verify(g)
    return Built(g, built.domains), before


def gemm_graph():
    """Linear-layer products, forward and backward, run through fuse and gemm: transposes
    folded into the products, bias + ReLU and the ReLU mask + bias-gradient sum as
    epilogues. Returns (Built, the graph before the passes)."""
    from passes.dce import dce
    from passes.fuse import fuse
    from graphjit.ops.window import unfold
    from passes.gemm import gemm

    specs = [("x", (6, 8), F32, "real"), ("w", (5, 8), F32, "real"), ("b", (5,), F32, "real"),
             ("g", (6, 5), F32, "real"), ("xd", (4, 3), F64, "real"), ("wd", (3, 2), F64, "real"),
             # (small integers: the products over 1152 windows are exact in float32, so
             # the chunked kernel's order of summation cannot show against the reference)
             ("img", (2, 3, 26, 26), F32, integers(-2, 3)), ("cw", (4, 27), F32, integers(-2, 3)),
             ("cg", (4, 2 * 24 * 24), F32, integers(-2, 3))]

    def body(x, w, b, g, xd, wd, img, cw, cg):
        h = api.relu(api.add(api.matmul(x, api.transpose(w, 0, 1)), b))
        gz = api.where(api.gt(x, 0.0), api.matmul(g, w), 0.0)            # [6,8]
        gw = api.transpose(api.matmul(api.transpose(g, 0, 1), x), 0, 1)  # (g.T x).T: [8,5]
        # a convolution's product and weight gradient over its windows: window_gemm nodes
        cols = api.reshape(unfold(img, (3, 3), layout="CN"), (27, 2 * 24 * 24))
        return [h, gz, api.sum(gz, 0), gw, api.tanh(api.matmul(xd, wd)),
                api.matmul(api.transpose(wd, 0, 1), api.transpose(xd, 0, 1)),
                api.tanh(api.matmul(cw, cols)), api.matmul(cg, api.transpose(cols, 0, 1))]

    built = build("gemms", specs, body)
    before = copy_graph(built.graph)
    dce(gemm(fuse(built.graph)))
    verify(built.graph)
    return built, before


def copy_graph(g):
    from graphjit.ir import print_graph
    copy = parse_graph(print_graph(g))
    copy.constants = {v: g.constants[w] for v, w in zip(copy.inputs, g.inputs) if w.role == "const"}
    return copy


# ---- fixtures (one compile per graph per module) ------------------------------------------------

@pytest.fixture(scope="module", params=["float32", "float64"])
def fused_elementwise(request):
    built, before = fused_elementwise_graph(dtypes.from_name(request.param))
    return built, before, compile_graph(built.graph)

@pytest.fixture(scope="module", params=["float32", "float64"])
def elementwise(request):
    built = elementwise_graph(dtypes.from_name(request.param))
    return built, compile_graph(built.graph)


@pytest.fixture(scope="module")
def reductions():
    built = reduce_linalg_shape_graph()
    return built, compile_graph(built.graph)


@pytest.fixture(scope="module")
def scans():
    built = scan_graph()
    return built, compile_graph(built.graph)


@pytest.fixture(scope="module")
def indexing():
    built = index_graph()
    return built, compile_graph(built.graph)


# ---- coverage -----------------------------------------------------------------------------------

def _never_emitted() -> set:
    """``grad`` (expanded by passes/autodiff), and ops that passes/decompose always replaces
    before code generation and that have no emitter of their own (custom_function). (Each
    target's emitters: tests/backend/test_targets.py.)"""
    return {"grad"} | {name for name, op in all_ops().items()
                       if op.decompose is not None and emitter_for(op) is None}


def test_the_test_graphs_cover_every_op():
    used = set()
    for built in (elementwise_graph(F32), reduce_linalg_shape_graph(), index_graph(),
                  fused_elementwise_graph(F32)[0], gemm_graph()[0], scan_graph()):
        used |= {n.op.name for n in built.graph.nodes}
    # (The collectives' kernels run in tests/distributed, under mpiexec.)
    assert set(all_ops()) - used == _never_emitted() | {"all_reduce", "broadcast"}


def test_products_fold_transposes_and_take_epilogues_and_match_the_reference(rng):
    built, before = gemm_graph()
    ops = [n.op.name for n in built.graph.nodes]
    assert "permute" not in ops and "matmul" not in ops, ops
    epilogues = [n.attrs["epilogue"] for n in built.graph.nodes if n.op.name == "gemm"]
    assert any("relu" in e for e in epilogues)                 # bias + ReLU
    assert any("sum(" in e and "where(" in e for e in epilogues)  # mask + bias gradient
    program = compile_graph(built.graph)
    for _ in range(2):
        check_program(program, before, built.inputs(rng))


def test_grad_request_is_rejected_with_a_clear_error():
    g = parse_graph("""graph f(%x: f32[3] {arg}) {
      %0 = sum(%x, dims=[0], keepdim=false) : f32[]
      %1 = grad(%0, %x) : f32[3]
      return %1
    }""")
    with pytest.raises(GraphjitError, match="autodiff"):
        compile_graph(g)


# ---- numbers ------------------------------------------------------------------------------------

def test_elementwise_matches_reference(elementwise, rng):
    built, program = elementwise
    for _ in range(2):
        check_program(program, built.graph, built.inputs(rng))


def test_fused_elementwise_matches_the_unfused_reference(fused_elementwise, rng):
    built, before, program = fused_elementwise
    # The chains became (parts of) fused nodes; chains reading the same inputs share one,
    # up to the size cap of a loop (passes/fuse.MAX_MEMBERS).
    assert len(built.graph.nodes) < len(before.nodes) / 2
    assert sum(len(n.outs) > 1 for n in built.graph.nodes) >= 1
    for _ in range(2):
        check_program(program, before, built.inputs(rng))


def test_reductions_matmul_and_movement_match_reference(reductions, rng):
    built, program = reductions
    for _ in range(2):
        check_program(program, built.graph, built.inputs(rng))


def test_argmax_takes_the_first_maximum(reductions):
    built, program = reductions
    inputs = built.inputs(np.random.default_rng(0))
    names = [v.name for v in built.graph.inputs]
    inputs[names.index("n")] = np.zeros((2, 3, 4), dtype=np.int64)  # all ties
    check_program(program, built.graph, inputs)


def test_scans_and_sorts_match_reference_bit_for_bit(scans, rng):
    # Sequential sums and products in NumPy's order, stable sorts: exact, not just close.
    built, program = scans
    for _ in range(2):
        inputs = built.inputs(rng)
        outs, _ = check_program(program, built.graph, inputs)
        for got, want in zip(outs, run_graph(built.graph, inputs)[0]):
            np.testing.assert_array_equal(got, want)


def test_indexing_matches_reference(indexing, rng):
    built, program = indexing
    for _ in range(3):
        check_program(program, built.graph, built.inputs(rng))


@pytest.mark.parametrize("bad", [4, -5, 100])
def test_out_of_range_index_raises(indexing, rng, bad):
    built, program = indexing
    inputs = built.inputs(rng)
    names = [v.name for v in built.graph.inputs if v.role != "const"]
    inputs[names.index("idx")][1] = bad
    with pytest.raises(IndexError, match=r"out of range \[-4, 4\) for dim 0"):
        program(inputs)


def test_ir_text_with_roles_and_updates():
    header = ("graph step(%x: f32[8,4] {arg}, %w: f32[3,4] {param}, %b: f32[3] {param}, "
              "%y: i64[8] {arg}, %lr: f32[] {hyper}) {")
    g = parse_graph(header + """
      %0 = permute(%w, dims=[1, 0]) : f32[4,3]
      %1 = matmul(%x, %0) : f32[8,3]
      %2 = add(%1, %b) : f32[8,3]
      %3 = gelu(%2, approximate='tanh') : f32[8,3]
      %4 = clamp(%3, max=none, min=-inf) : f32[8,3]
      %5 = full(dtype=f32, shape=[], value=0.5) : f32[]
      %6 = mul(%4, %5) : f32[8,3]
      %7 = sum(%6, dims=[0, 1], keepdim=false) : f32[]
      %8 = index(%6, %y, key=[['t', 0], ['s', none, none, none]]) : f32[8,3]
      %9 = mul(%b, %lr) : f32[3]
      %10 = sub(%b, %9) : f32[3]
      return %7, %8, %x
      update %b <- %10
      update %w <- %w
    }""")
    verify(g)
    program = compile_graph(g)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((8, 4)).astype(np.float32),
              rng.standard_normal((3, 4)).astype(np.float32),
              rng.standard_normal(3).astype(np.float32), rng.integers(0, 8, 8),
              np.asarray(0.1, dtype=np.float32)]
    outs, ups = check_program(program, g, inputs)
    # Results never share memory with the inputs (the runtime writes updates into them).
    assert not np.shares_memory(outs[2], inputs[0]) and not np.shares_memory(ups[1], inputs[1])
    assert outs[0].shape == () and len(ups) == 2


def test_generated_index_code_on_random_keys():
    rng = np.random.default_rng(7)
    for key, idx_shapes, out_shape in random_index_keys(rng, 120):
        specs = [("x", (4, 5, 3), F32, "real"), ("g", out_shape, F32, "real")]
        specs += [(f"i{k}", s, I64, integers(-3, 3)) for k, s in enumerate(idx_shapes)]
        built = build("key", specs, lambda x, g, *idx: [
            api.index(x, idx, key), api.index_backward(g, (4, 5, 3), idx, key)])
        inputs = built.inputs(rng)
        expected, _ = run_graph(built.graph, inputs)
        for actual, wanted in zip(run_generated_as_python(built.graph, inputs), expected):
            assert_close(actual, wanted, rtol=1e-6, atol=1e-6,
                         msg=lambda text: f"key {key} with index shapes {idx_shapes}:\n{text}")


# ---- the program's interface ------------------------------------------------------------------

def test_wrong_inputs_name_the_input(elementwise, rng):
    built, program = elementwise
    inputs = built.inputs(rng)
    bad = list(inputs)
    bad[1] = np.zeros(5, dtype=inputs[1].dtype)
    with pytest.raises(ValueError, match=r"%y expects .*\[4\].*got .*\[5\]"):
        program(bad)
    bad = list(inputs)
    bad[0] = inputs[0].astype(np.float16)
    with pytest.raises(TypeError, match=r"%x expects .*float16"):
        program(bad)
    with pytest.raises(ValueError, match="takes 9 inputs"):
        program(inputs[:-1])


def test_non_contiguous_and_read_only_inputs(reductions, rng):
    built, program = reductions
    inputs = built.inputs(rng)
    x = np.asfortranarray(inputs[0])
    x.flags.writeable = False
    inputs[0] = x
    check_program(program, built.graph, inputs)


def test_source_is_a_numba_module_on_disk(reductions):
    built, program = reductions
    src = program.source
    assert "@njit(" in src and "@kernel" in src and "def k0_sum(" in src
    assert "run_graph" not in src and ".impl" not in src
    # What runs: the program module at program.path, importing each kernel from its own
    # module ([Kernel modules] in codegen.py); ``source`` shows their texts as one module.
    generated = generate(built.graph)
    with open(program.path, encoding="utf-8") as f:
        assert f.read() == generated.module_source
    for text in generated.kernel_sources:
        name = source.module_file_name(text, "kernel")
        with open(os.path.join(os.path.dirname(program.path), name), encoding="utf-8") as f:
            assert f.read() == text
        assert f"# {name}\n" in src and text.split("):\n", 1)[1] in src
    # Each kernel is introduced by the IR line it implements.
    names = value_names(built.graph)
    assert f"# {format_node(built.graph.nodes[0], names)}\n@kernel\ndef k0_sum(" in src
    # One kernel per node, except reshapes (free) and nodes that share an identical kernel.
    assert src.count("\n@kernel\n") < len(built.graph.nodes)
    assert "def run_reduce_linalg_shape(" in src and src.count("@njit(") == 1


def test_identical_nodes_share_a_kernel():
    built = build("shared", [("x", (2, 3), F32, "real"), ("y", (2, 3), F32, "real")],
                  lambda x, y: [api.exp(x), api.exp(y), api.add(api.exp(x), y)])
    src = generate(built.graph).source
    assert src.count("@kernel\ndef k") == 2 and "#   also runs %1 = exp(%y)" in src


def test_compiling_again_reuses_the_module(reductions):
    built, program = reductions
    again = compile_graph(built.graph)
    assert again.path == program.path and again._driver is program._driver


def test_compiled_program_is_cached_across_processes(tmp_path, monkeypatch):
    # NOTE: the same graph text, compiled in this process, then loaded from the cache
    # by a new process (GRAPHJIT_CACHE_DIR keeps both in a fresh folder).
    text = textwrap.dedent("""\
        graph cached(%x: f32[3,4] {arg}, %y: f32[4] {arg}) {
          %0 = mul(%x, %y) : f32[3,4]
          %1 = tanh(%0) : f32[3,4]
          %2 = sum(%1, dims=[1], keepdim=false) : f32[3]
          return %2
        }""")
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path))
    first = compile_graph(parse_graph(text))
    assert first.path.startswith(str(tmp_path))
    script = textwrap.dedent(f"""
        import numpy as np
        from graphjit.ir import parse_graph, run_graph
        from graphjit.backend.cpu import compile_graph
        g = parse_graph({text!r})
        p = compile_graph(g)
        x, y = np.ones((3, 4), np.float32), np.arange(4, dtype=np.float32)
        assert np.allclose(p([x, y])[0][0], run_graph(g, [x, y])[0][0])
        print(p.path, sum(p.dispatcher.stats.cache_misses.values()), p._driver is not p.dispatcher)
    """)
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=str(tmp_path),
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # Nothing compiled: the driver's machine code came from its bundle ([Bundled drivers]),
    # made when this process compiled it (test_disk_cache.py loads it from Numba's cache).
    path, misses, bundled = done.stdout.split()
    assert path == first.path and int(misses) == 0 and bundled == "True"


def test_every_node_of_the_test_graphs_has_a_cost():
    """The cost model (used by the dump tool's report) answers for every op and attribute set."""
    for built in (elementwise_graph(F32), reduce_linalg_shape_graph(), index_graph(),
                  fused_elementwise_graph(F32)[0], scan_graph()):
        for n in built.graph.nodes:
            flops, moved = n.op.cost(n.out_type, *[v.type for v in n.inputs], **n.attrs)
            written = sum(numel(v.shape) * v.dtype.itemsize for v in n.outs)
            assert flops >= 0 and moved >= written, n.op.name


def test_results_the_caller_holds_are_never_overwritten_and_free_ones_are_reused(rng):
    g = parse_graph("""graph f(%x: f32[64] {arg}) {
      %0 = exp(%x) : f32[64]
      %1 = neg(%0) : f32[64]
      %2 = sin(%1) : f32[64]
      %3 = matmul(%1, %1) : f32[]
      return %2, %3
    }""".replace("matmul(%1, %1) : f32[]", "sum(%1, dims=[0], keepdim=false) : f32[]"))
    program = compile_graph(g)
    assert "np.empty" not in program.source and "np.zeros" not in program.source
    x1, x2 = rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)
    (a1, s1), _ = program([x1])
    kept = a1.copy()
    (a2, _), _ = program([x2])
    np.testing.assert_array_equal(a1, kept)  # still held: a fresh array for the second call
    assert not np.shares_memory(a1, a2)
    view = a2[3:]
    del a2
    (a3, _), _ = program([x1])
    assert not np.shares_memory(a3, view)    # a view of it is alive: not reused either
    np.testing.assert_allclose(a3, np.sin(-np.exp(x1)), rtol=1e-5, atol=1e-6)
    address = a3.__array_interface__["data"][0]
    del a3
    (a4, _), _ = program([x2])
    assert a4.__array_interface__["data"][0] == address  # let go of: reused
    np.testing.assert_allclose(a4, np.sin(-np.exp(x2)), rtol=1e-5, atol=1e-6)
