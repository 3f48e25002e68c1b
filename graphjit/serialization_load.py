"""What ``graphjit.load`` runs: the decoder, which checks every byte of a checkpoint (the
format: [Checkpoint format] in graphjit/serialization.py) and builds the objects it holds.
"""
from __future__ import annotations

import collections
import json
import math
import pickle
import sys
import zlib

import numpy as np

from . import devices, dtypes
from .errors import GraphjitError
from .serialization_format import (_CRCS, _END, _FOOTER, _HEAD, _MAGIC, _PREFIX,
                                   FORMAT_VERSION, CheckpointError, _key_text, _pad)
from .tensor import Tensor
from .tensor_inplace import Version


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
        versions = [Version() for _ in plans]
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
