"""What both targets' compiled programs do on every call: check the inputs against the
graph's types, run the driver, and hand back ``(outputs, updates)`` like
``graphjit.ir.run_graph``. The CPU's (backend/cpu/program.py) pools its result arrays and
chooses its threads; the CUDA's (backend/cuda/program.py) moves arrays to the device and
keeps host scalars on the host.
"""
from __future__ import annotations

import threading

import numpy as np

from ...errors import DTypeError, ShapeError


def update_plan(generated, n_out: int, n_updates: int) -> list:
    """Per update: ("input", k), written in place into input k (counted among the non-const
    inputs), or ("result", k), the driver's result k."""
    input_index = {j: k for k, j in enumerate(j for j, v in enumerate(generated.params)
                                              if v.role != "const")}
    plan = []
    k = n_out
    for j in range(n_updates):
        if j in generated.in_place:
            plan.append(("input", input_index[generated.in_place[j]]))
        else:
            plan.append(("result", k))
            k += 1
    return plan


class Program:
    """A compiled graph: ``program(inputs) -> (outputs, updates)``.

    ``inputs`` holds one array per graph input whose role is not "const", in graph order;
    const inputs come from ``graph.constants``, held by the program. ``source`` is the
    generated program as one module, ``path`` the file of the module that runs. Calls on
    one program are serialised by a lock (they share its workspace)."""

    def __init__(self, graph, name, generated, path, compile_seconds):
        self.graph = graph
        self.name = name
        self.source = generated.source
        self.generated = generated  # (kept by the lowering cache: graphjit/jit/lowering_cache.py)
        self.path = path
        self.compile_seconds = compile_seconds
        # Inputs (non-const graph inputs) in driver-argument order.
        self._args = [v for v in generated.params if v.role != "const"]
        self._arg_types = [(v.dtype.np, tuple(v.shape)) for v in self._args]
        self._n_out = len(graph.outputs)
        self.output_shapes = [tuple(v.shape) for v in generated.results[:self._n_out]]
        self._update_shapes = [tuple(v.shape) for _, v in graph.updates]
        self._in_place = generated.in_place  # update position -> driver argument position
        self.update_plan = update_plan(generated, self._n_out, len(self._update_shapes))
        self._result_types = [(n, dtype.np) for n, dtype in generated.result_buffers]
        self._slot_types = [(n, dtype.np) for n, dtype in generated.slots]
        self._workspace = None
        self._lock = threading.Lock()

    @property
    def workspace_bytes(self) -> int:
        """Bytes of the workspace the temporaries share (allocated on the first call)."""
        return sum(n * np.dtype(dt).itemsize for n, dt in self._slot_types)

    def _input_error(self, i, arr):
        v = self._args[i]
        error = DTypeError if arr.dtype != v.dtype.np else ShapeError
        return error(f"program {self.name}: input %{v.name} expects {v.type}, got "
                     f"{arr.dtype}{list(arr.shape)}")

    def _check_count(self, inputs) -> None:
        if len(inputs) != len(self._args):
            wanted = ", ".join(f"%{v.name}: {v.type}" for v in self._args)
            raise ShapeError(f"program {self.name} takes {len(self._args)} inputs ({wanted}), "
                             f"got {len(inputs)}")

    def _finish(self, args, results):
        """``(outputs, updates)`` from the driver's flat results: each output and each
        update in its shape, an update computed in place being its input's array."""
        outputs = [r.reshape(s) for r, s in zip(results, self.output_shapes)]
        if not self.update_plan:
            return outputs, []
        updates = [(args[k] if where == "input" else results[k]).reshape(shape)
                   for (where, k), shape in zip(self.update_plan, self._update_shapes)]
        return outputs, updates

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} at {self.path}>"
