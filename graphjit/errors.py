"""Error types and the helper that names the user's own source line.

Every error graphjit raises for bad input says which op failed, with which shapes or
dtypes, and where in the *user's* code the call came from (the first stack frame outside
the graphjit package), so a traceback through the library still points at the line to fix.
"""
from __future__ import annotations

import os
import site
import sys
import sysconfig

import numpy as np

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


# co_filename -> whether it is a library file. Tracing records the user's line for every node
# it makes: with ``os.path.abspath`` on every frame of every walk, that was 40% of tracing
# ResNet-18 (0.18 of 0.45 s, profiled). A relative name (a script run from its folder)
# resolves once, against the folder the process started in, as Python resolves it.
_IS_LIBRARY: dict = {}


def user_frame() -> str | None:
    """Return ``"file:line"`` of the innermost frame outside graphjit, or None."""
    frame = sys._getframe(1)
    known = _IS_LIBRARY
    while frame is not None:
        name = frame.f_code.co_filename
        library = known.get(name)
        if library is None:
            library = known[name] = _library_file(os.path.abspath(name))
        if not library:
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _library_file(filename: str) -> bool:
    if filename.startswith(_LIBRARY_DIRS) or filename.startswith("<frozen"):
        return True
    # Python's standard library (copy.deepcopy, pickle, contextlib call into graphjit), but
    # not the installed packages kept under it.
    return filename.startswith(_STDLIB) and not filename.startswith(_SITE_PACKAGES)


# Frames in these are never "the user's line": graphjit itself, its passes, and the libraries
# it calls into (a traced value reaching np.full fails inside NumPy, not in user code).
_LIBRARY_DIRS = tuple(d + os.sep for d in (
    _PACKAGE_DIR, os.path.join(os.path.dirname(_PACKAGE_DIR), "passes"),
    os.path.dirname(os.path.abspath(np.__file__))))
_paths = sysconfig.get_paths()
_STDLIB = tuple({os.path.abspath(_paths[k]) + os.sep for k in ("stdlib", "platstdlib")})
_SITE_PACKAGES = tuple({os.path.abspath(d) + os.sep for d in (
    [_paths["purelib"], _paths["platlib"]] + list(getattr(site, "getsitepackages", list)())
    + [getattr(site, "USER_SITE", None) or _paths["purelib"]])})


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


class CopiedViewError(GraphjitError):
    """Eager CUDA refuses an in-place change of a view it had to copy, or a read of such a
    copy once its base changed ([Copied views] in graphjit/autograd_tape.py): on the CPU, and in
    compiled code, the view shares memory with its base."""


class TraceError(GraphjitError, RuntimeError):
    """Something a static graph cannot express was met while ``graphjit.compile`` traced a
    function (reading a tensor's data into Python, a random draw, a tensor escaping the
    trace...). Defined here so that every layer can refuse with it."""
