"""``graphjit.compile(module)`` behaves as ``torch.compile(module)``'s result ([Compiled
modules] in graphjit/jit/compiled_module.py), and ``@graphjit.compile`` works on methods:
compiled against eager on the same inputs, values and gradients."""
import copy
import gc
import weakref

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn.functional as F
from graphjit import nn
from graphjit.jit import CompiledFunction
from graphjit.jit.compiled_module import CompiledModule


def close(a, b):
    a, b = (t.detach().numpy() if isinstance(t, gj.Tensor) else np.asarray(t) for t in (a, b))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class Scaled(nn.Module):
    """A model whose Python code branches on ``training`` and reads a plain attribute."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        self.register_buffer("shift", gj.zeros(3))
        self.scale = 2.0

    def forward(self, x):
        y = self.body(x) * self.scale + self.shift
        return y if self.training else y * 0.5


def eager_copy(model):
    twin = copy.deepcopy(model)
    twin.load_state_dict(model.state_dict())
    return twin


@pytest.fixture
def data(rng):
    x = gj.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    y = gj.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    return x, y


def test_calls_run_compiled_with_eager_values_and_gradients(data):
    x, y = data
    gj.manual_seed(0)
    model = Scaled()
    twin = eager_copy(model)
    compiled = gj.compile(model)
    assert isinstance(compiled, nn.Module) and isinstance(compiled, CompiledModule)
    assert compiled._orig_mod is model and compiled.orig_mod is model
    for _ in range(2):
        loss = F.mse_loss(compiled(x), y)
        expected = F.mse_loss(twin(x), y)
        close(loss, expected)
        compiled.zero_grad()
        twin.zero_grad()
        loss.backward()
        expected.backward()
        for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters(),
                                     strict=True):
            assert p.grad is not None, name
            close(p.grad, q.grad)
    close(compiled.forward(x), twin(x))
    assert compiled.explain() == "trace 1: first call"  # one program: the same signature
    assert len(compiled.graphs()) == 1


def test_the_module_api_is_the_originals(data):
    x, _ = data
    model = Scaled()
    compiled = gj.compile(model)
    assert list(compiled.parameters()) == list(model.parameters())
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert list(compiled.buffers()) == list(model.buffers())
    # state_dict: the original's keys (PyTorch's OptimizedModule would add "_orig_mod.").
    assert list(compiled.state_dict()) == list(model.state_dict()) == \
        ["shift", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"]
    assert list(compiled.children()) == list(model.children())
    assert list(compiled.modules()) == list(model.modules())
    assert compiled.body is model.body and compiled.scale == 2.0 and compiled.training
    # Loading through either changes the one model.
    other = Scaled()
    result = compiled.load_state_dict(other.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    # Methods that return the original module return the compiled one.
    assert compiled.train() is compiled and compiled.eval() is compiled
    assert compiled.requires_grad_(True) is compiled
    assert compiled.apply(lambda m: None) is compiled
    assert not model.training and not model.body[0].training
    assert "CompiledModule(" in repr(compiled) and "(_orig_mod): Scaled(" in repr(compiled)
    assert set(dir(model)) <= set(dir(compiled)) and "explain" in dir(compiled)


def test_train_and_eval_switch_programs_and_attributes_are_guarded(data):
    x, _ = data
    model = Scaled()
    compiled = gj.compile(model)

    def eager(m):
        with gj.no_grad():
            return m.forward(x).numpy()

    with gj.no_grad():
        close(compiled(x).numpy(), eager(model))
        compiled.eval()
        close(compiled(x).numpy(), eager(model))  # the eval branch: traced again
        compiled.train()
        close(compiled(x).numpy(), eager(model))  # the first program again
        compiled.scale = 3.0  # set through the compiled module: on the original
        assert model.scale == 3.0 and "scale" not in vars(compiled)
        close(compiled(x).numpy(), eager(model))
        compiled.extra = nn.Linear(3, 3)  # a new submodule registers in the original
        assert model.extra is compiled.extra and "extra.weight" in model.state_dict()
        del compiled.extra
        assert not hasattr(model, "extra")
    history = compiled.explain().splitlines()
    assert len(history) == 3, history
    assert "training True -> False" in history[1]
    assert "module attribute self.scale: 2.0 -> 3.0" in history[2]


def test_to_converts_the_original_and_stays_compiled(data):
    x, _ = data
    model = Scaled()
    compiled = gj.compile(model).to(gj.float64)
    assert isinstance(compiled, CompiledModule) and compiled.orig_mod is model
    assert all(p.dtype == gj.float64 for p in model.parameters())
    x64 = x.to(gj.float64)
    with gj.no_grad():
        close(compiled(x64).numpy(), model(x64).numpy())


def test_training_with_an_optimizer_matches_eager(data):
    x, y = data
    gj.manual_seed(1)
    model = Scaled()
    twin = eager_copy(model)
    compiled = gj.compile(model)
    opt = gj.optim.SGD(compiled.parameters(), lr=0.1, momentum=0.9)
    opt_twin = gj.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        for m, o in ((compiled, opt), (twin, opt_twin)):
            o.zero_grad()
            F.mse_loss(m(x), y).backward()
            o.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        close(p, q)


def test_a_compiled_child_is_its_original_to_its_parent(data):
    x, y = data
    gj.manual_seed(2)
    inner = Scaled()
    parent = nn.Sequential(gj.compile(inner), nn.ReLU())
    assert list(parent.state_dict()) == ["0." + k for k in inner.state_dict()]
    assert parent[0].orig_mod is inner
    with gj.no_grad():
        expected = F.relu(inner(x)).numpy()
        close(parent(x).numpy(), expected)  # the child compiled, the ReLU eager
    step = gj.compile(lambda a: parent(a).sum())  # the child traced inline
    with gj.no_grad():
        close(step(x).numpy(), expected.sum())
    parent.eval()
    assert not inner.training


def test_deepcopy_gives_an_independent_compiled_module(data):
    x, _ = data
    compiled = gj.compile(Scaled())
    with gj.no_grad():
        before = compiled(x).numpy()
    twin = copy.deepcopy(compiled)
    assert isinstance(twin, CompiledModule) and twin.orig_mod is not compiled.orig_mod
    with gj.no_grad():
        for p in twin.parameters():
            p.mul_(0.0)
        close(compiled(x).numpy(), before)
        close(twin(x).numpy(), np.zeros_like(before))


def test_compiled_function_of_a_callable_object_takes_its_class_name():
    # The root cause of 'CompiledFunction' object has no attribute '__name__':
    # functools.update_wrapper on a non-function.
    model = Scaled()
    cf = CompiledFunction(model)
    assert cf.__name__ == "Scaled" and cf.fn is model
    assert "_parameters" not in vars(cf)  # the module's attributes were not merged in
    x = gj.ones(2, 4)
    with gj.no_grad():
        close(cf(x).numpy(), model(x).numpy())
    # Lifted parameters are named as in the module ("self." + their state_dict key).
    names = [v.name for v in cf.graphs()[0].inputs]
    assert names == ["x", "self.body.0.weight", "self.body.0.bias", "self.body.2.weight",
                     "self.body.2.bias", "self.shift"], names


# ---- @graphjit.compile on methods -------------------------------------------------------------

class Net(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.scale = scale

    @gj.compile
    def forward(self, x):
        return self.lin(x).tanh() * self.scale


def test_a_compiled_forward_method_per_instance_values_and_gradients(data):
    x, y = data
    gj.manual_seed(3)
    nets = [Net(1.0), Net(2.0)]
    for _ in range(2):  # each instance twice, alternating: its own program each time
        for net in nets:
            with gj.no_grad():
                expected = (F.linear(x, net.lin.weight, net.lin.bias).tanh() * net.scale).numpy()
            out = net(x)
            close(out, expected)
            net.zero_grad()
            F.mse_loss(out, y).backward()
            assert net.lin.weight.grad is not None
    # Gradients against eager, for one instance.
    net = nets[1]
    net.zero_grad()
    F.mse_loss(net(x), y).backward()
    w = net.lin.weight.detach().clone().requires_grad_(True)
    b = net.lin.bias.detach().clone().requires_grad_(True)
    F.mse_loss(F.linear(x, w, b).tanh() * net.scale, y).backward()
    close(net.lin.weight.grad, w.grad)
    close(net.lin.bias.grad, b.grad)
    assert Net.forward.cache_size == 2
    assert net.forward.explain() == Net.forward.explain()  # the bound method reaches it


class Plain:
    def __init__(self, w):
        self.w = w

    @gj.compile
    def apply(self, x):
        return x * self.w + 1


def test_instances_never_share_a_program_even_when_an_id_is_reused():
    # A program is cached per instance (the instance is an argument, keyed by identity).
    # An instance that died could leave its id to a new one, which would then run the dead
    # instance's program with its tensors: the programs hold the objects their key names,
    # so no id is reused while they are cached.
    x = gj.ones(3)
    Plain.apply.warn_after = 100  # a trace per instance is expected here
    first = Plain(gj.ones(3))
    first.apply(x)
    alive = weakref.ref(first)
    del first
    gc.collect()
    assert alive() is not None
    for i in range(8):  # (without the held objects, ids came back here)
        obj = Plain(gj.ones(3) * i)
        np.testing.assert_array_equal(obj.apply(x).numpy(), np.full(3, i + 1.0, np.float32))
        del obj
        gc.collect()
