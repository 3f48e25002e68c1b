"""``graphjit.save`` / ``graphjit.load``: checkpoints of tensors and plain Python values.

# NOTE: [Checkpoint format]
A checkpoint is one file in a format of graphjit's own, not a pickle, so that loading one
runs no code from it. ``torch.load(weights_only=True)`` promises the same with a restricted
unpickler: pickle is a small stack machine whose programs name globals to call, and the
restriction is an allow-list of those globals, as safe as every entry on it and the
unpickler's handling of crafted programs. Here the file is data only: a JSON tree that can
name nothing but the handful of types below, and raw array bytes read straight into the
arrays that become the tensors (no copy, no unpickling pass). All integers are
little-endian:

    prefix   32 bytes  magic b"\\x89GJCKPT\\n", format version (u32), flags (u32, 0),
                       header length (u64), CRC32 of those 24 bytes, CRC32 of the header
    header   JSON (ASCII): the object tree, one record per tensor, the sizes and CRC32s
                       of the data sections; zero bytes up to a multiple of 64
    data     each storage, then each blob, raw bytes, each followed by zero bytes up to a
                       multiple of 64
    footer   16 bytes  b"\\nGJCKEND" and the file's length (u64)

Every byte is checked on load: the magic, the CRCs of the prefix, the header and each data
section, the zero padding, the footer and the length, so a flipped byte or a cut file is an
error naming the file and the part that is wrong, never wrong tensors. (CRC32 finds every
error of up to 32 consecutive bits and other damage with probability 1 - 2**-32; it is no
defence against a file crafted to pass it, which loading must survive anyway: a malformed
header is a ``CheckpointError`` too.)

The object tree in the header is JSON: ``null``, booleans, numbers and strings stand for
themselves (Python's ``repr`` of a float round-trips exactly, ``NaN`` and ``Infinity``
included); everything else is a list whose first item is a tag (``["dict", [[k, v], ...]]``,
``["tensor", 3]``, ...). Loading builds only the types in that tag list, so nothing the
file says can name a class to instantiate or a function to call. The one exception is the
``"pickle"`` tag, written only when ``save`` is given ``pickle_module`` and read only by
``load(weights_only=False)``.

Tensor memory is saved by storage, as PyTorch does: tensors whose bytes overlap (views of
one base, ``t`` and ``t.detach()``, one weight under two names) are saved once as the span
of memory they cover together, each with its offset and strides in it, and come back as
views of one buffer sharing a version counter; a tensor object saved twice comes back as
one object. (Only the span the saved tensors cover is written, not the whole base: a small
slice of a big array saves the slice.) CUDA tensors are copied to the host one by one:
views of one CUDA tensor come back as separate copies.

Saving (the encoder, the atomic write: [Atomic saves]) is in graphjit/serialization_save.py,
loading (the decoder) in graphjit/serialization_load.py, the format's constants and the
errors in graphjit/serialization_format.py, which both import; this module has the two entry
points, above all three.
"""
from __future__ import annotations

import os
import pickle

from . import _tracing
from . import devices
from .errors import TraceError
from .serialization_format import CheckpointError, CheckpointTypeError  # noqa: F401
from .serialization_load import _Decoder
from .serialization_save import _atomic_write, _Encoder

def save(obj, f, pickle_module=None, pickle_protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    """Save ``obj`` to ``f``, a path (``str`` / ``os.PathLike``) or a binary file object, as
    ``torch.save`` does.

    ``obj`` may hold tensors (``Tensor``, ``nn.Parameter``; dtype, shape, strides,
    ``requires_grad``, device and attributes are kept; ``.grad`` and the graph are not, as in
    PyTorch) and, nested to any depth in dicts, ``OrderedDict``\\ s, lists, tuples,
    namedtuples, sets and frozensets: ``None``, ``bool``, ``int``, ``float``, ``complex``,
    ``str``, ``bytes``, ``bytearray``, NumPy arrays and scalars of numeric dtypes, and
    graphjit dtypes and devices: all that ``state_dict()`` of a module, an optimizer or an
    LR scheduler contains. Subclasses of dict, list, tuple and set are saved as the plain
    container. Attributes set on a tensor are saved if their values can be (not graphjit's
    own ``_``-named markers).
    Any other object is a ``CheckpointTypeError`` naming its type and place, unless
    ``pickle_module`` (e.g. ``pickle``) is given: then it is stored as a pickle made with it,
    which only ``load(..., weights_only=False)`` reads (with the standard ``pickle``). A
    container that contains itself is
    an error; one reached twice is saved twice.

    Saving to a path is atomic (see [Atomic saves] in graphjit/serialization_save.py): a
    crash or a kill at any moment leaves the previous file whole, and a failed save leaves it
    untouched. The format is described in [Checkpoint format] (graphjit/serialization.py).
    """
    _refuse_in_trace("save")
    if pickle_module is not None and not hasattr(pickle_module, "dumps"):
        raise TypeError(f"graphjit.save: pickle_module must have dumps() (like the pickle "
                        f"module), got {pickle_module!r}")
    encoder = _Encoder(pickle_module, pickle_protocol)
    root = encoder.encode(obj, "obj")
    write = encoder.finish(root)  # all checks on the object are done by here
    if isinstance(f, (str, bytes, os.PathLike)):
        _atomic_write(os.fsdecode(f), write)
    elif hasattr(f, "write"):
        write(f)
        if hasattr(f, "flush"):
            f.flush()
    else:
        raise TypeError(f"graphjit.save: f must be a path or a binary file object, got "
                        f"{type(f).__name__}")


def load(f, map_location=None, weights_only: bool = True):
    """Load an object saved by ``graphjit.save`` from ``f`` (a path or a binary file object,
    read from its current position), as ``torch.load`` does.

    Tensors come back with their dtype, shape, ``requires_grad``, class (``Tensor`` or
    ``nn.Parameter``) and device, and tensors that shared memory when saved share it again.
    ``map_location`` moves them: ``"cpu"`` (or a ``graphjit.device``) puts all of them
    there; a dict maps saved devices to targets (``{"cuda:0": "cpu"}``). A CUDA tensor
    needs CUDA here unless mapped away.

    NOTE: with ``weights_only=True`` (the default) loading runs no code from the file: the
    format has no way to name a class or a function (see [Checkpoint format]), so a
    checkpoint from an untrusted source is as safe as its size. ``weights_only=False``
    also unpickles the objects that ``save(..., pickle_module=pickle)`` stored as pickles,
    which runs whatever code the file names: only for files you trust.

    A file that is not a checkpoint, is truncated or corrupted (each section has a CRC32)
    raises ``CheckpointError`` naming the file and what is wrong.
    """
    _refuse_in_trace("load")
    if map_location is not None and not isinstance(map_location, (str, devices.device, dict)):
        raise TypeError("graphjit.load: map_location must be None, a device (or its name) or "
                        f"a dict of devices, got {type(map_location).__name__} (graphjit takes "
                        "no functions there)")
    if isinstance(map_location, dict):  # (bad names fail here, not as a bad file)
        map_location = {devices.device(k): devices.device(v) for k, v in map_location.items()}
    elif map_location is not None:
        map_location = devices.device(map_location)
    if isinstance(f, (str, bytes, os.PathLike)):
        path = os.fsdecode(f)
        with open(path, "rb") as fh:
            return _Decoder(fh, path, os.fstat(fh.fileno()).st_size, map_location,
                            weights_only).run()
    if not hasattr(f, "read"):
        raise TypeError(f"graphjit.load: f must be a path or a binary file object, got "
                        f"{type(f).__name__}")
    return _Decoder(f, str(getattr(f, "name", f"<{type(f).__name__}>")), None, map_location,
                    weights_only).run()


def _refuse_in_trace(what: str) -> None:
    # A compiled program replays tensor ops, not Python side effects: a save inside it would
    # write once, at trace time, and a load would freeze that file's values into the program.
    if _tracing.active() is not None:
        raise TraceError(f"graphjit.{what} inside a function being compiled by "
                            "@graphjit.compile would run once, when it is traced, not at "
                            f"every call; call graphjit.{what} outside the compiled function",
                            op=f"graphjit.{what}")
