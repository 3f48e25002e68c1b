"""What ``graphjit.save`` runs: the encoder, which turns the object into the checkpoint's JSON
tree and data sections (the format: [Checkpoint format] in graphjit/serialization.py), and
the atomic write of the file.

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
import os
import secrets
import stat
import sys
import zlib

import numpy as np

from . import autograd_tape as _tape
from . import devices, dtypes, tensor_copy
from .serialization_format import (_BIG_INT, _CRCS, _END, _FOOTER, _MAGIC, _PREFIX,
                                   FORMAT_VERSION, CheckpointTypeError, _key_text, _pad)
from .tensor import Tensor

# ---- saving ---------------------------------------------------------------------------------

def _describe(obj) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


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
        _tape.check_copied_view(t, "graphjit.save")
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
        attributes = {k: v for k, v in tensor_copy.attributes(t).items() if not k.startswith("_")}
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
