"""The on-disk compile cache's folder, and where Numba keeps its files for it.

``<cache>`` is ``$GRAPHJIT_CACHE_DIR``, else the user's cache folder:
``$XDG_CACHE_HOME/graphjit``, else ``~/.cache/graphjit`` (``~/Library/Caches/graphjit`` on
macOS, ``%LOCALAPPDATA%\\graphjit`` on Windows). A folder that cannot be used (no write
permission, a file in its place) gives one warning and ``<tempdir>/graphjit-<uid>`` instead.
Numba keeps its files (a ``.nbi`` index and ``.nbc`` data per function) in ``__pycache__``
next to the module, so inside ``<cache>`` too, unless ``NUMBA_CACHE_DIR`` sends them
elsewhere (``numba_cache_folder``). ``graphjit cache info|clear`` shows and empties both.
What is written there: see [Generated modules on disk] in source.py.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import warnings


def default_cache_root() -> str:
    """``<cache>`` as configured; ``cache_dir`` checks it."""
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


def cache_dir(subdir: str = "", numba: bool = False) -> str:
    """The folder ``<cache>/<subdir>`` (made if needed), or the fallback in the temporary
    folder when that cannot be written; ``numba``: Numba's ``__pycache__`` inside it must
    be writable too (a folder generated modules are imported from)."""
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
        if root not in _WARNED:  # (once per cache, not per subfolder)
            _WARNED.add(root)
            warnings.warn(f"graphjit: cannot use the compile cache folder {wanted} ({error}); "
                          f"using {folder} instead (set GRAPHJIT_CACHE_DIR to choose another)",
                          RuntimeWarning, stacklevel=3)
    _IN_USE[key] = folder
    return folder

