"""THE pass order: one list per target. The dump tool prints the graph after each entry.

A target names its list (``graphjit.backend.Target.pipeline``); the lists differ only in
what the target lowers differently, and every one ends with ``memory``.

- ``autodiff`` first: it expands the ``grad`` requests, and every later pass then sees the
  forward and backward graphs together (CSE shares work between them).
- ``decompose`` after autodiff (whose VJP rules take composite ops such as gelu whole):
  composite ops become the primitives they are made of, so CSE can share their parts with
  the backward graph (gelu's tanh is then computed once, not once per direction);
- ``simplify`` after decompose: its ``detach(x) -> x`` rule is only valid once gradients
  are derived; it also cleans up what the VJP rules emit (``x * 1``, reshape chains,
  constant arithmetic on ``full`` nodes).
- ``cse`` after simplify, which makes more nodes look alike (folded constants).
- ``batch`` after CSE (which makes the steps of an unrolled loop share their weights):
  the small matrix products of the steps become a few large ones (input projections
  stacked, weight gradients summed inside one product);
- ``dce``: it removes what the passes above left without readers, including the
  gradient work no output needs, before fusion looks at who reads what.
- ``fuse`` on the clean graph: elementwise groups become single loops;
- ``gemm`` after it (CPU only: it lowers matrix products onto BLAS calls, which the CUDA
  target has not): transposes fold into matrix products, and a fused group that only
  post-processes a product becomes its epilogue (so it needs the groups already formed);
- the last ``dce`` drops the ``full`` constants copied into fused bodies and the permutes
  folded into products, now without readers;
- ``memory`` last, on the graph the backend compiles: it records the buffer plan (see
  passes/memory.py).
"""
from __future__ import annotations

from .autodiff import autodiff
from .batch import batch
from .cse import cse
from .dce import dce
from .decompose import decompose
from .fuse import fuse
from .gemm import gemm
from .manager import PassManager
from .memory import memory
from .simplify import simplify

CPU = [autodiff, decompose, simplify, cse, batch, dce, fuse, gemm, dce, memory]
CUDA = [autodiff, decompose, simplify, cse, batch, dce, fuse, dce, memory]
PIPELINES = {"cpu": CPU, "cuda": CUDA}
DEFAULT = CPU


def run_pipeline(graph, verify: bool = False, passes=None, stats=None):
    """Run the default pipeline (or ``passes``: a list of passes, or the name of one in
    ``PIPELINES``); return ``(graph, snapshots)``, where ``snapshots`` is ``[("trace",
    text), (pass name, text), ...]``. With ``verify`` (or ``GRAPHJIT_VERIFY=1``) the IR
    verifier runs after every pass. A list ``stats`` receives ``(pass name, dict)`` for the
    passes that report statistics."""
    if passes is None:
        passes = DEFAULT
    elif isinstance(passes, str):
        passes = PIPELINES[passes]
    manager = PassManager(passes, verify=verify)
    graph = manager.run(graph)
    if stats is not None:
        stats.extend(manager.stats)
    return graph, manager.snapshots
