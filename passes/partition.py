"""The forward/backward split of a compiled forward: one joint graph in, two programs out.

# NOTE: [Forward/backward partition]
A compiled function whose outputs require grad (a model's forward) runs as two programs:
the forward at the call, the backward when ``loss.backward()`` reaches its outputs. Both
are cut from one *joint* graph, optimised as a whole (so CSE shares the work both need and
autodiff's forward values are computed once). The joint graph returns the function's
outputs first, then the gradients; the gradients are computed from *seed* inputs, one per
differentiable output (the gradient flowing into that output at backward time).

``partition`` cuts it: every node that reads a seed, directly or through other nodes, is
backward work; every other node is forward work. The forward program returns the
function's outputs and then the *residuals* its nodes compute: the forward values the
backward reads, which the runtime keeps between the two calls. A residual that is an input
of the joint graph is not returned (the runtime reads the caller's tensor again at backward
time and checks it was not changed in place), unless the forward itself updates that input
(then its old value is returned like any residual); a constant input the backward reads
becomes a constant of the backward graph. The backward program's inputs are the residuals
(``saved<k>``, k counting the residuals in the order the backward first reads them) and
then the seeds; it returns the gradients. ``passes/fuse`` keeps the seeds' dependents apart
(``graph.fusion_split``), so no fused node straddles the cut.

The forward graph reuses the joint graph's inputs and nodes (the pass contract of
manager.py: the caller does not look at the joint graph again); the backward graph has
inputs and nodes of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphjit.ir import Graph
from graphjit.ir.host import host_values


@dataclass
class Partition:
    """The two programs of a compiled forward, and how the backward's inputs are found."""
    forward: Graph
    backward: Graph
    # Per "saved" input of the backward, in order: ("input", v) for an input v of the
    # forward (the runtime reads the caller's tensor again), ("output", i) for the
    # forward's output i. The seeds follow them in the backward's inputs.
    saved: list
    # The saved values themselves, in the same order (for reports).
    residuals: list


def partition(graph: Graph, seeds: list, n_outputs: int) -> Partition:
    """Split ``graph`` at ``seeds`` (some of its inputs: the gradients flowing in, and
    any other input only the backward reads) into forward and backward graphs; its first
    ``n_outputs`` outputs are the forward's, the rest the backward's."""
    seed_set = set(seeds)
    depends = set(seeds)
    fw_nodes, bw_nodes = [], []
    for n in graph.nodes:
        if any(v in depends for v in n.inputs):
            depends.update(n.outs)
            bw_nodes.append(n)
        else:
            fw_nodes.append(n)
    grads_out = graph.outputs[n_outputs:]
    residuals = []  # every forward value the backward reads, constants included
    for v in [i for n in bw_nodes for i in n.inputs] + list(grads_out):
        if v not in depends and v not in residuals:
            residuals.append(v)
    # An input the forward updates (a parameter changed under no_grad or through .data)
    # holds its new value by backward time: the old one is saved as a forward output.
    updated = {inp for inp, _ in graph.updates}
    node_residuals = [v for v in residuals if v.node is not None or v in updated]
    forward = Graph(f"{graph.name}_forward", inputs=[v for v in graph.inputs if v not in seed_set],
                    nodes=fw_nodes, outputs=list(graph.outputs[:n_outputs]) + node_residuals,
                    updates=graph.updates, constants=dict(graph.constants),
                    host_inputs=list(graph.host_inputs))

    backward = Graph(f"{graph.name}_backward")
    on_host = host_values(graph)  # saved host scalars reach the backward on the host too
    remap = {}
    for k, v in enumerate(residuals):
        if v.role == "const":
            remap[v] = backward.add_constant(graph.constants[v])
        else:
            remap[v] = backward.add_input(v.type, f"saved{k}", "arg")
            if v in on_host:
                backward.host_inputs.append(remap[v])
    for sv in seeds:
        remap[sv] = backward.add_input(sv.type, sv.name, "arg")
        if sv in graph.host_inputs:
            backward.host_inputs.append(remap[sv])
    for n in bw_nodes:
        outs = backward.add_node(n.op, [remap[v] for v in n.inputs], n.attrs, n.out_type, n.source)
        remap.update(zip(n.outs, outs if isinstance(outs, list) else [outs]))
    backward.outputs = [remap[v] for v in grads_out]

    saved = [("output", n_outputs + node_residuals.index(v)) if v in node_residuals
             else ("input", v) for v in residuals if v.role != "const"]
    return Partition(forward, backward, saved, [v for v in residuals if v.role != "const"])
