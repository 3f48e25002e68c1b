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

# NOTE: [Atomic saves]
Saving to a path writes a new file in the same folder (``.NAME.RANDOM.tmp``, opened with
``O_EXCL``), flushes it, ``fsync``\\ s it, ``os.replace``\\ s it onto the target and
``fsync``\\ s the folder: at every moment the target is the old checkpoint or the new one,
whole, even if the process is killed (a kill can leave the temporary file behind; it is
safe to delete). Everything that can fail on the object (an unsupported type) fails before
any file is touched. A file object is written in place: atomicity is then the caller's.
"""
from __future__ import annotations

import collections
import errno
import json
import math
import os
import pickle
import secrets
import stat
import struct
import sys
import zlib

import numpy as np

from . import _tracing
from . import autograd as _ag
from . import devices, dtypes
from .errors import GraphjitError, TraceError
from .tensor import Tensor, _Version

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

    Saving to a path is atomic (see [Atomic saves]): a crash or a kill at any moment leaves
    the previous file whole, and a failed save leaves it untouched. The format is described
    in [Checkpoint format] (graphjit/serialization.py).
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


# ---- saving ---------------------------------------------------------------------------------

def _pad(n: int) -> int:
    return -n % _ALIGN


def _describe(obj) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _key_text(key) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


class _Memory:
    """A byte window ``[address, address + n)`` on memory that ``owner`` keeps alive, for
    ``np.asarray``: the bytes a group of overlapping tensors covers (see [Checkpoint format])."""

    def __init__(self, address: int, n: int, owner):
        self.owner = owner
        self.__array_interface__ = {"version": 3, "shape": (n,), "typestr": "|u1",
                                    "data": (address, True)}


def _byte_span(arr: np.ndarray):
    """``(low, high, address)``: the bytes ``arr`` touches and where its first element is."""
    address = arr.__array_interface__["data"][0]
    low = high = address
    if arr.size:
        for n, s in zip(arr.shape, arr.strides):
            if s < 0:
                low += s * (n - 1)
            else:
                high += s * (n - 1)
        high += arr.itemsize
    return low, high, address


class _Encoder:
    """Turns the object into the JSON tree and the list of data sections, checking every
    type before anything is written."""

    def __init__(self, pickle_module, protocol):
        self.pickle_module = pickle_module
        self.protocol = protocol
        self.tensors = []  # header records, in the order first met
        self.arrays = []  # each tensor's data on the host
        self.index = {}  # id(tensor) -> index; `keep` holds the tensors so ids stay unique
        self.keep = []
        self.blobs = []  # bytes-like data sections (bytes, NumPy arrays, pickles)
        self.active = set()  # ids of the containers being encoded (a cycle check)

    def encode(self, obj, path: str):
        t = type(obj)
        if obj is None or t is bool or t is str or t is float:
            return obj
        if t is int:
            return obj if -_BIG_INT <= obj < _BIG_INT else ["int", hex(obj)]
        if isinstance(obj, Tensor):
            return ["tensor", self._tensor(obj, path)]
        if isinstance(obj, np.generic) and obj.dtype.kind in "biufc":
            return ["npscalar", obj.dtype.str, obj.tobytes().hex()]
        if t is np.ndarray or t is np.memmap:
            return self._ndarray(obj, path)
        if t is bytes or t is bytearray:
            return [t.__name__, self._blob(bytes(obj))]
        if t is complex:
            return ["complex", obj.real, obj.imag]
        if t is dtypes.DType:
            return ["dtype", obj.name]
        if t is devices.device:
            return ["device", str(obj)]
        if isinstance(obj, (dict, list, tuple, set, frozenset)):
            if id(obj) in self.active:
                raise CheckpointTypeError(f"graphjit.save: {path} contains itself (a "
                                          f"{_describe(obj)} in a reference cycle), which "
                                          "graphjit.save does not store")
            self.active.add(id(obj))
            try:
                return self._container(obj, path)
            finally:
                self.active.discard(id(obj))
        return self._other(obj, path)

    def _container(self, obj, path):
        if isinstance(obj, dict):
            items = []
            for i, (k, v) in enumerate(obj.items()):
                key = self.encode(k, f"{path}<key {i}: {_key_text(k)}>")
                items.append([key, self.encode(v, f"{path}[{_key_text(k)}]")])
            return ["odict" if isinstance(obj, collections.OrderedDict) else "dict", items]
        if isinstance(obj, list):
            return ["list", [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]]
        if isinstance(obj, tuple):
            fields = getattr(type(obj), "_fields", None)
            if isinstance(fields, tuple) and len(fields) == len(obj) and all(
                    type(name) is str for name in fields):
                cls = type(obj)
                return ["namedtuple", cls.__module__, cls.__qualname__, list(fields),
                        [self.encode(v, f"{path}.{name}") for name, v in zip(fields, obj)]]
            return ["tuple", [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]]
        tag = "set" if isinstance(obj, set) else "frozenset"
        return [tag, [self.encode(v, f"{path}<element {i}>") for i, v in enumerate(obj)]]

    def _other(self, obj, path):
        if self.pickle_module is None:
            raise CheckpointTypeError(
                f"graphjit.save: can't save an object of type {_describe(obj)} at {path}; "
                "graphjit.save stores tensors, None, bool, int, float, complex, str, bytes, "
                "NumPy arrays and scalars, dtypes and devices in dicts, lists, tuples and "
                "sets. Convert it to those, or pass pickle_module=pickle to store it as a "
                "pickle (which only graphjit.load(..., weights_only=False) reads). Nothing "
                "was written")
        try:
            data = self.pickle_module.dumps(obj, protocol=self.protocol)
        except Exception as e:  # noqa: BLE001 - any pickling failure is the user's object
            raise CheckpointTypeError(f"graphjit.save: can't pickle the {_describe(obj)} at "
                                      f"{path}: {type(e).__name__}: {e}") from e
        return ["pickle", _describe(obj), self._blob(data)]

    def _blob(self, data) -> int:
        self.blobs.append(np.frombuffer(data, np.uint8))
        return len(self.blobs) - 1

    def _ndarray(self, arr, path):
        if arr.dtype.kind not in "biufc" or arr.dtype.fields is not None:
            raise CheckpointTypeError(f"graphjit.save: can't save the NumPy array of dtype "
                                      f"{arr.dtype} at {path} (numeric and bool dtypes only)")
        data = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        return ["ndarray", arr.dtype.str, list(arr.shape), self._blob(data)]

    def _tensor(self, t: Tensor, path: str) -> int:
        index = self.index.get(id(t))
        if index is not None:
            return index
        from .nn.parameter import Parameter  # (graphjit.nn loads on first use)
        if t._data is None:
            raise CheckpointTypeError(f"graphjit.save: the tensor at {path} is being traced "
                                      "by @graphjit.compile; save outside the compiled function")
        if type(t) not in (Tensor, Parameter):
            return self._other(t, path)
        _ag.check_copied_view(t, "graphjit.save")
        index = len(self.tensors)
        self.index[id(t)] = index
        self.keep.append(t)
        record = {"dtype": t.dtype.name, "shape": list(t.shape), "device": str(t.device),
                  "requires_grad": t._requires_grad, "class": type(t).__name__}
        self.tensors.append(record)
        arr = devices.to_host(t._data)  # a copy of a CUDA tensor, the array of a CPU one
        self.arrays.append(arr)
        # Attributes the user set on the tensor; graphjit's own markers (`_`-names, such as
        # [Copied views]) describe the original's memory and stay behind.
        attributes = {k: v for k, v in t._attributes().items() if not k.startswith("_")}
        for name in attributes:
            if hasattr(type(t), name):
                raise CheckpointTypeError(f"graphjit.save: the attribute {name!r} set on the "
                                          f"tensor at {path} hides {type(t).__name__}.{name}; "
                                          "graphjit.save does not store it")
        if attributes:
            record["attributes"] = self.encode(attributes, f"{path}.__dict__")
        return index

    def _storages(self) -> list:
        """Group the tensors whose bytes overlap into storages (see [Checkpoint format]);
        fill in each record's storage, offset and strides; return the storages' bytes."""
        spans = sorted((_byte_span(a) + (i,) for i, a in enumerate(self.arrays)),
                       key=lambda s: (s[0], -s[1]))
        groups = []  # [low, high, [tensor indices]]
        for low, high, _, i in spans:
            if low == high:
                continue
            if groups and low < groups[-1][1]:
                groups[-1][1] = max(groups[-1][1], high)
                groups[-1][2].append(i)
            else:
                groups.append([low, high, [i]])
        groups += [[low, high, [i]] for low, high, _, i in spans if low == high]  # empty
        storages = []
        for k, (low, high, members) in enumerate(groups):
            for i in members:
                arr = self.arrays[i]
                record = self.tensors[i]
                record["storage"] = k
                record["offset"] = _byte_span(arr)[2] - low
                record["strides"] = list(arr.strides)
                if not arr.flags.writeable:
                    record["writeable"] = False
            owners = [self.arrays[i] for i in members]
            storages.append(np.asarray(_Memory(low, high - low, owners)))
        return storages

    def finish(self, root):
        """Build the header; return the function that writes the file to a file object."""
        storages = self._storages()
        sections = storages + self.blobs

        def table(arrays):
            return [{"nbytes": int(a.nbytes), "crc32": zlib.crc32(a)} for a in arrays]

        header = {"format": "graphjit.save", "byteorder": sys.byteorder, "root": root,
                  "tensors": self.tensors, "storages": table(storages),
                  "blobs": table(self.blobs)}
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        prefix = _PREFIX.pack(_MAGIC, FORMAT_VERSION, 0, len(text))
        head = prefix + _CRCS.pack(zlib.crc32(prefix), zlib.crc32(text)) + text
        head += bytes(_pad(len(head)))
        total = len(head) + sum(a.nbytes + _pad(a.nbytes) for a in sections) + _FOOTER.size

        def write(fh):
            fh.write(head)
            for a in sections:
                if a.nbytes:
                    fh.write(memoryview(a))
                fh.write(bytes(_pad(a.nbytes)))
            fh.write(_FOOTER.pack(_END, total))

        return write


def _atomic_write(path: str, write) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it onto
    ``path`` (see [Atomic saves])."""
    target = os.path.realpath(path) if os.path.islink(path) else path  # write through a link
    folder, name = os.path.split(os.path.abspath(target))
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "graphjit.save: the target is a folder", path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "graphjit.save: no such folder", folder)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # an existing file keeps its mode
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, flags, 0o666)  # (the umask applies, as for open())
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename durable. Some systems cannot open or sync a folder; the file itself
    is synced already, so that is no error."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- loading --------------------------------------------------------------------------------

class _Malformed(Exception):
    """A header that passed its CRC but does not describe a checkpoint (a crafted file)."""


def _first_bytes_hint(data: bytes) -> str:
    if not data:
        return "the file is empty"
    if data.startswith(b"PK\x03\x04"):
        return "it is a zip archive (torch.save writes those), not a graphjit checkpoint"
    if data[:1] == b"\x80":
        return "it looks like a pickle, not a graphjit checkpoint"
    return f"it is not a graphjit checkpoint (it starts with {data[:8]!r})"


class _Decoder:
    def __init__(self, fh, name, size, map_location, weights_only):
        self.fh = fh
        self.name = name
        self.size = size  # None for a file object
        self.pos = 0
        self.map_location = map_location
        self.weights_only = weights_only
        self.targets = {}
        self.namedtuples = {}

    def error(self, message: str) -> CheckpointError:
        return CheckpointError(self.name, message)

    # -- reading ------------------------------------------------------------------------------

    def read_upto(self, n: int) -> bytes:
        """Up to ``n`` bytes: fewer only at the end of the file."""
        parts, got = [], 0
        while got < n:
            part = self.fh.read(min(n - got, 1 << 24))
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def read(self, n: int, what: str) -> bytes:
        data = self.read_upto(n)
        if len(data) < n:
            self.truncated(len(data), n, what)
        self.pos += n
        return data

    def read_into(self, buf: np.ndarray, what: str) -> None:
        view, got, n = memoryview(buf).cast("B"), 0, buf.nbytes
        readinto = getattr(self.fh, "readinto", None)
        while got < n:
            if readinto is not None:
                k = readinto(view[got:])
            else:
                part = self.fh.read(n - got)
                k = len(part)
                view[got:got + k] = part
            if not k:
                self.truncated(got, n, what)
            got += k
        self.pos += n

    def truncated(self, got: int, n: int, what: str):
        raise self.error(f"truncated: the file ends at byte {self.pos + got}, {n - got} bytes "
                         f"before the end of {what} (bytes {self.pos}..{self.pos + n})")

    def zeros(self, n: int, what: str) -> None:
        if n and any(self.read(n, what)):
            raise self.error(f"corrupted: nonzero bytes in the padding after {what}")

    # -- the file, in order -------------------------------------------------------------------

    def run(self):
        header = self.read_header()
        self.users = {}  # storage -> the tensors in it
        try:
            for i, t in enumerate(header["tensors"]):
                self.users.setdefault(t["storage"], []).append(i)
            buffers, plans = self.plan(header)
        except (_Malformed, GraphjitError, KeyError, IndexError, TypeError, ValueError) as e:
            raise self.malformed(e) from None
        sections = [("storage", i, s) for i, s in enumerate(header["storages"])]
        sections += [("blob", i, s) for i, s in enumerate(header["blobs"])]
        for (kind, i, section), buf in zip(sections, buffers):
            what = self.section_name(header, kind, i)
            self.read_into(buf, what)
            if zlib.crc32(buf) != section["crc32"]:
                raise self.error(f"corrupted: {what} fails its CRC32 check")
            self.zeros(_pad(buf.nbytes), what)
        end, length = _FOOTER.unpack(self.read(_FOOTER.size, "the footer"))
        if end != _END or length != self.pos:
            raise self.error("corrupted: the footer is damaged")
        if self.size is not None and self.size != self.pos:
            raise self.error(f"corrupted: {self.size - self.pos} unexpected bytes after the end "
                             f"of the checkpoint (byte {self.pos})")
        try:
            return self.build(header, buffers, plans)
        except CheckpointError:
            raise
        except (_Malformed, GraphjitError, KeyError, IndexError, TypeError, ValueError,
                AttributeError, RecursionError) as e:
            raise self.malformed(e) from None

    def malformed(self, e) -> CheckpointError:
        return self.error(f"malformed checkpoint header ({type(e).__name__}: {e}); the file "
                          "passes its checksums, so it was written this way rather than damaged "
                          "later: not by graphjit.save")

    def read_header(self) -> dict:
        first = self.read_upto(len(_MAGIC))
        if first != _MAGIC:
            if first and len(first) < len(_MAGIC) and _MAGIC.startswith(first):
                self.truncated(len(first), len(_MAGIC), "the magic bytes")
            raise self.error(_first_bytes_hint(first))
        self.pos = len(_MAGIC)
        rest = self.read(_HEAD - len(_MAGIC), "the prefix")
        prefix = first + rest[:_PREFIX.size - len(_MAGIC)]
        _, version, flags, length = _PREFIX.unpack(prefix)
        prefix_crc, header_crc = _CRCS.unpack(rest[_PREFIX.size - len(_MAGIC):])
        if zlib.crc32(prefix) != prefix_crc:
            raise self.error("corrupted: the prefix (format version and header length) fails "
                             "its CRC32 check")
        if version != FORMAT_VERSION or flags:
            raise self.error(f"written in checkpoint format version {version} (flags {flags}); "
                             f"this graphjit reads version {FORMAT_VERSION}: a newer graphjit "
                             "wrote it")
        if self.size is not None and _HEAD + length > self.size:
            self.truncated(self.size - _HEAD, length, "the header")
        text = self.read(length, "the header")
        if zlib.crc32(text) != header_crc:
            raise self.error("corrupted: the header fails its CRC32 check")
        try:
            header = json.loads(text.decode("ascii"))
            if not isinstance(header, dict) or header.get("format") != "graphjit.save":
                raise _Malformed("not a graphjit.save header")
            for key in ("storages", "blobs", "tensors"):
                if not isinstance(header.get(key), list):
                    raise _Malformed(f"no {key} list")
                if key == "tensors" and not all(isinstance(t, dict) for t in header[key]):
                    raise _Malformed("bad tensors entry")
                if key != "tensors" and not all(
                        isinstance(s, dict) and type(s.get("nbytes")) is int and s["nbytes"] >= 0
                        and type(s.get("crc32")) is int for s in header[key]):
                    raise _Malformed(f"bad {key} entry")
            if header.get("byteorder") != sys.byteorder:
                raise self.error(f"saved on a {header.get('byteorder')}-endian machine; this one "
                                 f"is {sys.byteorder}-endian")
        except (UnicodeDecodeError, ValueError, RecursionError, _Malformed) as e:
            raise self.malformed(e) from None
        self.zeros(_pad(self.pos), "the header")
        if self.size is not None:
            need = self.pos + sum(s["nbytes"] + _pad(s["nbytes"])
                                  for s in header["storages"] + header["blobs"]) + _FOOTER.size
            if need > self.size:
                raise self.error(f"truncated: the header describes {need} bytes, the file has "
                                 f"{self.size}")
        return header

    def section_name(self, header, kind, i) -> str:
        if kind == "blob":
            return f"data section {i} (bytes or an array)"
        users = self.users.get(i, [])
        if len(users) == 1:
            t = header["tensors"][users[0]]
            return f"the data of tensor {users[0]} ({t.get('dtype')}{t.get('shape')})"
        return f"the data of tensors {users}"

    # -- building the objects -----------------------------------------------------------------

    def plan(self, header):
        """One buffer per data section. A storage holding exactly one C-contiguous tensor's
        bytes is read straight into that tensor's own array (it owns its memory, as a fresh
        tensor does); other storages are byte buffers the tensors view."""
        buffers, plans = [], []
        for k, storage in enumerate(header["storages"]):
            owner = None
            for i in self.users.get(k, ()):
                t = header["tensors"][i]
                if t["offset"] != 0:
                    continue
                dt = dtypes.from_name(t["dtype"])
                shape = tuple(t["shape"])
                if not all(type(n) is int and n > 0 for n in shape) or \
                        math.prod(shape) * dt.itemsize != storage["nbytes"]:
                    continue
                arr = np.empty(shape, dt.np)
                if list(arr.strides) == t["strides"]:
                    owner = (i, arr)
                    break
            if owner is None:
                buffers.append(np.empty(storage["nbytes"], np.uint8))
            else:
                buffers.append(owner[1].reshape(-1).view(np.uint8))
            plans.append(owner)
        buffers += [np.empty(blob["nbytes"], np.uint8) for blob in header["blobs"]]
        return buffers, plans

    def build(self, header, buffers, plans):
        from .nn.parameter import Parameter
        versions = [_Version() for _ in plans]
        self.tensors = []
        for i, rec in enumerate(header["tensors"]):
            k = rec["storage"]
            if plans[k] is not None and plans[k][0] == i:
                arr = plans[k][1]
            else:
                dt = dtypes.from_name(rec["dtype"])
                arr = np.ndarray(tuple(rec["shape"]), dt.np, buffer=buffers[k],
                                 offset=rec["offset"], strides=tuple(rec["strides"]))
            if rec.get("writeable", True) is False:
                arr.flags.writeable = False
            target = self.target(rec["device"])
            if target.type == "cuda":
                arr = devices.to_device(arr, target)
            t = Tensor._wrap(arr)
            if rec["class"] == "Parameter":
                t = Parameter(t, requires_grad=False)
            elif rec["class"] != "Tensor":
                raise _Malformed(f"tensor class {rec['class']!r}")
            if target.type == "cpu":
                t._version = versions[k]
            if type(rec["requires_grad"]) is not bool:
                raise _Malformed(f"requires_grad {rec['requires_grad']!r}")
            t.requires_grad = rec["requires_grad"]
            self.tensors.append(t)
        self.blobs = buffers[len(plans):]
        for t, rec in zip(self.tensors, header["tensors"]):
            if "attributes" in rec:
                for name, value in self.node(rec["attributes"], "attributes").items():
                    if type(name) is not str or name.startswith("_") or hasattr(type(t), name):
                        raise _Malformed(f"tensor attribute {name!r}")
                    t.__dict__[name] = value
        return self.node(header["root"], "obj")

    def target(self, saved: str) -> devices.device:
        """The device a tensor saved on ``saved`` loads on (see ``map_location``)."""
        found = self.targets.get(saved)
        if found is not None:
            return found
        where = devices.device(saved)
        spec = self.map_location
        if isinstance(spec, dict):
            dev = spec.get(where, where)
        else:
            dev = where if spec is None else spec
        if dev.type == "cuda":
            try:
                dev = devices.as_device(dev)
            except GraphjitError as e:
                raise self.error(f"it holds tensors saved on {saved}, and {e.bare_message}; "
                                 "load them on the CPU with map_location='cpu'") from None
        self.targets[saved] = dev
        return dev

    def node(self, n, path: str):
        if n is None or type(n) in (bool, int, float, str):
            return n
        if type(n) is not list or not n or type(n[0]) is not str:
            raise _Malformed(f"bad node at {path}")
        tag = n[0]
        if tag == "tensor":
            return self.tensors[n[1]]
        if tag == "list":
            return [self.node(v, f"{path}[{i}]") for i, v in enumerate(n[1])]
        if tag == "tuple":
            return tuple(self.node(v, f"{path}[{i}]") for i, v in enumerate(n[1]))
        if tag in ("dict", "odict"):
            out = {} if tag == "dict" else collections.OrderedDict()
            for i, (k, v) in enumerate(n[1]):
                key = self.node(k, f"{path}<key {i}>")
                out[key] = self.node(v, f"{path}[{_key_text(key)}]")
            return out
        if tag in ("set", "frozenset"):
            items = [self.node(v, f"{path}<element {i}>") for i, v in enumerate(n[1])]
            return set(items) if tag == "set" else frozenset(items)
        if tag == "namedtuple":
            _, module, qualname, fields, values = n
            items = [self.node(v, f"{path}.{f}") for f, v in zip(fields, values)]
            return tuple.__new__(self.namedtuple(module, qualname, fields), items)
        if tag == "int":
            return int(n[1], 16)
        if tag == "complex":
            return complex(float(n[1]), float(n[2]))
        if tag in ("bytes", "bytearray"):
            data = self.blobs[n[1]].tobytes()
            return data if tag == "bytes" else bytearray(data)
        if tag == "npscalar":
            dt = np.dtype(n[1])
            if dt.kind not in "biufc":
                raise _Malformed(f"NumPy dtype {n[1]!r}")
            return np.frombuffer(bytes.fromhex(n[2]), dt)[0]
        if tag == "ndarray":
            dt = np.dtype(n[1])
            if dt.kind not in "biufc" or dt.fields is not None:
                raise _Malformed(f"NumPy dtype {n[1]!r}")
            return self.blobs[n[3]].view(dt).reshape(tuple(n[2]))
        if tag == "dtype":
            return dtypes.from_name(n[1])
        if tag == "device":
            return devices.device(n[1])
        if tag == "pickle":
            if self.weights_only:
                raise self.error(
                    f"{path} is a pickled {n[1]} (saved with pickle_module=), and "
                    "weights_only=True loads no pickles: unpickling runs code the file names. "
                    "If you trust the file, load it with weights_only=False")
            try:
                return pickle.loads(self.blobs[n[2]].tobytes())  # noqa: S301 - asked for
            except Exception as e:  # noqa: BLE001 - the pickle's own code failed
                raise self.error(f"unpickling the {n[1]} at {path} failed: "
                                 f"{type(e).__name__}: {e}") from e
        raise _Malformed(f"unknown tag {tag!r} at {path}")

    def namedtuple(self, module, qualname, fields):
        """The namedtuple class, if its module is imported already (looked up in the module's
        and classes' ``__dict__``\\ s: nothing is imported and no code runs), else a new
        namedtuple class of that name and fields."""
        key = (module, qualname, tuple(fields))
        if key in self.namedtuples:
            return self.namedtuples[key]
        cls = sys.modules.get(module)
        for part in qualname.split("."):
            cls = vars(cls).get(part) if cls is not None and hasattr(cls, "__dict__") else None
        found = None
        if isinstance(cls, type) and issubclass(cls, tuple):
            found = next((vars(c)["_fields"] for c in cls.__mro__ if "_fields" in vars(c)), None)
        if found != tuple(fields):
            cls = collections.namedtuple(qualname.rpartition(".")[2], fields)
        self.namedtuples[key] = cls
        return cls
