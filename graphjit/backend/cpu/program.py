"""``CompiledProgram``: the Python side of a compiled CPU program (inputs in, results out).

``codegen.compile_graph`` builds one from the generated driver; this module holds what
runs on every call: the input checks, the result pool and the workspace.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

from ...errors import DTypeError, ShapeError

# Result arrays a program keeps for reuse, per result (see CompiledProgram).
POOLED_RESULTS = 2


class CompiledProgram:
    """A compiled graph: ``program(inputs) -> (outputs, updates)``, like ``ir.run_graph``.

    ``inputs`` holds one array per graph input whose role is not "const", in graph order;
    const inputs come from ``graph.constants``, held by the program. Results are fresh
    arrays (or views of each other where the graph reshapes one value into another);
    nothing is written back, except by a program compiled with ``inplace=True``: its
    updates may be computed into the target input's array (see [In-place updates]), and
    the update returned is then that array. ``source`` is the generated module's text,
    ``path`` its file.

    The program owns the buffers its driver computes into ([Buffer plan] in
    passes/memory.py): the workspace of its temporaries, allocated on the first call and
    reused by every later one, and a pool of result arrays: a result array comes back to
    the pool, and is written again by the next call, only once nothing outside the
    program refers to it (its reference count says so, views included), so a caller never
    sees an array it holds change. Fresh pages cost more than the kernels (two 16 MiB
    results allocated per call made a 3 ms loop take 33 ms on the development VM). Calls
    on one program are serialised by a lock, since they share the workspace.
    """

    def __init__(self, graph, name, generated, path, driver, compile_seconds):
        self.graph = graph
        self.name = name
        self.source = generated.source
        self.path = path
        self.compile_seconds = compile_seconds
        self._driver = driver
        # Per driver argument: the const's flat data, or None and the input's expected type.
        self._slots = [(_flat(np.asarray(graph.constants[v], dtype=v.dtype.np)), v, None, None)
                       if v.role == "const" else (None, v, v.dtype.np, tuple(v.shape))
                       for v in generated.params]
        self._args = [v for v in generated.params if v.role != "const"]
        self._shapes = [tuple(v.shape) for v in generated.results]
        self._n_out = len(graph.outputs)
        self._update_shapes = [tuple(v.shape) for _, v in graph.updates]
        self._in_place = generated.in_place  # update position -> driver argument position
        self._result_types = [(n, dtype.np) for n, dtype in generated.result_buffers]
        self._slot_types = [(n, dtype.np) for n, dtype in generated.slots]
        self._pool = [None] * len(self._result_types)
        self._workspace = None
        self._lock = threading.Lock()

    @property
    def workspace_bytes(self) -> int:
        """Bytes of the workspace the temporaries share (allocated on the first call)."""
        return sum(n * np.dtype(dt).itemsize for n, dt in self._slot_types)

    def _buffers(self) -> list:
        if self._workspace is None:
            self._workspace = [np.empty(n, dt) for n, dt in self._slot_types]
        buffers = []
        for j, (n, dt) in enumerate(self._result_types):
            pool = self._pool[j]
            if pool is None:
                pool = self._pool[j] = []
            found = None
            for k in range(len(pool)):
                # 2 references: the pool's list and getrefcount's argument; any more are
                # the caller's (the array, or a view of it, is still alive).
                if sys.getrefcount(pool[k]) == 2:
                    found = pool[k]
                    break
            if found is None:
                # Two arrays per result cover a training loop, where the caller lets go of
                # the previous step's array (``.grad`` replaced) only after this call.
                found = np.empty(n, dt)
                pool.insert(0, found)
                del pool[POOLED_RESULTS:]
            buffers.append(found)
        return buffers + self._workspace

    def __call__(self, inputs):
        inputs = list(inputs)
        if len(inputs) != len(self._args):
            wanted = ", ".join(f"%{v.name}: {v.type}" for v in self._args)
            raise ShapeError(f"program {self.name} takes {len(self._args)} inputs ({wanted}), "
                             f"got {len(inputs)}")
        given = iter(inputs)
        args = []
        for const, v, dtype, shape in self._slots:
            if const is not None:
                args.append(const)
                continue
            arr = next(given)
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            if arr.dtype != dtype:
                raise DTypeError(f"program {self.name}: input %{v.name} expects {v.type}, got "
                                 f"{arr.dtype}{list(arr.shape)}")
            if arr.shape != shape:
                raise ShapeError(f"program {self.name}: input %{v.name} expects {v.type}, got "
                                 f"{arr.dtype}{list(arr.shape)}")
            flags = arr.flags
            args.append(arr.reshape(-1) if flags.c_contiguous and flags.writeable else _flat(arr))
        with self._lock:
            results = iter(self._driver(*args, *self._buffers()))
        outputs = [next(results).reshape(s) for s in self._shapes[:self._n_out]]
        updates = []
        for j, shape in enumerate(self._update_shapes):
            # An update done in place is the (flat view of the) input array it was written to.
            source = args[self._in_place[j]] if j in self._in_place else next(results)
            updates.append(source.reshape(shape))
        return outputs, updates

    def __repr__(self) -> str:
        return f"<CompiledProgram {self.name} at {self.path}>"


def _flat(arr: np.ndarray) -> np.ndarray:
    """A writeable 1-D C-contiguous view (a copy only when needed) of ``arr``.

    The driver is compiled for writeable arrays; a read-only one would make Numba compile
    a second version. Kernels never write their inputs.
    """
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr.reshape(-1)
