"""Eager mode on CUDA tensors: each op runs a compiled single-op program, cached by its
signature (op, attributes, input shapes and dtypes), so ``loss.backward()`` and
``opt.step()`` outside ``@graphjit.compile`` run on the GPU too. ``reshape``, ``detach`` and
contiguous slices are views of their input, as on the CPU."""
from __future__ import annotations

import threading

import numpy as np

from ...ir.buffers import aliases_input
from ...ir.graph import Graph
from ...ops.registry import get
from ...shapes import TensorType, numel

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


def contiguous_slice(shape, starts, stops, steps):
    """``(offset, length)`` in the flat buffer of a C-contiguous array of ``shape`` when the
    slice ``starts:stops:steps`` is one contiguous run of it (``x[i]``, ``x[a:b]``,
    ``x[i, a:b]``: only the last dim not taken whole is cut, with step 1, and the dims before
    it keep one index), else None."""
    lengths = [len(range(a, b, c)) for a, b, c in zip(starts, stops, steps)]
    if 0 in lengths:
        return None
    cut = [d for d, n in enumerate(lengths) if n != shape[d]]
    if cut:
        k = cut[-1]
        if steps[k] != 1 and lengths[k] != 1 or any(n != 1 for n in lengths[:k]):
            return None
    offset, stride = 0, 1
    for d in range(len(shape) - 1, -1, -1):
        offset += starts[d] * stride
        stride *= shape[d]
    return offset, numel(lengths)


def run_op(op, arrays, attrs, out_type: TensorType):
    """``op`` on device arrays (and 0-d NumPy arrays, passed to its kernel by value):
    ``(device array of out_type's shape, whether it is a view of arrays[0])``. ``reshape``,
    ``detach`` and slices that are one contiguous run (``contiguous_slice``) return views,
    as NumPy's do on the CPU; the other view ops (permute, expand, strided slices) copy:
    see [Copied views] in graphjit/autograd_tape.py."""
    shape = tuple(out_type.shape)
    if op.name in ("custom_function", "reattach"):  # a copy of its first operand (ops/custom.py)
        op, arrays, attrs = get("clone"), arrays[:1], {}
    if aliases_input(op):  # reshape, detach: the input's buffer ([Flat buffers])
        same = tuple(arrays[0].shape) == shape and op.name == "detach"
        return (arrays[0] if same else arrays[0].reshape(shape)), True
    if op.name == "slice":
        place = contiguous_slice(tuple(arrays[0].shape), **attrs)
        if place is not None:
            offset, length = place
            flat = arrays[0].reshape(arrays[0].size)
            return flat[offset:offset + length].reshape(shape), True
    types = [TensorType(tuple(a.shape), _dtype(a)) for a in arrays]
    host = tuple(j for j, a in enumerate(arrays) if type(a) is np.ndarray and a.ndim == 0)
    program = program_for(op, types, attrs, host)
    flat = [a.reshape(a.size) for a in arrays]
    (result,) = program.run_trusted(flat)
    return result.reshape(shape), False


def _dtype(arr):
    from ...dtypes import from_numpy
    return from_numpy(arr.dtype)
