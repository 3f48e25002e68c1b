"""Fixed cost of a call: a one-op graph (``neg`` of one element), as in the README's
Performance section.

    python benchmarks/call_overhead.py

Median per call over 21 rounds of 20000 calls, for each layer: the native driver alone
(reaching into the program's private driver and buffers; the array of its buffers'
addresses made for each call, as ``run_trusted`` does), ``CompiledProgram(inputs)`` with
its input checks, its trusted entry ``run_trusted`` (what the jit runtime calls), and a
``@graphjit.compile`` function.
"""
import time

import numpy as np

import graphjit as gj
from graphjit.backend.cpu import compile_graph
from graphjit.ir import parse_graph

ONE_OP = "graph one(%x: f32[1] {arg}) {\n  %0 = neg(%x) : f32[1]\n  return %0\n}"


def median_call_us(fn, calls=20000, rounds=21) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return float(np.median(times)) * 1e6


def main():
    program = compile_graph(parse_graph(ONE_OP))
    args = [np.ones(1, np.float32)]
    flat = args[0].reshape(-1)
    buffers = program._buffers()
    driver = program._driver  # (its bundled wrapper after a first run: [Bundled drivers])
    try:  # the driver takes its buffers' object addresses ([Driver arguments] in native.py)
        from graphjit.backend.cpu.native import object_addresses
        table = program._kernel_table
        call_driver = lambda: driver(object_addresses([flat, *buffers]), table)  # noqa: E731
    except ImportError:  # (a tree from before: the buffers are the driver's arguments)
        call_driver = lambda: driver(flat, *buffers)  # noqa: E731
    f = gj.compile(lambda x: -x)
    x = gj.ones(1)
    f(x)
    rows = [("native driver", call_driver),
            ("CompiledProgram(inputs)", lambda: program(args)),
            ("CompiledProgram.run_trusted", lambda: program.run_trusted([flat])),
            ("@graphjit.compile", lambda: f(x))]
    for name, fn in rows:
        print(f"{name:30s} {median_call_us(fn):6.2f} us")


if __name__ == "__main__":
    main()
