"""``graphjit.autograd.Function.apply`` inside a compiled function.

See the note below; ``Function`` and its eager side are in autograd_function.py, ctx and
the checks of what backward returns in autograd_function_ctx.py.
"""
from __future__ import annotations

from . import autograd_tape as _tape
from .autograd_function_ctx import _check_gradients, _differentiable_outputs
from .errors import GraphjitError, TraceError
from .ir import Value
from .ops import api, custom
from .ops.registry import bind
from .shapes import TensorType
from .tensor import Tensor

# NOTE: [Custom Functions while tracing]
# Inside graphjit.compile, ``apply`` runs ``forward`` under the tracer with grad off, so its
# ops become ordinary nodes of the program (detached: no gradient flows through them), and
# the outputs are the values ``%o`` they compute. For each differentiable output it then
# traces ``backward`` at once, under the same tracer, with a placeholder for that output's
# gradient (zeros, or None without materialized grads, for the others), and cuts the nodes
# it emitted out of the graph: that is the output's *gradient program*, registry ops over
# the placeholder and values of the graph (the arguments, saved tensors, tensors ``ctx``
# holds, tensors the backward lifted from outside). Each output is then returned as
# ``custom_function(%o, *arguments, *values the program reads, key=K, index=i)`` (see
# [Custom gradient rules] in ops/custom.py), whose VJP replays the program on the adjoint
# that passes/autodiff computes; passes/decompose replaces the node by ``%o`` afterwards.
#
# Why not re-run the user's Python in the passes: the backward and forward run under the
# real tracer, so everything tracing supports in user code works in them (lifting tensors
# they reach, creation functions, ``x[mask] = 0`` on a clone, views), what it refuses is
# refused with its usual error at the user's line, backward's checks (count, shapes) fail
# at trace time, and the forward is never computed twice. The cost: a Function with k
# outputs that all receive gradients runs its backward k times in the program (once per
# output, the others' gradients zero: backward is linear in them), where eager mode runs
# it once; the forward ops CSE cannot share are not recomputed either way.

class _GradientProgram:
    """The backward of one output: registry ops over references ("g",) (the output's
    gradient), ("in", j) (tensor argument j), ("ext", j) (the node's j-th extra operand)
    and ("node", m) (the result of step m); ``results``: a reference (or None) per tensor
    argument."""
    __slots__ = ("steps", "results", "externals")

    def __init__(self, nodes, hole, arg_values, result_values):
        refs = {hole: ("g",)}
        for j, v in enumerate(arg_values):
            refs.setdefault(v, ("in", j))
        self.externals = []

        def ref(v):
            r = refs.get(v)
            if r is None:
                r = refs[v] = ("ext", len(self.externals))
                self.externals.append(v)
            return r

        self.steps = []
        for m, n in enumerate(nodes):
            self.steps.append((n.op, tuple(ref(v) for v in n.inputs), dict(n.attrs)))
            refs[n.out] = ("node", m)
        self.results = tuple(None if v is None else ref(v) for v in result_values)


class _TracedBackward:
    """The gradient rule (ops/custom.py) of one traced ``apply``: per differentiable output,
    its gradient program."""

    def __init__(self, name, n_args, programs):
        self.name = name
        self.n_args = n_args
        self.programs = programs

    def vjp(self, g, inputs, index):
        program = self.programs[index]
        args, extra = inputs[:self.n_args], inputs[self.n_args:]
        env = []

        def value(r):
            kind = r[0]
            return (g if kind == "g" else args[r[1]] if kind == "in"
                    else extra[r[1]] if kind == "ext" else env[r[1]])

        for op, refs, attrs in program.steps:
            env.append(bind(op, *[value(r) for r in refs], **attrs))
        grads = tuple(None if r is None else value(r) for r in program.results)
        return grads + (None,) * len(extra)  # none for the values the program reads


def apply_traced(cls, args, ctx, raw, outs, tracer):
    """``Function.apply`` of a recording call while tracing, after ``_run_forward``."""
    results = list(outs)
    diff = _differentiable_outputs(ctx, outs)
    for i, o in enumerate(outs):
        if i not in diff and isinstance(o, Tensor) and o._requires_grad:
            results[i] = o.detach()  # an input returned as a non-differentiable output
    if not diff:
        return tuple(results) if isinstance(raw, tuple) else results[0]
    tensor_args = [a for a in args if isinstance(a, Tensor)]
    programs = {i: _trace_backward(cls, ctx, tracer, tensor_args, i) for i in diff}
    key = custom.register_rule(_TracedBackward(cls._backward_cls.__name__, len(tensor_args),
                                               programs), cls.__qualname__)
    for i in diff:
        extra = [tracer.wrap(v, False) for v in programs[i].externals]
        results[i] = custom.custom_function(outs[i], *tensor_args, *extra, key=key, index=i)
        programs[i].externals = ()  # (the rule lives on: it must not keep the graph alive)
    return tuple(results) if isinstance(raw, tuple) else results[0]


def _trace_backward(cls, ctx, tracer, tensor_args, i) -> _GradientProgram:
    """Trace ``backward`` for the gradient of output ``i`` ([Custom Functions while
    tracing]) and take the nodes it emitted out of the graph."""
    graph = tracer.graph
    arg_values = [tracer.value_of(a) for a in tensor_args]
    start = len(graph.nodes)
    shape, dtype, _ = ctx._out_meta[i]
    hole = Value(TensorType(shape, dtype), name=f"{cls.__name__}.grad{i}")
    try:
        with _tape.no_grad():
            grads = []
            for j, meta in enumerate(ctx._out_meta):
                if j == i:
                    grads.append(tracer.wrap(hole, False))
                elif meta is not None and ctx.materialize_grads:
                    grads.append(api.zeros(meta[0], meta[1]))
                else:
                    grads.append(None)
            result = cls.backward(ctx, *grads)
            checked = _check_gradients(cls, result, ctx._arg_meta, ctx.needs_input_grad,
                                       ctx._where)
            values = [tracer.value_of(g) if g is not None else None
                      for g, meta in zip(checked, ctx._arg_meta) if meta is not None]
    finally:
        nodes = graph.nodes[start:]
        del graph.nodes[start:]
    made = {v for n in nodes for v in n.outs}
    for t, v in getattr(tracer, "current", {}).values():
        if v in made:
            raise TraceError(f"{cls.__name__}.backward modifies a tensor from outside it in place "
                             f"({t.dtype.name}{list(t.shape)}); inside a compiled function a "
                             "custom backward may only compute and return its gradients",
                             where=ctx._where)
    for n in nodes:
        if len(n.outs) != 1:
            raise GraphjitError(f"{cls.__name__}.backward traced into a {n.op.name} node with "
                                f"{len(n.outs)} results, which a gradient program cannot hold",
                                where=ctx._where)
    return _GradientProgram(nodes, hole, arg_values, values)
