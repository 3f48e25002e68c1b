"""Graph -> one generated Python module: ``@njit`` kernels and one driver; ``compile_graph``.

The module for ``graph f(%x: f32[2,3] {arg}) { %0 = exp(%x) ... }`` reads:

    # %0 = exp(%x) : f32[2,3]
    @kernel
    def k0_exp(in0, out):
        for i0 in range(6):
            x0 = in0[i0]
            out[i0] = math.exp(x0)

    @njit(error_model="numpy", cache=True)
    def run_f(x):
        # %0 = exp(%x) : f32[2,3]
        v0 = np.empty(6, np.float32)
        k0_exp(x, v0)
        return (v0,)

One kernel per node, named ``k<node>_<op>`` after the IR value it computes; nodes whose
kernels would be identical (same op, shapes and attributes) share the first one, which
keeps Numba's compile time down. The driver allocates every buffer and calls the kernels
in program order, so running the program is one native call; the Python wrapper
(``CompiledProgram``) only checks the inputs and reshapes the flat results (see
[Flat buffers] in kernel.py).
"""
from __future__ import annotations

import time

import numpy as np
from passes.memory import plan_buffers

from ...errors import GraphjitError
from ...ir.fused import has_reduction
from ...ir.printer import format_node, print_graph, value_names
from ...shapes import numel
from ..source import Namer, SourceWriter, identifier, import_module, write_module
from . import creation, fused, index, linalg, reduce, shape, vmath  # noqa: F401  (emitters)
from .elementwise import emit_elementwise, emits_generic
from .kernel import EMITTERS, MODULE_GLOBALS, KernelWriter
from .loops import np_type
from .program import CompiledProgram

# Kernels are only called from the driver, so they need no CPython or cfunc wrapper
# (each costs compile time). error_model="numpy": x / 0 gives inf, not an exception, and
# float loops vectorise.
KERNEL_FLAGS = 'error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True'
# Opt-in (``graphjit.compile(fn, fastmath=True)``): LLVM may contract a * b + c into one
# fused multiply-add, use reciprocals and ignore the sign of zero, so results can differ
# from eager mode in the last bits. Off by default: compiled programs match eager. Not
# included: "reassoc" (sums already reassociate through accumulate.add, and it would undo
# the range reductions of backend/cpu/vmath.py: exp of a sum was off by 800 with it), and
# "nnan"/"ninf" (NaN and inf must still propagate).
FASTMATH_FLAG = ', fastmath={"contract", "arcp", "nsz", "afn"}'
DRIVER_FLAGS = 'error_model="numpy", cache=True'


def emitter_for(op):
    """The CPU emitter of ``op`` (an OpDef), or None when the backend cannot compile it."""
    if op.name in EMITTERS:
        return EMITTERS[op.name]
    if emits_generic(op):
        return emit_elementwise
    return None


class GeneratedModule:
    """The text of a program's module and how its driver is called."""

    def __init__(self, source, driver_name, params, results):
        self.source = source
        self.driver_name = driver_name
        self.params = params      # graph inputs in driver-argument order (= graph order)
        self.results = results    # values returned by the driver: outputs, then updates


class _Kernel:
    def __init__(self, name, body, n_params, out_params, parallel=False):
        self.name = name
        self.parallel = parallel  # compiled with parallel=True (a prange loop)
        self.body = body
        self.n_params = n_params
        # Output parameter names; a result computed in place is written through the input
        # parameter it reads, and has none.
        self.out_params = out_params
        self.ir_lines = []


def _check_graph(graph) -> None:
    names = value_names(graph)
    for node in graph.nodes:
        if node.op.name == "grad":
            raise GraphjitError(
                f"the graph {graph.name!r} still holds a gradient request "
                f"({format_node(node, names)}); run the autodiff pass (passes/autodiff) to expand "
                "it into backward nodes before compiling", op="grad")
        if emitter_for(node.op) is None:
            raise GraphjitError(f"the CPU backend has no emitter for op {node.op.name!r} "
                                f"({format_node(node, names)})", op=node.op.name)


def _buffer_owners(graph, names) -> dict:
    """Each value -> the value whose buffer holds it: itself, or the buffer a free reshape
    views (found by asking each node's emitter, on a scratch writer)."""
    owner = {v: v for v in graph.inputs}
    for node in graph.nodes:
        k = KernelWriter(node, "scratch", names)
        emitter_for(node.op)(node, k)
        for v in node.outs:
            owner[v] = owner[node.inputs[k.alias_of]] if k.alias_of is not None else v
    return owner


def inplace_updates(graph, owner) -> dict:
    """``{value: target input}`` for the updates whose new value can be computed straight
    into the target's own buffer.

    # NOTE: [In-place updates]
    ``update %p <- %u`` may be computed in place when ``%u`` is made by an elementwise or
    fused node ``n`` of ``%p``'s shape and dtype (its loop reads every buffer of ``%p``'s
    shape at the index it writes, so each element is read before it is overwritten; a fused
    node with a reduction reads rows more than once, so it does not qualify), no
    node after ``n`` reads ``%p``'s old value, no other result is ``%p``'s old value, and no
    node after ``n`` can raise (index bounds checks): a program that fails has then written
    nothing in place. A multi-result fused node may compute several updates in place. Optimizer updates (``p``, ``exp_avg``, ``momentum_buffer``...) are all
    of this form, so a step allocates nothing proportional to the parameters for them.
    """
    position = {n: i for i, n in enumerate(graph.nodes)}
    results = list(graph.outputs) + [v for _, v in graph.updates]
    found = {}
    for target, value in graph.updates:
        n = value.node
        if n is None or not n.inputs or owner[value] is not value or target.role == "const":
            continue
        if not (n.op.name == "fused" or (n.op.kind == "elementwise" and n.op.name != "detach")):
            continue
        if n.op.name == "fused" and has_reduction(n.attrs["body"]):
            continue
        if tuple(value.shape) != tuple(target.shape) or value.dtype is not target.dtype:
            continue
        if any(owner[v] is target and tuple(v.shape) != tuple(value.shape) for v in n.inputs):
            continue  # reads the target through a reshape: not at the index it writes
        later = graph.nodes[position[n] + 1:]
        if any(owner[v] is target for m in later for v in m.inputs):
            continue
        if any(m.op.kind == "index" for m in later):
            continue
        if any(owner[r] is target for r in results):
            continue
        if value in found or target in found.values():
            continue  # one value updating two inputs: only one can hold it in place
        found[value] = target
    return found


def generate(graph, name: str | None = None, inplace: bool = False,
             fastmath: bool = False) -> GeneratedModule:
    """The source of the module that runs ``graph`` (no file is written, nothing compiled).
    With ``inplace``, updates are computed in their targets' buffers where legal (see
    [In-place updates]); the driver then does not return them. ``fastmath``: see
    FASTMATH_FLAG."""
    _check_graph(graph)
    names = value_names(graph)
    namer = Namer(MODULE_GLOBALS)
    driver_name = namer.fresh(f"run_{identifier(name or graph.name)}")
    kernel_names = {i: namer.fresh(f"k{i}_{n.op.name}") for i, n in enumerate(graph.nodes)}
    buf, owner = {}, {}  # value -> driver variable; value -> graph value that owns the buffer
    for v in graph.inputs:
        buf[v] = namer.fresh(v.name)
        owner[v] = v
    params = list(graph.inputs)
    owners = _buffer_owners(graph, names)
    in_place = inplace_updates(graph, owners) if inplace else {}
    # Buffers come from the caller (see [Buffer plan] in passes/memory.py): one per result
    # a node computes, from the program's result pool, then the workspace slots the
    # temporaries share.
    results = list(graph.outputs) + [v for t, v in graph.updates if in_place.get(v) is not t]
    result_buffers = []
    for v in results:
        if owners[v].node is not None and owners[v] not in result_buffers:
            result_buffers.append(owners[v])
    temps = [v for n in graph.nodes for v in n.outs
             if owners[v] is v and v not in result_buffers and v not in in_place]
    slot_of, slots = plan_buffers(graph, temps, owners)
    result_params = {v: namer.fresh(f"r{j}") for j, v in enumerate(result_buffers)}
    slot_params = [namer.fresh(f"w{j}") for j in range(len(slots))]

    kernels, by_body = [], {}
    driver = SourceWriter(indent=1)
    for i, node in enumerate(graph.nodes):
        k = KernelWriter(node, kernel_names[i], names)
        # An update computed in place that reads its target writes through that same
        # parameter: LLVM's runtime check that the output does not overlap an input would
        # fail (they are one buffer) and send the loop down its scalar path.
        writes_input = []
        for j, v in enumerate(node.outs):
            w = None
            if v in in_place:
                w = next((m for m, x in enumerate(node.inputs) if buf.get(x) == buf[in_place[v]]),
                         None)
                if w is not None:
                    k.outs[j] = k.ins[w]
            writes_input.append(w)
        emitter_for(node.op)(node, k)
        driver.line(f"# {k.ir_line}")
        if k.alias_of is not None:
            src = node.inputs[k.alias_of]
            buf[node.out], owner[node.out] = buf[src], owner[src]
            driver.line(f"#   (no kernel: the buffer of {buf[src]} as is)")
            continue
        out_vars = []
        for v in node.outs:
            n, dtype = numel(v.shape), np_type(v.dtype)
            if v in in_place:
                var = buf[in_place[v]]
                driver.line(f"#   (%{names[v]} computed in place: the buffer of {var}, "
                            "see [In-place updates])")
            else:
                if v in result_params:
                    var = result_params[v]
                else:
                    var = namer.fresh(f"v{names[v]}")
                    slot = slot_of[v]
                    whole = slots[slot][1] == n
                    driver.line(f"{var} = {slot_params[slot]}{'' if whole else f'[:{n}]'}")
                if k.fill_value is not None:
                    driver.line(f"{var}[:] = {k.fill_value}")
                elif k.zero_output:
                    driver.line(f"{var}[:] = 0")
            buf[v], owner[v] = var, v
            out_vars.append(var)
        if k.fill_value is not None:
            continue
        out_params = [name for name, w in zip(k.outs, writes_input) if w is None]
        key = (len(node.inputs), k.body, tuple(writes_input), tuple(out_params))
        kernel = by_body.get(key)
        if kernel is None:
            kernel = by_body[key] = _Kernel(k.name, k.body, len(node.inputs), out_params,
                                            parallel=k.parallel)
            kernels.append(kernel)
        kernel.ir_lines.append(k.ir_line)
        call_args = [buf[v] for v in node.inputs] + [var for var, w in zip(out_vars, writes_input)
                                                     if w is None]
        driver.line(f"{kernel.name}({', '.join(call_args)})")

    # A result in an input's buffer (an input returned as is, or a reshape of one) is copied:
    # the caller may write updates into input buffers, and must not alias them by surprise.
    returned = [f"{buf[v]}.copy()" if owner[v].node is None else buf[v] for v in results]
    if not returned:
        returned = ["0"]  # a program whose only effects are in-place updates
    driver.line(f"return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")

    out = SourceWriter()
    out.line(f"# Generated by graphjit.backend.cpu from graph {graph.name!r}. Do not edit:")
    out.line("# the file name is the hash of its text (graphjit/backend/source.py).")
    out.line("#")
    for text in print_graph(graph).splitlines():
        out.line(f"#   {text}")
    out.line("import math")
    out.line()
    out.line("import numpy as np")
    out.line("from numba import njit, prange")
    out.line()
    out.line("from graphjit.backend.cpu.accumulate import add as acc_add")
    out.line(vmath.IMPORT_LINE)
    out.line()
    flags = KERNEL_FLAGS + (FASTMATH_FLAG if fastmath else "")
    out.line(f"kernel = njit({flags})")
    if any(kernel.parallel for kernel in kernels):
        out.line(f"parallel_kernel = njit(parallel=True, {flags})")
    for kernel in kernels:
        out.line()
        out.line()
        out.line(f"# {kernel.ir_lines[0]}")
        for also in kernel.ir_lines[1:]:
            out.line(f"#   also runs {also}")
        out.line("@parallel_kernel" if kernel.parallel else "@kernel")
        args = [f"in{j}" for j in range(kernel.n_params)] + kernel.out_params
        out.line(f"def {kernel.name}({', '.join(args)}):")
        out.lines_from(kernel.body.rstrip("\n"))
    out.line()
    out.line()
    out.line(f"@njit({DRIVER_FLAGS})")
    driver_params = ([buf[v] for v in params] + [result_params[v] for v in result_buffers]
                     + slot_params)
    out.line(f"def {driver_name}({', '.join(driver_params)}):")
    out.lines_from("\n".join(driver.lines))
    module = GeneratedModule(out.text(), driver_name, params, results)
    module.result_buffers = [(numel(v.shape), v.dtype) for v in result_buffers]
    module.slots = [(n, dtype) for dtype, n in slots]
    # Update position -> index of its target among the inputs, for updates done in place.
    module.in_place = {j: params.index(t) for j, (t, v) in enumerate(graph.updates)
                       if in_place.get(v) is t}
    return module


def _signature(params):
    from numba import from_dtype, types
    return tuple(types.Array(from_dtype(np.dtype(dt)), 1, "C") for dt in params)


def compile_graph(graph, name: str | None = None, inplace: bool = False,
                  fastmath: bool = False) -> CompiledProgram:
    """Generate, write, import and compile the CPU program of ``graph``.

    The module is written to the on-disk cache (see [Generated modules on disk] in
    backend/source.py); Numba's own cache makes a second compile of the same graph, in
    this process or a new one, skip code generation in LLVM.
    """
    name = name or graph.name
    start = time.perf_counter()
    generated = generate(graph, name, inplace=inplace, fastmath=fastmath)
    path = write_module(generated.source, name, "cpu")
    module = import_module(path)
    driver = getattr(module, generated.driver_name)
    try:
        driver.compile(_signature([v.dtype.np for v in generated.params]
                                  + [dt.np for _, dt in generated.result_buffers]
                                  + [dt.np for _, dt in generated.slots]))
    except Exception as e:
        raise GraphjitError(f"Numba could not compile the program generated for graph {name!r} "
                            f"({path}): {type(e).__name__}: {e}") from e
    return CompiledProgram(graph, name, generated, path, driver, time.perf_counter() - start)
