"""The checkpoint format's constants and errors (see [Checkpoint format] in
graphjit/serialization.py), shared by the encoder (serialization_save.py) and the decoder
(serialization_load.py); graphjit.serialization, above all three, has ``save`` and ``load``.
"""
from __future__ import annotations

import struct

from .errors import GraphjitError

FORMAT_VERSION = 1
_MAGIC = b"\x89GJCKPT\n"
_END = b"\nGJCKEND"
_ALIGN = 64
_PREFIX = struct.Struct("<8sIIQ")  # magic, version, flags, header length
_CRCS = struct.Struct("<II")  # CRC32 of the prefix, CRC32 of the header
_FOOTER = struct.Struct("<8sQ")  # end magic, file length
_HEAD = _PREFIX.size + _CRCS.size
_BIG_INT = 1 << 63  # (larger ints are written in hex: JSON readers limit decimal digits)


class CheckpointError(GraphjitError, RuntimeError):
    """A file ``graphjit.load`` cannot read: not a checkpoint, truncated, corrupted, written by
    a newer graphjit, or holding a pickle that ``weights_only=True`` refuses. ``.file`` names
    the file."""

    def __init__(self, file: str, message: str):
        self.file = file
        super().__init__(f"{file}: {message}", op="graphjit.load")


class CheckpointTypeError(GraphjitError, TypeError):
    """An object ``graphjit.save`` does not store, named with its place in the container
    (``obj['state'][0]``); nothing was written."""


def _pad(n: int) -> int:
    return -n % _ALIGN


def _key_text(key) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."
