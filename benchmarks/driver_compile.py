"""How long Numba takes to compile a program's driver, by the number of buffers it takes
(issue 22; [Driver arguments] in graphjit/backend/cpu/native.py).

    python benchmarks/driver_compile.py [--sizes 4 16 64 128] [--rounds 3]

For each size n, a graph of n float32 inputs whose every result is the product of two of
them: n kernel calls of one form, 2n buffers (the inputs and the results).
Its kernels are compiled first, then the driver alone is timed (``driver.compile``), in a
fresh cache folder so that nothing comes from Numba's cache; each round uses another graph
name, so another module and dispatcher. Prints the median of the rounds per size.

Compare two trees by running this file with each on ``PYTHONPATH``
(``PYTHONPATH=<worktree> python benchmarks/driver_compile.py``); it uses only what both the
tree before [Driver arguments] and the one after have (``prepare_program``,
``PreparedProgram.kernels`` and ``.driver_signature``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def graph_text(name: str, n: int) -> str:
    params = ", ".join(f"%x{i}: f32[8] {{arg}}" for i in range(n))
    body = "\n".join(f"  %{i} = mul(%x{i}, %x{(i + 1) % n}) : f32[8]" for i in range(n))
    outs = ", ".join(f"%{i}" for i in range(n))
    return f"graph {name}({params}) {{\n{body}\n  return {outs}\n}}"


def driver_seconds(name: str, n: int) -> tuple:
    """(seconds to compile the driver, its number of buffers)"""
    from graphjit.backend.cpu.codegen import prepare_program
    from graphjit.ir import parse_graph
    graph = parse_graph(graph_text(name, n))
    prepared = prepare_program(graph, name, False, False)
    for dispatcher, signature, _ in prepared.kernels:
        dispatcher.compile(signature)
    start = time.perf_counter()
    prepared.driver.compile(prepared.driver_signature)
    generated = prepared.generated
    buffers = len(generated.params) + len(generated.result_buffers) + len(generated.slots)
    return time.perf_counter() - start, buffers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64, 128])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["GRAPHJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphjit-driver-")
    import graphjit
    print(f"graphjit from {os.path.dirname(graphjit.__file__)}")
    driver_seconds("warm_up", 2)  # (Numba's first compile in a process loads its own parts)
    print(f"{'inputs':>6} {'buffers':>7} {'driver compile (median)':>24}")
    for n in args.sizes:
        found = [driver_seconds(f"drv{n}_{r}", n) for r in range(args.rounds)]
        median = statistics.median(seconds for seconds, _ in found)
        print(f"{n:6d} {found[0][1]:7d} {median:22.3f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
