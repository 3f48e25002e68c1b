"""Generated modules on disk: written once under their text's hash, checked, imported.

# NOTE: [Generated modules on disk]
A generated module is written to ``<cache>/<subdir>/<stem>_<hash>.py``, where ``hash`` is
the SHA-256 of its text, and imported from there. So tracebacks and Numba's errors point at
real lines of a file one can open, and ``numba.njit(cache=True)`` works: Numba keys its
on-disk cache on the file's path and a hash of its contents, and a file with a given name
only ever holds one text, so a new process that generates the same text finds Numba's cache
valid and loads the compiled driver instead of compiling it (``driver.stats.cache_hits``).
The module's name holds the folder's hash too (see ``import_module``), so a cache folder
moved elsewhere is compiled again.

``<cache>`` and where Numba keeps its files: see cache.py.

The cache is shared between processes and never trusted:

- A module is written to a temporary file and renamed into place (Numba writes its files the
  same way), so two processes compiling the same graph at once both see one whole file with
  the text its name promises, never half of one.
- A module file whose bytes are not that text (truncated, garbled, binary, unreadable) is
  rewritten before the import, and the text executed is the one just checked. Its code
  object is kept beside it (``<file>.pycode``, not a ``.pyc``: sealed with a checksum and
  the hash of the text it was compiled from, so a garbled or stale one is compiled again).
- Numba's own files for the module's functions are checksummed, and an entry that fails
  the check or fails to load is compiled again (numba_cache.py).

A program's kernels live in modules of their own, shared by every program that runs them
(see [Kernel modules] in backend/cpu/codegen.py): they are written, imported and checked
by the same functions (``write_module``, ``import_module``, the checks above), and the
program module imports them with ``import_sibling``.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import marshal
import os
import sys

from .cache import cache_dir
from .numba_cache import guard_numba_caches
from .sealed import seal, unseal, write_atomically
from .writer import identifier


def _read_bytes(path: str):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


# Module text checked by write_module, executed by import_module (so what runs is what was
# checked, even if the file changed in between).
_CHECKED: dict = {}


def module_file_name(source: str, stem: str) -> str:
    """The name of the file ``write_module(source, stem, ...)`` writes: ``<stem>_<hash>.py``."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:20]
    return f"{identifier(stem)}_{digest}.py"


def module_path(source: str, stem: str, subdir: str) -> str:
    """Where ``write_module(source, stem, subdir)`` writes (it need not exist)."""
    return os.path.join(cache_dir(subdir, numba=True), module_file_name(source, stem))


def write_module(source: str, stem: str, subdir: str) -> str:
    """Write ``source`` to a content-hash named file (once) and return its path."""
    data = source.encode("utf-8")
    path = module_path(source, stem, subdir)
    # Rewriting the same text would be harmless (Numba checks the contents) but pointless.
    if _read_bytes(path) != data:
        # Missing, or not the text its name promises: a truncated or garbled file.
        try:
            write_atomically(path, data)
        except OSError:
            if _read_bytes(path) != data:  # (unless another process put the same text there)
                raise
    _CHECKED[path] = source
    return path


GENERATED_PREFIX = "_graphjit_gen_"  # the names generated modules are imported under


def module_name(path: str) -> str:
    """The name ``import_module`` imports the generated module at ``path`` under."""
    folder = hashlib.sha256(os.path.dirname(os.path.abspath(path)).encode()).hexdigest()[:8]
    return f"{GENERATED_PREFIX}{os.path.splitext(os.path.basename(path))[0]}_{folder}"


def import_module(path: str):
    """Import the module at ``path`` (once per process; later calls return the same module).

    The module's name holds its text's hash and its folder's: Numba names the compiled
    functions after the module, and two compiles of one text in one process (two cache
    folders, each with its own Numba cache) under one name clash (seen: the second
    driver's calls failing with SystemError). So a cache folder moved elsewhere is
    compiled again: its cached code finds its module by the old name (a miss, not an
    error: see numba_cache._guarded_load)."""
    name = module_name(path)
    source = _CHECKED.pop(path, None)
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == path:
        return module
    if source is None:
        with open(path, "rb") as f:
            source = f.read()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    code = _code_of(source, path)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    guard_numba_caches(module, path)
    return module


def _code_of(source, path: str):
    """The code object of a generated module's text: compiled, or the one compiled before,
    kept in ``<file>code`` next to it, sealed, with the text's hash and Python's bytecode
    magic number (compiling W5's 69 modules took about 0.2 s of a restart)."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    stamp = importlib.util.MAGIC_NUMBER + hashlib.sha256(data).digest()
    code_path = path + "code"
    blob = _read_bytes(code_path)
    if blob is not None:
        try:
            payload = unseal(blob, code_path)
            if payload.startswith(stamp):
                return marshal.loads(payload[len(stamp):])
        except Exception:  # garbled, truncated, another Python or text: compile again
            pass
    code = compile(data, path, "exec", dont_inherit=True)
    with contextlib.suppress(OSError):  # (unwritten: only a slower next start)
        write_atomically(code_path, seal(stamp + marshal.dumps(code)))
    return code


def import_sibling(module_file: str, file_name: str):
    """The generated module ``file_name`` of the folder of the generated module at
    ``module_file``, imported with ``import_module``: how a program module imports its kernel
    modules (see [Kernel modules] in backend/cpu/codegen.py). Whoever compiles the program
    writes them first, so this finds them imported already (or at least checked)."""
    return import_module(os.path.join(os.path.dirname(os.path.abspath(module_file)), file_name))
