"""Devices and training on CUDA: CUDA vs CPU on fresh random inputs, eager and compiled.

Runs on Numba's CUDA simulator unless NUMBA_ENABLE_CUDASIM=0 (tests/conftest.py); shapes
are small because the simulator runs every GPU thread as a Python thread.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F

pytestmark = pytest.mark.skipif(not gj.cuda.is_available(),
                                reason=f"no CUDA device: {gj.cuda.why_unavailable()}")


def _close(a, b, rtol=2e-5, atol=2e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# ---- devices --------------------------------------------------------------------------------

def test_device_objects_and_moves(rng):
    x = gj.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    assert x.device == "cpu" and x.device == gj.device("cpu") and not x.is_cuda
    y = x.to("cuda")
    assert y.device == gj.device("cuda:0") and y.device.type == "cuda" and y.device.index == 0
    assert str(y.device) == "cuda:0" and repr(gj.device("cuda")) == "device(type='cuda', index=0)"
    assert x.cuda().device == "cuda" and y.cpu().device == "cpu"
    assert y.to("cuda") is y  # already there: no copy
    _close(y.cpu().numpy(), x.numpy())
    _close(y.numpy(), x.numpy())  # .numpy() of a CUDA tensor copies it back
    assert "device='cuda:0'" in repr(y)
    assert y.to(gj.float64).device == "cuda" and y.to("cpu", gj.float64).dtype is gj.float64
    z = gj.zeros(2, 3, device="cuda")
    assert z.device == "cuda" and gj.zeros_like(z).device == "cuda"
    assert gj.randn(2, device="cuda").device == "cuda" and gj.arange(4, device="cuda").tolist() == [0, 1, 2, 3]
    assert gj.tensor([1.0, 2.0], device="cuda").sum().item() == 3.0
    with pytest.raises(ValueError, match="unknown device type"):
        gj.device("tpu")


def test_mixing_devices_is_an_error_naming_both(rng):
    a = gj.randn(3, 4).cuda()
    b = gj.randn(3, 4)
    with pytest.raises(gj.GraphjitError) as e:
        a + b
    msg = str(e.value)
    assert "add" in msg and "cuda:0" in msg and "cpu" in msg and "[3, 4]" in msg
    assert __file__ in msg  # the user's own line
    # Python numbers and 0-d CPU tensors join CUDA ops, as in PyTorch.
    _close((a * 2 + gj.tensor(1.0)).cpu().numpy(), a.cpu().numpy() * 2 + 1)

    f = gj.compile(lambda u, v: u * v)
    with pytest.raises(gj.GraphjitError, match="same device"):
        f(a, b)


def test_fill_and_zero_in_place_on_cuda(rng):
    x = gj.tensor(rng.standard_normal((2, 3)).astype(np.float32), device="cuda")
    assert x.fill_(2.5) is x and x.device == "cuda"
    _close(x.numpy(), np.full((2, 3), 2.5))
    x.zero_()
    _close(x.numpy(), np.zeros((2, 3)))
    i = gj.tensor([1, 2], device="cuda").fill_(7)
    assert i.dtype is gj.int64 and i.numpy().tolist() == [7, 7]
    # zero_grad(set_to_none=False) zeroes the .grad on the GPU, as on the CPU
    m = nn.Linear(3, 2).cuda()
    opt = gj.optim.SGD(m.parameters(), lr=0.1)
    m(x).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert m.weight.grad.device == "cuda" and not np.any(m.weight.grad.numpy())
    # under autograd the filled tensor keeps a (zero) gradient path, as on the CPU
    w = gj.tensor(rng.standard_normal(3).astype(np.float32), device="cuda", requires_grad=True)
    y = w * 2
    y.fill_(1.0)
    (y * w).sum().backward()
    _close(w.grad.numpy(), np.ones(3))


def test_deepcopy_and_pickle_keep_cuda_tensors_on_cuda(rng):
    import copy
    import pickle
    x = gj.tensor(rng.standard_normal((2, 3)).astype(np.float32), device="cuda",
                  requires_grad=True)
    x.grad = gj.ones(2, 3, device="cuda")
    x.note = "mine"
    for clone in (copy.deepcopy(x), pickle.loads(pickle.dumps(x))):
        assert clone.device == "cuda" and clone.requires_grad and clone.note == "mine"
        _close(clone.detach().numpy(), x.detach().numpy())
        with gj.no_grad():
            clone.add_(1.0)  # its own memory
        _close(clone.detach().numpy(), x.detach().numpy() + 1)
    assert copy.deepcopy(x).grad.device == "cuda"  # deep copies keep .grad, pickles don't
    assert pickle.loads(pickle.dumps(x)).grad is None
    with pytest.raises(gj.AutogradError, match="leaf"):
        copy.deepcopy(x * 2)
    # modules, state dicts and optimizers with their CUDA state
    m = nn.Linear(3, 2).cuda()
    opt = gj.optim.Adam(m.parameters(), lr=gj.tensor(0.01, device="cuda"))
    m(x.detach()).sum().backward()
    opt.step()
    twin = copy.deepcopy(m)
    assert isinstance(twin.weight, nn.Parameter) and twin.weight.device == "cuda"
    assert twin.weight.grad is None  # as torch.nn.Parameter's deep copies
    _close(twin.weight.detach().numpy(), m.weight.detach().numpy())
    state = pickle.loads(pickle.dumps(m.state_dict()))
    assert all(t.device == "cuda" for t in state.values())
    s = copy.deepcopy(opt.state_dict())
    assert s["state"][0]["exp_avg"].device == "cuda"
    _close(s["state"][0]["exp_avg"].numpy(), opt.state[m.weight]["exp_avg"].numpy())


def test_only_cuda_0_is_a_device(monkeypatch):
    monkeypatch.setattr(gj.cuda, "device_count", lambda: 2)
    with pytest.raises(gj.GraphjitError, match="one CUDA device, cuda:0"):
        gj.zeros(2, device="cuda:1")
    assert gj.zeros(2).to("cuda:0").device == "cuda:0"


def test_gradients_flow_across_moves(rng):
    x0 = rng.standard_normal((4, 3)).astype(np.float32)
    x = gj.tensor(x0, requires_grad=True)
    y = x.to("cuda")
    (y.exp() * y).sum().backward()
    assert x.grad.device == "cpu"
    _close(x.grad.numpy(), np.exp(x0) * (1 + x0), rtol=1e-5)


def test_module_to_moves_parameters_buffers_and_grads():
    gj.manual_seed(1)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    w = m[0].weight
    before = w.detach().numpy().copy()
    m(gj.randn(5, 3)).sum().backward()
    grad = w.grad.numpy().copy()
    assert m.cuda() is m
    assert m[0].weight is w and w.device == "cuda" and w.grad.device == "cuda"
    assert all(p.device == "cuda" for p in m.parameters())
    _close(w.detach().cpu().numpy(), before)
    _close(w.grad.cpu().numpy(), grad)
    m.cpu()
    assert all(p.device == "cpu" for p in m.parameters())
    assert nn.Linear(2, 3, device="cuda").weight.device == "cuda"


def test_compiled_cuda_function_takes_index_lists_and_numpy_operands(rng):
    # A list index and a NumPy operand are values graphjit makes on the CPU: eagerly copied
    # over; compiled, they were CPU inputs of a CUDA program ("expected all tensors to be on
    # the same device", found by `graphjit fuzz --device cuda`, seed 21).
    w = nn.Parameter(gj.tensor(rng.standard_normal(4).astype(np.float32), device="cuda"))
    arr = rng.standard_normal(4).astype(np.float32)

    def step():
        loss = (w[[3, 0, 3]] * 2.0).sum() + (w * arr).sum()
        loss.backward()
        return loss

    step_c = gj.compile(step)
    for _ in range(2):  # the second call after arr changed in place: read anew, as eagerly
        want = step().item()
        g_eager = w.grad.numpy().copy()
        w.grad = None
        _close(step_c().item(), want)
        _close(w.grad.numpy(), g_eager)
        w.grad = None
        arr[0] += 1.0


def test_compiled_cuda_forward_saves_a_constant_index_for_its_backward(rng):
    # arange(device="cuda") inside a compiled forward is a value the program holds on the
    # CPU; its backward program (run by loss.backward() outside) was given it as it was:
    # "input %saved1 (int64[4]) is on the CPU" (graphjit fuzz --device cuda, seed 21).
    p = nn.Parameter(gj.tensor(rng.standard_normal((4, 3)).astype(np.float32), device="cuda"))
    cols = gj.tensor([2, 0, 1, 2], device="cuda")

    def forward(cols):
        return (p[gj.arange(4, device="cuda"), cols] ** 2).sum()

    forward(cols).backward()
    want = p.grad.numpy().copy()
    p.grad = None
    gj.compile(forward)(cols).backward()
    _close(p.grad.numpy(), want)


def test_eager_cuda_copied_permute_refuses_after_a_change_through_data():
    # On CUDA p.T is a copy ([Copied views]); a change through p.data (a counter of its own,
    # invisible to autograd) left the copy silently stale: the old elements where the CPU and
    # compiled CUDA code give the new ones (graphjit fuzz --device cuda, seed 21 graphs
    # 266/303). The copy now checks its memory's write count, so reading it refuses.
    p = gj.tensor([[1.375, 2.0]], device="cuda")
    v = p.T
    p.data.zero_()
    with pytest.raises(gj.GraphjitError, match="permute of a CUDA tensor that was modified"):
        v.numpy()
    w = p.detach().T  # taken after the change: fresh
    _close(w.numpy(), [[0.0], [0.0]])
    q = nn.Parameter(gj.tensor([[1.0, -1.0]], device="cuda"))
    assert q.data.zero_() is not None and q._version.value == 0  # autograd does not see it


def test_index_out_of_range_raises_on_cuda():
    x = gj.randn(4, 3).cuda()
    f = gj.compile(lambda x, i: x.gather(1, i))
    good = gj.tensor([[0], [2], [1], [2]]).cuda()
    _close(f(x, good).cpu().numpy().ravel(), x.cpu().numpy()[np.arange(4), [0, 2, 1, 2]])
    # The same program on an index out of range: the kernel flags it, the program raises.
    with pytest.raises(IndexError, match="out of range"):
        f(x, gj.tensor([[0], [3], [1], [2]]).cuda())
    _close(f(x, good).cpu().numpy().ravel(), x.cpu().numpy()[np.arange(4), [0, 2, 1, 2]])


def test_index_error_names_the_index_tensor_out_of_range_as_on_the_cpu():
    """x[i, j] checks two index tensors: the error names the one out of range (the CPU's
    message), whichever it is."""
    x = gj.randn(3, 4)
    f = gj.compile(lambda x, i, j: x[i, j])
    for i, j in (([0, 3], [1, 1]), ([0, 2], [1, -5])):
        i, j = gj.tensor(i), gj.tensor(j)
        with pytest.raises(IndexError) as on_cpu:
            f(x, i, j)
        with pytest.raises(IndexError) as on_cuda:
            f(x.cuda(), i.cuda(), j.cuda())
        assert str(on_cuda.value) == str(on_cpu.value)
        assert f"index tensor {1 if j.numpy()[1] < 0 else 0}" in str(on_cuda.value)


def training_step(model, opt, loss_fn=F.cross_entropy):
    """``step(x, y)``: zero the grads, the loss of ``model(x)`` against ``y``, backward, an
    optimizer step; returns the loss (the training loop of every test here)."""
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def test_index_error_in_a_compiled_step_leaves_every_tensor_as_it_was(rng):
    """The flag of a target out of range is checked before the optimizer's in-place
    updates run, so the failing step changes nothing, as on the CPU."""
    x = gj.tensor(rng.standard_normal((2, 4)).astype(np.float32), device="cuda")
    gj.manual_seed(0)
    m = nn.Linear(4, 3).cuda()
    opt = gj.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    step = gj.compile(training_step(m, opt))
    good = gj.tensor([0, 2], device="cuda")
    step(x, good), step(x, good)
    before = [t.detach().cpu().numpy().copy() for t in
              list(m.parameters()) + [opt.state[p]["momentum_buffer"] for p in m.parameters()]]
    with pytest.raises(IndexError, match="index: .*out of range"):  # the forward's gather
        step(x, gj.tensor([0, 7], device="cuda"))
    after = [t.detach().cpu().numpy() for t in
             list(m.parameters()) + [opt.state[p]["momentum_buffer"] for p in m.parameters()]]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(step(x, good).item())


def test_cpu_only_use_never_imports_numba_cuda():
    code = ("import sys, graphjit as gj\n"
            "m = gj.nn.Linear(3, 2)\n"
            "f = gj.compile(lambda x: m(x).sum())\n"
            "f(gj.randn(4, 3))\n"
            "print(any(k == 'numba.cuda' or k.startswith('numba_cuda') for k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- training: CUDA vs CPU --------------------------------------------------------------------

def _mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _train(device, make_opt, compiled, x, y, steps=3, move_after=None):
    """Losses and final parameters of ``steps`` training steps of the MLP on ``device``."""
    gj.manual_seed(0)
    m = _mlp()
    if move_after is None:
        m.to(device)
    opt = make_opt(m.parameters())
    X, Y = gj.tensor(x), gj.tensor(y)
    step = training_step(m, opt)
    run = gj.compile(step) if compiled else step
    losses = []
    for i in range(steps):
        if i == move_after:
            m.to(device)  # the optimizer state made on the CPU must follow
        here = device if move_after is None or i >= move_after else "cpu"
        losses.append(run(X.to(here), Y.to(here)).item())
    assert all(p.device == device for p in m.parameters())
    for state in opt.state.values():
        for v in state.values():
            assert v.ndim == 0 or v.device == device
    return losses, [p.detach().cpu().numpy() for p in m.parameters()]


OPTIMIZERS = {
    "adam": lambda ps: gj.optim.Adam(ps, lr=0.01),
    "sgd_momentum": lambda ps: gj.optim.SGD(ps, lr=0.1, momentum=0.9),
}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_mlp_training_cuda_matches_cpu(rng, opt, compiled):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    cpu = _train("cpu", OPTIMIZERS[opt], compiled, x, y)
    cuda = _train("cuda", OPTIMIZERS[opt], compiled, x, y)
    _close(cuda[0], cpu[0], rtol=1e-5)
    for a, b in zip(cuda[1], cpu[1]):
        _close(a, b, rtol=1e-4, atol=1e-6)
    assert cpu[0][-1] < cpu[0][0]  # it trains


def test_optimizer_state_follows_parameters(rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    cpu = _train("cpu", OPTIMIZERS["adam"], False, x, y)
    moved = _train("cuda", OPTIMIZERS["adam"], False, x, y, move_after=2)
    _close(moved[0], cpu[0], rtol=1e-5)
    for a, b in zip(moved[1], cpu[1]):
        _close(a, b, rtol=1e-4, atol=1e-6)


class _Transfers:
    """Counts copies between host and device (numba.cuda.to_device, copy_to_host and
    copy_to_device from or to host memory) while active."""

    def __init__(self, monkeypatch):
        from numba import cuda
        self.count = []
        array_type = type(cuda.device_array(1))
        to_device, to_host, into = cuda.to_device, array_type.copy_to_host, array_type.copy_to_device

        def counted(what, fn):
            def wrapper(*a, **k):
                self.count.append(what)
                return fn(*a, **k)
            return wrapper

        def copy_to_device(arr, src, *a, **k):
            if isinstance(src, np.ndarray):  # device-to-device copies stay on the device
                self.count.append("copy_to_device")
            return into(arr, src, *a, **k)
        monkeypatch.setattr(cuda, "to_device", counted("to_device", to_device))
        monkeypatch.setattr(array_type, "copy_to_host", counted("copy_to_host", to_host))
        monkeypatch.setattr(array_type, "copy_to_device", copy_to_device)


def test_steady_state_steps_copy_nothing_between_host_and_device(rng, monkeypatch):
    """Hyperparameters and Adam's step counts (0-d CPU tensors, as in PyTorch) stay on the
    host: the compiled step computes the scalar work there and passes it to kernels by
    value; only .item() copies back ([Host scalars] in graphjit/ir/host.py)."""
    x = gj.tensor(rng.standard_normal((5, 6)).astype(np.float32), device="cuda")
    y = gj.tensor(rng.standard_normal((5, 3)).astype(np.float32), device="cuda")
    results = {}
    for compiled in (True, False):
        gj.manual_seed(0)
        m = _mlp().cuda()
        opt = gj.optim.Adam(m.parameters(), lr=0.01)
        step = training_step(m, opt, F.mse_loss)
        run = gj.compile(step) if compiled else step
        losses = [run(x, y) for _ in range(2)]  # trace, compile, make the optimizer state
        opt.param_groups[0]["lr"] = 0.02        # a new hyperparameter value: no retrace
        transfers = _Transfers(monkeypatch)
        losses += [run(x, y) for _ in range(3)]
        assert transfers.count == [], f"compiled={compiled}: {transfers.count}"
        losses = [t.item() for t in losses]
        assert len(transfers.count) == len(losses)  # .item() copies, one each
        monkeypatch.undo()
        for state in opt.state.values():
            assert state["step"].device == "cpu" and state["step"].item() == 5
            assert state["exp_avg"].device == "cuda"
        results[compiled] = losses, [p.detach().cpu().numpy() for p in m.parameters()]
    if True in results:
        assert results[True][0][-1] < results[True][0][0]
    _close(results[True][0], results[False][0], rtol=1e-5)
    for a, b in zip(results[True][1], results[False][1]):
        _close(a, b, rtol=1e-5, atol=1e-6)


def test_eager_ops_take_cpu_scalars_by_value(rng, monkeypatch):
    a0 = rng.standard_normal((3, 4)).astype(np.float32)
    a = gj.tensor(a0, device="cuda")
    s = gj.tensor(np.float32(1.5))  # a 0-d CPU tensor
    (a * 2.0 + s) / s               # compile the single-op programs first
    transfers = _Transfers(monkeypatch)
    out = (a * 2.0 + s) / s
    assert transfers.count == [] and out.device == "cuda"
    monkeypatch.undo()
    _close(out.numpy(), (a0 * 2.0 + 1.5) / 1.5, rtol=1e-6)
    with pytest.raises(gj.GraphjitError, match="same device"):
        a + gj.tensor(np.ones(4, np.float32))  # a CPU tensor with elements is still an error


def test_compiled_outputs_are_not_copied_unless_shared(rng, monkeypatch):
    """A CUDA program's results are allocated per call: an output in a buffer of its own is
    returned as it is; outputs sharing a buffer are copied, so each tensor is its own."""
    from graphjit import devices
    x0 = rng.standard_normal((4, 5)).astype(np.float32)
    x = gj.tensor(x0, device="cuda")
    one = gj.compile(lambda a: (a * 2.0).exp())
    two = gj.compile(lambda a: (a + 1.0, a + 1.0))  # CSE: one value, returned twice
    one(x), two(x)
    copies = []
    real_copy = devices.copy
    monkeypatch.setattr(devices, "copy", lambda arr: copies.append(arr.shape) or real_copy(arr))
    y = one(x)
    assert copies == []
    u, v = two(x)
    assert len(copies) == 2
    monkeypatch.undo()
    u.add_(1.0)  # v must not see it
    _close(v.numpy(), x0 + 1.0)
    _close(u.numpy(), x0 + 2.0)
    _close(y.numpy(), np.exp(x0 * 2.0), rtol=1e-6)
    assert one(x) is not y and one(x)._data is not y._data  # a new buffer per call

    def double_in_place(p):
        p.mul_(2.0)
        return p * 1.0  # (simplify: the updated value itself, computed into p's buffer)
    p = gj.tensor(x0.copy(), device="cuda")
    out = gj.compile(double_in_place)(p)
    out.add_(1.0)  # must not reach p
    _close(p.numpy(), 2 * x0)
    _close(out.numpy(), 2 * x0 + 1.0)


def test_contiguous_slices_are_views_as_on_the_cpu(rng):
    x0 = rng.standard_normal((3, 4)).astype(np.float32)
    for device in ("cpu", "cuda"):
        x = gj.tensor(x0, device=device)
        row, rows, flat = x[1], x[1:3], x.reshape(-1)
        row.add_(1.0)  # into x
        want = x0.copy()
        want[1] += 1.0
        _close(x.numpy(), want)
        x.mul_(2.0)    # seen by every view
        want *= 2.0
        _close(rows.numpy(), want[1:3])
        _close(flat.numpy(), want.reshape(-1))
        _close(x[2, 1:3].numpy(), want[2, 1:3])
        # Autograd refuses in-place changes of views it records through, on both devices.
        w = gj.tensor(x0, device=device, requires_grad=True)
        y = w * 1.0
        with pytest.raises(gj.GraphjitError, match="in-place operation on a view"):
            y[0].add_(1.0)


def test_copied_views_refuse_what_the_cpu_would_do_through_a_view(rng):
    """permute, expand and strided slices copy on CUDA ([Copied views] in
    graphjit/autograd_tape.py): writing into such a copy, or reading it after its base changed,
    would give other numbers than the CPU's views, so both are errors naming the op and the
    user's line."""
    x0 = rng.standard_normal((3, 4)).astype(np.float32)
    cpu = gj.tensor(x0.copy())
    cpu[:, 0].add_(1.0)  # the CPU: through the view into the base
    _close(cpu.numpy()[:, 0], x0[:, 0] + 1.0)

    x = gj.tensor(x0, device="cuda")
    col = x[:, 0]
    with pytest.raises(gj.GraphjitError) as e:
        col.add_(1.0)
    msg = str(e.value)
    assert "add_" in msg and "slice" in msg and "[3]" in msg and __file__ in msg
    _close(x.numpy(), x0)  # nothing changed
    c = x[:, 0].clone()  # an explicit copy is the user's to modify
    c.add_(1.0)
    _close(c.numpy(), x0[:, 0] + 1.0)

    xt = x.T
    _close((xt * 1.0).numpy(), x0.T)  # fine while x is unchanged
    x.mul_(2.0)
    for read in (lambda: xt + 1.0, lambda: xt.numpy(), lambda: xt.reshape(-1).sum(),
                 lambda: gj.compile(lambda a: a * 2.0)(xt)):
        with pytest.raises(gj.GraphjitError, match="permute of a CUDA tensor that was modified"):
            read()
    _close((x.T + 1.0).numpy(), 2 * x0.T + 1.0)  # taken again after the change: fine
    x[0] = gj.tensor(np.zeros(4, np.float32), device="cuda")  # writing into the base: fine
    _close(x.numpy()[0], np.zeros(4))


class _RNN(nn.Module):
    """A tanh RNN over a short sequence, its last state classified."""

    def __init__(self, n_in=3, n_hidden=5, n_out=2):
        super().__init__()
        self.w_ih = nn.Linear(n_in, n_hidden)
        self.w_hh = nn.Linear(n_hidden, n_hidden, bias=False)
        self.head = nn.Linear(n_hidden, n_out)

    def forward(self, xs):
        h = gj.zeros(xs.shape[1], self.w_hh.in_features, device=xs.device)
        for t in range(xs.shape[0]):
            h = gj.tanh(self.w_ih(xs[t]) + self.w_hh(h))
        return self.head(h)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
def test_rnn_training_cuda_matches_cpu(rng, compiled):
    xs = rng.standard_normal((4, 3, 3)).astype(np.float32)
    y = rng.integers(0, 2, 3)
    results = {}
    for device in ("cpu", "cuda"):
        gj.manual_seed(0)
        m = _RNN().to(device)
        opt = gj.optim.Adam(m.parameters(), lr=0.05)
        step = training_step(m, opt)
        run = gj.compile(step) if compiled else step
        X, Y = gj.tensor(xs, device=device), gj.tensor(y, device=device)
        losses = [run(X, Y).item() for _ in range(3)]
        results[device] = (losses, [p.detach().cpu().numpy() for p in m.parameters()])
    _close(results["cuda"][0], results["cpu"][0], rtol=1e-5)
    for a, b in zip(results["cuda"][1], results["cpu"][1]):
        _close(a, b, rtol=1e-4, atol=1e-6)


def test_compiled_function_retraces_for_another_device(rng):
    f = gj.compile(lambda a: (a * a).sum())
    x = gj.tensor(rng.standard_normal(6).astype(np.float32))
    want = float((x.numpy().astype(np.float64) ** 2).sum())
    assert abs(f(x).item() - want) < 1e-5
    out = f(x.cuda())
    assert out.device == "cuda" and abs(out.item() - want) < 1e-5
    assert "device cpu -> cuda:0" in f.explain()
    assert "cuda.jit" in f.lower(x.cuda()).kernel_source()


def test_lower_for_cuda_from_cpu_tensors(rng):
    m = nn.Linear(4, 3)
    opt = gj.optim.SGD(m.parameters(), lr=0.1)
    step = training_step(m, opt)
    x, y = gj.tensor(rng.standard_normal((2, 4)).astype(np.float32)), gj.tensor([0, 2])
    before = m.weight.detach().numpy().copy()
    f = gj.compile(step)
    low = f.lower_for("cuda", x, y)
    source = low.kernel_source()
    assert "@cuda.jit" in source and "cuda.syncthreads()" in source
    assert "@njit" not in source and "gemm" not in low.as_text()
    # The learning rate (a host scalar) is cast on the host and reaches its kernel by value.
    assert "cast(dtype=f32)" in source and "# on the host" in source and "_scalar" in source
    assert "@cuda.jit" not in f.lower(x, y).kernel_source()  # CPU tensors: the CPU target
    # Nothing ran: the parameters are untouched, no optimizer state, nothing cached.
    np.testing.assert_array_equal(m.weight.detach().numpy(), before)
    assert m.weight.grad is None and not opt.state and f.cache_size == 0


def test_dump_tool_shows_the_cuda_kernels(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import graphjit as gj\n"
        "import graphjit.nn as nn\n"
        "import graphjit.nn.functional as F\n"
        "m = nn.Linear(4, 3).cuda()\n"
        "opt = gj.optim.SGD(m.parameters(), lr=0.1)\n"
        "@gj.compile\n"
        "def step(x, y):\n"
        "    opt.zero_grad()\n"
        "    loss = F.cross_entropy(m(x), y)\n"
        "    loss.backward()\n"
        "    opt.step()\n"
        "    return loss\n"
        "x, y = gj.randn(2, 4).cuda(), gj.tensor([0, 2]).cuda()\n"
        "step(x, y)\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "graphjit", "dump", str(script), "--out", str(out),
                        "--report"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    kernels = (folder / "kernels.py").read_text()
    assert "@cuda.jit" in kernels and "cuda.syncthreads()" in kernels  # the loss's reduction
    assert "gemm" not in (folder / "report.txt").read_text()  # the CUDA pipeline: no BLAS lowering


def test_a_gpu_compiles_every_kernel_before_the_first_launch(rng, monkeypatch):
    """On a GPU, compile_graph compiles each kernel for the types of its launches (so a
    kernel failing to compile fails the compile, not a step halfway through its in-place
    updates); launches are configured once, when the program module is imported."""
    from numba import types

    from graphjit.backend.cuda import codegen, runtime
    from graphjit.backend.cuda.ptx import numba_signature

    g = gj.compile(lambda x, i: (x.exp() * 2).sum() + x[i].sum())
    x, i = gj.randn(3, 4).cuda(), gj.tensor([0, 2]).cuda()
    traced = []
    real_generate = codegen.generate
    monkeypatch.setattr(codegen, "generate",
                        lambda *a, **k: traced.append(real_generate(*a, **k)) or traced[-1])
    compiled = []
    monkeypatch.setattr(runtime, "simulated", lambda: False)
    monkeypatch.setattr(runtime, "precompile", lambda ks, sigs: compiled.append((ks, sigs)))
    monkeypatch.setattr(runtime, "threads", lambda: 32)  # simulator-sized launches still
    monkeypatch.setattr(runtime, "max_blocks", lambda: 2)
    monkeypatch.setattr(runtime, "reduction_threads", lambda n: 8 if n > 4 else 4)
    monkeypatch.setattr(runtime, "tile", lambda: 4)
    out = g(x, i)
    assert len(compiled) == len(traced) >= 1
    for (kernels, signatures), gen in zip(compiled, traced):
        assert len(kernels) == len(gen.kernel_sources) and signatures == gen.kernel_signatures
        assert all(sig for sig in signatures)
        assert "# Launch configurations" in gen.module_source
        assert "](" not in gen.module_source.split("def run_")[1]  # no configuring per call
    expected = np.exp(x.numpy()).sum() * 2 + x.numpy()[[0, 2]].sum()
    _close(out.item(), expected, rtol=1e-5)
    # numba_signature: what a launch passes (flat C-contiguous arrays, scalars by value)
    assert numba_signature([(np.dtype(np.float32), True), (np.dtype(np.int64), False)]) == (
        types.Array(types.float32, 1, "C"), types.int64)


def test_small_grids_do_not_warn(recwarn):
    from numba.core.errors import NumbaPerformanceWarning

    from graphjit.backend.cuda import runtime
    with runtime.launch_configurations():
        import warnings
        warnings.warn(NumbaPerformanceWarning(
            "Grid size 1 will likely result in GPU under-utilization due to low occupancy."))
    assert not [w for w in recwarn if issubclass(w.category, NumbaPerformanceWarning)]


def test_max_and_min_by_atomics_propagate_nan():
    """Column and total max/min combine across blocks with atomics, which keep the old
    value when either is NaN; a NaN must still reach the result, as on the CPU."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    x[1, 2] = np.nan
    f = gj.compile(lambda x: ((x * 2).sum(1), (x * 2).amax(0), (x * 2).amax(),
                              (x * 2).amin(0), (x * 2).amin()))
    for got, want in zip(f(gj.tensor(x).cuda()), f(gj.tensor(x))):
        np.testing.assert_array_equal(got.cpu().numpy(), want.numpy())
    assert np.isnan(f(gj.tensor(x).cuda())[2].item())
