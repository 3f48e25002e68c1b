"""Error types and the helper that names the user's own source line.

Every error graphjit raises for bad input says which op failed, with which shapes or
dtypes, and where in the *user's* code the call came from (the first stack frame outside
the graphjit package), so a traceback through the library still points at the line to fix.
"""
from __future__ import annotations

import os
import sys

import numpy as np

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_frame() -> str | None:
    """Return ``"file:line"`` of the innermost frame outside graphjit, or None."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_LIBRARY_DIRS) and not filename.startswith("<frozen"):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


# Frames in these are never "the user's line": graphjit itself, its passes, and the libraries
# it calls into (a traced value reaching np.full fails inside NumPy, not in user code).
_LIBRARY_DIRS = tuple(d + os.sep for d in (
    _PACKAGE_DIR, os.path.join(os.path.dirname(_PACKAGE_DIR), "passes"),
    os.path.dirname(os.path.abspath(np.__file__))))


class GraphjitError(Exception):
    """Base class of graphjit's errors. The message ends with the user's source line."""

    def __init__(self, message: str, *, op: str | None = None, where: str | None = None):
        self.op = op
        self.where = where if where is not None else user_frame()
        self.bare_message = message
        text = f"{op}: {message}" if op else message
        if self.where:
            text = f"{text}\n  (at {self.where})"
        super().__init__(text)


class ShapeError(GraphjitError, ValueError):
    """Operands whose shapes do not fit the op (broadcasting, matmul, cat, reshape...)."""


class DTypeError(GraphjitError, TypeError):
    """Operands whose dtypes the op does not accept."""


class AutogradError(GraphjitError, RuntimeError):
    """Misuse of autograd: backward twice, in-place on a saved value, and the like."""
