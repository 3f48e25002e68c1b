"""Per-kernel timing of a compiled program against this machine's own measured limits.

``graphjit dump --profile`` uses it: each kernel (node) of the final graph is compiled as a
one-node program and timed on the values it really sees (computed by the reference
interpreter from the call's inputs), the fixed cost of calling a program is subtracted, and
the achieved GB/s and GFLOP/s are set against the memory bandwidth and matrix-multiply rate
measured on this machine (once, then read from ``<cache>/machine.json``). Where OpenBLAS
runs AVX2 kernels on a CPU with AVX-512 (``OPENBLAS_CORETYPE`` set so), a note says the
products run below the CPU's rate, and why.
"""
from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from .backend.cache import cache_dir
from .backend.cpu import compile_graph
from .ir import Graph
from .ir.buffers import aliases_input
from .ir.labels import kernel_label


def _median_time(fn, repeats: int) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` samples; each sample runs ``fn``
    often enough to last about a millisecond, so the timer's resolution does not matter."""
    fn()  # warm up
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    number = max(1, min(10000, int(1e-3 / once)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return float(np.median(times))


# Net kernel times below this are within the noise of the call overhead they are measured
# against: shown, but without rates.
RESOLUTION = 0.2e-6


def machine_limits(refresh: bool = False) -> dict:
    """``{"bandwidth_gbs": copy bandwidth, "gemm_gflops": float32 1024^3 GEMM rate}``."""
    path = os.path.join(cache_dir(), "machine.json")
    key = f"{platform.node()}/{os.cpu_count()}/{platform.processor() or platform.machine()}"
    if not refresh and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("key") == key:
                return data
        except (OSError, ValueError):
            pass  # unreadable: measure again
    n = 1 << 25  # 128 MiB per float32 array: far beyond the caches
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    copy = _median_time(lambda: np.copyto(dst, src), 5)
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    gemm = _median_time(lambda: a @ a, 5)
    data = {"key": key, "bandwidth_gbs": 2 * n * 4 / copy / 1e9,
            "gemm_gflops": 2 * 1024 ** 3 / gemm / 1e9,
            "how": "np.copyto of 128 MiB float32 (read + write); float32 1024x1024 @ 1024x1024"}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return data


def node_values(graph, inputs) -> dict:
    """Every value of ``graph`` on ``inputs`` (one array per non-const input), by the
    reference ops (``OpDef.impl``)."""
    env = {}
    args = iter(inputs)
    for v in graph.inputs:
        env[v] = graph.constants[v] if v.role == "const" else np.asarray(next(args))
    with np.errstate(all="ignore"):
        for n in graph.nodes:
            results = n.op.impl(*[env[v] for v in n.inputs], **n.attrs)
            for v, r in zip(n.outs, results if len(n.outs) > 1 else (results,)):
                env[v] = np.asarray(r).astype(v.dtype.np, copy=False)
    return env


def _one_node_program(node):
    g = Graph(f"profile_{node.op.name}")
    ins = [g.add_input(v.type, f"in{i}", "arg") for i, v in enumerate(node.inputs)]
    outs = g.add_node(node.op, ins, node.attrs, node.out_type)
    g.outputs = outs if isinstance(outs, list) else [outs]
    return compile_graph(g)


def _call_overhead(repeats: int) -> float:
    """What calling a compiled program costs beyond its kernel (one neg of one element)."""
    from .ir import parse_graph
    program = compile_graph(parse_graph(
        "graph profile_call(%x: f32[1] {arg}) {\n  %0 = neg(%x) : f32[1]\n  return %0\n}"))
    args = [np.ones(1, np.float32)]
    return _median_time(lambda: program(args), repeats)


def profile_graph(graph, inputs, repeats: int = 25) -> list:
    """``[(node, median seconds, flops, bytes)]`` for every kernel of ``graph``."""
    env = node_values(graph, inputs)
    overhead = _call_overhead(4 * repeats)
    rows = []
    for n in graph.nodes:
        if aliases_input(n.op):
            continue
        program = _one_node_program(n)
        args = [env[v] for v in n.inputs]
        seconds = max(_median_time(lambda: program(args), repeats) - overhead, 0.0)
        flops, moved = n.op.cost(n.out_type, *[v.type for v in n.inputs], **n.attrs)
        rows.append((n, seconds, flops, moved))
    return rows, env


def format_profile(graph, rows, limits) -> list:
    from .ir.printer import value_names
    names = value_names(graph)
    bw, peak = limits["bandwidth_gbs"], limits["gemm_gflops"]
    lines = [f"measured per kernel (median of runs as a one-kernel program, minus the call "
             f"overhead), against this machine: {bw:.1f} GB/s copy bandwidth, "
             f"{peak:.1f} GFLOP/s float32 GEMM ({limits['how']}):",
             f"  {'kernel':<34} {'time':>10} {'GB/s':>8} {'of bw':>6} {'GFLOP/s':>9} {'of GEMM':>8}"]
    total = 0.0
    for n, seconds, flops, moved in rows:
        total += seconds
        what = f"%{names[n.outs[0]]} {kernel_label(n)}"[:34]
        if seconds < RESOLUTION:
            lines.append(f"  {what:<34} {seconds * 1e6:>8.1f}us   (too small to time against "
                         "the call overhead)")
            continue
        gbs, gflops = moved / seconds / 1e9, flops / seconds / 1e9
        lines.append(f"  {what:<34} {seconds * 1e6:>8.1f}us {gbs:>8.2f} {gbs / bw:>6.1%} "
                     f"{gflops:>9.2f} {gflops / peak:>8.1%}")
    lines.append(f"  sum of kernels: {total * 1e6:.1f} us")
    if any(n.op.name in ("gemm", "window_gemm", "matmul") for n, *_ in rows):
        note = openblas_note()
        if note:
            lines.append(f"  {note}")
    return lines


def openblas_note() -> str | None:
    """A line when the matrix products run OpenBLAS kernels below this CPU's, and why
    ([OpenBLAS core type] in graphjit/_blas.py: graphjit says so, and changes nothing)."""
    from ._blas import cpu_flags, kernel_note
    from .backend.cpu.blas import program_openblas
    lib = program_openblas()
    return kernel_note(lib.corename() if lib is not None else None, cpu_flags())
