"""Host scalars: the 0-d values of a CUDA program that live on the CPU, and the scalar work
computed from them alone.

# NOTE: [Host scalars]
A training step on the GPU reads a few scalars that live on the CPU, as in PyTorch: the
optimizer's options (a learning rate the user may change between steps) and 0-d CPU
tensors (Adam's step count stays on the CPU; see [Devices]). Were they device arrays, every
step would copy each one over (a host-to-device copy waits for the GPU to finish the work
queued before it) and copy the new step count back (which waits for everything). Instead a
graph for the CUDA target names them in ``graph.host_inputs``, and then:

- a *host node* is a 0-d elementwise node (or 0-d ``full``) whose inputs are all host
  values: Adam's ``step + 1``, ``1 - beta1 ** step``, ``lr / bias_correction``. The fuse
  pass leaves host nodes out of its groups, and the CUDA backend computes them in the
  program's Python driver with the op's NumPy kernel, the same code eager mode runs on CPU
  tensors (so the numbers are the eager ones, bit for bit);
- *host values* are the host inputs and host nodes' results. Kernels take them by value,
  as scalar arguments (no device memory, no copy); a host value the program returns (the
  new step count) comes back as a NumPy array, a CPU tensor, as eager mode makes it.

The CPU target never sets ``host_inputs``: there everything is on the host already.
"""
from __future__ import annotations

def is_host_op(node) -> bool:
    """Whether ``node`` can run on the host when its inputs are host values: a 0-d
    elementwise op with a NumPy kernel, or a 0-d ``full``."""
    if node.op.name == "fused" or len(node.outs) != 1 or node.out.shape != ():
        return False
    if node.op.name == "full":
        return True
    return node.op.kind == "elementwise" and node.op.impl is not None


def host_nodes(graph) -> set:
    """The host nodes of ``graph`` (none unless it names ``host_inputs``)."""
    host = set(graph.host_inputs)
    if not host:
        return set()
    nodes = set()
    for n in graph.nodes:
        if is_host_op(n) and all(v in host for v in n.inputs):
            nodes.add(n)
            host.add(n.out)
    return nodes


def host_values(graph, nodes: set | None = None) -> set:
    """The host inputs of ``graph`` and the results of its host nodes (``nodes``, when the
    caller has ``host_nodes(graph)`` already)."""
    nodes = host_nodes(graph) if nodes is None else nodes
    return set(graph.host_inputs) | {n.out for n in nodes}
