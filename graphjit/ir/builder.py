"""``GraphBuilder``: the interpreter that ``bind()`` targets while a graph is being built.

Under ``with registry.interpreter(GraphBuilder(graph)):`` every function of
``graphjit.ops.api`` (and every VJP rule, which is written with them) appends nodes to
``graph`` instead of computing. Values are ``ir.Value`` objects, which have ``shape`` and
``dtype`` like tensors, so the same api code serves eager mode, tracing and passes.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import user_frame
from ..shapes import TensorType


class GraphBuilder:
    concrete = False  # values have no data: data-dependent shapes are an error

    def __init__(self, graph, source: str | None = None):
        self.graph = graph
        # When set (e.g. by the autodiff pass), new nodes carry this source instead of the caller's.
        self.source = source

    def apply(self, op, inputs, attrs):
        out_type = op.infer(*[v.type for v in inputs], **attrs)
        return self.graph.add_node(op, inputs, attrs, out_type,
                                   source=self.source if self.source is not None else user_frame())

    def constant(self, array: np.ndarray):
        """Uniform data becomes a ``full`` node; anything else a ``const`` input of the graph."""
        from ..ops import registry
        dtype = dtypes.from_numpy(array.dtype)
        flat = array.reshape(-1)
        if flat.size and np.all(flat == flat[0]) and not np.isnan(flat[0]).any():
            kind = float if dtype.is_floating_point else int if dtype.category == 1 else bool
            return self.apply(registry.get("full"), (),
                              {"shape": tuple(array.shape), "value": kind(flat[0]), "dtype": dtype})
        return self.graph.add_constant(np.array(array, copy=True))
