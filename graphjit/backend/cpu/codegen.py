"""Graph -> generated Python modules: ``@njit`` kernels and one driver; ``compile_graph``.

For ``graph f(%x: f32[2,3] {arg}) { %0 = exp(%x) ... }`` the program module reads:

    from graphjit.backend.cpu.native import buffer_view, load_address, run_kernel
    from graphjit.backend.source import import_sibling

    # %0 = exp(%x) : f32[2,3]
    k0_exp = import_sibling(__file__, "kernel_5c1e0f8a2b9d7c3e4f6a.py").k


    @njit(error_model="numpy", cache=True)
    def run_f(at, kernels):
        # The buffers' data pointers, read from their array objects ([Driver arguments] ...).
        for j in range(2):
            at[j] = load_address(at[j] + 16)
        x = buffer_view(at[0], 6, np.float32)
        r0 = buffer_view(at[1], 6, np.float32)
        # %0 = exp(%x) : f32[2,3]
        run_kernel(kernels[0], (x, r0))  # k0_exp

and the kernel module it imports, ``kernel_5c1e0f8a2b9d7c3e4f6a.py`` (the hash of its text):

    @njit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True, cache=True)
    def k(in0, out):
        for i0 in range(6):
            x0 = in0[i0]
            out[i0] = exp_f32(x0)

One kernel per node, named ``k<node>_<op>`` in the program after the IR value it computes;
nodes whose kernels would be identical share the first one, and so do programs: each kernel
is a module of its own, compiled once per process and cached by Numba across processes
(see [Kernel modules]). The driver takes every buffer from the caller, as the addresses of
their array objects (``at``: see [Driver arguments] in native.py), and calls the kernels in
program order, through their addresses (``kernels``: see [Kernel calls by address] there),
so running the program is one native call; the Python wrapper (``CompiledProgram``) checks
the inputs and hands out the flat results in their shapes (see [Flat buffers] in kernel.py).
``generate(graph).source`` is the whole program as one module, the kernels written out in
it, for reading (``graphjit dump``'s ``kernels.py``).
"""
from __future__ import annotations

import os
import re
import time

from ..._gc import paused_gc
from ...ir.printer import format_node, print_graph, value_names
from ...shapes import numel
from ..core.buffers import ProgramBuffers
from ..core.kernel import check_graph, needs_kernel
from ..core.literals import np_type
from ..source import import_module, module_file_name, module_path, write_module
from ..writer import Namer, SourceWriter, identifier
from . import (collective, creation, elementwise, fused, index, linalg, random,  # noqa: F401
               reduce, scan, shape, vmath, window)  # (emitters)
from .kernel import EMITTERS, KERNEL_IMPORTS, MODULE_GLOBALS, KernelWriter
from .native import DATA_OFFSET
from . import looped
from .looped import Call, Fill, cat_parts, looped_driver, tuple_expression
from .program import CompiledProgram
from .tiered import TIERS, compile_tiered
from .prepared import KERNEL_FUNCTION, PreparedProgram, load_from_bundles

# NOTE: [Workspace arenas]
# The temporaries' workspace slots (see [Buffer plan] in graphjit/ir/buffers.py) are slices
# of one array per dtype, each starting at a multiple of ARENA_ALIGN bytes (as a NumPy
# array's data does), rather than one array each. They were made to keep the driver's
# argument count down, when each buffer was an argument of its own (Numba's compile time
# grows faster than linearly with it: a driver of 10 array arguments 1.0 s, 100: 2.6 s,
# 190: 6.7 s on the development VM, and an unrolled RNN had 152 slots); now that the driver
# takes one array of addresses ([Driver arguments] in native.py) they still make a first
# call allocate one array per dtype, and each call pass a few addresses, not 152.
ARENA_ALIGN = 64

# Kernels are only called from the driver, so they need no CPython or cfunc wrapper
# (each costs compile time); Numba caches them all the same (see [Kernel modules]).
# error_model="numpy": x / 0 gives inf, not an exception, and float loops vectorise.
KERNEL_FLAGS = 'error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True, cache=True'
# Opt-in (``graphjit.compile(fn, fastmath=True)``): LLVM may contract a * b + c into one
# fused multiply-add, use reciprocals and ignore the sign of zero, so results can differ
# from eager mode in the last bits. Off by default: compiled programs match eager. Not
# included: "reassoc" (sums already reassociate through accumulate.add, and it would undo
# the range reductions of backend/cpu/vmath.py: exp of a sum was off by 800 with it), and
# "nnan"/"ninf" (NaN and inf must still propagate).
FASTMATH_FLAG = ', fastmath={"contract", "arcp", "nsz", "afn"}'
DRIVER_FLAGS = 'error_model="numpy", cache=True'
# A kernel module's file is ``kernel_<hash>.py``; the kernel in it is ``k`` (KERNEL_FUNCTION).
KERNEL_STEM = "kernel"


def kernel_flags(parallel: bool, fastmath: bool) -> str:
    """The arguments of a kernel's ``njit``."""
    return (("parallel=True, " if parallel else "") + KERNEL_FLAGS
            + (FASTMATH_FLAG if fastmath else ""))


def emitter_for(op):
    """The CPU emitter of ``op`` (an OpDef), or None when the backend cannot compile it (or
    it needs no kernel: a flat view)."""
    return EMITTERS.for_op(op)


class GeneratedModule:
    """The texts of a program's modules and how its driver is called."""

    def __init__(self, source, driver_name, params, results, module_source, kernel_sources):
        self.source = source                  # the whole program as one module, to read
        self.module_source = module_source    # the program module: kernel imports, driver
        self.kernel_sources = kernel_sources  # the kernel modules it imports, in its order
        self.driver_name = driver_name
        self.params = params      # graph inputs in driver-argument order (= graph order)
        self.results = results    # the program's results: outputs, then updates


class _Kernel:
    def __init__(self, name, params, body, parallel, module_source):
        self.name = name          # in the program: the first node's ``k<node>_<op>``
        self.parallel = parallel  # compiled with parallel=True (a prange loop)
        # Input parameters ``in0, in1...``, then the output ones; a result computed in place
        # is written through the input parameter it reads, and has none.
        self.params = params
        self.body = body
        self.module_source = module_source  # its kernel module's text ([Kernel modules])
        self.file_name = module_file_name(module_source, KERNEL_STEM)
        self.ir_lines = []


# NOTE: [Kernel modules]
# A program is a program module (its driver) and one kernel module per distinct kernel,
# side by side in <cache>/cpu ([Generated modules on disk] in backend/source.py):
#
#     <graph>_<hash>.py   comments and the graph's IR, then per kernel
#                         ``k3_fused = import_sibling(__file__, "kernel_<hash>.py").k``
#                         under the IR lines it runs, then ``@njit(cache=True) def run_<graph>``
#     kernel_<hash>.py    the imports its body uses, ``@njit(<flags>) def k(in0, ..., out)``
#
# Why: Numba compiles a function once per dispatcher, and a dispatcher belongs to the module
# that defines it; defined in the program's module, a kernel was compiled again by every
# program that has it (trace 1 and 2 of a step, the forward and backward programs of a
# compiled forward, two functions with the same elementwise chain). In a module of its own,
# named by the hash of its text, the kernel is one dispatcher per process: a second program
# importing it finds the module imported and the dispatcher compiled for its signature
# (every buffer is a writeable 1-D C array: CompiledProgram makes read-only and strided
# inputs so, and workspace slices ``w0[:n]`` stay C arrays), and with ``cache=True`` a new
# process loads the kernel from Numba's cache instead of compiling it
# (tests/backend/test_kernel_sharing.py).
#
# The hash is that of the kernel module's whole text: its parameters and body, the imports
# the body uses and the njit flags (error_model, fastmath when asked for, parallel), all that
# decides the compiled code, and nothing of the program (value names, IR lines: those stay in
# the program module as comments). The program module's text names its kernel modules' files,
# so its own hash covers theirs. The driver calls its kernels through their addresses
# ([Kernel calls by address] in native.py), so its cache entry holds none of their code:
# a program loads each kernel from the kernel's own cache entry, or compiles it.
#
# Numba caches these wrapper-less functions like any other (numba 0.68); a cached parallel
# kernel needed one fix, see _keep_reload_hooks in backend/numba_cache.py. ``generate(...).source``
# is the program written as one module, for reading (the dump's kernels.py, tests): the same
# driver, with each kernel's text in place of its import, under the name of its file.
#
# Measured (2-core development VM, fresh caches, benchmarks/suite.py's compile probe): W3's
# second trace (SGD's steady state, 10 of its 14 kernels the first trace's) compiles in
# 1.4-1.8 s instead of 2.6-3.1 s; W2 gains nothing (its two traces are one program text, so
# one module already), and caching every kernel costs it about 0.15 s (5 ms a kernel, Numba
# saving and looking up its entry) of a 6.5-8 s cold compile.


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _imports(code: str, extra=()) -> list:
    """The import lines (groups separated by a blank line) for the names ``code`` uses, so a
    module imports only those; ``extra``: further lines of graphjit's group. (Generated
    code never shadows these names: they are in kernel.MODULE_GLOBALS.)"""
    used = set(_IDENTIFIER.findall(code))
    numba = ["njit"] + ["prange"] * ("prange" in used)
    native = [name for name in ("buffer_view", "load_address", "run_kernel", "run_row")
              if name in used]
    ours = [f"from graphjit.backend.cpu.native import {', '.join(native)}"] * bool(native)
    ours += list(extra)
    if "acc_add" in used:
        ours.append("from graphjit.backend.cpu.accumulate import add as acc_add")
    helpers = [name for name in vmath.NAMES if name in used]
    if helpers:
        ours.append(f"from graphjit.backend.cpu.vmath import {', '.join(helpers)}")
    ours += [line for name, line in KERNEL_IMPORTS.items() if name in used]
    groups = [["import math"] if "math" in used else [],
              (["import numpy as np"] if "np" in used else [])
              + [f"from numba import {', '.join(numba)}"],
              ours]
    lines = []
    for group in groups:
        if group:
            lines += ([""] if lines else []) + group
    return lines


_HASHES: dict = {}


def _helpers_hash() -> str:
    """A hash of the helper modules kernels import (vmath and its intrinsics, accumulate):
    Numba compiles their code into each kernel's cache entry, so a kernel's text names the
    version it was built with, and editing them gives new kernel modules instead of stale
    cached code."""
    from . import accumulate, vmath_llvm
    return _files_hash((vmath, vmath_llvm, accumulate))


def _driver_helpers_hash() -> str:
    """A hash of native.py, whose intrinsics (``load_address``, ``buffer_view``,
    ``run_kernel``) Numba compiles into each driver's cache entry: a program module's text
    names the version, as a kernel's names its helpers' (``_helpers_hash``)."""
    from . import native
    return _files_hash((native,))


def _files_hash(modules) -> str:
    key = tuple(module.__name__ for module in modules)
    if key not in _HASHES:
        import hashlib
        digest = hashlib.sha256()
        for module in modules:
            with open(module.__file__, "rb") as f:
                digest.update(f.read())
        _HASHES[key] = digest.hexdigest()[:16]
    return _HASHES[key]


def _kernel_module(params, body, flags) -> str:
    code = f"def {KERNEL_FUNCTION}({', '.join(params)}):\n{body.rstrip()}\n"
    out = SourceWriter()
    out.line("# Generated by graphjit.backend.cpu: one kernel, imported by every program that runs")
    out.line("# it ([Kernel modules] in graphjit/backend/cpu/codegen.py). Do not edit: the file")
    out.line("# name is the hash of its text (graphjit/backend/source.py).")
    if "acc_add" in code or any(name in code for name in vmath.NAMES):
        out.line(f"# helpers (vmath.py, vmath_llvm.py, accumulate.py): {_helpers_hash()}")
    for line in _imports(code):
        out.line(line)
    out.line()
    out.line()
    out.line(f"@njit({flags})")
    out.lines_from(code)
    return out.text()


def generate(graph, name: str | None = None, inplace: bool = False,
             fastmath: bool = False) -> GeneratedModule:
    """The source of the module that runs ``graph`` (no file is written, nothing compiled).
    With ``inplace``, updates are computed in their targets' buffers where legal (see
    [In-place updates] in graphjit/ir/buffers.py); the driver then does not return them.
    ``fastmath``: see FASTMATH_FLAG."""
    check_graph(graph, EMITTERS, "CPU")
    names = value_names(graph)
    namer = Namer(MODULE_GLOBALS)
    driver_name = namer.fresh(f"run_{identifier(name or graph.name)}")
    kernel_names = {i: namer.fresh(f"k{i}_{n.op.name}") for i, n in enumerate(graph.nodes)}
    buf, owner = {}, {}  # value -> driver variable; value -> graph value that owns the buffer
    # value -> (driver parameter holding it, its first element there), and the program's
    # steps in order, for a looped driver ([Looped drivers]).
    loc, steps = {}, []
    for v in graph.inputs:
        buf[v] = namer.fresh(v.name)
        owner[v] = v
        loc[v] = (buf[v], 0)
    params = list(graph.inputs)
    # Buffers come from the caller (see [Buffer plan] in graphjit/ir/buffers.py): one per
    # result a node computes, from the program's result pool, then the workspace slots the
    # temporaries share.
    buffers = ProgramBuffers(graph, inplace)
    in_place, results = buffers.in_place, buffers.results
    slot_of, slots = buffers.slot_of, buffers.slots
    result_params = {v: namer.fresh(f"r{j}") for j, v in enumerate(buffers.result_buffers)}
    # The slots share one workspace array per dtype ([Workspace arenas]).
    arenas = {}  # dtype -> [driver parameter, elements]
    slot_at = []  # per slot: (its arena's parameter, its first element)
    for dtype, n in slots:
        arena = arenas.setdefault(dtype, [namer.fresh(f"w{len(arenas)}"), 0])
        slot_at.append((arena[0], arena[1]))
        arena[1] += -(-max(n, 1) * dtype.itemsize // ARENA_ALIGN) * ARENA_ALIGN // dtype.itemsize

    kernels, by_text = [], {}
    threaded_blas = False  # a GEMM large enough for OpenBLAS's threads ([Threads under load])
    # (kernel, argument dtypes) -> its entry in the address table ([Kernel calls by address]).
    table_index = {}
    table_param = namer.fresh("kernels")
    driver = SourceWriter(indent=1)
    for i, node in enumerate(graph.nodes):
        if not needs_kernel(node.op):  # a flat view: its input's buffer ([Flat buffers])
            src = node.inputs[0]
            buf[node.out], owner[node.out], loc[node.out] = buf[src], owner[src], loc[src]
            driver.line(f"# {format_node(node, names)}")
            driver.line(f"#   (no kernel: the buffer of {buf[src]} as is)")
            continue
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
        # A long cat runs in parts, each its own kernel ([Long concatenations] in looped.py).
        parts = cat_parts(node) if not any(v in in_place for v in node.outs) else None
        if parts is None:
            emitter_for(node.op)(node, k)
        threaded_blas = threaded_blas or k.threaded_blas
        driver.line(f"# {k.ir_line}")
        out_vars = []
        for j, v in enumerate(node.outs):
            n, dtype = numel(v.shape), np_type(v.dtype)
            if v in in_place:
                var = buf[in_place[v]]
                loc[v] = loc[in_place[v]]
                driver.line(f"#   (%{names[v]} computed in place: the buffer of {var}, "
                            "see [In-place updates])")
            else:
                if v in result_params:
                    var = result_params[v]
                    loc[v] = (var, 0)
                else:
                    var = namer.fresh(f"v{names[v]}")
                    arena, first = slot_at[slot_of[v]]
                    driver.line(f"{var} = {arena}[{first or ''}:{first + n}]")
                    loc[v] = (arena, first)
            if j in k.fills:
                driver.line(f"{var}[:] = {k.fills[j]}")
                steps.append(Fill(loc[v], n, v.dtype, k.fills[j], k.ir_line))
            buf[v], owner[v] = var, v
            out_vars.append(var)
        if k.no_kernel:
            continue
        if parts is None:
            # (argument expression, (parameter, first element), length, dtype) per argument
            args = [(buf[v], loc[v], numel(v.shape), v.dtype) for v in node.inputs]
            args += [(var, loc[v], numel(v.shape), v.dtype)
                     for v, var, w in zip(node.outs, out_vars, writes_input) if w is None]
            parts = [(k, args)]
        else:  # [Long concatenations]: each part writes its slice of the result
            (v,), (var,) = node.outs, out_vars
            parts, calls = [], parts
            for j, (part, first) in enumerate(calls):
                names[part.out] = f"{names[v]}_part{j}"
                pk = KernelWriter(part, namer.fresh(f"{kernel_names[i]}_part"), names)
                emitter_for(part.op)(part, pk)
                n = numel(part.out.shape)
                args = [(buf[x], loc[x], numel(x.shape), x.dtype) for x in part.inputs]
                args.append((f"{var}[{first}:{first + n}]", (loc[v][0], loc[v][1] + first), n,
                             v.dtype))
                parts.append((pk, args))
        for pk, args in parts:
            kparams = pk.ins + [name for name, w in zip(pk.outs, writes_input) if w is None]
            text = _kernel_module(kparams, pk.body, kernel_flags(pk.parallel, fastmath))
            kernel = by_text.get(text)  # identical kernels are one (see [Kernel modules])
            if kernel is None:
                kernel = by_text[text] = _Kernel(pk.name, kparams, pk.body, pk.parallel, text)
                kernels.append(kernel)
            kernel.ir_lines.append(pk.ir_line)
            entry = table_index.setdefault((kernel, tuple(a[3] for a in args)), len(table_index))
            driver.line(f"run_kernel({table_param}[{entry}], "
                        f"{tuple_expression([a[0] for a in args])})  # {kernel.name}")
            steps.append(Call(entry, [a[1] + a[2:] for a in args], kernel.name, pk.ir_line))

    # The driver's buffers, (name, elements, dtype) each: the inputs, the result buffers,
    # the workspace arenas; it takes their array objects' addresses ([Driver arguments] in
    # native.py).
    driver_buffers = ([(buf[v], numel(v.shape), v.dtype) for v in params]
                      + [(result_params[v], n, dt) for v, (n, dt)
                         in zip(buffers.result_buffers, buffers.result_types())]
                      + [(param, n, dtype) for dtype, (param, n) in arenas.items()])
    buffer_params = [param for param, _, _ in driver_buffers]
    # Each result is a buffer the caller passed: its own, or (an update computed in place) its
    # target input's, or, an input returned as is (or a reshape of one), a copy of that input:
    # the caller may write updates into input buffers, and must not alias them by surprise.
    position = {param: j for j, param in enumerate(buffer_params)}
    if any(loc[v][1] for v in results):  # (the buffer plan gives each result its own)
        raise RuntimeError(f"graph {graph.name!r}: a result is not a whole buffer")
    returns = [(position[loc[v][0]], owner[v].node is None) for v in results]
    at = namer.fresh("at")
    j = namer.fresh("j")
    prologue = ["    # The buffers' data pointers, read from their array objects ([Driver "
                "arguments] in native.py).",
                f"    for {j} in range({len(buffer_params)}):",
                f"        {at}[{j}] = load_address({at}[{j}] + {DATA_OFFSET})"]
    driver_code = [f"@njit({DRIVER_FLAGS})", f"def {driver_name}({at}, {table_param}):"] + prologue
    if looped.wants_loop(steps):
        steps_name = namer.fresh("STEPS")
        table, body = looped_driver(steps, steps_name, buffer_params, table_param, at, namer)
        driver_code = ([f"{steps_name} = np.array(["] + table + ["], dtype=np.int64)", "", ""]
                       + driver_code + body)
    else:
        used = set(_IDENTIFIER.findall("\n".join(driver.lines)))
        driver_code += [f"    {param} = buffer_view({at}[{k}], {n}, {np_type(dt)})"
                        for k, (param, n, dt) in enumerate(driver_buffers) if param in used]
        driver_code += driver.lines
    graph_text = [f"#   {text}" for text in print_graph(graph).splitlines()]

    def kernel_comment(out, kernel):
        out.line(f"# {kernel.ir_lines[0]}")
        for also in kernel.ir_lines[1:]:
            out.line(f"#   also runs {also}")

    # The program module ([Kernel modules]): its kernels imported, and the driver.
    imports = [f'{kernel.name} = import_sibling(__file__, "{kernel.file_name}").{KERNEL_FUNCTION}'
               for kernel in kernels]
    out = SourceWriter()
    out.line(f"# Generated by graphjit.backend.cpu from graph {graph.name!r}. Do not edit:")
    out.line("# the file name is the hash of its text (graphjit/backend/source.py). Each kernel")
    out.line("# is in a module of its own ([Kernel modules] in graphjit/backend/cpu/codegen.py).")
    out.line(f"# helpers (native.py): {_driver_helpers_hash()}")
    out.line("#")
    for line in graph_text:
        out.line(line)
    ours = ["from graphjit.backend.source import import_sibling"] if kernels else []
    for line in _imports("\n".join(imports + driver_code), ours):
        out.line(line)
    for kernel, line in zip(kernels, imports):
        out.line()
        kernel_comment(out, kernel)
        out.line(line)
    out.line()
    out.line()
    out.lines_from("\n".join(driver_code))
    module_source = out.text()

    # The same program as one module, to read: each kernel written out under its file's name.
    definitions = []
    for kernel in kernels:
        definitions.append(f"def {kernel.name}({', '.join(kernel.params)}):")
        definitions += kernel.body.rstrip("\n").splitlines()
    out = SourceWriter()
    out.line(f"# Generated by graphjit.backend.cpu from graph {graph.name!r}: the program as one")
    out.line("# module, to read. What runs is this driver in a module that imports each kernel")
    out.line("# from a module of its own, the file named above the kernel ([Kernel modules] in")
    out.line("# graphjit/backend/cpu/codegen.py).")
    out.line("#")
    for line in graph_text:
        out.line(line)
    for line in _imports("\n".join(definitions + driver_code)):
        out.line(line)
    out.line()
    out.line(f"kernel = njit({kernel_flags(False, fastmath)})")
    if any(kernel.parallel for kernel in kernels):
        out.line(f"parallel_kernel = njit({kernel_flags(True, fastmath)})")
    for kernel in kernels:
        out.line()
        out.line()
        out.line(f"# {kernel.file_name}")
        kernel_comment(out, kernel)
        out.line("@parallel_kernel" if kernel.parallel else "@kernel")
        out.line(f"def {kernel.name}({', '.join(kernel.params)}):")
        out.lines_from(kernel.body.rstrip("\n"))
    out.line()
    out.line()
    out.lines_from("\n".join(driver_code))
    module = GeneratedModule(out.text(), driver_name, params, results, module_source,
                             [kernel.module_source for kernel in kernels])
    module.result_buffers = buffers.result_types()
    # Per result, (its buffer's position among the driver's buffers, whether it is a copy of
    # that buffer): the driver returns nothing, ``CompiledProgram`` picks the results.
    module.returns = returns
    # Per address-table entry: the kernel's name in the program module, its argument dtypes
    # and a guess of its compile time (the order workers take kernels in: see [Parallel
    # kernel compilation] in workers.py; parfor lowering makes parallel kernels the dearest).
    module.kernel_table = [(kernel.name, dtypes, len(kernel.body) * (4 if kernel.parallel else 1))
                           for kernel, dtypes in table_index]
    # Each kernel's module file ([Programs from their bundles]).
    module.kernel_files = {kernel.name: kernel.file_name for kernel in kernels}
    module.slots = [(n, dtype) for dtype, (_, n) in arenas.items()]  # the arenas
    module.slot_count = len(slots)
    # What the program's calls may run on threads: see [Threads under load] in threads.py.
    module.parallel = any(kernel.parallel for kernel in kernels)
    module.threaded_blas = threaded_blas
    # Update position -> index of its target among the inputs, for updates done in place.
    module.in_place = buffers.in_place_positions()
    return module


def compile_graph(graph, name: str | None = None, inplace: bool = False,
                  fastmath: bool = False, tier: str = "native",
                  generated: GeneratedModule | None = None) -> CompiledProgram:
    """Generate, write, import and compile the CPU program of ``graph``.

    The modules are written to the on-disk cache (see [Generated modules on disk] in
    backend/source.py); Numba's own cache makes a second compile of the same graph, in
    this process or a new one, skip code generation in LLVM, and a kernel another program
    compiled already is not compiled again (see [Kernel modules]). ``tier``: "native"
    returns once the native program is compiled; "tiered" returns at once a program that
    runs on NumPy until its native code, compiled in the background, is ready, and
    "interpret" one that only ever runs on NumPy ([Tiered execution] in tiered.py), "once"
    (a program run once) the native program if an earlier process left all its code in the
    cache, else one that runs on NumPy. ``generated``: what ``generate`` made of this graph with these options before (from
    the lowering cache, [The lowering cache] in graphjit/jit/lowering_cache.py).
    """
    if tier != "native":
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
        start = time.perf_counter()
        with paused_gc():  # [No GC while compiling] in graphjit/_gc.py
            if tier == "once":  # written (so maybe compiled) by an earlier process?
                generated = generated or generate(graph, name or graph.name,
                                                  inplace=inplace, fastmath=fastmath)
            loaded = None if tier == "interpret" else load_from_bundles(
                graph, name, generated, _preparer(graph, name, generated))
            if loaded is not None:
                return compile_tiered(None, tier, start, loaded=loaded)
            if tier == "once":
                write = os.path.exists(module_path(generated.module_source,
                                                   name or graph.name, "cpu"))
            else:
                write = tier == "tiered"
            prepared = prepare_program(graph, name, inplace, fastmath, write=write,
                                       generated=generated)
        # A program run once is compiled later, in the background, for the next process.
        fill = None if tier != "once" else (lambda: prepare_program(
            graph, name, inplace, fastmath, generated=generated))
        return compile_tiered(prepared, tier, start, fill)
    with paused_gc():  # [No GC while compiling] in graphjit/_gc.py
        start = time.perf_counter()
        program = load_from_bundles(graph, name, generated, _preparer(graph, name, generated)) \
            or prepare_program(graph, name, inplace, fastmath, generated=generated).finish()
        program.compile_seconds = time.perf_counter() - start
        return program


def _preparer(graph, name, generated):
    """What imports a program's modules given its ``generated`` module (see
    ``load_from_bundles``)."""
    return lambda: prepare_program(graph, name, False, False, generated=generated)


def prepare_program(graph, name, inplace, fastmath, write=True,
                    generated=None) -> "PreparedProgram":
    """A program's modules generated (unless ``generated`` is given), written and
    imported: everything but Numba's work (``write=False``: generated only, for a program
    that never compiles)."""
    name = name or graph.name
    if generated is None:
        generated = generate(graph, name, inplace=inplace, fastmath=fastmath)
    if not write:
        return PreparedProgram(graph, name, generated, None, None)
    # The kernel modules first: the program module imports them from their files.
    for text in generated.kernel_sources:
        import_module(write_module(text, KERNEL_STEM, "cpu"))
    path = write_module(generated.module_source, name, "cpu")
    return PreparedProgram(graph, name, generated, path, import_module(path))
