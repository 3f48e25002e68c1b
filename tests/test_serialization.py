"""``graphjit.save`` / ``graphjit.load``: round trips of every supported type, memory sharing,
atomic writes under a real SIGKILL, every truncation and byte flip of a file, no code run
by default, and training that continues bit for bit from a checkpoint (eager and compiled).
The format is in [Checkpoint format] (graphjit/serialization.py)."""
from __future__ import annotations

import collections
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
from graphjit.serialization import CheckpointError, CheckpointTypeError

Point = collections.namedtuple("Point", ["x", "y"])


class Custom:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is Custom and other.value == self.value

    def __hash__(self):
        return hash(repr(self.value))


def _same(a, b, path="obj"):
    """Exactly equal: same types all the way down, floats and tensor data bit for bit,
    tensors with the same dtype, shape, requires_grad, class and device."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, gj.Tensor):
        assert (a.dtype, a.shape, a.requires_grad, a.device) == \
               (b.dtype, b.shape, b.requires_grad, b.device), path
        assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes(), path
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), path
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), path
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, complex):
        _same(a.real, b.real, path)
        _same(a.imag, b.imag, path)
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _round_trip(obj, **load_kwargs):
    buf = io.BytesIO()
    gj.save(obj, buf)
    buf.seek(0)
    return gj.load(buf, **load_kwargs)


def _checkpoint_bytes(obj) -> bytes:
    buf = io.BytesIO()
    gj.save(obj, buf)
    return buf.getvalue()


def _rewrite_header(raw: bytes, edit) -> bytes:
    """The file with its JSON header passed through ``edit`` and every CRC made right again:
    a crafted file, which must fail as cleanly as a damaged one."""
    magic, version, flags, length = struct.unpack_from("<8sIIQ", raw)
    header = json.loads(raw[32:32 + length])
    edit(header)
    text = json.dumps(header).encode("ascii")
    prefix = struct.pack("<8sIIQ", magic, version, flags, len(text))
    head = prefix + struct.pack("<II", zlib.crc32(prefix), zlib.crc32(text)) + text
    head += bytes(-len(head) % 64)
    old_head = 32 + length + (-(32 + length) % 64)
    body = raw[old_head:-16]
    total = len(head) + len(body) + 16
    return head + body + b"\nGJCKEND" + struct.pack("<Q", total)


# ---- values ---------------------------------------------------------------------------------

def test_plain_values_and_containers_round_trip_exactly():
    local_point = collections.namedtuple("LocalPoint", "a b")
    obj = {
        "none": None, "bools": [True, False], "ints": [0, -7, 2**62, 2**64 + 1, -(2**200)],
        "floats": [0.1, -0.0, float("inf"), float("-inf"), 1e-310, 1.7976931348623157e308],
        "complex": 1.5 - 2j, "str": "héllo\n\"\\\ud800", "bytes": b"\x00\xff" * 3,
        "bytearray": bytearray(b"ab"), "tuple": (1, (2, [3])), "empty": [(), [], {}],
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "keys": {1: "int key", (1, "x"): "tuple key", None: 0, 2.5: 1, b"k": 2, False: 3},
        "set": {1, 2, 3}, "frozenset": frozenset({"a"}),
        "point": Point(1, [2.0]), "local": local_point(a=1, b=2),
        "np": [np.float32(1.25), np.int64(-3), np.bool_(True), np.float16(0.5),
               np.complex128(1 + 1j), np.uint8(200)],
        "arrays": [np.arange(6, dtype=np.int32).reshape(2, 3), np.zeros((0, 2)),
                   np.array(3.5), np.array([1, 2], dtype=">f8"), np.ones(3, dtype=bool)],
        "graphjit": [gj.float64, gj.int64, gj.device("cpu"), gj.device("cuda:0")],
    }
    out = _round_trip(obj)
    nan = _round_trip(float("nan"))
    assert isinstance(nan, float) and nan != nan
    loaded_local = out.pop("local")
    expected_local = obj.pop("local")
    _same(obj, out)
    assert type(out["point"]) is Point  # the module's own class: it is imported already
    # A class the loader cannot reach without running code becomes a namedtuple of the same
    # name and fields.
    assert type(loaded_local).__name__ == "LocalPoint" and loaded_local._fields == ("a", "b")
    assert tuple(loaded_local) == tuple(expected_local)
    assert out["arrays"][0].flags.writeable


@pytest.mark.parametrize("dtype", [gj.float32, gj.float64, gj.int64, gj.bool])
def test_tensors_keep_dtype_shape_data_and_requires_grad(dtype, rng):
    data = rng.standard_normal((3, 4)) * 100
    t = gj.tensor(data, dtype=dtype)
    obj = {"t": t, "scalar": gj.tensor(data[0, 0], dtype=dtype), "empty": gj.zeros(0, 3).to(dtype)}
    if dtype.is_floating_point:
        obj["leaf"] = gj.tensor(data, dtype=dtype, requires_grad=True)
        obj["param"] = nn.Parameter(gj.tensor(data, dtype=dtype))
        obj["frozen"] = nn.Parameter(gj.tensor(data, dtype=dtype), requires_grad=False)
        obj["nonleaf"] = obj["leaf"] * 2  # saved as a leaf that requires grad (as PyTorch)
    out = _round_trip(obj)
    for key, original in obj.items():
        loaded = out[key]
        assert loaded.is_leaf and loaded.grad is None
        expected_class = nn.Parameter if key in ("param", "frozen") else gj.Tensor
        assert type(loaded) is expected_class
        assert loaded.dtype is dtype and loaded.shape == original.shape
        assert loaded.requires_grad is original.requires_grad
        assert loaded.detach().numpy().tobytes() == original.detach().numpy().tobytes()
    if dtype.is_floating_point:
        assert out["frozen"].requires_grad is False and out["nonleaf"].requires_grad is True


def test_tensor_attributes_are_kept_and_grad_is_not():
    t = gj.ones(2, requires_grad=True)
    t.sum().backward()
    t.note = {"tag": "w", "other": gj.zeros(1)}
    t._private = object()  # (graphjit's own markers are `_`-names: not saved)
    out = _round_trip([t])[0]
    assert out.grad is None and out.note["tag"] == "w" and "_private" not in out.__dict__
    _same(out.note["other"], t.note["other"])
    t.numpy = 1
    with pytest.raises(CheckpointTypeError, match="'numpy' set on the tensor at obj"):
        gj.save(t, io.BytesIO())


def test_same_tensor_twice_loads_as_one_object_and_views_share_memory(rng):
    base = gj.tensor(rng.standard_normal((4, 5)), dtype=gj.float64)
    obj = {"base": base, "again": base, "rows": base[1:3], "col": base[:, 2], "t": base.T,
           "detached": base.detach(), "other": gj.tensor(rng.standard_normal(3))}
    out = _round_trip(obj)
    assert out["again"] is out["base"]
    assert out["detached"] is not out["base"]
    for key in ("rows", "col", "t", "detached"):
        assert np.shares_memory(out[key]._data, out["base"]._data), key
        assert out[key]._version is out["base"]._version, key  # one version counter
    assert not np.shares_memory(out["other"]._data, out["base"]._data)
    assert out["base"]._data.base is None  # the base owns its memory, as the original does
    # Writing through the loaded base shows in the loaded views as it does in the originals.
    for d in (obj, out):
        d["base"][1:3] = gj.zeros(2, 5, dtype=gj.float64) + 7.0
    for key in obj:
        _same(obj[key], out[key], key)


def test_weight_shared_by_two_modules_stays_shared():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    out = _round_trip(state)
    assert type(out) is collections.OrderedDict
    assert np.shares_memory(out["0.weight"]._data, out["2.weight"]._data)
    _same(dict(state), dict(out))


def test_a_slice_of_a_big_tensor_saves_the_slice_only():
    big = gj.zeros(1_000_000)
    raw = _checkpoint_bytes({"head": big[:10]})
    assert len(raw) < 4096
    out = gj.load(io.BytesIO(raw))
    assert out["head"].shape == (10,) and out["head"]._data.base is None


def test_broadcast_view_keeps_its_strides_and_stays_read_only():
    row = gj.tensor([1.0, 2.0, 3.0])
    wide = row.expand(4, 3)
    out = _round_trip({"row": row, "wide": wide})
    _same(out["wide"], wide)
    assert out["wide"]._data.strides == wide._data.strides
    assert out["wide"]._data.flags.writeable == wide._data.flags.writeable


def test_paths_file_objects_and_streams(tmp_path):
    obj = {"w": gj.arange(5), "k": 1}
    for target in (str(tmp_path / "a.pt"), tmp_path / "b.pt"):
        gj.save(obj, target)
        _same(gj.load(target), obj)
        _same(gj.load(os.fspath(target).encode()), obj)
    with open(tmp_path / "c.pt", "wb") as fh:
        gj.save(obj, fh)
        gj.save([2], fh)  # two checkpoints one after the other in one stream
    with open(tmp_path / "c.pt", "rb") as fh:
        _same(gj.load(fh), obj)
        assert gj.load(fh) == [2]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_saving_through_a_symlink_keeps_the_link_and_an_existing_file_keeps_its_mode(tmp_path):
    real = tmp_path / "real.pt"
    link = tmp_path / "link.pt"
    gj.save([1], real)
    os.chmod(real, 0o640)
    link.symlink_to(real)
    gj.save([2], link)
    assert link.is_symlink() and gj.load(real) == [2]
    assert real.stat().st_mode & 0o777 == 0o640


# ---- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, where, type_name", [
    ({"a": [1, object()]}, "obj['a'][1]", "object"),
    ({"state": {0: {"fn": lambda: 0}}}, "obj['state'][0]['fn']", "function"),
    ([Custom(1)], "obj[0]", "test_serialization.Custom"),
    ({Custom(2): 1}, "obj<key 0", "test_serialization.Custom"),
    (Point(1, {2}.__iter__()), "obj.y", "set_iterator"),
    ({"arr": np.array([object()])}, "obj['arr']", "dtype object"),
    ({"flag": __import__("enum").IntEnum("E", "A").A}, "obj['flag']", "E"),
])
def test_unsupported_types_name_type_and_place_and_leave_the_file_untouched(
        tmp_path, bad, where, type_name):
    path = tmp_path / "ckpt.pt"
    gj.save({"good": gj.ones(3)}, path)
    before = (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns)
    with pytest.raises(CheckpointTypeError) as info:
        gj.save(bad, path)
    message = str(info.value)
    assert where in message and type_name in message, message
    assert (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary file
    with pytest.raises(CheckpointTypeError):  # a file object gets nothing written either
        buf = io.BytesIO()
        gj.save(bad, buf)
    assert buf.getvalue() == b""


def test_a_container_that_contains_itself_is_an_error():
    loop = [1]
    loop.append({"again": loop})
    with pytest.raises(CheckpointTypeError, match=r"obj\[1\]\['again'\] contains itself"):
        gj.save(loop, io.BytesIO())
    twice = [1]
    _same(_round_trip([twice, twice]), [[1], [1]])  # reached twice, not a cycle


def test_saving_or_loading_inside_a_compiled_function_is_refused(tmp_path):
    gj.save({"k": 1}, tmp_path / "outside.pt")

    @gj.compile
    def save_step(x):
        gj.save({"x": x}, tmp_path / "in_trace.pt")
        return x * 2

    @gj.compile
    def load_step(x):
        return x * gj.load(tmp_path / "outside.pt")["k"]

    for step, what in ((save_step, "save"), (load_step, "load")):
        with pytest.raises(gj.GraphjitError, match=f"graphjit.{what} inside a function being "
                                                   "compiled"):
            step(gj.ones(2))
    assert not (tmp_path / "in_trace.pt").exists()


# ---- no code runs by default ----------------------------------------------------------------

def test_pickles_only_with_pickle_module_and_only_load_with_weights_only_false():
    obj = {"custom": Custom([1, 2]), "w": gj.ones(2)}
    raw = io.BytesIO()
    gj.save(obj, raw, pickle_module=pickle)
    raw.seek(0)
    with pytest.raises(CheckpointError) as info:
        gj.load(raw)
    message = str(info.value)
    assert "obj['custom']" in message and "test_serialization.Custom" in message
    assert "weights_only=False" in message
    raw.seek(0)
    out = gj.load(raw, weights_only=False)
    assert out["custom"] == Custom([1, 2])
    _same(out["w"], obj["w"])


def test_no_tag_names_a_class_to_build(tmp_path):
    raw = _checkpoint_bytes({"t": gj.ones(2)})
    crafted = [
        lambda h: h["root"][1][0].__setitem__(1, ["os.system", "echo hi"]),
        lambda h: h["tensors"][0].__setitem__("class", "os.system"),
        lambda h: h["tensors"][0].__setitem__("attributes", ["dict", [["numpy", 1]]]),
        lambda h: h["root"][1][0].__setitem__(1, ["namedtuple", "os", "system", ["a b"], [1]]),
        lambda h: h["root"][1][0].__setitem__(1, ["ndarray", "|O", [1], 0]),
    ]
    for edit in crafted:
        with pytest.raises(CheckpointError, match="malformed checkpoint header"):
            gj.load(io.BytesIO(_rewrite_header(raw, edit)))


# ---- damaged files --------------------------------------------------------------------------

def _sample():
    x = gj.arange(12, dtype=gj.float32).reshape(3, 4)
    return {"x": x, "row": x[1], "p": nn.Parameter(gj.ones(2)), "step": 3, "lr": 0.1,
            "name": "adam", "blob": b"abc", "arr": np.arange(3)}


def test_every_truncation_is_a_clear_error(tmp_path):
    raw = _checkpoint_bytes(_sample())
    path = tmp_path / "cut.pt"
    for n in range(len(raw)):
        with pytest.raises(CheckpointError):  # a stream, whose length is not known ahead
            gj.load(io.BytesIO(raw[:n]))
        if n % 17 == 0 or n < 64 or n > len(raw) - 32:  # a file, whose length is known
            path.write_bytes(raw[:n])
            with pytest.raises(CheckpointError) as info:
                gj.load(path)
            assert str(path) in str(info.value)
    assert "empty" in str(pytest.raises(CheckpointError, gj.load, io.BytesIO(b"")).value)
    path.write_bytes(raw[:len(raw) // 2])
    assert "truncated" in str(pytest.raises(CheckpointError, gj.load, path).value)
    path.write_bytes(raw + b"\0")
    assert "unexpected bytes" in str(pytest.raises(CheckpointError, gj.load, path).value)


def test_every_flipped_byte_is_a_clear_error(rng):
    raw = _checkpoint_bytes(_sample())
    _same(gj.load(io.BytesIO(raw)), _sample())
    for i in range(len(raw)):
        for mask in (0xFF, 1 << int(rng.integers(8))):
            damaged = bytearray(raw)
            damaged[i] ^= mask
            with pytest.raises(CheckpointError):
                gj.load(io.BytesIO(bytes(damaged)))
    damaged = bytearray(raw)
    data_start = len(raw) - 16 - 64  # inside the last data section
    damaged[data_start] ^= 1
    message = str(pytest.raises(CheckpointError, gj.load, io.BytesIO(bytes(damaged))).value)
    assert "CRC32" in message


@pytest.mark.parametrize("content, hint", [
    (pickle.dumps({"a": 1}), "pickle"),
    (b"PK\x03\x04" + bytes(100), "zip archive"),
    (b"hello world, this is text", "not a graphjit checkpoint"),
])
def test_other_files_are_named_as_such(content, hint):
    with pytest.raises(CheckpointError, match=hint):
        gj.load(io.BytesIO(content))


def test_a_newer_format_version_is_named():
    raw = bytearray(_checkpoint_bytes([1]))
    raw[8:12] = struct.pack("<I", 2)
    raw[24:28] = struct.pack("<I", zlib.crc32(bytes(raw[:24])))
    with pytest.raises(CheckpointError, match="format version 2"):
        gj.load(io.BytesIO(bytes(raw)))


def test_crafted_offsets_and_shapes_fail_cleanly():
    raw = _checkpoint_bytes({"t": gj.ones(4), "v": gj.ones(4)[1:]})
    for key, value in [("offset", 10_000), ("shape", [10_000]), ("strides", [-8]),
                       ("storage", 5), ("storage", [0]), ("dtype", "complex64"),
                       ("shape", [-1]), ("requires_grad", "yes"), ("device", "tpu")]:
        def edit(h, key=key, value=value):
            h["tensors"][-1][key] = value
        with pytest.raises(CheckpointError, match="malformed"):
            gj.load(io.BytesIO(_rewrite_header(raw, edit)))


# ---- devices --------------------------------------------------------------------------------

def test_map_location_on_the_cpu_and_a_cuda_checkpoint_without_cuda(monkeypatch):
    raw = _checkpoint_bytes({"w": gj.ones(3)})
    for where in ("cpu", gj.device("cpu"), {"cuda:0": "cpu"}):
        assert gj.load(io.BytesIO(raw), map_location=where)["w"].device == "cpu"
    with pytest.raises(TypeError, match="map_location"):
        gj.load(io.BytesIO(raw), map_location=lambda storage, loc: storage)
    cuda_raw = _rewrite_header(raw, lambda h: h["tensors"][0].__setitem__("device", "cuda:0"))

    def no_cuda(spec):
        raise gj.GraphjitError("no CUDA here")
    monkeypatch.setattr(gj.devices, "as_device", no_cuda)
    with pytest.raises(CheckpointError, match="saved on cuda:0.*map_location='cpu'"):
        gj.load(io.BytesIO(cuda_raw))
    out = gj.load(io.BytesIO(cuda_raw), map_location="cpu")
    assert out["w"].device == "cpu" and out["w"].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.skipif(not gj.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_come_back_on_cuda_or_where_mapped(tmp_path):
    w = gj.tensor([[1.0, 2.0], [3.0, 4.0]], device="cuda", requires_grad=True)
    obj = {"w": w, "again": w, "cpu": gj.arange(3)}
    gj.save(obj, tmp_path / "cuda.pt")
    out = gj.load(tmp_path / "cuda.pt")
    assert out["w"].device == "cuda" and out["again"] is out["w"] and out["w"].requires_grad
    assert out["cpu"].device == "cpu"
    assert out["w"].detach().cpu().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    on_cpu = gj.load(tmp_path / "cuda.pt", map_location="cpu")
    assert on_cpu["w"].device == "cpu" and on_cpu["w"].detach().tolist() == [[1.0, 2.0],
                                                                            [3.0, 4.0]]
    moved = gj.load(tmp_path / "cuda.pt", map_location={"cpu": "cuda"})
    assert moved["cpu"].device == "cuda" and moved["w"].device == "cuda"


# ---- atomic writes under SIGKILL ------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import os, sys
    import graphjit as gj
    path, mode = sys.argv[1], sys.argv[2]
    n = 4_000_000
    k = 0
    while True:
        if mode == "stall" and k == 1:
            def stall(*args):  # killed here: the new file is whole, not yet renamed
                print("stalled", flush=True)
                import time
                time.sleep(60)
            os.replace = stall
        gj.save({"step": k, "w": gj.full((n,), float(k)), "b": gj.arange(1000) + k}, path)
        print(k, flush=True)
        k += 1
""")


def _spawn(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "ckpt.pt"), mode],
                            stdout=subprocess.PIPE, text=True)


def _temp_files(tmp_path):
    return [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt.pt.")]


def _check_whole(tmp_path, printed):
    """The checkpoint loads, is one save's content throughout, and is the last save the
    child reported finished (or the one after, finished but not reported yet)."""
    ckpt = gj.load(tmp_path / "ckpt.pt")
    k = ckpt["step"]
    assert k in (printed, printed + 1), (k, printed)
    w = ckpt["w"].numpy()
    assert w.shape == (4_000_000,) and (w == k).all()
    assert ckpt["b"].tolist() == list(range(k, k + 1000))


def test_sigkill_after_the_new_file_is_written_but_before_the_rename(tmp_path):
    child = _spawn(tmp_path, "stall")
    try:
        assert child.stdout.readline().strip() == "0"
        assert child.stdout.readline().strip() == "stalled"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    assert len(_temp_files(tmp_path)) == 1  # the killed save's whole, unrenamed file
    _check_whole(tmp_path, 0)
    gj.save({"after": 1}, tmp_path / "ckpt.pt")  # a leftover temporary file is no obstacle
    assert gj.load(tmp_path / "ckpt.pt") == {"after": 1}


def test_sigkill_in_the_middle_of_writing_leaves_the_previous_checkpoint_whole(tmp_path):
    for _ in range(5):  # (a try whose kill lands between two saves is run again)
        for p in tmp_path.iterdir():
            p.unlink()
        child = _spawn(tmp_path, "run")
        try:
            assert child.stdout.readline().strip() == "0"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                temps = _temp_files(tmp_path)
                try:
                    if temps and 0 < temps[0].stat().st_size:
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.0002)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            printed = [int(line) for line in ["0"] + child.stdout.read().split()]
        finally:
            child.kill()
            child.stdout.close()
        _check_whole(tmp_path, printed[-1])
        left = _temp_files(tmp_path)
        if left and left[0].stat().st_size < (tmp_path / "ckpt.pt").stat().st_size:
            return  # killed with a partly written file, and the checkpoint is whole
    pytest.fail("no kill landed in the middle of a save in 5 tries")


# ---- training continues bit for bit ---------------------------------------------------------

def _batches(n):
    rng = np.random.default_rng(7)
    return [(gj.tensor(rng.standard_normal((8, 3)), dtype=gj.float32),
             gj.tensor(rng.standard_normal((8, 2)), dtype=gj.float32)) for _ in range(n)]


def _model(seed):
    gj.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _step_fn(model, opt, compiled):
    def step(x, y):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss
    return gj.compile(step) if compiled else step


def _continue_from_checkpoint(make_opt, compiled, path, load_optimizer=True):
    """Train 3 steps, save, train 3 more; in a fresh model and optimizer (other initial
    values) load the checkpoint and train the same 3 steps. Returns both runs' parameters
    and optimizer states."""
    batches = _batches(6)
    model = _model(0)
    opt = make_opt(model)
    # The first step runs eagerly: it creates .grad and the optimizer state, so a compiled
    # step has one program to compile, the steady state (the resumed run's too).
    _step_fn(model, opt, False)(*batches[0])
    step = _step_fn(model, opt, compiled)
    for x, y in batches[1:3]:
        step(x, y)
    gj.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
    for x, y in batches[3:]:
        step(x, y)

    model2 = _model(1)
    opt2 = make_opt(model2)
    checkpoint = gj.load(path)
    model2.load_state_dict(checkpoint["model"])
    if load_optimizer:
        opt2.load_state_dict(checkpoint["optimizer"])
    for p in model2.parameters():  # (.grad is reset by the step: this only gives a compiled
        p.grad = gj.zeros_like(p)  # step the signature of the first run's, one program)
    step2 = _step_fn(model2, opt2, compiled)
    for x, y in batches[checkpoint["epoch"]:]:
        step2(x, y)
    return (model.state_dict(), opt.state_dict()), (model2.state_dict(), opt2.state_dict())


OPTIMIZERS = {
    "Adam": lambda m: gj.optim.Adam(m.parameters(), lr=0.05, fused=False),
    "SGD-momentum": lambda m: gj.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, fused=False),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_eager_training_continues_bit_for_bit(tmp_path, name):
    first, resumed = _continue_from_checkpoint(OPTIMIZERS[name], False, tmp_path / "c.pt")
    _same(first, resumed)
    # The check can fail: without the optimizer's state the parameters differ.
    first, fresh = _continue_from_checkpoint(OPTIMIZERS[name], False, tmp_path / "c.pt",
                                             load_optimizer=False)
    assert first[0]["0.weight"].numpy().tobytes() != fresh[0]["0.weight"].numpy().tobytes()


def test_compiled_training_step_continues_bit_for_bit(tmp_path):
    first, resumed = _continue_from_checkpoint(OPTIMIZERS["Adam"], True, tmp_path / "c.pt")
    _same(first, resumed)


def test_optimizer_and_scheduler_state_dicts_round_trip(tmp_path):
    model = _model(0)
    opt = gj.optim.Adam(model.parameters(), lr=0.05, amsgrad=True, fused=False)
    sched = gj.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for x, y in _batches(2):
        _step_fn(model, opt, False)(x, y)
        sched.step()
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    gj.save(state, tmp_path / "opt.pt")
    _same(gj.load(tmp_path / "opt.pt"), state)
