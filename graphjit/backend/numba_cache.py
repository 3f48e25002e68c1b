"""Numba's cache files for generated modules: checked before they are trusted.

Numba trusts its own files: a garbled or truncated index or data file makes it raise from
the unpickler, and a flipped byte inside the pickled machine code, still a valid pickle,
crashes the process (segfault, LLVM assertion) or the call. So the Numba files of a
generated module carry a SHA-256 of their contents (``_checked_cache_file``), and any
entry that fails the check or fails to load is deleted and its function compiled again;
a failure to save is ignored (the next process compiles again). ``guard_numba_caches``
installs this on the functions of a module ``source.import_module`` has just imported.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
import pickle
import sys
import warnings

from .sealed import seal, unseal

_WARNED: set = set()  # cache folders a failed save was reported for


_CHECKED_CLASS = []
# What _checked_cache_file relies on in numba.core.caching.IndexDataCacheFile.
_FILE_ATTRS = ("_index_path", "_source_stamp", "_version", "_dump", "_data_path",
               "_open_for_write", "_load_index", "_save_index", "_load_data", "_save_data")


def _checked_cache_file():
    """Numba's IndexDataCacheFile with every file written as ``seal(contents)`` and checked
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
                f.write(seal(out.getvalue()))

        def _load_index(self):
            try:
                with open(self._index_path, "rb") as f:
                    blob = f.read()
            except FileNotFoundError:
                return {}
            payload = io.BytesIO(unseal(blob, self._index_path))
            if pickle.load(payload) != self._version:
                return {}
            stamp, overloads = pickle.loads(payload.read())
            return overloads if stamp == self._source_stamp else {}

        def _save_data(self, name, data):
            with self._open_for_write(self._data_path(name)) as f:
                f.write(seal(self._dump(data)))

        def _load_data(self, name):
            path = self._data_path(name)
            with open(path, "rb") as f:
                blob = f.read()
            return pickle.loads(unseal(blob, path))

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


def guard_numba_caches(module, path: str) -> None:
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
    """The guard of ``guard_numba_caches`` for a ``@cuda.jit(cache=True)`` kernel (numba-cuda's
    dispatcher and cache are classes of their own, not numba.core's): a failing load is a
    miss that deletes the entry, a failing save is skipped. Its files are not checksummed:
    numba-cuda keeps PTX/cubins there, which the driver checks when it loads them. Nothing
    here imports numba.cuda (CPU-only programs never load it)."""
    if "numba.cuda.dispatcher" not in sys.modules:
        return
    try:
        from numba.cuda.core.caching import Cache
        from numba.cuda.dispatcher import CUDADispatcher
    except ImportError:  # Numba's own numba.cuda (no numba-cuda installed): another layout
        return
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
    from .nrt_cache import initialize_runtime
    initialize_runtime(target_context)  # [The runtime's machine code on disk]


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
