"""Regression tests for the differences the fuzzer (``graphjit fuzz``) found between
compiled and eager mode, one test per bug, each the fuzzer's shrunk program."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from graphjit.backend.cpu import compile_graph
from graphjit.ir import parse_graph, run_graph


@pytest.mark.parametrize("shape,dim", [((1,), -1), ((1, 1), 0), ((1, 1), (0, 1))])
def test_keepdim_sum_over_size_one_dims(shape, dim):
    # The fused kernel never stored the sum: the result was uninitialised memory.
    x = gj.tensor(np.full(shape, 0.5))
    fn = lambda x: gj.sin(x).sum(dim, keepdim=True)  # noqa: E731
    np.testing.assert_array_equal(gj.compile(fn)(x).numpy(), fn(x).numpy())


@pytest.mark.parametrize("text", [
    """graph f(%x: f64[1] {arg}) {
      %0 = fused(%x, body='t0 = sin(i0); t1 = sum(t0, dims=[0], keepdim=true)') : f64[1]
      return %0
    }""",
    """graph f(%x: f64[2,1] {arg}) {
      %0 = fused(%x, body='t0 = sin(i0); t1 = sum(t0, dims=[1], keepdim=true); t2 = mul(t1, t0)') : f64[2,1]
      return %0
    }"""])
def test_fused_reduction_over_size_one_dims_given_to_the_backend(text):
    # Simplify turns these reductions into reshapes; the backend must still compile them.
    g = parse_graph(text)
    x = np.linspace(0.25, 0.5, g.inputs[0].shape[0]).reshape(g.inputs[0].shape)
    outs, _ = compile_graph(g)([x])
    np.testing.assert_allclose(outs[0], run_graph(g, [x])[0][0], rtol=1e-15)


def test_two_unit_dim_reductions_in_one_fused_node():
    # Crashed the CPU code generator (AssertionError in _domain_strides).
    x = gj.tensor(np.array([[[0.5], [1.5]]]))
    e = gj.tensor(2.0, dtype=gj.float64, requires_grad=True)

    def step(x):
        y = x.sum(2)
        loss = (gj.exp(x) * e).sum()
        loss.backward()
        return y

    want = step(x)
    g_eager = e.grad.item()
    e.grad = None
    got = gj.compile(step)(x)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_allclose(e.grad.item(), g_eager, rtol=1e-12)


def _both(fn):
    """``fn(compiled)`` for eager and compiled: each builds fresh state."""
    return fn(False), fn(True)


def _run(step, compiled):
    return gj.compile(step) if compiled else step


def test_grad_set_to_none_inside_stays_none():
    def run(compiled):
        p = gj.tensor([1.0, 2.0], requires_grad=True)
        f = _run(lambda x: ((p * x).sum().backward(), setattr(p, "grad", None)), compiled)
        out = []
        for _ in range(3):
            f(gj.tensor([3.0, 4.0]))
            out.append(p.grad)
        return out
    eager, compiled = _both(run)
    assert eager == [None] * 3 and compiled == [None] * 3


def test_grad_assigned_after_accumulating_backward():
    def run(compiled):
        p = gj.tensor([1.0], requires_grad=True)

        def step(x):
            (p * x).sum().backward()
            p.grad = p.grad * 2.0
        f = _run(step, compiled)
        return [(f(gj.tensor([1.0])), p.grad.tolist())[1] for _ in range(2)]
    eager, compiled = _both(run)
    assert eager == compiled == [[2.0], [6.0]]


def test_backward_of_a_leaf_itself_accumulates():
    def run(compiled):
        p = gj.tensor([[1.0]], requires_grad=True)
        f = _run(lambda: p.backward(gj.ones(1, 1)), compiled)
        return [(f(), p.grad.tolist())[1] for _ in range(2)]
    eager, compiled = _both(run)
    assert eager == compiled == [[[1.0]], [[2.0]]]


def test_parameter_changed_in_place_after_its_use_still_gets_its_gradient():
    def run(compiled):
        p = gj.tensor([1.0, 2.0], requires_grad=True)

        def step(x):
            loss = (p * x).sum()
            with gj.no_grad():
                p.sub_(0.01)
            loss.backward()
        _run(step, compiled)(gj.tensor([3.0, 4.0]))
        return p.grad.tolist(), p.tolist()
    eager, compiled = _both(run)
    assert eager == compiled


def test_compiled_forward_gives_no_gradient_to_inputs_the_loss_does_not_use():
    def run(compiled):
        a = gj.tensor([1.0, 2.0], requires_grad=True)
        b = gj.tensor([3.0, 4.0], requires_grad=True)
        loss, _ = _run(lambda a, b: ((a * 2.0).sum(), b * 3.0), compiled)(a, b)
        loss.backward()
        return a.grad.tolist(), b.grad
    eager, compiled = _both(run)
    assert eager == compiled == ([2.0, 2.0], None)


def test_returned_argument_is_this_calls():
    f = gj.compile(lambda x: [x, x[...]])
    for v in (1.0, 2.0, 3.0):
        x = gj.tensor([v])
        out = f(x)
        assert out[0] is x and out[1].tolist() == [v]


def test_returned_view_of_a_parameter_shares_its_memory():
    def run(compiled):
        p = gj.nn.Parameter(gj.tensor([[1.0, 2.0]]))
        opt = gj.optim.SGD([p], lr=0.1, fused=False)

        def forward():
            v = p.view(-1)
            return v, (v * 0.5).sum()
        out, loss = _run(forward, compiled)()
        loss.backward()
        opt.step()  # in place: the returned view sees it, as eagerly
        return out.detach().tolist()
    eager, compiled = _both(run)
    assert eager == compiled


def test_zero_d_parameter_options_keep_float32():
    def run(compiled):
        p = gj.nn.Parameter(gj.tensor(-1.8671875))
        opt = gj.optim.SGD([p], lr=0.01, momentum=0.5, weight_decay=0.01, fused=False)

        def step(x):
            opt.zero_grad()
            (p * x).sum().backward()
            opt.step()
        _run(step, compiled)(gj.tensor(-1.2578125))
        buf = opt.state[p]["momentum_buffer"]
        return buf.dtype, buf.item(), p.item()
    eager, compiled = _both(run)
    assert eager == compiled and eager[0] is gj.float32


def test_saved_value_changed_in_place_before_backward_is_an_error_as_eagerly():
    def run(compiled):
        p = gj.nn.Parameter(gj.tensor([[-0.85]]))

        def step(x):
            y = gj.minimum(x, p)
            x.clamp_(-1.0, 1.0)  # minimum's gradient for p reads x
            y.sum().backward()
        with pytest.raises(gj.AutogradError, match="modified by an in-place operation"):
            _run(step, compiled)(gj.tensor([[1.9]]))
    _both(run)


def test_in_place_on_a_one_d_matmul_result_with_autograd():
    def run(compiled):
        w = gj.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)

        def step(x):
            y = x @ w         # a reshape of a temporary: no other tensor shares it
            y.mul_(2.0)
            y.sum().backward()
        _run(step, compiled)(gj.tensor([1.0, 2.0]))
        return w.grad.tolist()
    eager, compiled = _both(run)
    assert eager == compiled


def test_cuda_step_that_sets_grad_to_none_runs():
    # The driver made the zero .grad input from an int where a shape tuple is needed.
    pytest.importorskip("numba.cuda")
    p = gj.nn.Parameter(gj.tensor([[1.0, 2.0]], device="cuda"))

    @gj.compile
    def step(x):
        (p * x).sum().backward()
        p.grad = None

    for _ in range(2):
        step(gj.tensor([[3.0, 4.0]], device="cuda"))
        assert p.grad is None


@pytest.mark.parametrize("key, value", [
    (Ellipsis, lambda x: 0.5), ((slice(None), slice(0, 2)), lambda x: x * 2.0),
    ((), lambda x: x - 1.0)])
def test_setitem_with_a_key_that_selects_the_whole_tensor(key, value):
    """x[...] = v (and any key that selects everything) is an assignment to all of x; it
    raised AttributeError in compiled functions (x[key] is x itself, not a view)."""
    def step(x):
        x[key] = value(x)
        return x * 3.0
    f = gj.compile(step)
    for data in ([[1.5, -2.0]], [[0.25, 4.0]]):
        x, y = gj.tensor(data), gj.tensor(data)
        out, expected = f(x), step(y)
        assert x.tolist() == y.tolist() and out.tolist() == expected.tolist()


def test_compiled_forward_that_changes_a_saved_value_fails_at_backward_as_eagerly():
    """A compiled forward that changes in place a value its matmul saved: eager mode's
    backward raises, and so must the compiled backward (it returned a gradient computed from
    the changed value). A backward that does not need the value still runs."""
    def forward(x, w):
        y = gj.mm(x, w)           # saves x for w's gradient
        z = (w * w).sum()         # its backward needs nothing x held
        x[0, 0] = 0.5
        return y.sum(), z

    def run(fn, which):
        x = gj.tensor([[0.109375]], dtype=gj.float64)
        w = gj.tensor([[-1.328125]], dtype=gj.float64, requires_grad=True)
        outs = fn(x, w)
        try:
            outs[which].backward()
        except gj.AutogradError as e:
            assert "modified by an in-place operation" in str(e)
            return "AutogradError"
        return w.grad.tolist()

    f = gj.compile(forward)
    assert run(f, 0) == run(forward, 0) == "AutogradError"
    assert run(f, 1) == run(forward, 1) == [[2 * -1.328125]]


def test_sum_over_the_middle_dim_of_a_constant():
    """x.zero_() then x.sum(1): the sum of a constant over a dim that is neither innermost
    nor outermost was fused with the constant and compiled to a loop that wrote the wrong
    elements, leaving the rest uninitialised."""
    def f(x):
        x.zero_()
        return x.sum(1), (gj.zeros(2, 3, 2, dtype=gj.float64) + 1).sum(1)
    x = gj.randn(2, 3, 2, dtype=gj.float64)
    a, b = gj.compile(f)(x)
    assert a.tolist() == [[0.0, 0.0]] * 2 and b.tolist() == [[3.0, 3.0]] * 2


@pytest.mark.parametrize("compiled", [False, True])
def test_view_base_changed_under_no_grad_after_the_view_was_used(compiled):
    """p.repeat (a view of p inside) used by the loss, then p changed under no_grad: the
    gradient is the view's, as in PyTorch. Eager mode refused it (any in-place change of a
    viewed tensor counted, not only those autograd records); compiled mode ran."""
    p = gj.nn.Parameter(gj.tensor([1.5, 0.5, 1.25]))

    def step(target):
        loss = gj.nn.functional.cross_entropy(p.repeat(2, 1), target, reduction="sum")
        with gj.no_grad():
            p.sub_(0.01)
        loss.backward()
        return loss
    (gj.compile(step) if compiled else step)(gj.tensor([2, 0]))
    e = np.exp(np.array([1.5, 0.5, 1.25]))
    softmax = e / e.sum()
    expected = 2 * softmax - np.array([1.0, 0.0, 1.0])
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(p.detach().numpy(), [1.49, 0.49, 1.24], rtol=1e-6)


def test_view_base_changed_with_autograd_after_the_view_is_still_refused():
    """The case the refusal is for: the base changed in place with autograd recording it,
    then the view read. Its gradient would ignore the change, so eager mode raises."""
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    v = y.view(2, 1)
    y.mul_(3.0)
    with pytest.raises(gj.AutogradError, match="in-place"):
        v.sum().backward()


def test_gemm_epilogue_result_that_does_not_read_the_product():
    # The backward's grad_output @ w gained the epilogue 'relu(p0); sum over rows;
    # where(relu > 0, product, 0)' and the product was computed into relu's buffer, which
    # the epilogue then wrote before reading the product: p0.grad came out as relu(p0).
    def run(compiled):
        p0 = gj.nn.Parameter(gj.tensor([[-0.078125, -1.90625, -0.5859375],
                                        [1.96875, -0.4140625, 0.3203125]], dtype=gj.float64))
        b0 = gj.tensor([-1.5625, 0.9375, 1.6953125], dtype=gj.float64)
        p2 = gj.nn.Parameter(gj.tensor([[-0.1953125, -0.734375, 1.109375],
                                        [-1.9140625, -1.3046875, -0.6328125]], dtype=gj.float64))
        p3 = gj.nn.Parameter(gj.tensor([1.1328125], dtype=gj.float64))

        def step():
            v2 = p0.relu()
            b0.mul_(0.9).add_(v2.detach().mean(0), alpha=0.1)
            loss = gj.nn.functional.linear(v2, p2, p3).mean()
            loss.backward()
            return loss

        loss = (gj.compile(step) if compiled else step)()
        return [loss.detach().numpy(), b0.numpy(), p0.grad.numpy(), p2.grad.numpy(),
                p3.grad.numpy()]

    for want, got in zip(*_both(run)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_grad_of_a_tensor_passed_as_argument_is_this_calls():
    # A compiled function given a new list of parameters (same shapes) read and scaled the
    # .grad of the first call's parameters: eager clip_grad_norm_ (itself compiled) on a
    # second model clipped the first model's gradients and left its own unclipped. (Found
    # by tests/programs: word_lm run twice in one process.)
    def make():
        ps = [gj.nn.Parameter(gj.ones(3)), gj.nn.Parameter(gj.ones(2))]
        for k, p in enumerate(ps):
            p.grad = gj.full(p.shape, 2.0 + k)
        return ps

    first, second = make(), make()
    gj.nn.utils.clip_grad_norm_(first, 0.25)
    norm = gj.nn.utils.clip_grad_norm_(second, 0.25)
    want = make()
    want_norm = gj.nn.utils.clip_grad_norm_(want, 0.25, compiled=False)
    np.testing.assert_allclose(norm.item(), want_norm.item(), rtol=1e-6)
    for a, b in zip(second + first, want + want):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6)

    @gj.compile
    def scale_and_clear(ps, s):
        ps[0].grad.mul_(s)
        ps[1].grad = None
        (ps[1] * ps[1]).sum().backward()  # a .grad created for the argument

    for _ in range(3):
        ps = make()
        scale_and_clear(ps, 0.5)
        np.testing.assert_array_equal(ps[0].grad.numpy(), [1.0, 1.0, 1.0])
        np.testing.assert_array_equal(ps[1].grad.numpy(), [2.0, 2.0])


@pytest.mark.parametrize("compiled", [False, True])
def test_in_place_change_under_no_grad_keeps_the_history(compiled):
    # A non-leaf changed in place under no_grad keeps its grad_fn, as in PyTorch: the
    # gradient goes through it to what it was computed from. Compiled, the change cut the
    # history: p0.grad None and p1.grad missing the product's term, silently.
    p0 = gj.nn.Parameter(gj.tensor([[0.375, 0.5]]))
    p1 = gj.nn.Parameter(gj.tensor([1.8125, 0.25]))

    def step():
        v = p0 * p1
        w = p0 @ p1
        with gj.no_grad():
            v.unsqueeze(0).zero_()   # through a view
            v[0, 1] = 3.0
            w.zero_()                # the tensor itself
        loss = (v * p1).sum() + (w * p1).sum()
        loss.backward()
        return loss

    loss = (gj.compile(step) if compiled else step)()
    assert loss.item() == 0.75
    # d/dp0 of (p0 * p1) . p1 through the kept history, and of (p0 @ p1) * sum(p1).
    s = 1.8125 + 0.25
    want_p0 = np.array([[1.8125 ** 2 + 1.8125 * s, 0.25 ** 2 + 0.25 * s]])
    np.testing.assert_allclose(p0.grad.numpy(), want_p0, rtol=1e-6)
    # d/dp1: the changed values read directly (0 and 3, and w now 0), plus p0 * p1 and
    # p0 * sum(p1) through the kept histories.
    np.testing.assert_allclose(p1.grad.numpy(), [0.375 * 1.8125 + 0.375 * s,
                                                 3.0 + 0.5 * 0.25 + 0.5 * s], rtol=1e-6)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("make,changed_raises", [
    (lambda x, w: x.sin(), True),      # sin's gradient reads x itself
    (lambda x, w: 2.0 ** x, True),     # so does the exponent's gradient of pow
    (lambda x, w: x * w, False),       # x's gradient reads w, not x
    (lambda x, w: x.tanh(), False),    # tanh's reads its output only
])
def test_changed_saved_value_raises_where_a_wanted_gradient_reads_it(compiled, make,
                                                                       changed_raises):
    # Compiled skipped the check for an input's own gradient: x.sin(); x.add_(1) then
    # backward ran (with cos of the old x) where eager mode (and PyTorch) raise.
    x0 = gj.nn.Parameter(gj.tensor([0.5, 1.0]))
    w = gj.tensor([2.0, 3.0])

    def step():
        x = x0 * 1.0
        y = make(x, w)
        x.add_(1.0)
        y.sum().backward()

    fn = gj.compile(step) if compiled else step
    if changed_raises:
        with pytest.raises(gj.AutogradError, match="modified by an in-place operation"):
            fn()
    else:
        fn()
        assert x0.grad is not None


@pytest.mark.parametrize("keepdim", [False, True])
def test_total_with_kept_dims_beside_row_reductions(keepdim):
    # A fused body with a row reduction (softmax over dim 1) and totals beside it (the
    # backward's sums over every dim, keepdim=True) failed to compile: AssertionError (1, 1)
    # in backend/core/fused.py (the fuzzer's open "unit_dims" bug).
    text = f"""graph f(%x: f64[2,3] {{arg}}, %s: f64[] {{arg}}) {{
      %0, %1 = fused(%x, %s, body='t0 = amax(i0, dims=[1], keepdim=true); t1 = sub(i0, t0); t2 = exp(t1); t3 = sum(t2, dims=[1], keepdim=true); t4 = log(t3); t5 = sub(t1, t4); t6 = mul(t5, i1); t7 = sum(t6, dims=[0, 1], keepdim={str(keepdim).lower()}); t8 = mul(t6, t6); t9 = sum(t8, dims=[0, 1], keepdim=false); return t7, t9') : {"f64[1,1]" if keepdim else "f64[]"}, f64[]
      return %0, %1
    }}"""
    g = parse_graph(text)
    x = np.array([[-0.8, 1.9, 0.3], [1.7, -1.7, 0.1]])
    s = np.array(1.5)
    outs, _ = compile_graph(g)([x, s])
    want, _ = run_graph(g, [x, s])
    for got, ref in zip(outs, want):
        np.testing.assert_allclose(got, ref, rtol=1e-12)

    p1 = gj.nn.Parameter(gj.tensor(1.578125))

    def step(x0):
        v = x0.log_softmax(1) * p1 + p1
        loss = (v * v).mean()
        loss.backward()
        return loss

    xs = gj.tensor([[-0.8046875, 1.9765625], [1.78125, -1.703125]])
    want_loss = step(xs).item()
    want_grad = p1.grad.item()
    p1.grad = None
    np.testing.assert_allclose(gj.compile(step)(xs).item(), want_loss, rtol=1e-6)
    np.testing.assert_allclose(p1.grad.item(), want_grad, rtol=1e-5)


@pytest.mark.parametrize("change", [
    lambda v0: v0.T.mul_(1.5),          # through another view
    lambda v0: v0.clamp_(-0.5, 0.5),    # the tensor itself
    lambda v0: v0[::2, -1].zero_(),     # a strided part of it
])
def test_returned_view_of_a_temporary_changed_in_place_later(change):
    # A view of a tensor made inside the function, taken before an in-place change of that
    # tensor, was returned with the elements from before the change: its root was gone
    # (a local) when the outputs were collected, so the view was never rebuilt.
    b0 = gj.tensor([[-2.0, 0.25], [-1.125, 0.75]])

    def fn():
        v0 = b0 * 2.0 - 1.0
        views = (v0[1, 0:1], v0.permute(1, 0), v0.mT, v0[:, 1])
        change(v0)
        return views

    for got, want in zip(gj.compile(fn)(), fn()):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_saved_value_changed_through_data_before_backward_is_refused():
    # Eagerly (as in PyTorch) p0.data.zero_() is hidden from the version counter and the
    # gradient is computed from the zeroed p0; a graph's VJP reads the value the op was
    # given. Compiled raised eager's in-place error where eager ran: now a TraceError says
    # why it cannot be compiled ([Changes through .data] in graphjit/jit/trace.py).
    p0 = gj.nn.Parameter(gj.tensor([[0.265625]], dtype=gj.float64))
    p3 = gj.nn.Parameter(gj.tensor([[-1.640625]], dtype=gj.float64))

    def step(wrt_p3):
        v2 = p0 @ p3
        p0.data.zero_()
        gj.autograd.backward(v2.sum(), inputs=[p3] if wrt_p3 else [p0])

    with pytest.raises(gj.TraceError, match="changed through its .data"):
        gj.compile(step)(True)
    assert p0.item() == 0.265625 and p3.grad is None  # nothing written back
    gj.compile(step)(False)  # p0's gradient reads p3 only: no refusal, eager's numbers
    np.testing.assert_array_equal(p0.grad.numpy(), [[-1.640625]])
    assert p0.item() == 0.0


@pytest.mark.parametrize("compiled", [False, True])
def test_backward_through_a_view_taken_before_a_recorded_in_place_change_raises(compiled):
    # Eagerly the view's gradient no longer describes its data ([In-place through views] in
    # autograd_tape.py): the backward raises. Compiled ran, differentiating the changed data.
    p2 = gj.nn.Parameter(gj.tensor([[-1.875]]))
    x0 = gj.tensor([[0.5], [0.25]])

    def step():
        v2 = gj.sin(x0 @ p2)
        v4 = gj.broadcast_to(v2, (3, 2, 1))
        v2.mul_(-1.0)
        (v4 * 2.0).sum().backward()

    with pytest.raises(gj.AutogradError, match="ExpandBackward0: the view it made"):
        (gj.compile(step) if compiled else step)()


@pytest.mark.parametrize("compiled", [False, True])
def test_copy_into_a_tensor_with_history_gives_its_history_a_zero_gradient(compiled):
    # PyTorch: v.copy_(c) with autograd recording is CopyBackwards, zero gradient to what v
    # held. Eagerly the gradient went on through v's old history; compiled, v lost
    # requires_grad and backward raised "does not require grad".
    x0 = gj.tensor([[-1.5, -0.75]], dtype=gj.float64, requires_grad=True)
    c = gj.tensor(1.25, dtype=gj.float64)

    def step():
        v = gj.var(x0, (0, 1)) * 1.0
        v.copy_(c)
        (v * 2).backward()
        return v

    out = (gj.compile(step) if compiled else step)()
    assert out.item() == 1.25 and out.requires_grad
    np.testing.assert_array_equal(x0.grad.numpy(), [[0.0, 0.0]])


@pytest.mark.parametrize("compiled", [False, True])
def test_view_used_before_a_recorded_change_of_its_tensor_still_refuses_backward(compiled):
    # The view v0[0] was used (its tensor a temporary), then v0 changed with autograd
    # recording: eagerly the view's node refuses the backward; compiled ran.
    p1 = gj.nn.Parameter(gj.tensor([[1.0078125]]))
    p2 = gj.nn.Parameter(gj.tensor([[0.7890625]]))

    def step():
        v0 = gj.pow(p1, 0.5)
        v1 = gj.sin(p1 @ p2 + v0[0])
        v0.copy_(v1)
        v0.sum().backward()

    with pytest.raises(gj.AutogradError, match="the view it made"):
        (gj.compile(step) if compiled else step)()


@pytest.mark.parametrize("compiled", [False, True])
def test_view_of_a_temporary_saved_after_the_temporary_is_gone(compiled):
    # The traced view v1.T kept a version counter of its own: once v1 (a temporary) was
    # gone, mul's saved v2 read version 0 against the 1 it saved, and the compiled
    # backward raised where eager mode (one counter per view and tensor) runs.
    p1 = gj.nn.Parameter(gj.tensor([[0.4296875, -0.25]]))

    def forward():
        v1 = gj.sin(p1)
        v1.zero_()
        v2 = v1.T
        return (v2 * v2).mean()

    def step():
        loss = forward()  # v1 is gone here
        loss.backward()
        return loss

    loss = (gj.compile(step) if compiled else step)()
    assert loss.item() == 0.0
    np.testing.assert_array_equal(p1.grad.numpy(), [[0.0, 0.0]])


@pytest.mark.parametrize("compiled", [False, True])
def test_change_through_a_detached_view_keeps_the_tensors_history(compiled):
    # v.detach().add_(0.5) changes v's data, not its grad_fn: eagerly the gradient still
    # reaches p through v's history. Compiled, v's new value had no history: p.grad None.
    rng = np.random.default_rng(5)
    p = gj.nn.Parameter(gj.tensor(rng.standard_normal((1, 3)).astype(np.float32)))
    x = gj.tensor(rng.standard_normal((2, 1)).astype(np.float32))

    def step(x):
        v = x @ p + 1.0
        v.detach().add_(0.5)
        loss = (v * v).sum()
        loss.backward()
        return loss

    loss = (gj.compile(step) if compiled else step)(x)
    v = x.numpy() @ p.detach().numpy() + 1.5  # the changed data; d/dv of sum(v^2) = 2v
    np.testing.assert_allclose(loss.item(), (v * v).sum(), rtol=1e-6)
    np.testing.assert_allclose(p.grad.numpy(), x.numpy().T @ (2 * v), rtol=1e-5)


@pytest.mark.parametrize("compiled", [False, True])
def test_saved_output_changed_through_a_detached_view_refuses_backward(compiled):
    # sigmoid saves its output; v0.detach().add_(0.5) changes it, and eager mode's backward
    # through v0's history raises. Compiled ran (the history was cut, so nothing checked).
    p2 = gj.nn.Parameter(gj.tensor([[1.921875]], dtype=gj.float64))
    x0 = gj.tensor([[0.5], [-0.25]], dtype=gj.float64)

    def step(x0):
        v0 = x0 * 1.0
        for it in range(2):
            v0.detach().add_(0.5)
            v0 = gj.sigmoid(v0 @ p2 + x0[it])
        v0.sum().backward()

    with pytest.raises(gj.AutogradError, match="gradient of sigmoid"):
        (gj.compile(step) if compiled else step)(x0)


@pytest.mark.parametrize("mode", ["eager", "compiled", "forward"])
def test_a_value_cast_to_int_takes_no_gradient_so_its_change_needs_no_check(mode):
    # p0.to(int64).float() * p1, then p1 changed under no_grad: mul's gradient for p1 reads
    # only the other operand, which has no gradient path to p0 (through an integer).
    # The tracer counted the int cast's output as on the gradient's path and raised.
    p0 = gj.nn.Parameter(gj.tensor(1.7578125, dtype=gj.float64))
    p1 = gj.nn.Parameter(gj.tensor(-1.0703125, dtype=gj.float64))

    def forward():
        v2 = p0.to(gj.int64).float() * p1
        with gj.no_grad():
            p1.sub_(0.01)
        return v2

    if mode == "forward":  # compiled forward, eager backward outside
        gj.compile(forward)().backward()
    else:
        def step():
            forward().backward()
        (gj.compile(step) if mode == "compiled" else step)()
    assert p0.grad is None
    assert p1.grad.item() == 1.0


@pytest.mark.parametrize("compiled", [False, True])
def test_view_of_a_tensor_changed_then_gone_refuses_backward(compiled):
    # v4 views v3; v3.copy_(p1) (recorded) and then v3 is gone. Eagerly the backward
    # through v4 skipped the view check once v3 was gone and returned pow's gradient,
    # not the copy's (PyTorch rebases v4 on the copy); compiled raised. Both refuse now.
    p1 = gj.nn.Parameter(gj.tensor([1.90625]))

    def forward():
        v3 = p1.pow(-1.5)
        v4 = v3[:, None]
        v3.copy_(p1)
        return v4

    def step():
        forward().sum().backward()

    with pytest.raises(gj.AutogradError, match="the view it made"):
        (gj.compile(step) if compiled else step)()


def test_view_of_a_gone_tensor_may_change_in_place_itself():
    # [Views of dead tensors]: a change after the root is gone is the view's own.
    p = gj.nn.Parameter(gj.tensor([0.5, 2.0]))

    def forward():
        t = p * 3.0
        return t[None, :]

    v = forward()
    v.mul_(2.0)
    v.sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), [6.0, 6.0])


def test_compiled_forward_checks_saved_values_only_for_the_gradients_asked_for():
    p1 = gj.nn.Parameter(gj.tensor([[-1.5078125, -1.7265625]], dtype=gj.float64))
    x0 = gj.tensor(1.765625, dtype=gj.float64, requires_grad=True)
    y = gj.tensor([1])

    def forward(x0, y):
        v = gj.nn.functional.cross_entropy(p1, y, label_smoothing=0.1)
        v *= x0  # mul saves v's old value for x0's gradient only
        return v

    # Fuzz seed 15 graph 9790: the compiled forward checked saved values against every
    # input's gradient at trace time and raised; eager checks only those asked for.
    (want,) = gj.grad(forward(x0, y), [p1])
    (got,) = gj.grad(gj.compile(forward)(x0, y), [p1])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    # x0's gradient reads the changed value: both refuse it, by backward() or by grad().
    for run in (forward, gj.compile(forward)):
        with pytest.raises(gj.AutogradError, match="modified by an in-place operation"):
            run(x0, y).backward()
        with pytest.raises(gj.AutogradError, match="modified by an in-place operation"):
            gj.grad(run(x0, y), [x0])


def test_a_change_through_data_is_seen_after_the_changed_tensor_is_gone():
    # Fuzz seed 16, graph 2442: matmul saved a view of v0 (1-D v0 made 2-D); v0 changed
    # through .data; by backward only the view was alive. The change count sat on v0 and
    # died with it, so the compiled program used v0's old value: p1.grad silently differed
    # from eager's. The count is now kept by the version counter the view shares.
    p1 = gj.nn.Parameter(gj.tensor([[0.7578125]], dtype=gj.float64))
    p2 = gj.nn.Parameter(gj.tensor([-1.1953125], dtype=gj.float64))

    def forward(x0):
        v0 = x0.exp()
        v1 = gj.matmul(v0, p1.t()) + p2
        v0.data.neg_()
        return v1  # v0 dies here

    def step(x0):
        forward(x0).backward()

    step(gj.tensor([0.2890625], dtype=gj.float64))  # eagerly: the gradient of the changed v0
    np.testing.assert_allclose(p1.grad.numpy(), [[-np.exp(0.2890625)]], rtol=1e-15)
    p1.grad = None
    with pytest.raises(gj.TraceError, match="changed through its .data"):
        gj.compile(step)(gj.tensor([0.2890625], dtype=gj.float64))
    assert p1.grad is None and p1.item() == 0.7578125  # nothing written back


@pytest.mark.parametrize("compiled", [False, True])
def test_in_place_on_an_advanced_index_result_with_autograd(compiled):
    # Fuzz seed 16, graph 93: p[:, idx] is a copy (as in PyTorch), but NumPy returns it as a
    # view of its own transposed temporary; eager mode took that for a view of p and refused
    # the in-place change ("its gradient would not reach the tensor it views") where
    # compiled ran.
    p = gj.nn.Parameter(gj.tensor([[-0.84375, -1.59375, -1.2734375]]))

    def step(idx):
        v = p[:, idx]
        v *= 0.5
        (v * v).sum().backward()
        return v

    v = _run(step, compiled)(gj.tensor([2, 0]))
    np.testing.assert_allclose(v.detach().numpy(), [[-1.2734375 / 2, -0.84375 / 2]], rtol=1e-6)
    # d/dp of sum((p[idx] / 2)^2) = p[idx] / 2 at the indexed places
    np.testing.assert_allclose(p.grad.numpy(), [[-0.84375 / 2, 0.0, -1.2734375 / 2]],
                               rtol=1e-6)


def test_a_product_of_a_transposed_product_compiles():
    # Fuzz seed 16, graph 1621: F.linear(w, a @ b) raised KeyError in the gemm pass (it
    # folded the permute of a @ b into the second product after replacing that permute).
    p1 = gj.tensor([[1.3671875, 0.5]])
    p2 = gj.tensor([[0.1484375], [0.25]])
    w = gj.tensor([[0.75, -0.5]])
    f = lambda x: gj.nn.functional.linear(w, gj.matmul(p2, p1 * x))  # noqa: E731
    x = gj.tensor([[0.421875, 2.0]])
    np.testing.assert_allclose(gj.compile(f)(x).numpy(), f(x).numpy(), rtol=1e-6)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_compiled_forward_backward_through_some_outputs_only(device):
    # Fuzz seed 17, graph 6047: a compiled forward returned v.std(0) (equal values: its
    # derivative is infinite) beside the loss; backward from the loss alone gave x.grad NaN
    # (the std output's missing gradient went in as zeros: 0 * inf). Eagerly, only the
    # outputs that got a gradient count ([Gradients from some outputs only]).
    if device == "cuda":
        pytest.importorskip("numba.cuda")

    def forward(x, w):
        v = x.expand(3, 3)
        return v.std(0), (v * w).sum(), (x * x).sum()

    f = gj.compile(forward)
    w = gj.tensor(np.full((3, 3), 0.25, np.float32), device=device)
    for backward_from, want in [((1,), 9 * 0.25), ((2,), 2 * -1.25), ((1, 2), 9 * 0.25 - 2.5)]:
        x = gj.tensor([-1.25], requires_grad=True, device=device)
        outs = f(x, w)
        assert np.isfinite(outs[0].detach().cpu().numpy()).all()
        gj.autograd.backward([outs[i] for i in backward_from])
        np.testing.assert_allclose(x.grad.cpu().numpy(), [want], rtol=1e-6)
    x = gj.tensor([-1.25], requires_grad=True, device=device)
    f(x, w)[0].sum().backward()  # through the std itself: NaN, as eagerly
    assert np.isnan(x.grad.cpu().numpy()).all()


@pytest.mark.parametrize("change", ["data", "no_grad"])
def test_compiled_forward_saves_the_old_value_of_a_parameter_it_changes(change):
    # Fuzz seed 17, graph 6574: v = p * 1.0 is p itself once simplified; the forward then
    # changed p (through .data, or under no_grad); the backward read p again and used its
    # NEW value for v: p.grad silently differed. The old value is now saved by the forward.
    def run(compiled):
        p = gj.nn.Parameter(gj.tensor([[-0.6171875]]))

        def forward():
            v = p * 1.0
            if change == "data":
                p.data.neg_()
            else:
                with gj.no_grad():
                    p.neg_()
            return gj.sigmoid(v @ v + p[0])

        loss = (gj.compile(forward) if compiled else forward)()
        loss.backward()
        return loss.item(), p.grad.item(), p.item()

    eager, compiled = _both(run)
    assert eager[2] == compiled[2] == 0.6171875
    np.testing.assert_allclose(compiled[:2], eager[:2], rtol=1e-6)
    s = 1 / (1 + np.exp(-(0.6171875 ** 2 + 0.6171875)))  # d/dp: (2 v + 1) s (1 - s)
    np.testing.assert_allclose(eager[1], (2 * -0.6171875 + 1) * s * (1 - s), rtol=1e-6)
