"""Compile every CUDA kernel the op table and the training tests make, for a real GPU,
without one: ``graphjit.backend.cuda.ptx`` (Numba's CUDA typing, NVVM to PTX, ptxas for
registers, shared memory and spills) at the GPU's launch sizes.

The simulator tests (test_ops_cuda.py, test_training_cuda.py) check what the kernels
compute, but run their Python as Python; this checks that the same kernels, as written for
a GPU (256-thread blocks, 16 x 16 tiles), compile for one. The programs are made as those
tests make them, on CPU tensors (nothing runs on a device):

- eager mode: each op-table row, forward and ``backward(w)``, and the eager training steps
  run on the CPU while every op they apply is recorded; each becomes the one-node graph
  eager mode compiles on CUDA (``eager.op_graph``), in place updates and all;
- compiled: each row with gradients as a compiled forward and backward, and the MLP (Adam,
  SGD with momentum) and RNN training steps, through ``lower_for("cuda", ...)``.

Run by test_ptx.py in a subprocess (it needs ``NUMBA_ENABLE_CUDASIM`` off, which the
simulator tests need on); by hand:

    NUMBA_ENABLE_CUDASIM=0 python tests/cuda/gpu_kernels.py [--cc 9.0] [--jobs 2] [--out F.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]  # tests/: op_table; tests/cuda: the training tests


def _programs(every: bool = True):
    """``(what, graph, inplace)`` for every program the tests' runs would build on CUDA;
    with ``every`` False a subset that still reaches every emitter: one eager program per
    op and input dtypes, the compiled rows of each op's first case and dtype, and all of
    the training steps."""
    import graphjit as gj
    from graphjit import autograd
    from graphjit.backend.cuda import emitter_for
    from graphjit.backend.cuda.eager import op_graph
    from graphjit.ir.buffers import aliases_input
    from graphjit.shapes import TensorType
    from op_table import CASES

    def compiled(op) -> bool:
        """Whether a CUDA program of ``op`` has a kernel: not a flat view (no kernel), nor
        an op passes/decompose always replaces that has no emitter (custom_function; its
        eager run on CUDA is tests/cuda/test_ops_cuda.py's business)."""
        return not aliases_input(op) and not (op.decompose is not None and emitter_for(op) is None)

    recorded = {}   # eager single-op graphs, by (op, attrs, types)
    original = autograd.EagerInterpreter.apply

    def recording(self, op, inputs, attrs):
        if all(hasattr(t, "_data") for t in inputs):
            types = tuple(TensorType(tuple(t.shape), t.dtype) for t in inputs)
            key = ((op.name, repr(sorted(attrs.items())), types) if every
                   else (op.name, tuple(t.dtype.name for t in types)))
            if key not in recorded and compiled(op):
                recorded[key] = (op, types, dict(attrs))
        return original(self, op, inputs, attrs)

    autograd.EagerInterpreter.apply = recording
    programs = []
    rng = np.random.default_rng(0)
    to_gj = {"float32": gj.float32, "float64": gj.float64, "int64": gj.int64, "bool": gj.bool}
    compiled_ops = set()
    try:
        for case in CASES:
            for dtype in case.dtypes:
                arrays = case.make_inputs(rng, np.dtype(dtype))
                leaves = [gj.tensor(a, dtype=to_gj[a.dtype.name],
                                    requires_grad=bool(case.grad and a.dtype.kind == "f"))
                          for a in arrays]
                out = case.fn(*leaves)
                if case.grad and out.requires_grad:
                    out.backward(gj.tensor(rng.uniform(-1, 1, out.shape), dtype=out.dtype))
                    if not every and case.op in compiled_ops:
                        continue
                    try:
                        low = gj.compile(case.fn).lower_for("cuda", *leaves)
                    except gj.GraphjitError:  # rows a static graph cannot hold (mask indexing)
                        continue
                    compiled_ops.add(case.op)
                    programs.append((f"{case.name} {dtype} compiled", low.entry.graph, True))
                    backward = getattr(low.entry, "backward_graph", None)
                    if backward is not None:  # (None: no output the trace can differentiate)
                        programs.append((f"{case.name} {dtype} compiled backward", backward, True))
        for name, graph in _training_programs(gj):
            programs.append((name, graph, True))
    finally:
        autograd.EagerInterpreter.apply = original
    for op, types, attrs in recorded.values():
        # On CUDA, 0-d CPU operands (Python numbers, Adam's step count) stay on the host.
        host = ([j for j, t in enumerate(types) if t.shape == ()]
                if any(t.shape for t in types) else [])
        programs.append((f"eager {op.name}", op_graph(op, list(types), attrs, host), False))
    return programs


def _training_programs(gj):
    """The training tests' steps (their models, optimizers and loop, imported from
    test_training_cuda.py), run eagerly (recorded) and lowered."""
    from test_training_cuda import _RNN, OPTIMIZERS, _mlp, training_step
    rng = np.random.default_rng(1)
    models = {"mlp": (_mlp, gj.tensor(rng.standard_normal((5, 6)).astype(np.float32)),
                      gj.tensor(rng.integers(0, 3, 5))),
              "rnn": (_RNN, gj.tensor(rng.standard_normal((4, 3, 3)).astype(np.float32)),
                      gj.tensor(rng.integers(0, 2, 3)))}
    for model_name, (make, inputs, targets) in models.items():
        for opt_name, make_opt in sorted(OPTIMIZERS.items()):
            m = make()
            step = training_step(m, make_opt(m.parameters()))
            for _ in range(2):  # eager: the first step makes the optimizer state
                step(inputs, targets)
            low = gj.compile(step).lower_for("cuda", inputs, targets)
            yield f"{model_name} {opt_name} step", low.entry.graph


def _check(job):
    from graphjit.backend.cuda import ptx
    text, described, cc = job
    r = ptx.check_kernel(text, ptx.parse(",".join(described)), cc, ptx.find_ptxas())
    return {"file": r.file_name, "signature": ptx.describe(r.signature),
            "error": r.error, "registers": r.registers, "shared_bytes": r.shared_bytes,
            "stack_bytes": r.stack_bytes, "spill_stores": r.spill_stores,
            "spill_loads": r.spill_loads, "problems": r.problems, "text": str(r)}


# Kernels the checker must pass (with ptxas's exact shared-memory count) or refuse.
_KERNEL = """import math

import numpy as np
from numba import cuda


@cuda.jit(cache=True)
def k(in0, out):
{body}
"""
SELF_CHECK = {
    "shared tree": ("float32", "float32"), "type error": ("float32", "float32"),
    "too much shared memory": ("float32", "float32")}
_BODIES = {
    "shared tree": """    acc = cuda.shared.array(256, np.float32)
    t = cuda.threadIdx.x
    acc[t] = in0[cuda.grid(1)]
    cuda.syncthreads()
    s = 128
    while s > 0:
        if t < s:
            acc[t] += acc[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0:
        out[cuda.blockIdx.x] = acc[0]""",
    "type error": "    out[0] = in0[0] + 'one'",
    "too much shared memory": """    acc = cuda.shared.array(16384, np.float32)
    acc[cuda.threadIdx.x] = in0[cuda.grid(1)]
    cuda.syncthreads()
    out[cuda.grid(1)] = acc[255 - cuda.threadIdx.x]""",
}


def _self_check(cc):
    from graphjit.backend.cuda import ptx
    out = []
    for name, dtypes in SELF_CHECK.items():
        r = ptx.check_kernel(_KERNEL.format(body=_BODIES[name]), dtypes, cc, ptx.find_ptxas())
        out.append({"name": name, "error": r.error, "problems": r.problems,
                    "registers": r.registers, "shared_bytes": r.shared_bytes, "text": str(r)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0: H100/H200)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="write the reports here as JSON")
    parser.add_argument("--all", action="store_true",
                        help="every kernel (about 1500, minutes), not the subset")
    parser.add_argument("--self-check", action="store_true",
                        help="also compile hand-written kernels the checker must pass or refuse")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
        parser.error("run with NUMBA_ENABLE_CUDASIM=0: the kernels must be the GPU's")
    cc = tuple(int(p) for p in args.cc.split("."))
    from graphjit.backend.cuda import generate, ptx
    start = time.perf_counter()
    jobs, where = [], {}
    for what, graph, inplace in _programs(every=args.all):
        gen = generate(graph, inplace=inplace)
        for text, signatures in zip(gen.kernel_sources, gen.kernel_signatures):
            for signature in signatures:
                key = (text, tuple(ptx.describe(signature)))
                if key not in where:
                    where[key] = what
                    jobs.append((text, key[1], cc))
    # The one hand-written kernel (fill), for every dtype it fills.
    with open(os.path.join(os.path.dirname(ptx.__file__), "fill.py")) as f:
        fill_text = f.read() + "\n\nk = fill_kernel\n"
    for dtype in ("float32", "float64", "int64", "int32", "bool"):
        jobs.append((fill_text, (f"{dtype}[]", dtype), cc))
        where[jobs[-1][:2]] = "fill"
    generated = time.perf_counter() - start
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        reports = list(pool.map(_check, jobs, chunksize=8))
    for (text, dtypes, _), r in zip(jobs, reports):
        r["program"] = where[(text, dtypes)]
    bad = [r for r in reports if r["error"] or r["problems"]]
    summary = {"cc": list(cc), "kernels": len(reports), "failed": len(bad),
               "generate_seconds": round(generated, 1),
               "seconds": round(time.perf_counter() - start, 1),
               "max_registers": max((r["registers"] or 0) for r in reports),
               "max_shared_bytes": max((r["shared_bytes"] or 0) for r in reports),
               "spilling": sum(1 for r in reports if r["spill_stores"]),
               "reports": reports,
               "self_check": _self_check(cc) if args.self_check else []}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    for r in bad:
        print(f"{r['program']}: {r['text']}")
    print(f"{len(reports)} kernels for sm_{cc[0]}{cc[1]}: {len(bad)} failed; at most "
          f"{summary['max_registers']} registers, {summary['max_shared_bytes']} bytes shared, "
          f"{summary['spilling']} spilling ({summary['seconds']} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
