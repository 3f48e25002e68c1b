"""Emitting Python source: an indenting writer, unique names, and modules on disk.

# NOTE: [Generated modules on disk]
A generated module is written to ``<cache>/<subdir>/<stem>_<hash>.py``, where ``hash`` is
the SHA-256 of its text, and imported from there. So tracebacks and Numba's errors point at
real lines of a file one can open, and ``numba.njit(cache=True)`` works: Numba keys its
on-disk cache on the file's path and a hash of its contents, and a file with a given name
only ever holds one text, so a new process that generates the same text finds Numba's cache
valid and loads the compiled driver instead of compiling it (``driver.stats.cache_hits``).
The module's name holds the folder's hash too (see ``import_module``), so a cache folder
moved elsewhere is compiled again.

``<cache>`` is ``$GRAPHJIT_CACHE_DIR``, else the user's cache folder:
``$XDG_CACHE_HOME/graphjit``, else ``~/.cache/graphjit`` (``~/Library/Caches/graphjit`` on
macOS, ``%LOCALAPPDATA%\\graphjit`` on Windows). A folder that cannot be used (no write
permission, a file in its place) gives one warning and ``<tempdir>/graphjit-<uid>`` instead.
Numba keeps its files (a ``.nbi`` index and ``.nbc`` data per function) in ``__pycache__``
next to the module, so inside ``<cache>`` too, unless ``NUMBA_CACHE_DIR`` sends them
elsewhere (``numba_cache_folder``). ``graphjit cache info|clear`` shows and empties both.

The cache is shared between processes and never trusted:

- A module is written to a temporary file and renamed into place (Numba writes its files the
  same way), so two processes compiling the same graph at once both see one whole file with
  the text its name promises, never half of one.
- A module file whose bytes are not that text (truncated, garbled, binary, unreadable) is
  rewritten before the import, and the text executed is the one just checked (no ``.pyc``
  is written or read: a garbled one would fail the import).
- Numba trusts its own files: a garbled or truncated index or data file makes it raise from
  the unpickler, and a flipped byte inside the pickled machine code, still a valid pickle,
  crashes the process (segfault, LLVM assertion) or the call. So the Numba files of a
  generated module carry a SHA-256 of their contents (``_checked_cache_file``), and any
  entry that fails the check or fails to load is deleted and its function compiled again;
  a failure to save is ignored (the next process compiles again).

A program's kernels live in modules of their own, shared by every program that runs them
(see [Kernel modules] in backend/cpu/codegen.py): they are written, imported and checked
by the same functions (``write_module``, ``import_module``, the checks above), and the
program module imports them with ``import_sibling``.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import io
import keyword
import os
import pickle
import re
import sys
import tempfile
import warnings


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


# ---- the cache folder -----------------------------------------------------------------------

def default_cache_root() -> str:
    """``<cache>`` as configured ([Generated modules on disk]); ``cache_dir`` checks it."""
    configured = os.environ.get("GRAPHJIT_CACHE_DIR")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is to be ignored
        base = xdg
    elif sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(home, "Library", "Caches")
    else:
        base = os.path.join(home, ".cache")
    return os.path.join(base, "graphjit")


def _fallback_root() -> str:
    # Per user: a shared <tempdir>/graphjit made by another user would not be writable.
    uid = os.getuid() if hasattr(os, "getuid") else None
    return os.path.join(tempfile.gettempdir(), "graphjit" if uid is None else f"graphjit-{uid}")


def _numba_cache_root() -> str | None:
    """Numba's ``NUMBA_CACHE_DIR``, if set (Numba's parsed config once it is imported)."""
    config = sys.modules.get("numba.core.config")
    if config is not None:
        return getattr(config, "CACHE_DIR", None) or None
    return os.environ.get("NUMBA_CACHE_DIR") or None


def numba_cache_folder(folder: str) -> str:
    """Where Numba keeps the cache files of functions defined in modules in ``folder``
    (numba.core.caching: ``__pycache__`` next to them, or under ``NUMBA_CACHE_DIR``)."""
    root = _numba_cache_root()
    if not root:
        return os.path.join(folder, "__pycache__")
    folder = os.path.abspath(folder)
    return os.path.join(root, os.path.basename(folder) + "_"
                        + hashlib.sha1(folder.encode()).hexdigest())


def _unusable(folder: str, numba: bool):
    """None if ``folder`` exists (made if needed) and takes new files, else the OSError;
    with ``numba``, the same of the ``__pycache__`` Numba will write into."""
    try:
        for path in [folder] + ([os.path.join(folder, "__pycache__")]
                                if numba and not _numba_cache_root() else []):
            if not os.path.isabs(path):  # no home folder: "~" stayed "~"
                raise OSError(f"not an absolute path: {path}")
            os.makedirs(path, exist_ok=True)
            tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        return e
    return None


_IN_USE: dict = {}   # (configured root, subdir, Numba's cache root) -> the folder in use
_WARNED: set = set()


def _folder(subdir: str, numba: bool = False) -> str:
    root = default_cache_root()
    key = (root, subdir, numba and _numba_cache_root())
    folder = _IN_USE.get(key)
    if folder is not None and os.path.isdir(folder):
        return folder
    wanted = os.path.join(root, subdir) if subdir else root
    error = _unusable(wanted, numba)
    folder = wanted
    if error is not None:
        fallback_root = _fallback_root()
        folder = os.path.join(fallback_root, subdir) if subdir else fallback_root
        if folder == wanted or _unusable(folder, numba) is not None:
            try:
                folder = tempfile.mkdtemp(prefix="graphjit-")  # this process only
            except OSError as e:
                from ..errors import GraphjitError
                raise GraphjitError(f"graphjit: no usable folder for the compile cache "
                                    f"({wanted}: {error}; {tempfile.gettempdir()}: {e}); "
                                    "set GRAPHJIT_CACHE_DIR to a writable folder") from e
            if subdir:
                folder = os.path.join(folder, subdir)
                os.makedirs(folder, exist_ok=True)
        if wanted not in _WARNED:
            _WARNED.add(wanted)
            warnings.warn(f"graphjit: cannot use the compile cache folder {wanted} ({error}); "
                          f"using {folder} instead (set GRAPHJIT_CACHE_DIR to choose another)",
                          RuntimeWarning, stacklevel=3)
    _IN_USE[key] = folder
    return folder


def cache_dir(subdir: str = "") -> str:
    """The folder ``<cache>/<subdir>`` (made if needed), or the fallback in the temporary
    folder when that cannot be written ([Generated modules on disk])."""
    return _folder(subdir)


# ---- generated modules ----------------------------------------------------------------------

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


def write_module(source: str, stem: str, subdir: str) -> str:
    """Write ``source`` to a content-hash named file (once) and return its path."""
    data = source.encode("utf-8")
    folder = _folder(subdir, numba=True)
    path = os.path.join(folder, module_file_name(source, stem))
    # Rewriting the same text would be harmless (Numba checks the contents) but pointless.
    if _read_bytes(path) != data:
        # Missing, or not the text its name promises: a truncated or garbled file.
        # Write then rename, so a concurrent reader never sees half a file.
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if _read_bytes(path) != data:  # (unless another process put the same text there)
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _CHECKED[path] = source
    return path


def import_module(path: str):
    """Import the module at ``path`` (once per process; later calls return the same module).

    The module's name holds its text's hash and its folder's: Numba names the compiled
    functions after the module, and two compiles of one text in one process (two cache
    folders, each with its own Numba cache) under one name clash (seen: the second
    driver's calls failing with SystemError). So a cache folder moved elsewhere is
    compiled again: its cached code finds its module by the old name (a miss, not an
    error: see _guarded_load)."""
    folder = hashlib.sha256(os.path.dirname(os.path.abspath(path)).encode()).hexdigest()[:8]
    name = f"_graphjit_gen_{os.path.splitext(os.path.basename(path))[0]}_{folder}"
    source = _CHECKED.pop(path, None)
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == path:
        return module
    if source is None:
        with open(path, "rb") as f:
            source = f.read()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    code = compile(source, path, "exec", dont_inherit=True)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    _guard_numba_caches(module, path)
    return module


def import_sibling(module_file: str, file_name: str):
    """The generated module ``file_name`` of the folder of the generated module at
    ``module_file``, imported with ``import_module``: how a program module imports its kernel
    modules (see [Kernel modules] in backend/cpu/codegen.py). Whoever compiles the program
    writes them first, so this finds them imported already (or at least checked)."""
    return import_module(os.path.join(os.path.dirname(os.path.abspath(module_file)), file_name))


# ---- Numba's cache files --------------------------------------------------------------------

_SEAL = b"graphjit-sha256\n"


class CorruptCacheFile(ValueError):
    """A Numba cache file whose checksum does not match its contents."""


def _seal(payload: bytes) -> bytes:
    return _SEAL + hashlib.sha256(payload).digest() + payload


def _unseal(blob: bytes, path: str) -> bytes:
    n = len(_SEAL)
    payload = blob[n + 32:]
    if blob[:n] != _SEAL or hashlib.sha256(payload).digest() != blob[n:n + 32]:
        raise CorruptCacheFile(f"{path}: truncated or corrupted (checksum mismatch)")
    return payload


_CHECKED_CLASS = []
# What _checked_cache_file relies on in numba.core.caching.IndexDataCacheFile.
_FILE_ATTRS = ("_index_path", "_source_stamp", "_version", "_dump", "_data_path",
               "_open_for_write", "_load_index", "_save_index", "_load_data", "_save_data")


def _checked_cache_file():
    """Numba's IndexDataCacheFile with every file written as ``_seal(contents)`` and checked
    before anything in it is unpickled. Same logic as Numba's own methods otherwise: a file
    of another Numba version or for another source text is a miss, not an error."""
    if _CHECKED_CLASS:
        return _CHECKED_CLASS[0]
    from numba.core.caching import IndexDataCacheFile

    class CheckedCacheFile(IndexDataCacheFile):
        def _save_index(self, overloads):
            out = io.BytesIO()
            pickle.dump(self._version, out, protocol=-1)
            out.write(self._dump((self._source_stamp, overloads)))
            with self._open_for_write(self._index_path) as f:
                f.write(_seal(out.getvalue()))

        def _load_index(self):
            try:
                with open(self._index_path, "rb") as f:
                    blob = f.read()
            except FileNotFoundError:
                return {}
            payload = io.BytesIO(_unseal(blob, self._index_path))
            if pickle.load(payload) != self._version:
                return {}
            stamp, overloads = pickle.loads(payload.read())
            return overloads if stamp == self._source_stamp else {}

        def _save_data(self, name, data):
            with self._open_for_write(self._data_path(name)) as f:
                f.write(_seal(self._dump(data)))

        def _load_data(self, name):
            path = self._data_path(name)
            with open(path, "rb") as f:
                blob = f.read()
            return pickle.loads(_unseal(blob, path))

    _CHECKED_CLASS.append(CheckedCacheFile)
    return CheckedCacheFile


def _discard(cache) -> None:
    """Delete the index and data files of one function's Numba cache."""
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    if not index or not index.endswith(".nbi"):
        return
    for path in [index] + glob.glob(glob.escape(index[:-len(".nbi")]) + ".*.nbc"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _guard_numba_caches(module, path: str) -> None:
    """Make the disk caches of the module's Numba functions (its own, and the helpers it
    imports) unable to crash a compile: a failing load deletes the entry and is a miss, a
    failing save is skipped. The module's own functions' files are checksummed too."""
    if "numba" not in sys.modules:
        return
    try:
        from numba.core.caching import Cache, IndexDataCacheFile
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    for value in list(vars(module).values()):
        if not isinstance(value, Dispatcher):
            _guard_cuda_cache(value)
            continue
        cache = getattr(value, "_cache", None)
        if not isinstance(cache, Cache) or getattr(cache, "_graphjit_guarded", False):
            continue
        cache._graphjit_guarded = True
        file = getattr(cache, "_cache_file", None)
        code = getattr(getattr(value, "py_func", None), "__code__", None)
        if (code is not None and os.path.abspath(code.co_filename) == os.path.abspath(path)
                and type(file) is IndexDataCacheFile
                and all(hasattr(file, a) for a in _FILE_ATTRS)):
            file.__class__ = _checked_cache_file()
        cache.load_overload = _guarded_load(cache, cache.load_overload)
        cache.save_overload = _guarded_save(cache, cache.save_overload)


def _guard_cuda_cache(value) -> None:
    """The guard of ``_guard_numba_caches`` for a ``@cuda.jit(cache=True)`` kernel (numba-cuda's
    dispatcher and cache are classes of their own, not numba.core's): a failing load is a
    miss that deletes the entry, a failing save is skipped. Its files are not checksummed:
    numba-cuda keeps PTX/cubins there, which the driver checks when it loads them. Nothing
    here imports numba.cuda (CPU-only programs never load it)."""
    if "numba.cuda.dispatcher" not in sys.modules:
        return
    from numba.cuda.core.caching import Cache
    from numba.cuda.dispatcher import CUDADispatcher
    cache = getattr(value, "_cache", None) if isinstance(value, CUDADispatcher) else None
    if not isinstance(cache, Cache) or getattr(cache, "_graphjit_guarded", False):
        return
    cache._graphjit_guarded = True
    cache.load_overload = _guarded_load(cache, cache.load_overload, refresh=True)
    cache.save_overload = _guarded_save(cache, cache.save_overload)


def _guarded_load(cache, load, refresh: bool = False):
    # Numba's Cache.load_overload is target_context.refresh() then _load_overload(); the
    # refresh is skipped, see _load_runtime (unless ``refresh``: numba-cuda's kernels).
    unrefreshed = None if refresh else getattr(cache, "_load_overload", None)

    def load_overload(sig, target_context):
        try:
            if unrefreshed is not None:
                _load_runtime(target_context)
                compiled = unrefreshed(sig, target_context)
            else:
                compiled = load(sig, target_context)
        except Exception:
            # Garbled, truncated, checksum mismatch, or machine code LLVM refuses: rebuild.
            _discard(cache)
            return None
        _keep_reload_hooks(compiled)
        return compiled
    return load_overload


def _load_runtime(target_context) -> None:
    """What loading machine code from Numba's cache needs of ``target_context.refresh()``,
    which Numba's ``Cache.load_overload`` calls first: Numba's runtime (NRT) initialised,
    so the code's references to ``NRT_*`` resolve (without it LLVM aborts the process:
    "Symbol not found: NRT_MemInfo_call_dtor").

    The rest of refresh() imports and installs every lowering and typing registry Numba
    has (numba.np.linalg, arraymath, the typed containers, SciPy's linalg...): 0.22 s of
    W2's warm start of ~0.74 s, for code that is already machine code. Numba refreshes
    the contexts itself before it compiles anything (CompilerBase.__init__), so a program
    that needs a kernel compiled still gets them."""
    from numba.core.runtime import rtsys
    rtsys.initialize(target_context)


def _keep_reload_hooks(compiled) -> None:
    """Give a function loaded from Numba's cache its reload hooks back.

    A compiled function's code library lists what must run before its code does when it is
    loaded from the cache (for a parallel kernel: start Numba's thread pool), and a function
    that links the library, as a driver links its kernels, inherits the list, so its own
    cache entry runs them too. A library loaded from the cache has an empty list (Numba
    0.68 runs the hooks once and keeps them only on the compile result), so a driver
    compiled against a *cached* parallel kernel was saved without them, and the next
    process that loaded that driver crashed in the thread pool it had not started
    (segfault; tests/backend/test_kernel_sharing.py). Put back, they are inherited as if
    the kernel had just been compiled."""
    hooks = getattr(compiled, "reload_init", None)
    library_hooks = getattr(getattr(compiled, "library", None), "_reload_init", None)
    if hooks and isinstance(library_hooks, set):
        library_hooks.update(hooks)


def _guarded_save(cache, save):
    def save_overload(sig, data):
        try:
            save(sig, data)
            return
        except Exception:
            _discard(cache)  # an unreadable index fails every save: start it afresh
        try:
            save(sig, data)
        except Exception as e:
            where = getattr(cache, "cache_path", "?")
            if where not in _WARNED:
                _WARNED.add(where)
                warnings.warn(f"graphjit: could not save Numba's compile cache in {where} "
                              f"({type(e).__name__}: {e}); the next process compiles again",
                              RuntimeWarning, stacklevel=2)
    return save_overload
