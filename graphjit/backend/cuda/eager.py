"""Eager mode on CUDA tensors: each op runs a compiled single-op program, cached by its
signature (op, attributes, input shapes and dtypes), so ``loss.backward()`` and
``opt.step()`` outside ``@graphjit.compile`` run on the GPU too."""
from __future__ import annotations

import threading

import numpy as np

from ...ir.graph import Graph
from ...shapes import TensorType

_PROGRAMS: dict = {}
_LOCK = threading.Lock()


def _attr_key(value):
    if isinstance(value, (list, tuple)):
        return tuple(_attr_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _attr_key(v)) for k, v in value.items()))
    return (type(value).__name__, value) if isinstance(value, float) else value


def op_graph(op, types, attrs, host=()) -> Graph:
    """The one-node graph eager mode compiles for ``op`` on inputs of ``types``; the inputs
    at positions ``host`` are 0-d CPU tensors, which its kernel takes by value ([Host
    scalars] in graphjit/ir/host.py)."""
    g = Graph(f"eager_{op.name}")
    ins = [g.add_input(t, f"x{j}", "arg") for j, t in enumerate(types)]
    g.host_inputs = [ins[j] for j in host]
    g.outputs = [g.add_node(op, ins, dict(attrs), op.infer(*types, **attrs))]
    return g


def program_for(op, types, attrs, host=()):
    """The compiled program of ``op`` on inputs of ``types`` (TensorTypes) with ``attrs``,
    those at positions ``host`` on the CPU (0-d)."""
    key = (op.name, _attr_key(attrs), tuple((tuple(t.shape), t.dtype.name) for t in types),
           tuple(host))
    program = _PROGRAMS.get(key)
    if program is None:
        from .codegen import compile_graph
        with _LOCK:
            program = _PROGRAMS.get(key)
            if program is None:
                g = op_graph(op, types, attrs, host)
                program = _PROGRAMS[key] = compile_graph(g, name=g.name)
    return program


def run_op(op, arrays, attrs, out_type: TensorType):
    """``op`` on device arrays (and 0-d NumPy arrays, passed to its kernel by value): a
    device array of ``out_type``'s shape. ``reshape`` and ``detach`` return a view of their
    input, as NumPy's do on the CPU."""
    if op.name in ("reshape", "detach"):
        return arrays[0].reshape(tuple(out_type.shape)) if op.name == "reshape" else arrays[0]
    types = [TensorType(tuple(a.shape), _dtype(a)) for a in arrays]
    host = tuple(j for j, a in enumerate(arrays) if type(a) is np.ndarray and a.ndim == 0)
    program = program_for(op, types, attrs, host)
    flat = [a.reshape(a.size) for a in arrays]
    (result,) = program.run_trusted(flat)
    return result.reshape(tuple(out_type.shape))


def _dtype(arr):
    from ...dtypes import from_numpy
    return from_numpy(arr.dtype)
