"""Graph -> CUDA program: one ``@cuda.jit`` kernel module per distinct kernel, and a Python
driver that launches them in program order; ``compile_graph``.

For ``graph f(%x: f32[2,3] {arg}) { %0 = exp(%x) ... }`` the program module reads:

    # %0 = exp(%x) : f32[2,3]
    k0_exp = import_sibling(__file__, "kernel_5c1e0f8a2b9d7c3e4f6a.py").k


    def run_f(x, r0, err):
        # %0 = exp(%x) : f32[2,3]
        k0_exp[(1,), (256,)](x, r0)
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

The graph is the CPU target's fused graph (the pipeline without ``gemm``, a CPU lowering
onto BLAS; see ``CUDA_PASSES``), so both targets fuse the same groups; buffers follow the
same plan (results, in-place updates, workspace slots shared by temporaries: [Buffer plan]
in passes/memory.py), all device arrays. The driver runs on the host: each launch is
asynchronous, so a step's kernels queue up on the GPU back to back, and nothing comes back
to the host unless a kernel may flag an index error (see [CUDA kernels] in emit.py).
"""
from __future__ import annotations

import time

import numpy as np

from passes.memory import plan_buffers

from ...errors import GraphjitError
from ...ir.printer import format_node, print_graph, value_names
from ...shapes import numel
from ..cpu.codegen import inplace_updates
from ..source import Namer, SourceWriter, identifier, import_module, module_file_name, write_module
from . import runtime
from .emit import ALIAS_OPS, CudaKernelWriter, emitter_for
from .program import CudaProgram

KERNEL_STEM = "kernel"
KERNEL_FLAGS = "cache=True"
DRIVER_GLOBALS = ("np", "fill", "copy_array", "import_sibling")


def cuda_passes():
    """The pass pipeline of the CUDA target: the CPU's without ``gemm`` (which lowers matrix
    products onto BLAS calls with fused epilogues)."""
    from passes.pipeline import DEFAULT
    return [p for p in DEFAULT if p.name != "gemm"]


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
        # Per kernel module, in kernel_sources' order: the argument dtypes of its launches
        # (a list of distinct tuples of NumPy dtypes; every argument is a flat C-contiguous
        # device array). ptx.py compiles the kernels for a GPU with them, without one.
        self.kernel_signatures = []


def _check_graph(graph) -> None:
    names = value_names(graph)
    for node in graph.nodes:
        if node.op.name == "grad":
            raise GraphjitError(f"the graph {graph.name!r} still holds a gradient request "
                                f"({format_node(node, names)}); run passes/autodiff first",
                                op="grad")
        if emitter_for(node.op) is None:
            raise GraphjitError(f"the CUDA backend has no kernel for op {node.op.name!r} "
                                f"({format_node(node, names)})", op=node.op.name)


def _owners(graph) -> dict:
    owner = {v: v for v in graph.inputs}
    for node in graph.nodes:
        for v in node.outs:
            owner[v] = owner[node.inputs[0]] if node.op.name in ALIAS_OPS else v
    return owner


def _inplace_updates(graph, owners) -> dict:
    """The CPU target's in-place updates ([In-place updates] in backend/cpu/codegen.py),
    less those of a value smaller than its kernel's largest result (an optimizer's 0-d
    step count beside its parameters): every thread reads such a target, and the one
    writing it would race the others' reads (the CPU loop reads it once, before)."""
    found = inplace_updates(graph, owners)
    # (``found`` may map a value and the node result it views to one target: drop both.)
    racy = {t for v, t in found.items()
            if v.node is not None and numel(v.shape) < max(numel(o.shape) for o in v.node.outs)}
    return {v: t for v, t in found.items() if t not in racy}


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
    _check_graph(graph)
    names = value_names(graph)
    gen = GeneratedCudaModule()
    namer = Namer(DRIVER_GLOBALS)
    gen.driver_name = namer.fresh(f"run_{identifier(name or graph.name)}")
    buf = {v: namer.fresh(v.name) for v in graph.inputs}
    owners = _owners(graph)
    in_place = _inplace_updates(graph, owners) if inplace else {}
    results = list(graph.outputs) + [v for t, v in graph.updates if in_place.get(v) is not t]
    result_buffers = []
    for v in results:
        if owners[v].node is not None and owners[v] not in result_buffers:
            result_buffers.append(owners[v])
    temps = [v for n in graph.nodes for v in n.outs
             if owners[v] is v and v not in result_buffers and v not in in_place]
    slot_of, slots = plan_buffers(graph, temps, owners)
    result_params = {v: namer.fresh(f"r{j}") for j, v in enumerate(result_buffers)}
    temp_params = {}
    for v in temps:
        temp_params[v] = namer.fresh(f"v{names[v]}")
        gen.temp_views.append((slot_of[v], numel(v.shape)))
    err = namer.fresh("err")

    kernel_names = {i: namer.fresh(f"k{i}_{n.op.name}") for i, n in enumerate(graph.nodes)}
    by_text, kernels = {}, []   # module text -> (program name, file name); in order
    driver = SourceWriter(indent=1)
    for i, node in enumerate(graph.nodes):
        k = CudaKernelWriter(node, kernel_names[i])
        emitter_for(node.op)(node, k)
        driver.line(f"# {format_node(node, names)}")
        if k.alias_of is not None:
            buf[node.out] = buf[node.inputs[0]]
            driver.line(f"#   (no kernel: the buffer of {buf[node.out]} as is)")
            continue
        out_vars = []
        for v in node.outs:
            if v in in_place:
                var = buf[in_place[v]]
                driver.line(f"#   (%{names[v]} computed in place: the buffer of {var})")
            else:
                var = result_params.get(v) or temp_params[v]
            buf[v] = var
            out_vars.append(var)
        for j, literal in sorted(k.fills.items()):
            driver.line(f"fill({out_vars[j]}, {literal})")
        if k.no_kernel:
            continue
        body = k.body
        args = [buf[v] for v in node.inputs] + out_vars
        if k.error is not None:
            gen.errors.append(f"{node.op.name}: {k.error}")
            body = body.replace("err[0] = 1", f"err[0] = {len(gen.errors)}")
            args.append(err)
        text = _kernel_module(k.params, body)
        if text not in by_text:
            by_text[text] = (k.name, module_file_name(text, KERNEL_STEM), [], [])
            kernels.append(text)
        kname, _, ir_lines, signatures = by_text[text]
        ir_lines.append(format_node(node, names))
        signature = tuple([v.dtype.np for v in node.inputs] + [v.dtype.np for v in node.outs]
                          + ([np.dtype(np.int32)] if k.error is not None else []))
        if signature not in signatures:
            signatures.append(signature)
        driver.line(f"{kname}[{k.grid}, {k.block}]({', '.join(args)})")

    returned = [f"copy_array({buf[v]})" if owners[v].node is None else buf[v] for v in results]
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
        out.line("from graphjit.backend.cuda.runtime import copy_array, fill")
        out.line("from graphjit.backend.source import import_sibling")

    out = SourceWriter()
    header(out, "")
    for text in kernels:
        kname, file_name, ir_lines, _ = by_text[text]
        out.line()
        for line in ir_lines:
            out.line(f"# {line}")
        out.line(f'{kname} = import_sibling(__file__, "{file_name}").k')
    out.line()
    out.line()
    out.lines_from("\n".join(driver_code))
    gen.module_source = out.text()

    out = SourceWriter()
    header(out, ": the program as one module, to read")
    for text in kernels:
        kname, file_name, ir_lines, _ = by_text[text]
        out.line()
        out.line()
        out.line(f"# {file_name}")
        for line in ir_lines:
            out.line(f"# {line}")
        body = text[text.index("@cuda.jit"):].replace("def k(", f"def {kname}(", 1)
        out.lines_from(body.rstrip())
    out.line()
    out.line()
    out.lines_from("\n".join(driver_code))
    gen.source = out.text()
    gen.kernel_sources = kernels
    gen.kernel_signatures = [by_text[text][3] for text in kernels]
    gen.params = list(graph.inputs)
    gen.results = results
    gen.result_buffers = [(numel(v.shape), v.dtype) for v in result_buffers]
    gen.slots = [(n, dtype) for dtype, n in slots]
    gen.in_place = {j: gen.params.index(t) for j, (t, v) in enumerate(graph.updates)
                    if in_place.get(v) is t}
    return gen


def compile_graph(graph, name: str | None = None, inplace: bool = False,
                  fastmath: bool = False) -> CudaProgram:
    """Generate, write and import the CUDA program of ``graph`` (Numba compiles each kernel
    at its first launch, or loads it from its disk cache). ``fastmath`` is accepted for
    the CPU target's signature and ignored: CUDA kernels compile without it."""
    name = name or graph.name
    start = time.perf_counter()
    gen = generate(graph, name, inplace=inplace)
    runtime.cuda()  # numba.cuda before the modules that import it
    for text in gen.kernel_sources:
        import_module(write_module(text, KERNEL_STEM, "cuda"))
    path = write_module(gen.module_source, name, "cuda")
    module = import_module(path)
    driver = getattr(module, gen.driver_name)
    return CudaProgram(graph, name, gen, path, driver, time.perf_counter() - start)
