"""A compiled forward: outputs whose ``grad_fn`` runs a compiled backward program.

When a compiled function's outputs require grad (a model's forward called for training),
``lower_forward_backward`` builds one joint graph (the outputs, then a gradient request per
input that requires grad, seeded by one input per differentiable output), runs the pass
pipeline over it, and cuts it into two programs with ``passes/partition.py``
([Forward/backward partition]). The forward program runs at the call and returns the
residuals the backward needs; its outputs get a ``CompiledBackward`` node as ``grad_fn``,
which runs the backward program (compiled on first use) when autograd reaches it.
"""
from __future__ import annotations

import numpy as np

from .. import anomaly, autograd_tape, devices, dtypes
from ..errors import AutogradError, GraphjitError, TraceError
from ..ops import registry
from ..shapes import TensorType
from ..tensor import Tensor
from . import lowering_cache
from .runtime import _Entry, tracer_slot_index


def lower_forward_backward(tracer, out_tensors, differentiable, *, build, compile_graph,
                           passes, verify, fastmath, default_build=False, **entry):
    """The entry of a compiled forward whose ``differentiable`` outputs (some of
    ``out_tensors``) get a compiled backward: ``build`` compiles the forward program,
    ``compile_graph`` the backward one on first use, ``passes`` is the target's pipeline
    (None: the default one); ``default_build``: ``build`` is ``compile_graph`` with updates
    in place (so both programs' generated modules may be kept: [Generated programs of a
    compiled forward] in lowering_cache.py); ``entry`` holds the rest of ``_Entry``'s
    arguments."""
    from passes.partition import partition
    from passes.pipeline import run_pipeline

    graph = tracer.graph
    diff_slots = [s for s in tracer.slots if s.kind in ("arg", "tensor")
                  and s.resolve(tracer._flat_args)._requires_grad]
    n_out = len(graph.outputs)
    seeds, grad_values, wrt = [], [], []
    for j, t in enumerate(differentiable):
        seeds.append(graph.add_input(t._value.type, f"seed{j}", "arg"))
    grad_op = registry.get("grad")
    add_op, where_op = registry.get("add"), registry.get("where")
    reaches = []  # per gradient computed: the differentiable outputs it depends on
    # Outputs whose backward would read a value the forward changed in place after saving
    # it: eager mode's backward raises there, so the compiled backward does too when it is
    # given a gradient for one ([Saved values while tracing] in trace.py).
    # As eagerly, only the gradients asked for count: the check runs per (output, input) pair
    # once it finds something for an output, and the backward gives a stale gradient for that
    # input (the engine raises if a needed node reads it), as eager's tape does.
    every_held = [v for s in diff_slots for v in tracer._values_held(s.resolve(tracer._flat_args))]
    stale_by_slot = {}  # output j -> {id(slot): (error class, message)}
    for j, t in enumerate(differentiable):
        try:
            tracer._check_saved(t._value, every_held)
            continue
        except (AutogradError, TraceError):  # (TraceError: [Changes through .data])
            pass
        for s in diff_slots:
            try:
                tracer._check_saved(t._value, tracer._values_held(s.resolve(tracer._flat_args)))
            except (AutogradError, TraceError) as e:
                stale_by_slot.setdefault(j, {})[id(s)] = (type(e), e.bare_message)
    given = {}  # output j -> its "given" flag input ([Gradients from some outputs only])
    for s in diff_slots:
        # With respect to every value the tensor held ([Gradients while tracing] in
        # tracer_autograd.py).
        held = tracer._values_held(s.resolve(tracer._flat_args))
        terms = []  # (output j, the gradient through it)
        for j, (t, seed) in enumerate(zip(differentiable, seeds)):
            reached = tracer.reached_by(t._value, held)
            terms += [(j, tracer.builder.apply(grad_op, [t._value, v, seed], {}))
                      for v in held if v in reached]
        outs = frozenset(j for j, _ in terms)
        total = None
        for j, g in terms:
            if len(outs) > 1:
                if j not in given:
                    given[j] = graph.add_input(TensorType((), dtypes.bool_), f"given{j}", "arg")
                zero = tracer.builder.constant(np.zeros((), g.dtype.np))
                g = tracer.builder.apply(where_op, [given[j], g, zero], {})
            total = g if total is None else tracer.builder.apply(add_op, [total, g], {})
        if total is not None:
            wrt.append(s)
            grad_values.append(total)
            reaches.append(outs)
    graph.outputs = graph.outputs + grad_values
    flags = list(given.values())
    if tracer.device.type == "cuda":  # passed by value ([Host scalars] in ir/host.py)
        graph.host_inputs = list(graph.host_inputs) + flags
    # Per output j: {position of the input among the backward's outputs: (class, message)}.
    stale = {j: {k: by_slot[id(s)] for k, s in enumerate(wrt) if id(s) in by_slot}
             for j, by_slot in stale_by_slot.items()}
    # Fusion must not put forward and backward work in one node: they run as two programs.
    graph.fusion_split = list(seeds) + flags
    # [The lowering cache]: the joint graph after the pipeline, found or kept.
    cache_key = lowering_cache.pipeline_key(graph, passes, tracer.device, fastmath, "joint")
    cached = lowering_cache.load(cache_key, graph) if cache_key else None
    if cached is not None:
        joint, snapshots, stats, _ = cached
    else:
        stats = []
        traced_inputs = list(graph.inputs)
        joint, snapshots = run_pipeline(graph, verify=verify, stats=stats, passes=passes)
        if cache_key:
            lowering_cache.store(cache_key, traced_inputs, joint, snapshots, stats, None)
    split = partition(joint, seeds + flags, n_out)
    options = {}
    if cache_key and default_build:  # (the lowering cache on, a CPU program)
        options["generated"] = _generated(split.forward, tracer.device, True, fastmath)
    made = _ForwardBackwardEntry(
        tracer, build(split.forward, name=split.forward.name, **options), split,
        snapshots=snapshots, pass_stats=stats,
        seed_types=[sv.type for sv in seeds], given=list(given),
        # By identity: `==` on tensors is the elementwise comparison op.
        differentiable=[next(i for i, o in enumerate(out_tensors) if o is t)
                        for t in differentiable],
        wrt=[tracer.slots.index(s) for s in wrt], reaches=reaches, stale=stale,
        compile_graph=compile_graph, fastmath=fastmath, **entry)
    made.from_lowering_cache = cached is not None
    made.keep_generated = bool(cache_key and default_build)
    return made


def _generated(graph, device, inplace, fastmath):
    """The generated program of ``graph`` (``compile_graph``'s), kept on disk."""
    from ..backend import target_for
    return lowering_cache.generated_program(
        graph, graph.name, device, {"inplace": inplace, "fastmath": bool(fastmath)},
        lambda: target_for(device).generate(graph, graph.name, inplace=inplace,
                                            fastmath=fastmath))


# NOTE: [Gradients from some outputs only]
# A compiled forward with several differentiable outputs has one backward program, seeded
# by one gradient per output. Eager autograd runs a node only for the outputs that got a
# gradient; the program computes every output's part. A missing gradient given as zeros
# is not the same: its part is 0 times the op's local derivative, NaN where that is
# infinite (``std`` of equal values, ``sqrt`` at 0), and the NaN reached the other
# outputs' gradients. So an input reached from several outputs sums ``where(given_j,
# part_j, 0)``: each output's part, dropped when the backward got no gradient for that
# output (autodiff keeps the parts apart: one sweep per output). An input reached from one
# output needs no flag: it gets no gradient at all when that output got none (``reaches``).


class _ForwardBackwardEntry(_Entry):
    """The entry of a compiled forward: ``graph`` is the forward program's graph."""
    _bw_program = None
    keep_generated = False  # (see lower_forward_backward's ``default_build``)

    def __init__(self, tracer, program, split, *, seed_types, given, differentiable, wrt,
                 reaches, stale, compile_graph, fastmath, **entry):
        super().__init__(tracer, program, split.forward, **entry)
        self.backward_graph = split.backward
        # What the forward saves for the backward (the dump tool's report lists them).
        self.residuals = split.residuals
        # Residuals that are graph inputs are read from the input tensors at backward time
        # (and checked for in-place changes); the others come out of the forward program.
        self.residual_plan = [(kind, tracer_slot_index(self.slots, x) if kind == "input" else x)
                              for kind, x in split.saved]
        self.seed_types = seed_types
        # The outputs whose "given" flag the backward reads after the seeds: whether the
        # backward got a gradient for them ([Gradients from some outputs only]).
        self.given = given
        self.differentiable = differentiable  # output positions that get the compiled backward
        self.wrt = wrt  # slot positions of the inputs it computes gradients for
        # Per input of ``wrt``: the differentiable outputs (positions in ``differentiable``)
        # its gradient depends on. An input none of whose outputs got a gradient in a
        # backward gets None, as eagerly (a zero gradient would still move an optimizer
        # with weight decay or momentum).
        self.reaches = reaches
        # Output position (in ``differentiable``) -> eager's error for a backward through it.
        self.stale = stale
        self._compile_graph = compile_graph
        self.fastmath = fastmath

    @property
    def bw_program(self):
        """The compiled backward, compiled on first use: a forward whose outputs are never
        differentiated pays no Numba time for it."""
        if self._bw_program is None:
            options = {}
            if self.keep_generated:
                options["generated"] = _generated(self.backward_graph, self.device, False,
                                                  self.fastmath)
            self._bw_program = self._compile_graph(self.backward_graph,
                                                   name=self.backward_graph.name,
                                                   fastmath=self.fastmath, **options)
        return self._bw_program

    def run(self, flat_args):
        tensors = [s.resolve(flat_args) for s in self.slots]
        outputs = _Entry.run(self, flat_args)
        self._node = None
        if autograd_tape.is_grad_enabled():
            saved = []
            for kind, i in self.residual_plan:
                if kind == "input":
                    t = tensors[i]
                    # (An array input has no version counter: read as it is, as eagerly; on
                    # the program's device.)
                    saved.append((self._device_arrays([t])[0], None) if isinstance(t, np.ndarray)
                                 else (t, t._version.value))
                else:
                    saved.append((outputs[i], None))
            self._node = CompiledBackward(self, saved, [tensors[i] for i in self.wrt])
        return outputs

    own_outputs = None  # per backward output: whether it is the caller's (_own_outputs)

    def make_output(self, i, arr):
        t = _Entry.make_output(self, i, arr)
        if self._node is not None and i in self.differentiable:
            t._grad_fn = self._node
            t._output_nr = self.differentiable.index(i)
            t._requires_grad = True
        return t


class CompiledBackward(autograd_tape.Node):
    """``grad_fn`` of a compiled forward's outputs: runs the compiled backward program.

    Its gradients are the program's result arrays as they are, not copies: a CPU program
    reuses a result array only once nothing refers to it ([Buffer plan] in
    passes/memory.py), a CUDA program allocates its results at every call ([Fresh outputs]
    in backend/cuda/program.py); only a result whose buffer another result shares is copied.
    So the engine may keep each as a leaf's new ``.grad`` ([Gradients the engine may keep]
    in autograd_engine.py), and after ``zero_grad()`` the next backward computes into the
    arrays the previous ``.grad`` tensors held."""
    __slots__ = ("entry", "saved", "num_outputs_", "freed", "retained")
    owns_grads = True

    def __init__(self, entry, saved, wrt_tensors):
        self.entry = entry
        self.saved = saved
        self.num_outputs_ = len(entry.differentiable)
        self.next_functions = tuple(autograd_tape.input_edge(t) for t in wrt_tensors)
        self.seq = next(autograd_tape._sequence)
        self.freed = False
        self.retained = None
        if autograd_tape._anomaly_mode:  # the call, to re-run eagerly ([Anomaly mode])
            anomaly.record_compiled(self)

    @property
    def num_outputs(self):
        return self.num_outputs_

    def name(self) -> str:
        return f"Compiled{self.entry.graph.name.title().replace('_', '')}Backward"

    def apply(self, grads):
        if autograd_tape.is_grad_enabled():
            raise GraphjitError("create_graph=True through a compiled function is not supported: "
                                "its backward is a compiled program; differentiate the eager "
                                "function instead")
        if self.freed:
            raise GraphjitError(f"trying to backward through {self.name()} a second time; pass "
                                "retain_graph=True to the first backward")
        stale_inputs = {}  # input position -> eager's message: a stale gradient there
        for j, g in enumerate(grads):
            for k, (error, message) in self.entry.stale.get(j, {}).items() if g is not None \
                    else ():
                if error is not AutogradError:  # (a TraceError is raised as it is)
                    raise error(message, op="backward")
                stale_inputs.setdefault(k, message)
        arrays = []
        for t, version in self.saved:
            if version is None:
                arrays.append(t)
            else:
                if t._version.value != version:
                    raise GraphjitError(f"a tensor of shape {tuple(t.shape)} saved by {self.name()} "
                                        "was modified by an in-place operation before backward")
                arrays.append(t._data)
        for g, t in zip(grads, self.entry.seed_types):
            arrays.append(devices.zeros(t.shape, t.dtype.np, self.entry.device) if g is None
                          else g._data)
        arrays += [np.array(grads[j] is not None) for j in self.entry.given]
        program = self.entry.bw_program
        outs, _ = program(arrays)
        own = self.entry.own_outputs
        if own is None:
            own = self.entry.own_outputs = _own_outputs(program, outs)
        got = {j for j, g in enumerate(grads) if g is not None}
        return tuple(None if not reach & got
                     else autograd_tape._Stale(a.shape, dtypes.from_numpy(a.dtype),
                                          "backward: " + stale_inputs[k]) if k in stale_inputs
                     else autograd_tape.buffer_tensor(a) if mine else Tensor._wrap(devices.copy(a))
                     for k, (a, reach, mine) in enumerate(zip(outs, self.entry.reaches, own)))

    def release(self):
        self.saved = None
        self.freed = True


def _own_outputs(program, outs) -> list:
    """Per output of ``program`` (``outs``: one call's): whether its array may be handed out
    as it is, its buffer shared with no other output (see ``CompiledBackward``). Which
    outputs share a buffer is fixed by the program, so one call says it."""
    fresh = getattr(program, "fresh_outputs", None)
    if fresh is not None:  # a CUDA program ([Fresh outputs])
        return list(fresh)
    at = [a.__array_interface__["data"][0] if a.size else None for a in outs]
    return [p is not None and at.count(p) == 1 for p in at]
