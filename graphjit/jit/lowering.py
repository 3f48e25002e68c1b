"""Lowering: from a finished trace to a compiled program and its entry.

``lower`` completes the traced graph (outputs, updates, roles, host inputs), runs the
target's pass pipeline and has its backend compile the result: one program, or for a
compiled forward two ([Forward/backward partition] in passes/partition.py; the glue is in
forward_backward.py). ``graphjit.backend.target_for`` says which target runs programs on
a device.
``Lowered`` is what ``CompiledFunction.lower()`` returns: the IR after each stage and the
generated source, without running or compiling anything.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import devices
from ..backend import target_for
from ..tensor import Tensor
from . import lowering_cache
from .forward_backward import _ForwardBackwardEntry, lower_forward_backward
from .optimizers import _created_state
from .runtime import Assumed, Outputs, _Entry
from .tiers import program_tier
from .tracer_tensor import TracerTensor, traced_tensors

# Called as ``hook(compiled_function, entry, flat_args)`` after each new signature of a compiled
# function is lowered and compiled. graphjit.dump, a layer above the jit, adds its writer here
# when it is imported (tests/test_layering.py).
LOWERED_HOOKS: list = []


def _generate_only(graph, name=None, fastmath=False, device=devices.CPU):
    """A stand-in for ``compile_graph`` when lowering: the generated module's text only."""
    generated = target_for(device).generate(graph, name or graph.name, inplace=True,
                                            fastmath=fastmath)
    return _Generated(graph, generated.source)


class _Generated:
    """What ``_generate_only`` makes in place of a program: the graph and its source."""

    def __init__(self, graph, source):
        self.graph = graph
        self.source = source


def lower(tracer, result, *, verify: bool, fastmath: bool, assumed: Assumed = Assumed(),
          build=None, tier: str = "native"):
    """The entry of the program(s) for a finished trace whose function returned ``result``.
    ``build(graph, name=...)`` makes a program from the optimised graph (default: the
    target's ``compile_graph``, updates in place where legal). ``tier``: how a CPU program
    starts ([Tiered execution] in graphjit/backend/cpu/tiered.py; see tiers.py)."""
    from passes.pipeline import PIPELINES, run_pipeline

    target = target_for(tracer.device)
    passes = PIPELINES[target.pipeline]
    graph = tracer.graph
    _mark_state_roles(tracer)
    graph.host_inputs = _host_inputs(tracer)
    created = _created_state(tracer)
    traced_state = [(opt, p, k, v) for opt, p, k, v in created if isinstance(v, TracerTensor)]
    # A returned view whose root changed after it was taken holds the root's latest
    # elements, as eagerly ([Views while tracing]: value_of rebuilds it).
    for t in list(traced_tensors(result)) + [v for *_, v in traced_state]:
        tracer.value_of(t)
    out_tensors = _collect_outputs(result)
    out_values = [t._value for t in out_tensors]
    graph.outputs = list(out_values) + [v._value for *_, v in traced_state]
    graph.updates = [(s.value, v) for _, (t, v) in tracer.current.items()
                     for s in [tracer._slot_of[id(t)]] if v is not s.value]
    # Outputs whose graph a backward() inside the function used up get no compiled
    # backward (calling backward on them again is an error in eager mode too).
    freed = frozenset(i for i, t in enumerate(out_tensors)
                      if t._requires_grad and t._value in tracer.freed_roots)
    outputs = Outputs(result, out_values, freed,
                      new_state=tuple((opt, p, k, len(out_values) + j)
                                      for j, (opt, p, k, _) in enumerate(traced_state)),
                      one_shot=bool(created))
    differentiable = [t for i, t in enumerate(out_tensors) if t._requires_grad and i not in freed]
    compile_graph = target.compile
    if tracer.device.type == "cpu" and tier != "native":
        compile_graph = functools.partial(compile_graph, tier=program_tier(tier, outputs.one_shot))
    # Updates go straight into the tensors' buffers where legal ([In-place updates]).
    default_build = build is None
    build = build or functools.partial(compile_graph, inplace=True, fastmath=fastmath)
    if differentiable:
        # A compiled forward: its outputs get a grad_fn that runs a compiled backward.
        return lower_forward_backward(tracer, out_tensors, differentiable, build=build,
                                      compile_graph=compile_graph, passes=passes,
                                      verify=verify, fastmath=fastmath,
                                      default_build=default_build,
                                      outputs=outputs, assumed=assumed)
    # [The lowering cache]: a CPU program built the default way may have been lowered
    # before, in this process or another.
    cache_key = None
    if default_build:
        cache_key = lowering_cache.pipeline_key(graph, passes, tracer.device, fastmath,
                                                "program")
    traced_inputs = list(graph.inputs)
    cached = lowering_cache.load(cache_key, graph) if cache_key else None
    if cached is not None:
        graph, snapshots, stats, generated = cached
        program = compile_graph(graph, name=graph.name, inplace=True, fastmath=fastmath,
                                generated=generated)
    else:
        stats = []
        graph, snapshots = run_pipeline(graph, verify=verify, stats=stats, passes=passes)
        program = build(graph, name=graph.name)
        if cache_key:
            lowering_cache.store(cache_key, traced_inputs, graph, snapshots, stats,
                                 program.generated)
    # Passes may replace output values; outputs keep their positions (``Outputs.values``).
    entry = _Entry(tracer, program, graph, snapshots=snapshots,
                   pass_stats=stats, outputs=outputs, assumed=assumed)
    entry.from_lowering_cache = cached is not None
    return entry


def _collect_outputs(tree) -> list:
    """The distinct traced tensors (by value) in the function's result, in order."""
    found = []
    for t in traced_tensors(tree):
        if all(o._value is not t._value for o in found):
            found.append(t)
    return found


def _host_inputs(tracer) -> list:
    """The inputs of a CUDA program that stay on the host ([Host scalars] in
    graphjit/ir/host.py): optimizer options, and 0-d tensors whose data is on the CPU."""
    if tracer.device.type != "cuda":
        return []
    found = []
    for s in tracer.slots:
        if s.value.shape != ():
            continue
        obj = s.resolve(tracer._flat_args)
        data = obj if s.kind == "array" else getattr(obj, "_data", None)
        if s.kind == "hyper" or type(data) is np.ndarray:
            found.append(s.value)
    return found


def _mark_state_roles(tracer):
    """Lifted tensors that are optimizer state get the role "state" (they were "buffer")."""
    states = set()
    for opt in tracer.optimizers:
        for st in opt.state.values():
            for v in st.values():
                if isinstance(v, Tensor):
                    states.add(id(v))
    for s in tracer.slots:
        if s.kind == "tensor" and id(s.tensor) in states:
            s.value.role = "state"


class Lowered:
    """What ``CompiledFunction.lower(...)`` returns: the program(s) for one signature."""

    def __init__(self, entry):
        self.entry = entry

    @property
    def stages(self) -> list:
        """Stage names in pipeline order: "trace", then each pass (and the forward/backward
        split of a compiled forward, as "forward" and "backward")."""
        names = [name for name, _ in self.entry.snapshots]
        if isinstance(self.entry, _ForwardBackwardEntry):
            names += ["forward", "backward"]
        return names

    def as_text(self, stage: str = "final") -> str:
        """The IR text after ``stage`` ("final": the optimised graph; for a compiled forward
        "final" is the forward program, "backward" the backward one). A pass that runs twice
        (dce) is named by its last run; "dce#1" names the first."""
        from ..ir import print_graph
        e = self.entry
        if stage == "final" or stage == "forward":
            return print_graph(e.graph)
        if stage == "backward" and isinstance(e, _ForwardBackwardEntry):
            return print_graph(e.backward_graph)
        found = _stage_text(e.snapshots, stage)
        if found is None:
            raise KeyError(f"no stage {stage!r}; stages: {', '.join(self.stages)}")
        return found

    def kernel_source(self, program: str = "forward") -> str:
        """The generated Numba module of the program ("forward"; "backward" for a compiled
        forward's backward program)."""
        e = self.entry
        if program == "backward":
            return target_for(e.device).generate(
                e.backward_graph, fastmath=getattr(e, "fastmath", False)).source
        return e.program.source


def _stage_text(snapshots, stage):
    base, _, nth = stage.partition("#")
    matches = [text for name, text in snapshots if name == base]
    if not matches:
        return None
    return matches[int(nth) - 1 if nth else -1]

