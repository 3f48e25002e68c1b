"""Reference executor: runs a Graph node by node with each op's NumPy ``impl``.

``run_graph`` is the oracle the backends are tested against, and a debugging aid.
``Interpreter`` runs the same way, planned once per graph: it is the first tier of a
compiled CPU program, which runs while the native code compiles (see [Tiered execution] in
graphjit/backend/cpu/tiered.py).
"""
from __future__ import annotations

import numpy as np


def run_graph(graph, inputs):
    """Run ``graph`` on NumPy arrays (one per non-const input, in order).

    Returns ``(outputs, updates)``: a list of arrays, and a list of arrays in the order of
    ``graph.updates``. Nothing is written back.
    """
    env = {}
    args = iter(inputs)
    for v in graph.inputs:
        if v.role == "const":
            env[v] = graph.constants[v]
        else:
            arr = np.asarray(next(args))
            if arr.shape != tuple(v.shape) or arr.dtype != v.dtype.np:
                raise ValueError(f"input %{v.name} expects {v.type}, got {arr.dtype}{list(arr.shape)}")
            env[v] = arr
    with np.errstate(all="ignore"):
        for n in graph.nodes:
            results = n.op.impl(*[env[v] for v in n.inputs], **n.attrs)
            if len(n.outs) == 1:
                results = (results,)
            for v, out in zip(n.outs, results):
                env[v] = np.asarray(out).astype(v.dtype.np, copy=False)
    return [env[v] for v in graph.outputs], [env[v] for _, v in graph.updates]


# NOTE: [Planned interpretation]
# ``Interpreter`` is ``run_graph`` planned once per graph, for running the same graph many
# times (the first tier of a compiled program, graphjit/backend/cpu/tiered.py): every value
# gets a position in a list instead of a dict entry, each node's function is chosen once
# (a fused node's or gemm's body is parsed and typed once, not at every call), and a value
# is dropped after its last reader, so peak memory follows the graph's liveness rather than
# holding every temporary. The numbers are run_graph's: the same ``impl`` of every op and
# step, in the same order, with the same casts to each value's dtype.

class Interpreter:
    """``Interpreter(graph).run(inputs)`` is ``run_graph(graph, inputs)``, faster on repeated
    calls. ``checks``: ``{node: check(*input arrays)}``, run before that node's own work
    (a backend's run-time errors: see graphjit/backend/cpu/tiered.py)."""

    def __init__(self, graph, checks=None):
        checks = checks or {}
        self.graph = graph
        at = {}
        self._inputs = []  # (position, value) of the non-const inputs
        self._consts = []  # (position, array)
        for v in graph.inputs:
            at[v] = len(at)
            if v.role == "const":
                self._consts.append((at[v], np.asarray(graph.constants[v], dtype=v.dtype.np)))
            else:
                self._inputs.append((at[v], v))
        for n in graph.nodes:
            for v in n.outs:
                at[v] = len(at)
        self._size = len(at)
        kept = {at[v] for v in graph.outputs} | {at[v] for _, v in graph.updates}
        last_use = {}
        for i, n in enumerate(graph.nodes):
            for v in n.inputs:
                last_use[at[v]] = i
        dropped = [[] for _ in graph.nodes]
        for pos, i in last_use.items():
            if pos not in kept:
                dropped[i].append(pos)
        self._steps = [(node_function(n), [at[v] for v in n.inputs],
                        [(at[v], v.dtype.np) for v in n.outs], dropped[i], checks.get(n))
                       for i, n in enumerate(graph.nodes)]
        self._outputs = [at[v] for v in graph.outputs]
        self._updates = [at[v] for _, v in graph.updates]

    def run(self, inputs):
        """``(outputs, updates)`` as ``run_graph`` returns them."""
        env = [None] * self._size
        inputs = list(inputs)
        if len(inputs) != len(self._inputs):
            raise ValueError(f"graph {self.graph.name} takes {len(self._inputs)} inputs, got "
                             f"{len(inputs)}")
        for (pos, v), arr in zip(self._inputs, inputs):
            arr = np.asarray(arr)
            if arr.shape != tuple(v.shape) or arr.dtype != v.dtype.np:
                raise ValueError(f"input %{v.name} expects {v.type}, got {arr.dtype}{list(arr.shape)}")
            env[pos] = arr
        for pos, arr in self._consts:
            env[pos] = arr
        with np.errstate(all="ignore"):
            for fn, ins, outs, dropped, check in self._steps:
                args = [env[p] for p in ins]
                if check is not None:
                    check(*args)
                results = fn(*args)
                if len(outs) == 1:
                    results = (results,)
                for (pos, dtype), out in zip(outs, results):
                    env[pos] = np.asarray(out).astype(dtype, copy=False)
                for pos in dropped:
                    env[pos] = None
        return [env[p] for p in self._outputs], [env[p] for p in self._updates]


def node_function(node):
    """``fn(*input arrays) -> result (or tuple of results)`` computing ``node`` with the ops'
    NumPy implementations; a fused node's or gemm's body is prepared here, once."""
    op, attrs = node.op, dict(node.attrs)
    if op.name == "fused":
        return _body_function(node.attrs["body"], [v.type for v in node.inputs])
    if op.name == "gemm":
        return _gemm_function(node)
    impl = op.impl
    if not attrs:
        return impl
    return lambda *arrays: impl(*arrays, **attrs)


def _body_function(body, input_types):
    """A fused body (see [Fused nodes] in fused.py) as a function of its input arrays:
    ``fused``'s own ``impl``, with the body parsed and typed once."""
    from .fused import body_graph
    g = body_graph(body, input_types)
    at = {v: j for j, v in enumerate(g.inputs)}
    for n in g.nodes:
        at[n.out] = len(at)
    steps = [(n.op.impl, [at[v] for v in n.inputs], dict(n.attrs), at[n.out], n.out.dtype.np)
             for n in g.nodes]
    results = [at[v] for v in g.outputs]
    size = len(at)

    def run(*arrays):
        env = list(arrays) + [None] * (size - len(arrays))
        for impl, ins, attrs, out, dtype in steps:
            env[out] = np.asarray(impl(*[env[p] for p in ins], **attrs)).astype(dtype, copy=False)
        found = [env[p] for p in results]
        return found[0] if len(found) == 1 else tuple(found)
    return run


def _gemm_function(node):
    """A gemm node (see [GEMM nodes] in gemm.py): the product of the (transposed) operands,
    then its epilogue body over the product and the extra inputs."""
    from .gemm import product_type
    a, b = node.inputs[0], node.inputs[1]
    trans_a, trans_b = node.attrs["trans_a"], node.attrs["trans_b"]
    epilogue = node.attrs["epilogue"]
    body = None
    if epilogue:
        product = product_type(a.type, b.type, trans_a, trans_b)
        body = _body_function(epilogue, [product] + [v.type for v in node.inputs[2:]])

    def run(a, b, *extras):
        p = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
        return body(p, *extras) if body is not None else p
    return run
