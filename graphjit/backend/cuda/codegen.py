"""Graph -> CUDA program: one ``@cuda.jit`` kernel module per distinct kernel, and a Python
driver that launches them in program order; ``compile_graph``.

For ``graph f(%x: f32[2,3] {arg}) { %0 = exp(%x) ... }`` the program module reads:

    # %0 = exp(%x) : f32[2,3]
    k0_exp = import_sibling(__file__, "kernel_5c1e0f8a2b9d7c3e4f6a.py").k


    # Launch configurations
    k0_exp_at = k0_exp[(1,), (256,)]


    def run_f(x, r0, err):
        # %0 = exp(%x) : f32[2,3]
        k0_exp_at(x, r0)
        return (r0,)

and the kernel module (named by the hash of its text, compiled and cached by Numba like the
CPU's: see [Kernel modules] in backend/cpu/codegen.py):

    @cuda.jit(cache=True)
    def k(in0, out):
        for e in range(cuda.grid(1), 6, cuda.gridsize(1)):
            i0_ = e // 3
            i1_ = (e) % 3
            x0_ = in0[i0_ * 3 + i1_]
            t0_ = np.float32(math.exp(x0_))
            out[i0_ * 3 + i1_] = t0_

Host nodes (0-d scalar work on CPU values: hyperparameters, a step count) run in the driver,
through the op's NumPy kernel, and kernels take host values by value: see [Host scalars] in
graphjit/ir/host.py.

The graph is the CPU target's fused graph (its pass list is the CPU's without ``gemm``, a
CPU lowering onto BLAS: passes/pipeline.py), so both targets fuse the same groups; buffers
follow the same plan (results, in-place updates, workspace slots shared by temporaries:
[Buffer plan] in graphjit/ir/buffers.py), all device arrays. The driver runs on the host:
each launch is asynchronous, so a step's kernels queue up on the GPU back to back, and
nothing comes back to the host unless a kernel may flag an index error (see [CUDA kernels]
in kernel.py).
"""
from __future__ import annotations

import re
import time

import numpy as np

from ...ir.host import host_nodes
from ...ir.printer import format_attr, format_node, print_graph, value_names
from ...shapes import numel
from ..core.buffers import ProgramBuffers
from ..core.kernel import check_graph, needs_kernel
from ..source import import_module, module_file_name, write_module
from ..writer import Namer, SourceWriter, identifier
from . import runtime
from . import (creation, elementwise, fused, index, linalg, random, reduce, scan,  # noqa: F401
               shape, window)  # (emitters)
from .kernel import EMITTERS, CudaKernelWriter
from .program import CudaProgram
from .simmath import IEEE_MATH

KERNEL_STEM = "kernel"
KERNEL_FLAGS = "cache=True"
DRIVER_GLOBALS = ("np", "fill", "copy_array", "check_flag", "host_op", "import_sibling")


class GeneratedCudaModule:
    def __init__(self):
        self.source = ""           # the program as one module, to read
        self.module_source = ""    # the program module (driver, kernel imports)
        self.kernel_sources = []
        self.driver_name = ""
        self.params = []           # graph inputs in driver-argument order
        self.results = []          # values the driver returns: outputs, then updates
        self.result_buffers = []   # (elements, dtype) per result buffer
        self.slots = []            # (elements, dtype) per workspace slot
        self.temp_views = []       # (slot, elements) per temporary's driver argument
        self.in_place = {}         # update position -> input position
        self.errors = []           # IndexError messages, by error code - 1
        self.check_at_end = False  # whether a flag may be set after the driver's last check
        # Per kernel module, in kernel_sources' order: the argument types of its launches, a
        # list of distinct tuples of ``(NumPy dtype, is an array)`` (an array: a flat
        # C-contiguous device array; else a host scalar passed by value). ptx.py compiles
        # the kernels for a GPU with them, without one.
        self.kernel_signatures = []
        self.host_params = []      # positions in params of the host inputs ([Host scalars])
        self.fresh_outputs = []    # per output: in a buffer no other result shares


def emitter_for(op):
    """The CUDA emitter of ``op`` (an OpDef), or None when the backend cannot compile it (or
    it needs no kernel: a flat view)."""
    return EMITTERS.for_op(op)


def _refused_in_place(in_place) -> set:
    """The targets of legal in-place updates ([In-place updates] in graphjit/ir/buffers.py)
    that a CUDA kernel cannot compute in place: those of a value smaller than its kernel's
    largest result (an optimizer's 0-d step count beside its parameters), since every
    thread reads such a target, and the one writing it would race the others' reads (the
    CPU loop reads it once, before)."""
    return {t for v, t in in_place.items()
            if v.node is not None and numel(v.shape) < max(numel(o.shape) for o in v.node.outs)}


def _host_call(node) -> str:
    """The text ``runtime.host_op`` parses back: the op and its attributes, in IR syntax."""
    attrs = [f"{key}={format_attr(value)}" for key, value in node.attrs.items()]
    return f"{node.op.name}({', '.join(attrs)})"


def _by_value(params, body, host_positions) -> tuple:
    """Kernel parameters and body taking the inputs at ``host_positions`` as scalars: the
    body, which indexes every input as an array (``in1[0]``), reads a 1-tuple of it."""
    params = list(params)
    lines = []
    for j in host_positions:
        name = params[j]
        params[j] = f"{name}_scalar"
        lines.append(f"    {name} = ({name}_scalar,)")
    return params, "\n".join(lines + [body.rstrip()]) + "\n"


def _kernel_module(params, body) -> str:
    out = SourceWriter()
    out.line("# Generated by graphjit.backend.cuda: one kernel, imported by every program that")
    out.line("# runs it. Do not edit: the file name is the hash of its text.")
    out.line("import math")
    out.line()
    out.line("import numpy as np")
    out.line("from numba import cuda")
    out.line()
    out.line()
    out.line(f"@cuda.jit({KERNEL_FLAGS})")
    out.line(f"def k({', '.join(params)}):")
    out.lines_from(body.rstrip())
    return out.text()


def generate(graph, name: str | None = None, inplace: bool = False) -> GeneratedCudaModule:
    """The texts of the CUDA program of ``graph`` (nothing written or compiled)."""
    check_graph(graph, EMITTERS, "CUDA")
    names = value_names(graph)
    gen = GeneratedCudaModule()
    namer = Namer(DRIVER_GLOBALS)
    gen.driver_name = namer.fresh(f"run_{identifier(name or graph.name)}")
    buf = {v: namer.fresh(v.name) for v in graph.inputs}
    on_host = host_nodes(graph)
    buffers = ProgramBuffers(graph, inplace, refuse=_refused_in_place)
    owners, host, in_place = buffers.owner, buffers.host, buffers.in_place
    results, result_buffers = buffers.results, buffers.result_buffers
    temps, slot_of = buffers.temps, buffers.slot_of
    result_params = {v: namer.fresh(f"r{j}") for j, v in enumerate(result_buffers)}
    temp_params = {}
    for v in temps:
        temp_params[v] = namer.fresh(f"v{names[v]}")
        gen.temp_views.append((slot_of[v], numel(v.shape)))
    err = namer.fresh("err")

    kernel_names = {i: namer.fresh(f"k{i}_{n.op.name}") for i, n in enumerate(graph.nodes)}
    by_text, kernels = {}, []   # module text -> (program name, file name); in order
    driver = SourceWriter(indent=1)
    host_ops = []               # module-level lines binding the host nodes' NumPy kernels
    launchers = {}              # (kernel, grid, block) -> its launch configuration's name
    flag_pending = False        # a kernel launched since the last check may flag an error
    for i, node in enumerate(graph.nodes):
        driver.line(f"# {format_node(node, names)}")
        if node in on_host:
            hname = namer.fresh(f"h{i}_{node.op.name}")
            host_ops.append(f'{hname} = host_op("{_host_call(node)}", "{node.out.dtype.short}")')
            buf[node.out] = namer.fresh(f"h{names[node.out]}")
            driver.line(f"{buf[node.out]} = {hname}({', '.join(buf[v] for v in node.inputs)})"
                        "  # on the host")
            continue
        if not needs_kernel(node.op):  # a flat view: its input's buffer ([Flat buffers])
            buf[node.out] = buf[node.inputs[0]]
            driver.line(f"#   (no kernel: the buffer of {buf[node.out]} as is)")
            continue
        k = CudaKernelWriter(node, kernel_names[i])
        emitter_for(node.op)(node, k)
        out_vars = []
        for v in node.outs:
            if v in in_place:
                var = buf[in_place[v]]
                driver.line(f"#   (%{names[v]} computed in place: the buffer of {var})")
            else:
                var = result_params.get(v) or temp_params[v]
            buf[v] = var
            out_vars.append(var)
        if flag_pending and any(v in in_place for v in node.outs):
            # Nothing is written into an input's buffer before a flagged index error is
            # raised: a failing call leaves every tensor as it was.
            driver.line("check_flag(err)")
            flag_pending = False
        for j, literal in sorted(k.fills.items()):
            driver.line(f"fill({out_vars[j]}, {literal})")
        if k.no_kernel:
            continue
        body = k.body
        scalars = [j for j, v in enumerate(node.inputs) if v in host]
        args = ([f"{buf[v]}[0]" if v in host else buf[v] for v in node.inputs] + out_vars)
        if k.errors:  # error codes: this program's (the kernel's own plus those before)
            base = len(gen.errors)
            gen.errors += [f"{node.op.name}: {message}" for message in k.errors]
            body = re.sub(r"ERROR_BASE \+ (\d+)", lambda m: str(base + int(m.group(1))), body)
            args.append(err)
            flag_pending = True
        params, body = _by_value(k.params, body, scalars)
        text = _kernel_module(params, body)
        if text not in by_text:
            by_text[text] = (k.name, module_file_name(text, KERNEL_STEM), [], [])
            kernels.append(text)
        kname, _, ir_lines, signatures = by_text[text]
        ir_lines.append(format_node(node, names))
        signature = tuple([(v.dtype.np, v not in host) for v in node.inputs]
                          + [(v.dtype.np, True) for v in node.outs]
                          + ([(np.dtype(np.int32), True)] if k.errors else []))
        if signature not in signatures:
            signatures.append(signature)
        launch = (kname, k.grid, k.threads)
        if launch not in launchers:
            launchers[launch] = namer.fresh(f"{kname}_at")
        driver.line(f"{launchers[launch]}({', '.join(args)})")

    gen.check_at_end = flag_pending
    returned = [f"copy_array({buf[v]})" if owners[v].node is None else buf[v] for v in results]
    # An output in a buffer of its own, allocated by this call, is the caller's to keep: no
    # copy ([Fresh outputs] in program.py). Not so an input's buffer (a value computed in
    # place), a workspace slot, or a host value (which may view its input).
    allocated = set(result_params.values())
    gen.fresh_outputs = [returned.count(returned[j]) == 1 and results[j] not in host
                         and (returned[j] in allocated or owners[results[j]].node is None)
                         for j in range(len(graph.outputs))]
    driver.line(f"return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
    params = ([buf[v] for v in graph.inputs] + [result_params[v] for v in result_buffers]
              + [temp_params[v] for v in temps] + [err])
    driver_code = [f"def {gen.driver_name}({', '.join(params)}):"] + driver.lines

    def header(out, what):
        out.line(f"# Generated by graphjit.backend.cuda from graph {graph.name!r}{what}. Do not")
        out.line("# edit: the file name is the hash of its text (graphjit/backend/source.py).")
        out.line("#")
        for line in print_graph(graph).splitlines():
            out.line(f"#   {line}")
        out.line("import numpy as np")
        out.line()
        out.line("from graphjit.backend.cuda.runtime import check_flag, copy_array, fill, host_op")
        out.line("from graphjit.backend.source import import_sibling")

    def launch_section(out):
        # Configured once, at import: numba's kernel[grid, block] builds a launch
        # configuration at every call otherwise (see [Launch sizes] in runtime.py).
        out.line()
        out.line("# Launch configurations")
        for (kname, grid, block), lname in launchers.items():
            out.line(f"{lname} = {kname}[{grid}, {block}]")

    def host_section(out):
        if host_ops:
            out.line()
            out.line("# Host nodes: scalar work on CPU values, by the ops' NumPy kernels")
            for line in host_ops:
                out.line(line)

    def module(what, kernel_lines) -> str:
        out = SourceWriter()
        header(out, what)
        for text in kernels:
            kernel_lines(out, text, *by_text[text][:3])
        launch_section(out)
        host_section(out)
        out.line()
        out.line()
        out.lines_from("\n".join(driver_code))
        return out.text()

    def kernel_import(out, text, kname, file_name, ir_lines):
        out.line()
        for line in ir_lines:
            out.line(f"# {line}")
        out.line(f'{kname} = import_sibling(__file__, "{file_name}").k')

    def kernel_written_out(out, text, kname, file_name, ir_lines):
        out.line()
        out.line()
        out.line(f"# {file_name}")
        for line in ir_lines:
            out.line(f"# {line}")
        body = text[text.index("@cuda.jit"):].replace("def k(", f"def {kname}(", 1)
        out.lines_from(body.rstrip())

    gen.module_source = module("", kernel_import)
    gen.source = module(": the program as one module, to read", kernel_written_out)
    gen.kernel_sources = kernels
    gen.kernel_signatures = [by_text[text][3] for text in kernels]
    gen.params = list(graph.inputs)
    gen.host_params = [j for j, v in enumerate(graph.inputs) if v in host]
    gen.results = results
    gen.result_buffers = buffers.result_types()
    gen.slots = buffers.slot_types()
    gen.in_place = buffers.in_place_positions()
    return gen


def compile_graph(graph, name: str | None = None, inplace: bool = False) -> CudaProgram:
    """Generate, write and import the CUDA program of ``graph``. On a GPU every kernel is
    compiled here (or loaded from its disk cache) for the argument types of its launches
    (``runtime.precompile``); the simulator compiles nothing. (CUDA kernels compile without
    fastmath: ``Target.compile`` drops the option.)"""
    name = name or graph.name
    start = time.perf_counter()
    gen = generate(graph, name, inplace=inplace)
    runtime.cuda()  # numba.cuda before the modules that import it
    modules = [import_module(write_module(text, KERNEL_STEM, "cuda"))
               for text in gen.kernel_sources]
    kernels = [m.k for m in modules]
    if runtime.simulated():
        for m in modules:  # IEEE results where Python's math raises (see simmath.py)
            m.math = IEEE_MATH
    else:
        runtime.precompile(kernels, gen.kernel_signatures)
    path = write_module(gen.module_source, name, "cuda")
    with runtime.launch_configurations():
        module = import_module(path)
    driver = getattr(module, gen.driver_name)
    return CudaProgram(graph, name, gen, path, driver, time.perf_counter() - start)
