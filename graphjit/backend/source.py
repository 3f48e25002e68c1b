"""Emitting Python source: an indenting writer, unique names, and modules on disk.

# NOTE: [Generated modules on disk]
A generated module is written to ``<cache>/<subdir>/<stem>_<hash>.py``, where ``hash`` is
the SHA-256 of its text, and imported from there. So tracebacks and Numba's errors point at
real lines of a file one can open, and ``numba.njit(cache=True)`` works: Numba keys its
on-disk cache on the file's path and timestamp, and a file with a given name is only ever
written once (same name = same text), so a new process that generates the same text finds
Numba's cache still valid and skips compilation. ``<cache>`` is ``$GRAPHJIT_CACHE_DIR`` or
``<tempdir>/graphjit``.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import keyword
import os
import re
import sys
import tempfile


class SourceWriter:
    """Lines of Python with managed indentation (4 spaces per level)."""

    def __init__(self, indent: int = 0):
        self.lines: list[str] = []
        self.level = indent

    def line(self, text: str = "") -> None:
        self.lines.append(("    " * self.level + text) if text else "")

    def lines_from(self, text: str) -> None:
        for line in text.splitlines():
            self.line(line)

    @contextlib.contextmanager
    def indent(self):
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    @contextlib.contextmanager
    def block(self, header: str):
        """``header`` (ending in ``:``) and an indented body."""
        self.line(header)
        with self.indent():
            yield

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def identifier(text: str) -> str:
    """``text`` made into a valid Python identifier (``"w0.grad"`` -> ``"w0_grad"``)."""
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name):
        name += "_"
    return name


class Namer:
    """Hands out unique identifiers: the hint itself when free, else ``hint_1``, ``hint_2``..."""

    def __init__(self, reserved=()):
        self.taken = set(reserved)

    def reserve(self, name: str) -> None:
        self.taken.add(name)

    def release(self, name: str) -> None:
        """``name`` may be handed out again (a loop variable whose loop has ended)."""
        self.taken.discard(name)

    def fresh(self, hint: str) -> str:
        base = identifier(hint)
        name, n = base, 0
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name


def cache_dir(subdir: str = "") -> str:
    root = os.environ.get("GRAPHJIT_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "graphjit")
    path = os.path.join(root, subdir) if subdir else root
    os.makedirs(path, exist_ok=True)
    return path


def write_module(source: str, stem: str, subdir: str) -> str:
    """Write ``source`` to a content-hash named file (once) and return its path."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    path = os.path.join(cache_dir(subdir), f"{identifier(stem)}_{digest}.py")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == source:
                # Rewriting would change the timestamp and invalidate Numba's cache.
                return path
    # Write then rename, so a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=os.path.dirname(path))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(source)
    os.replace(tmp, path)
    return path


def import_module(path: str):
    """Import the module at ``path`` (once per process; later calls return the same module)."""
    name = "_graphjit_gen_" + os.path.splitext(os.path.basename(path))[0]
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == path:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
