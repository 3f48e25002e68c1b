"""``@graphjit.compile``: trace a function into a graph, run the passes, compile with Numba.

``compile`` is here, above compile.py (``CompiledFunction``) and compiled_module.py
(``CompiledModule``, which wraps a ``CompiledFunction``): it makes one or the other.
"""
from .. import _tracing as _t
from ..nn.module import Module
from .compile import CompiledFunction, GraphjitWarning  # noqa: F401
from .compiled_module import CompiledModule
from .trace import TraceError  # noqa: F401


def compile(fn=None, *, verify: bool = False, fastmath: bool = False, tiered=None):  # noqa: A001
    """Compile ``fn`` into a static graph program (``@graphjit.compile`` or ``compile(fn)``).

    ``fn`` is a function or a method, or an ``nn.Module``: then the result is a module whose
    calls run compiled and which is the original for everything else, like
    ``torch.compile(module)`` (``CompiledModule``, [Compiled modules] in compiled_module.py).
    ``verify``: run the IR verifier after every pass. ``fastmath``: let LLVM reassociate
    float arithmetic in the generated kernels (faster reductions and polynomial code, results
    no longer bit-comparable with eager mode; off by default). ``tiered``: whether a new
    program's first calls run on NumPy while Numba compiles it in the background (True),
    only after compiling (False), or only on NumPy ("interpret"); None (default): the
    environment's ``GRAPHJIT_TIERED`` (1, 0 or interpret; unset: True). See
    ``CompiledFunction.wait_compiled()`` and graphjit/jit/tiers.py."""
    if fn is None:
        return lambda f: compile(f, verify=verify, fastmath=fastmath, tiered=tiered)
    if isinstance(fn, Module):
        return CompiledModule(fn, verify=verify, fastmath=fastmath, tiered=tiered)
    return CompiledFunction(fn, verify=verify, fastmath=fastmath, tiered=tiered)


_t.set_compiler(compile)
