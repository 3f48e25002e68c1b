"""Reference executor: runs a Graph node by node with each op's NumPy ``impl``.

It is the oracle the backends are tested against, and a debugging aid; it is not how
compiled programs run.
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
