"""``@graphjit.compile``: trace a function into a graph, run the passes, compile with Numba."""
from .compile import CompiledFunction, GraphjitWarning, compile  # noqa: F401
from .trace import TraceError  # noqa: F401

from .. import _tracing as _t

_t.set_compiler(compile)
