"""The lowering cache: what the pass pipeline and code generation made of a traced graph,
kept on disk so that a new process tracing the same program skips both.

NOTE: [The lowering cache]
A restart (a new process, the compile cache filled) used to run everything but Numba again:
the passes (W5: about 0.35 s per program on the loaded 2-core VM) and the code generator
(about 0.3 s) only to find that the generated modules were on disk already and load their
machine code. Now ``lower`` looks up the traced graph first: an entry in
``<cache>/lowered/<key>.pickle`` holds the optimised graph, the pipeline's snapshots and
statistics (so ``explain()`` and the dump tool show the same stages) and the generated
program's description (``GeneratedModule``: its module texts, driver name, buffers, kernel
table). Only Numba's part, loading the cached machine code, is left.

The key is a hash of everything the lowered program depends on:
- the traced graph's full text (``print_graph(..., sources=True)``: inputs with their roles,
  every node with its attributes as exact literals, outputs, updates, the user's source
  lines that error messages name), the data of its constants, its fusion seeds and host
  inputs;
- the pipeline (pass names), the compile options (in place, fastmath);
- graphjit's own code: the size and modification time of every source file of the
  ``graphjit`` and ``passes`` packages (an edited pass or emitter is a new key), and the
  versions of Python, NumPy and Numba;
- the environment variables that steer passes or code generation (``GRAPHJIT_*`` and
  ``NUMBA_*`` but those that only say where caches are, which tier runs, or how many
  workers compile).
A key that cannot be formed (an attribute with no exact text) means no caching. Anything
that goes wrong reading an entry (missing, truncated, from another version) is a miss: the
program is lowered as if the entry were not there, and the entry is written again.

A compiled forward (``jit/forward_backward.py``) keeps only its joint graph after the
pipeline, with its snapshots and statistics: the partition into forward and backward and
their code generation run as before.

An entry refers to the traced graph's inputs by position, and ``load`` puts the caller's
own input values in their place: the runtime matches slots to graph inputs by identity
(``_Entry.update_slots``). Graph values are stored as a flat table, not pickled as objects
(a pickled chain of nodes recurses once per node).

Module-level tunables that tests change (``passes.fuse.MAX_ARGUMENTS``,
``looped.LOOPED_DRIVER_MIN_CALLS``) are not in the key: the test suite turns the cache off
(``GRAPHJIT_LOWERING_CACHE=0`` in tests/conftest.py) but for the tests of the cache itself.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys

import numpy as np

from ..backend.sealed import read_pickle, write_pickle
from ..ir.graph import Graph, Node, Value
from ..ir.printer import print_graph
from ..ops import registry
from ..shapes import TensorType

FORMAT = 1

# Environment variables that do not change what lowering makes.
_UNRELATED_ENV = frozenset({
    "GRAPHJIT_CACHE_DIR", "GRAPHJIT_DUMP", "GRAPHJIT_TIERED", "GRAPHJIT_COMPILE_WORKERS",
    "GRAPHJIT_LOWERING_CACHE", "GRAPHJIT_ADAPTIVE_THREADS", "NUMBA_CACHE_DIR"})

_code_version = None
# Lookups in this process: entries found, lookups that found none, entries written.
counts = {"hits": 0, "misses": 0, "stores": 0}
# The same for generated programs ([Generated programs of a compiled forward]).
generated_counts = {"hits": 0, "misses": 0, "stores": 0}


def enabled() -> bool:
    return os.environ.get("GRAPHJIT_LOWERING_CACHE", "1").strip().lower() not in (
        "0", "off", "false", "no")


def _code_fingerprint() -> str:
    """Sizes and modification times of graphjit's and passes' source files, and the
    versions of what they run on (once per process)."""
    global _code_version
    if _code_version is None:
        import numba
        import passes
        h = hashlib.sha256(f"{FORMAT} {sys.version} {np.__version__} {numba.__version__}"
                           .encode())
        roots = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 os.path.dirname(os.path.abspath(passes.__file__))]
        for root in roots:
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(files):
                    if name.endswith(".py"):
                        st = os.stat(os.path.join(folder, name))
                        rel = os.path.relpath(os.path.join(folder, name), os.path.dirname(root))
                        h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
        _code_version = h.hexdigest()
    return _code_version


def key(graph, pass_names, options) -> str | None:
    """The cache key of lowering ``graph`` (traced, complete) with the pipeline
    ``pass_names`` and compile ``options`` (a dict of plain values); None: not cacheable."""
    try:
        text = print_graph(graph, sources=True)
    except TypeError:  # an attribute with no exact text form
        return None
    h = hashlib.sha256(_code_fingerprint().encode())
    h.update(text.encode())
    index = {v: i for i, v in enumerate(graph.inputs)}
    for v, array in graph.constants.items():
        a = np.ascontiguousarray(array)
        h.update(f"\nconst {index[v]} {a.dtype.str} {a.shape}\n".encode())
        h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    h.update(repr([index.get(v, -1) for v in graph.fusion_split]).encode())
    h.update(repr([index.get(v, -1) for v in graph.host_inputs]).encode())
    h.update(repr(list(pass_names)).encode())
    h.update(repr(sorted(options.items())).encode())
    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith(("GRAPHJIT_", "NUMBA_")) and k not in _UNRELATED_ENV)
    h.update(repr(env).encode())
    return h.hexdigest()


def pipeline_key(graph, passes, device, fastmath, what: str) -> str | None:
    """The key of ``graph``'s lowering on ``device`` (None where the cache is off, the
    device is not the CPU, or the key cannot be formed); ``what`` names what the entry
    holds ("program": graph and generated program; "joint": a compiled forward's joint
    graph after the pipeline, before its partition)."""
    if device.type != "cpu" or passes is None or not enabled():
        return None
    return key(graph, [p.name for p in passes],
               {"inplace": True, "fastmath": bool(fastmath), "entry": what})


def _path(k: str) -> str:
    from ..backend.cache import cache_dir
    return os.path.join(cache_dir("lowered"), k[:40] + ".pickle")


# ---- graphs as flat tables -------------------------------------------------------------

def _encode(graph, traced_inputs, generated):
    """``graph`` (optimised) and ``generated`` as plain data: values are numbered, graph
    inputs that are the traced graph's refer to its positions."""
    number = {}
    traced = {v: i for i, v in enumerate(traced_inputs)}
    inputs = []
    for v in graph.inputs:
        number[v] = len(number)
        inputs.append((traced.get(v, -1), v.name, tuple(v.shape), v.dtype.short, v.role))
    nodes = []
    for n in graph.nodes:
        ins = [number[v] for v in n.inputs]
        for v in n.outs:
            number[v] = len(number)
        nodes.append((n.op.name, ins, n.attrs, [(tuple(v.shape), v.dtype.short, v.name)
                                                for v in n.outs], n.source))
    data = {
        "name": graph.name, "inputs": inputs, "nodes": nodes,
        "outputs": [number[v] for v in graph.outputs],
        "updates": [(number[t], number[v]) for t, v in graph.updates],
        "constants": [(number[v], np.asarray(a)) for v, a in graph.constants.items()],
        "fusion_split": [number[v] for v in graph.fusion_split],
        "host_inputs": [number[v] for v in graph.host_inputs],
    }
    if generated is not None:
        data["generated"] = _encode_generated(generated, number)
    return data


def _encode_generated(generated, number):
    """``generated`` as plain data, its values by their ``number``."""
    gen = dict(vars(generated))
    gen["params"] = [number[v] for v in generated.params]
    gen["results"] = [number[v] for v in generated.results]
    return type(generated), gen


def _decode_generated(data, values):
    """What ``_encode_generated`` made, its values ``values[number]``."""
    cls, gen = data
    generated = cls.__new__(cls)
    vars(generated).update(gen)
    generated.params = [values[i] for i in gen["params"]]
    generated.results = [values[i] for i in gen["results"]]
    return generated


def _decode(data, traced_inputs):
    from .. import dtypes
    values = []
    inputs = []
    for position, name, shape, dtype, role in data["inputs"]:
        if position >= 0:
            v = traced_inputs[position]
            if (tuple(v.shape), v.dtype.short, v.role) != (shape, dtype, role):
                raise ValueError("the traced graph's inputs are not the entry's")
        else:
            v = Value(TensorType(shape, dtypes.from_short(dtype)), name=name, role=role)
        values.append(v)
        inputs.append(v)
    nodes = []
    for op_name, ins, attrs, outs, source in data["nodes"]:
        types = [TensorType(shape, dtypes.from_short(dtype)) for shape, dtype, _ in outs]
        node = Node(registry.get(op_name), [values[i] for i in ins], attrs,
                    types if len(types) > 1 else types[0], source)
        for v, (_, _, name) in zip(node.outs, outs):
            v.name = name
        values.extend(node.outs)
        nodes.append(node)
    graph = Graph(data["name"], inputs=inputs, nodes=nodes,
                  outputs=[values[i] for i in data["outputs"]],
                  updates=[(values[t], values[v]) for t, v in data["updates"]],
                  constants={values[i]: a for i, a in data["constants"]},
                  fusion_split=[values[i] for i in data["fusion_split"]],
                  host_inputs=[values[i] for i in data["host_inputs"]])
    if "generated" not in data:
        return graph, None
    return graph, _decode_generated(data["generated"], values)


# ---- the entries ------------------------------------------------------------------------

def load(k: str, traced_graph):
    """``(graph, snapshots, pass_stats, generated)`` stored under key ``k``, the graph's
    inputs those of ``traced_graph``; None when there is no usable entry."""
    try:
        entry = read_pickle(_path(k))
        if entry.get("key") != k:
            return None
        graph, generated = _decode(entry["data"], traced_graph.inputs)
    except Exception:  # missing, truncated, garbled, or from other code: a miss
        counts["misses"] += 1
        return None
    counts["hits"] += 1
    return graph, entry["snapshots"], entry["pass_stats"], generated


def store(k: str, traced_inputs, graph, snapshots, pass_stats, generated) -> None:
    """Write the entry for key ``k``, sealed with a checksum (a flipped byte in an
    attribute would otherwise load as another program), write then rename so a reader
    never sees half of it; a cache that cannot be written is only a slower next start."""
    try:
        write_pickle(_path(k), {"key": k, "data": _encode(graph, traced_inputs, generated),
                                "snapshots": snapshots, "pass_stats": pass_stats})
        counts["stores"] += 1
    except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return


# ---- generated programs of a compiled forward ---------------------------------------------
# NOTE: [Generated programs of a compiled forward]
# A compiled forward's entry keeps only its joint graph; the partition into forward and
# backward runs again at a restart (cheap), and so did generating both programs' modules
# (10-17 ms each for W2's) and importing them, since without the generated program the
# restart cannot load a program from its bundles alone ([Programs from their bundles] in
# backend/cpu/prepared.py). ``generated_program`` keeps what the code generator made of a
# graph under the key of the graph itself (its full text, constants, the options and the
# code: ``key``), its values by their position in the graph (inputs, then each node's
# outputs), so the same partition in a new process finds it.

def _values(graph) -> list:
    return list(graph.inputs) + [v for n in graph.nodes for v in n.outs]


def generated_program(graph, name, device, options: dict, make):
    """``make()``, the generated program of ``graph`` named ``name`` with compile
    ``options`` (a dict of plain values), from the disk when a process generated it before
    (see [Generated programs of a compiled forward])."""
    k = None
    if device.type == "cpu" and enabled():
        k = key(graph, [], dict(options, entry="generated", name=name))
    if k is None:
        return make()
    values = _values(graph)
    try:
        entry = read_pickle(_path(k))
        if entry.get("key") != k:
            raise ValueError("another graph's entry")
        generated = _decode_generated(entry["generated"], values)
        generated_counts["hits"] += 1
        return generated
    except Exception:  # missing, truncated, garbled: generated again, and written
        generated_counts["misses"] += 1
    generated = make()
    try:
        number = {v: i for i, v in enumerate(values)}
        write_pickle(_path(k), {"key": k, "generated": _encode_generated(generated, number)})
        generated_counts["stores"] += 1
    except (OSError, KeyError, pickle.PicklingError, TypeError, AttributeError):
        pass
    return generated
