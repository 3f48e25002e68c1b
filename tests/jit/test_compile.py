"""@graphjit.compile: compiled vs eager on the same inputs, both ways of using it.

Compiling is the expensive part (Numba), so programs are shared through module-level
compiled functions and shapes stay small.
"""
import re

import numpy as np
import pytest

import graphjit as gj
from graphjit.ir import parse_graph, print_graph, verify
from graphjit.testing import assert_close

F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-6)


def _round_trips(cf):
    for g in cf.graphs():
        verify(g)
        text = print_graph(g)
        assert print_graph(parse_graph(text)) == text


# ---- the tutorial example, compiled as a forward function (grad_fn runs compiled backward) ----

@gj.compile
def q_fn(a, b):
    return 3 * a**3 - b**2


def test_tutorial_forward_compiled_then_eager_backward():
    a = gj.tensor([2.0, 3.0], requires_grad=True)
    b = gj.tensor([6.0, 4.0], requires_grad=True)
    Q = q_fn(a, b)
    assert Q.grad_fn is not None and Q.requires_grad
    assert_close(Q, np.array([-12.0, 65.0], dtype=np.float32))
    Q.backward(gradient=gj.ones_like(Q))
    assert_close(a.grad, 9 * np.array([2.0, 3.0], dtype=np.float32) ** 2)
    assert_close(b.grad, -2 * np.array([6.0, 4.0], dtype=np.float32))
    # Accumulation into .grad works as in eager: a second call and backward doubles them.
    q_fn(a, b).sum().backward()
    assert_close(a.grad, 2 * 9 * np.array([2.0, 3.0], dtype=np.float32) ** 2)
    _round_trips(q_fn)


def test_forward_compiled_without_grad_has_no_grad_fn():
    a = gj.tensor([2.0, 3.0])
    b = gj.tensor([6.0, 4.0])
    out = q_fn(a, b)
    assert out.grad_fn is None and not out.requires_grad
    assert_close(out, np.array([-12.0, 65.0], dtype=np.float32))


# ---- a whole training step, compiled: forward, backward and update in one program ------------

def _make_mlp(seed, dtype=gj.float64):
    rng = np.random.default_rng(seed)
    w1 = gj.tensor(rng.normal(size=(16, 8)) * 0.3, dtype=dtype, requires_grad=True)
    b1 = gj.tensor(rng.normal(size=16) * 0.1, dtype=dtype, requires_grad=True)
    w2 = gj.tensor(rng.normal(size=(4, 16)) * 0.3, dtype=dtype, requires_grad=True)
    b2 = gj.tensor(rng.normal(size=4) * 0.1, dtype=dtype, requires_grad=True)
    return [w1, b1, w2, b2]


def _mlp_loss(params, x, y):
    w1, b1, w2, b2 = params
    h = gj.tanh(x @ w1.T + b1)
    logits = h @ w2.T + b2
    logp = logits.log_softmax(-1)
    return -logp[gj.arange(x.shape[0]), y].mean()


def _train_step(params, opt=None):
    """The MLP's training step: forward, backward and (with ``opt``) the update."""
    def step(x, y):
        if opt is not None:
            opt.zero_grad()
        loss = _mlp_loss(params, x, y)
        loss.backward()
        if opt is not None:
            opt.step()
        return loss
    return step


def _train(params, opt, step, data, steps):
    losses = []
    for i in range(steps):
        x, y = data[i % len(data)]
        losses.append(step(x, y).item())
    return losses


@pytest.mark.parametrize("make_opt", [
    lambda p: gj.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: gj.optim.Adam(p, lr=0.01),
], ids=["sgd_momentum", "adam"])
def test_mlp_training_step_compiled_matches_eager(make_opt):
    rng = np.random.default_rng(1)
    data = [(gj.tensor(rng.normal(size=(6, 8)), dtype=gj.float64), gj.tensor(rng.integers(0, 4, 6)))
            for _ in range(3)]
    results = []
    for compiled in (False, True):
        params = _make_mlp(0)
        opt = make_opt(params)

        step = _train_step(params, opt)

        fn = gj.compile(step) if compiled else step
        losses = _train(params, opt, fn, data, 20)
        results.append((losses, [p.detach().numpy().copy() for p in params],
                        {k: v for k, v in opt.state_dict()["state"][0].items()}))
        if compiled:
            _round_trips(fn)
            assert fn.cache_size <= 2  # first step (no optimizer state yet), then steady state
    (le, pe, se), (lc, pc, sc) = results
    np.testing.assert_allclose(lc, le, **F64)
    for a, b in zip(pc, pe):
        np.testing.assert_allclose(a, b, **F64)
    for k in se:
        assert_close(sc[k], se[k], **F64)
    assert le[-1] < le[0]


def test_rnn_bptt_compiled_matches_eager():
    rng = np.random.default_rng(2)
    wx = gj.tensor(rng.normal(size=(5, 3)) * 0.5, dtype=gj.float64, requires_grad=True)
    wh = gj.tensor(rng.normal(size=(5, 5)) * 0.5, dtype=gj.float64, requires_grad=True)
    xs = gj.tensor(rng.normal(size=(10, 2, 3)), dtype=gj.float64)

    def loss_fn(xs):
        h = gj.zeros(2, 5, dtype=gj.float64)
        for t in range(xs.shape[0]):
            h = gj.tanh(xs[t] @ wx.T + h @ wh.T)
        return (h ** 2).sum()

    compiled = gj.compile(loss_fn)
    eager_loss = loss_fn(xs)
    gx_e, gh_e = gj.grad(eager_loss, [wx, wh])
    loss = compiled(xs)
    loss.backward()
    assert_close(loss, eager_loss, **F64)
    assert_close(wx.grad, gx_e, **F64)
    assert_close(wh.grad, gh_e, **F64)
    _round_trips(compiled)


def test_frozen_parameter_gets_no_gradient_work():
    params = _make_mlp(3)
    params[0].requires_grad_(False)  # freeze the first layer's weight
    x = gj.tensor(np.random.default_rng(0).normal(size=(6, 8)))
    y = gj.tensor(np.arange(6) % 4)

    step = gj.compile(_train_step(params))

    step(x, y)
    assert params[0].grad is None and params[1].grad is not None
    (graph,) = step.graphs()
    text = print_graph(graph)
    # No update writes a gradient for the frozen weight, and its gradient GEMM is absent:
    # forward has 2 matmuls, backward needs dW2, dh and dW1 -> with w1 frozen only dW2 and dh.
    assert "w1" not in " ".join(l for l in text.splitlines() if l.strip().startswith("update"))
    assert len(re.findall(r"= (?:matmul|gemm)\(", text)) == 4


def test_gradient_accumulates_over_two_compiled_calls():
    params = _make_mlp(4)
    rng = np.random.default_rng(5)
    x = gj.tensor(rng.normal(size=(6, 8)))
    y = gj.tensor(rng.integers(0, 4, 6))

    step = gj.compile(_train_step(params))

    step(x, y)
    step(x, y)
    expected = gj.grad(_mlp_loss(params, x, y), params)
    for p, g in zip(params, expected):
        assert_close(p.grad, 2 * g.numpy(), **F64)
    assert "exists" in step.explain()  # the second call saw .grad appear and retraced


def test_recompiles_on_new_batch_size_and_explains():
    @gj.compile
    def f(x):
        return (x * 2).sum(0)

    a = f(gj.ones(4, 3))
    b = f(gj.ones(2, 3))
    assert_close(a, np.full(3, 8.0, dtype=np.float32))
    assert_close(b, np.full(3, 4.0, dtype=np.float32))
    assert f.cache_size == 2
    assert "dim 0: 4 -> 2" in f.explain()
    f(gj.ones(4, 3))  # served from the cache, no new trace
    assert f.explain().count("trace") == 2


def test_closed_over_numpy_array_is_an_input():
    scale = np.array([1.0, 2.0, 3.0], dtype=np.float32)

    @gj.compile
    def f(x):
        return x * scale

    assert_close(f(gj.ones(3)), scale)
    scale[:] = [4.0, 5.0, 6.0]  # an in-place change is seen, as in eager mode
    assert_close(f(gj.ones(3)), np.array([4.0, 5.0, 6.0], dtype=np.float32))


# ---- what a static graph cannot express -----------------------------------------------------

def test_python_if_on_tensor_is_a_clear_trace_error():
    @gj.compile
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(gj.jit.TraceError) as e:
        f(gj.ones(3))
    assert "test_compile.py" in str(e.value) and "graphjit.where" in str(e.value)


@pytest.mark.parametrize("what", ["item", "numpy", "float"])
def test_reading_values_is_a_clear_trace_error(what):
    @gj.compile
    def f(x):
        s = x.sum()
        return {"item": lambda: s.item(), "numpy": lambda: s.numpy(),
                "float": lambda: float(s)}[what]()

    with pytest.raises(gj.jit.TraceError, match=r"test_compile\.py:\d+"):
        f(gj.ones(3))


def test_shape_error_at_trace_names_op_shapes_and_line():
    @gj.compile
    def f(x, w):
        return x @ w

    with pytest.raises(gj.ShapeError) as e:
        f(gj.ones(2, 3), gj.ones(4, 5))
    msg = str(e.value)
    assert "matmul" in msg and "(2, 3)" in msg and "(4, 5)" in msg and "test_compile.py" in msg


def test_failed_call_leaves_state_untouched():
    params = _make_mlp(6)
    opt = gj.optim.SGD(params, lr=0.1, momentum=0.9)

    step = gj.compile(_train_step(params, opt))

    before = [p.detach().numpy().copy() for p in params]
    with pytest.raises(gj.ShapeError):
        step(gj.ones(6, 7, dtype=gj.float64), gj.tensor(np.arange(6) % 4))
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.detach().numpy(), b)
        assert p.grad is None
    assert opt.state_dict()["state"] == {}


def test_optimizer_state_reset_between_compiled_steps_matches_eager():
    # The first step's program creates the momentum buffers (a Python branch taken once);
    # after the state is dropped, the next call must take that branch again, as eager does.
    rng = np.random.default_rng(7)
    x = gj.tensor(rng.normal(size=(6, 8)))
    y = gj.tensor(rng.integers(0, 4, 6))
    runs = []
    for compiled in (False, True):
        params = _make_mlp(8)
        opt = gj.optim.SGD(params, lr=0.1, momentum=0.9)

        step = _train_step(params, opt)

        fn = gj.compile(step) if compiled else step
        losses = [fn(x, y).item() for _ in range(3)]
        opt.state.clear()
        losses += [fn(x, y).item() for _ in range(2)]
        runs.append((losses, [p.detach().numpy().copy() for p in params]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], **F64)
    for a, b in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(a, b, **F64)


def test_loss_returned_after_backward_inside_cannot_be_differentiated_again():
    params = _make_mlp(9)
    x = gj.tensor(np.random.default_rng(1).normal(size=(6, 8)))
    y = gj.tensor(np.arange(6) % 4)

    step = gj.compile(_train_step(params))

    loss = step(x, y)
    assert loss.requires_grad and loss.grad_fn is not None
    with pytest.raises(gj.GraphjitError, match="second time"):
        loss.backward()
    # Only the one program: no backward program was built for the returned loss.
    (graph,) = step.graphs()
    assert not any(n.op.name == "grad" for n in graph.nodes)


def test_backward_program_is_compiled_only_when_used():
    @gj.compile
    def f(a):
        return (a * a).sum()

    a = gj.tensor([1.0, 2.0], requires_grad=True)
    out = f(a)
    (entry,) = [e for es in f._cache.values() for e in es]
    assert entry._bw_program is None
    out.backward()
    assert entry._bw_program is not None
    assert_close(a.grad, np.array([2.0, 4.0], dtype=np.float32))


# ---- nn.Module training steps, nested arguments, recompile warnings ---------------------------

def _module_step_runs(compiled):
    gj.manual_seed(3)
    model = gj.nn.Sequential(gj.nn.Linear(8, 16), gj.nn.ReLU(), gj.nn.Linear(16, 4))
    model.double()
    opt = gj.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    loss_fn = gj.nn.CrossEntropyLoss()
    keys = list(model.state_dict())

    def step(batch):
        opt.zero_grad()
        loss = loss_fn(model(batch["x"]), batch["y"])
        loss.backward()
        opt.step()
        return {"loss": loss, "detached": loss.detach()}

    fn = gj.compile(step) if compiled else step
    rng = np.random.default_rng(4)
    losses = []
    for _ in range(5):
        batch = {"x": gj.tensor(rng.normal(size=(6, 8))), "y": gj.tensor(rng.integers(0, 4, 6))}
        out = fn(batch)
        losses.append(out["loss"].item())
        assert out["detached"].item() == out["loss"].item()
    assert list(model.state_dict()) == keys  # compiling never changes the state_dict keys
    return losses, {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_module_training_step_with_dict_batch_matches_eager():
    (le, se), (lc, sc) = _module_step_runs(False), _module_step_runs(True)
    np.testing.assert_allclose(lc, le, **F64)
    for k in se:
        np.testing.assert_allclose(sc[k], se[k], **F64, err_msg=k)


def test_nested_tuple_and_list_arguments():
    @gj.compile
    def f(pair, items):
        a, b = pair
        return a * b + items[0] - items[1].sum()

    rng = np.random.default_rng(8)
    a, b, c = (gj.tensor(rng.normal(size=3)) for _ in range(3))
    d = gj.tensor(rng.normal(size=(2, 3)))
    expected = a.numpy() * b.numpy() + c.numpy() - d.numpy().sum()
    assert_close(f((a, b), [c, d]), expected, **F32)


def test_python_scalars_are_specialised_and_guarded():
    @gj.compile
    def f(x, scale):
        return x * scale

    x = gj.tensor([1.0, 2.0])
    assert_close(f(x, 2.0), np.array([2.0, 4.0], dtype=np.float32))
    assert_close(f(x, 3.0), np.array([3.0, 6.0], dtype=np.float32))  # never served by scale=2
    assert f.cache_size == 2
    assert "static" in f.explain()


def test_repeated_recompiles_warn():
    @gj.compile
    def f(x):
        return x + 1

    with pytest.warns(gj.jit.GraphjitWarning, match=r"traced \d+ times.*explain"):
        for n in range(1, 12):
            f(gj.ones(n))


# ---- optimizer hyper-parameters are runtime inputs ----------------------------------------

@pytest.mark.parametrize("make_opt,changes", [
    (lambda p: gj.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
     [("lr", 0.05), ("momentum", 0.5), ("weight_decay", 0.02)]),
    (lambda p: gj.optim.Adam(p, lr=0.01, betas=(0.9, 0.99)),
     [("lr", 0.003), ("betas", (0.8, 0.95)), ("eps", 1e-6)]),
    (lambda p: gj.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, centered=True),
     [("lr", 0.02), ("alpha", 0.95)]),
], ids=["sgd", "adam", "rmsprop"])
def test_changing_hyper_parameters_never_recompiles(make_opt, changes):
    rng = np.random.default_rng(10)
    data = [(gj.tensor(rng.normal(size=(6, 8))), gj.tensor(rng.integers(0, 4, 6))) for _ in range(2)]
    runs = []
    for compiled in (False, True):
        params = _make_mlp(11)
        opt = make_opt(params)

        step = _train_step(params, opt)

        fn = gj.compile(step) if compiled else step
        losses = [fn(*data[0]).item(), fn(*data[1]).item()]
        traces_before = len(fn.explain().splitlines()) if compiled else 0
        for key, value in changes:
            opt.param_groups[0][key] = value
            losses.append(fn(*data[len(losses) % 2]).item())
        if compiled:
            assert len(fn.explain().splitlines()) == traces_before, fn.explain()
            (graph,) = fn.graphs()
            assert {v.name for v in graph.inputs if v.role == "hyper"} >= {f"opt.{k}" for k, _ in changes
                                                                          if k != "betas"}
        runs.append((losses, [p.detach().numpy().copy() for p in params]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], **F64)
    for a, b in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(a, b, **F64)


def test_hyper_parameter_that_changes_a_branch_retraces():
    params = _make_mlp(12)
    opt = gj.optim.SGD(params, lr=0.1, momentum=0.9)
    x, y = gj.tensor(np.ones((6, 8))), gj.tensor(np.arange(6) % 4)

    step = gj.compile(_train_step(params, opt))

    for _ in range(3):
        step(x, y)
    before = step.explain().count("\n")
    opt.param_groups[0]["momentum"] = 0.0  # `if momentum != 0` now goes the other way
    step(x, y)
    assert step.explain().count("\n") == before + 1
    assert "opt.momentum: 0.0 decides __ne__ 0" in step.explain()


def test_a_compiled_lambda_gets_a_graph_name_that_round_trips():
    f = gj.compile(lambda x: x * 2)
    assert_close(f(gj.ones(2)), np.full(2, 2.0, dtype=np.float32))
    (graph,) = f.graphs()
    assert graph.name == "lambda"
    _round_trips(f)


def test_a_compiled_lambda_forward_with_backward_round_trips():
    f = gj.compile(lambda x: (x * x).sum())
    x = gj.tensor([1.0, 3.0], requires_grad=True)
    f(x).backward()
    assert_close(x.grad, np.array([2.0, 6.0], dtype=np.float32))
    (entry,) = [e for es in f._cache.values() for e in es]
    for g in (entry.graph, entry.backward_graph):
        assert print_graph(parse_graph(print_graph(g))) == print_graph(g)


def test_error_inside_numpy_names_the_users_line():
    @gj.compile
    def f(x):
        return gj.tensor(np.full(3, x.sum()))  # a traced value reaching NumPy

    with pytest.raises(gj.jit.TraceError) as e:
        f(gj.ones(3))
    assert re.search(r"\(at .*test_compile\.py:\d+\)", str(e.value)), str(e.value)


def test_state_a_first_step_creates_shares_memory_with_nothing_else():
    """[State a call creates] in graphjit/jit/runtime.py: the first compiled step's new
    optimizer state is kept without a copy where it is the state's own; each state array
    must then share memory with no other state, parameter or gradient, and a later call must
    not write into it behind the optimizer's back (the program's result pool)."""
    rng = np.random.default_rng(5)
    data = [(gj.tensor(rng.normal(size=(6, 8)), dtype=gj.float64), gj.tensor(rng.integers(0, 4, 6)))
            for _ in range(2)]
    params = _make_mlp(0)
    opt = gj.optim.Adam(params, lr=0.01)
    fn = gj.compile(_train_step(params, opt))
    fn(*data[0])
    arrays = [t._data for st in opt.state.values() for t in st.values()
              if isinstance(t, gj.Tensor) and t._data.size > 1]
    arrays += [p._data for p in params] + [p.grad._data for p in params]
    assert len(arrays) == 4 * len(params)
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
    kept = arrays[:2 * len(params)]  # (held here, as a saved state_dict would)
    before = [a.copy() for a in kept]
    # The first step's program runs again (the state dropped, as in the test above): its
    # results must not be written into the arrays the old state still holds.
    opt.state.clear()
    fn(*data[1])
    for a, b in zip(kept, before):
        np.testing.assert_array_equal(a, b)
    for a in kept:
        assert not any(np.shares_memory(a, t._data) for st in opt.state.values()
                       for t in st.values() if isinstance(t, gj.Tensor))


def test_results_of_their_own_are_those_that_overlap_nothing():
    from graphjit.backend.cpu.program import CompiledProgram
    from graphjit.backend.cpu.tiered import TieredProgram

    base = np.zeros(10)
    arg = np.zeros(4)
    const = np.zeros(3)
    results = [np.zeros(5), base[:6], base[4:], np.zeros(2), arg[1:3], const[1:], np.zeros(0)]
    native = CompiledProgram.__new__(CompiledProgram)  # (only its constants are read)
    native._const_at = [(0, const)]
    own = native.results_of_their_own(results, [arg], range(len(results)))
    # 1 and 2 overlap each other, 4 is an argument's, 5 a constant's, 6 is empty.
    assert own == {0, 3}
    # A program still on the interpreter keeps nothing.
    assert TieredProgram.results_of_their_own(None, results, [arg], range(len(results))) == set()
