"""Files of the compile cache that are never trusted: written whole or not at all
(``write_atomically``), and sealed with a checksum (``seal``/``unseal``; pickles:
``write_pickle``/``read_pickle``) where what they hold is run (machine code) or would load
as another program when garbled. The layer below
everything that reads or writes the cache (source.py, numba_cache.py, nrt_cache.py, the
bundles, the lowering cache)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import tempfile

_SEAL = b"graphjit-sha256\n"


class CorruptCacheFile(ValueError):
    """A sealed file whose checksum does not match its contents."""


def seal(payload: bytes) -> bytes:
    return _SEAL + hashlib.sha256(payload).digest() + payload


def unseal(blob: bytes, path: str) -> bytes:
    n = len(_SEAL)
    payload = blob[n + 32:]
    if blob[:n] != _SEAL or hashlib.sha256(payload).digest() != blob[n:n + 32]:
        raise CorruptCacheFile(f"{path}: truncated or corrupted (checksum mismatch)")
    return payload


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place, so a reader in
    another process sees the old file or the whole new one, never half of it (OSError if it
    cannot be written)."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_pickle(path: str, obj) -> None:
    """``obj`` pickled, sealed and written atomically to ``path`` (OSError, or pickle's
    errors, if it cannot be)."""
    write_atomically(path, seal(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)))


def read_pickle(path: str, unpickler=pickle.Unpickler):
    """What ``write_pickle`` wrote to ``path``, unpickled by ``unpickler``.
    FileNotFoundError when there is no file; a file that cannot be read back (truncated,
    garbled, from other code) is deleted, so the next writer replaces it, and ValueError
    raised."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
        return unpickler(io.BytesIO(unseal(blob, path))).load()
    except FileNotFoundError:
        raise
    except Exception as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise ValueError(f"{path}: unusable ({type(e).__name__}: {e})") from e
