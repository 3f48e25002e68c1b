"""PyTorch's documented autograd semantics, checked on graphjit's eager tape.

Every test asserts values against closed forms or finite differences (never only "it ran").
The first tests follow the "A Gentle Introduction to torch.autograd" walkthrough.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from graphjit.testing import assert_close, gradcheck


def f64(values, requires_grad=False):
    return gj.tensor(np.asarray(values, dtype=np.float64), dtype=gj.float64,
                     requires_grad=requires_grad)


def values(t):
    return t.detach().numpy()


# ---- the tutorial walkthrough ---------------------------------------------------------------

def _tutorial_inputs():
    a = gj.tensor([2.0, 3.0], requires_grad=True)
    b = gj.tensor([6.0, 4.0], requires_grad=True)
    return a, b


def test_tutorial_backward_with_gradient():
    a, b = _tutorial_inputs()
    Q = 3 * a ** 3 - b ** 2
    assert_close(Q, np.array([3 * 8 - 36, 3 * 27 - 16], dtype=np.float32))
    Q.backward(gradient=gj.tensor([1.0, 1.0]))
    assert_close(a.grad, np.array([36.0, 81.0], dtype=np.float32))  # 9 a^2
    assert_close(b.grad, np.array([-12.0, -8.0], dtype=np.float32))  # -2 b
    assert_close(a.grad, 9 * values(a) ** 2)
    assert_close(b.grad, -2 * values(b))


def test_tutorial_backward_of_sum():
    a, b = _tutorial_inputs()
    Q = 3 * a ** 3 - b ** 2
    Q.sum().backward()
    assert_close(a.grad, np.array([36.0, 81.0], dtype=np.float32))
    assert_close(b.grad, np.array([-12.0, -8.0], dtype=np.float32))


def test_vector_jacobian_product_weights_rows():
    a, b = _tutorial_inputs()
    Q = 3 * a ** 3 - b ** 2
    Q.backward(gradient=gj.tensor([0.5, -2.0]))
    assert_close(a.grad, np.array([0.5 * 36.0, -2.0 * 81.0], dtype=np.float32))
    assert_close(b.grad, np.array([0.5 * -12.0, -2.0 * -8.0], dtype=np.float32))


# ---- graph structure: requires_grad, is_leaf, grad_fn ---------------------------------------

def test_requires_grad_propagation():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = gj.tensor([3.0, 4.0])
    assert x.requires_grad and not y.requires_grad
    assert (x + y).requires_grad  # any input requiring grad
    assert (y * x).requires_grad
    assert not (y * 2.0).requires_grad  # no input requiring grad
    assert not (y + y).requires_grad
    assert gj.exp(x).requires_grad and not gj.exp(y).requires_grad
    assert gj.cat([y, x]).requires_grad
    # integer and bool results never require grad
    assert not (x > 1.0).requires_grad
    assert not x.argmax().requires_grad
    assert_close(x + y, np.array([4.0, 6.0], dtype=np.float32))


def test_is_leaf():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = gj.tensor([3.0, 4.0])
    assert x.is_leaf and y.is_leaf
    assert not (x * 2.0).is_leaf
    assert (y * 2.0).is_leaf  # tensors that do not require grad are leaves by convention
    assert x.detach().is_leaf
    with gj.no_grad():
        assert (x * 2.0).is_leaf


def test_grad_fn_names_and_next_functions():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = gj.tensor([3.0, 4.0])
    assert x.grad_fn is None and y.grad_fn is None
    z = x * y
    assert "Mul" in z.grad_fn.name()
    assert z.grad_fn.name() == "MulBackward0"
    (acc, _), (none, _) = z.grad_fn.next_functions
    assert type(acc).__name__ == "AccumulateGrad" and acc.name() == "AccumulateGrad"
    assert acc.variable is x
    assert none is None  # y does not require grad
    w = gj.exp(z).sum()
    assert w.grad_fn.name() == "SumBackward0"
    assert w.grad_fn.next_functions[0][0].name() == "ExpBackward0"
    assert w.grad_fn.next_functions[0][0].next_functions[0][0] is z.grad_fn
    # a leaf used twice has one AccumulateGrad node
    v = x * x
    assert v.grad_fn.next_functions[0][0] is v.grad_fn.next_functions[1][0]
    assert_close(w, np.float32(np.exp(3.0) + np.exp(8.0)), rtol=1e-6, atol=0.0)


def test_grad_is_none_before_backward_and_for_non_leaves():
    x = gj.tensor([1.0, -2.0], requires_grad=True)
    assert x.grad is None
    z = x * 3.0
    loss = (z * z).sum()
    loss.backward()
    assert z.grad is None  # non-leaf without retain_grad
    assert_close(x.grad, 18.0 * values(x))  # d/dx (3x)^2 = 18x


# ---- backward semantics ---------------------------------------------------------------------

def test_gradients_accumulate_across_backward_calls():
    x = f64([0.5, -1.0, 2.0], requires_grad=True)
    (x ** 2).sum().backward()
    first = x.grad
    assert_close(first, 2 * values(x))
    (x ** 2).sum().backward()  # a new graph, no zeroing in between
    assert_close(x.grad, 4 * values(x))
    assert x.grad is first  # accumulated in place into the same tensor, as in PyTorch
    (gj.sin(x)).sum().backward()
    assert_close(x.grad, 4 * values(x) + np.cos(values(x)))


def test_zeroing_and_setting_grad():
    x = f64([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    x.grad.zero_()
    assert_close(x.grad, np.zeros(2))
    (x * 3.0).sum().backward()
    assert_close(x.grad, np.full(2, 3.0))
    x.grad = None  # zero_grad(set_to_none=True)
    (x * 5.0).sum().backward()
    assert_close(x.grad, np.full(2, 5.0))


def test_non_scalar_backward_needs_gradient():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(gj.AutogradError, match="scalar"):
        y.backward()
    assert x.grad is None
    y.backward(gj.ones_like(y))  # with a gradient it works
    assert_close(x.grad, np.array([2.0, 2.0], dtype=np.float32))


def test_single_element_output_needs_no_gradient():
    x = gj.tensor([3.0], requires_grad=True)
    (x * x).backward()  # shape (1,), one element: an implicit gradient of 1
    assert_close(x.grad, np.array([6.0], dtype=np.float32))


def test_backward_inputs_restricts_accumulation():
    x = f64([1.0, 2.0], requires_grad=True)
    w = f64([3.0, 4.0], requires_grad=True)
    (x * w).sum().backward(inputs=[x])
    assert_close(x.grad, values(w))
    assert w.grad is None


def test_grad_with_respect_to_an_intermediate():
    x = f64([0.5, -1.0], requires_grad=True)
    h = x * 3.0
    y = (gj.exp(h) * x).sum()
    gh, gx = gj.grad(y, [h, x])
    xv = values(x)
    assert_close(gh, np.exp(3 * xv) * xv)
    assert_close(gx, np.exp(3 * xv) * (1 + 3 * xv))


def test_grad_of_output_without_grad_raises():
    x = f64([1.0], requires_grad=True)
    with gj.no_grad():
        y = (x * 2.0).sum()
    with pytest.raises(gj.AutogradError):
        gj.grad(y, x)


def test_backward_gradient_shape_must_match():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(gj.ShapeError):
        y.backward(gj.ones(3))
    assert x.grad is None


def test_backward_on_tensor_without_grad_raises():
    y = gj.tensor([1.0, 2.0]).sum()
    with pytest.raises(gj.AutogradError):
        y.backward()


def test_backward_twice_without_retain_graph_raises():
    x = f64([1.5, -0.5], requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    assert_close(x.grad, 2 * values(x))
    with pytest.raises(gj.AutogradError, match="retain_graph"):
        loss.backward()
    assert_close(x.grad, 2 * values(x))  # the failed call added nothing


def test_retain_graph_allows_a_second_backward():
    x = f64([1.5, -0.5], requires_grad=True)
    loss = (x * x * x).sum()
    loss.backward(retain_graph=True)
    assert_close(x.grad, 3 * values(x) ** 2)
    loss.backward()
    assert_close(x.grad, 6 * values(x) ** 2)


def test_retain_grad_on_non_leaf():
    x = f64([1.0, -2.0, 0.5], requires_grad=True)
    y = x * 2.0
    y.retain_grad()
    assert y.retains_grad
    z = (y * y).sum()
    z.backward()
    assert_close(y.grad, 2 * values(y))  # dz/dy = 2y
    assert_close(x.grad, 8 * values(x))  # dz/dx = 2y * 2 = 8x


def test_detach_stops_gradients():
    x = f64([1.0, 2.0, -3.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert_close(d, values(x))
    (x * d).sum().backward()
    assert_close(x.grad, values(x))  # d/dx (x * const) = const = x, not 2x
    # detach shares storage with the original, as in PyTorch
    assert np.shares_memory(d.numpy(), x.detach().numpy())


def test_requires_grad_():
    x = f64([1.0, 2.0])
    assert x.requires_grad_() is x
    assert x.requires_grad and x.is_leaf
    (x ** 2).sum().backward()
    assert_close(x.grad, 2 * values(x))
    x.requires_grad_(False)
    assert not (x * 2.0).requires_grad
    y = f64([1.0], requires_grad=True) * 2.0
    with pytest.raises(gj.AutogradError):
        y.requires_grad_(False)  # only leaves can change requires_grad


def test_frozen_leaves_get_no_grad():
    x = f64([[1.0, 2.0], [3.0, 4.0]])
    w = f64([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)
    b = f64([0.1, 0.2], requires_grad=True)
    b.requires_grad = False  # frozen, like a frozen parameter
    loss = ((x @ w + b) ** 2).sum()
    loss.backward()
    assert b.grad is None
    assert x.grad is None
    r = values(x) @ values(w) + values(b)
    assert_close(w.grad, values(x).T @ (2 * r))


def test_fan_out_sums_gradients():
    x = f64([0.5, -1.5, 2.0], requires_grad=True)
    (x * x).sum().backward()
    assert_close(x.grad, 2 * values(x))
    x.grad = None
    y = x + x
    (y * x).sum().backward()  # 2x^2 -> 4x
    assert_close(x.grad, 4 * values(x))
    x.grad = None
    e = gj.exp(x)
    (e * e + e).sum().backward()  # d/dx (e^2x + e^x) = 2e^2x + e^x
    xv = values(x)
    assert_close(x.grad, 2 * np.exp(2 * xv) + np.exp(xv), rtol=1e-12, atol=1e-12)


def test_unrolled_loop_matches_finite_differences(rng):
    n = 3
    w = f64(rng.uniform(-0.8, 0.8, size=(n,)), requires_grad=True)
    x = f64(rng.uniform(-1.0, 1.0, size=(n,)), requires_grad=True)
    h0 = f64(rng.uniform(-0.5, 0.5, size=(n,)), requires_grad=True)

    def run(w, x, h0):
        h = h0
        for _ in range(20):
            h = gj.tanh(h * w + x)
        return h

    assert gradcheck(run, (w, x, h0))
    # and against hand-written backpropagation through time
    wv, xv, hv = values(w), values(x), values(h0)
    hs = [hv]
    for _ in range(20):
        hs.append(np.tanh(hs[-1] * wv + xv))
    gh, gw, gx = np.ones(n), np.zeros(n), np.zeros(n)
    for t in range(20, 0, -1):
        pre = gh * (1 - hs[t] ** 2)
        gw += pre * hs[t - 1]
        gx += pre
        gh = pre * wv
    run(w, x, h0).sum().backward()
    assert_close(w.grad, gw, rtol=1e-10, atol=1e-12)
    assert_close(x.grad, gx, rtol=1e-10, atol=1e-12)
    assert_close(h0.grad, gh, rtol=1e-10, atol=1e-12)


def test_integer_index_gradient_accumulates_repeats():
    x = f64([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 1]].sum().backward()
    assert_close(x.grad, np.array([2.0, 1.0, 0.0]))
    x.grad = None
    idx = gj.tensor([2, 2, 2, 0])
    (x[idx] * f64([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert_close(x.grad, np.array([4.0, 0.0, 6.0]))


def test_gather_and_cross_entropy_gradient():
    logits = f64([[1.0, 2.0, 0.5], [0.1, -1.0, 0.3]], requires_grad=True)
    target = gj.tensor([1, 2])
    loss = -gj.log_softmax(logits, -1)[gj.arange(2), target].mean()
    loss.backward()
    lv = values(logits)
    p = np.exp(lv - lv.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    onehot = np.eye(3)[[1, 2]]
    assert_close(loss, -np.log(p[[0, 1], [1, 2]]).mean(), rtol=1e-12, atol=1e-12)
    assert_close(logits.grad, (p - onehot) / 2, rtol=1e-10, atol=1e-12)


def test_max_ties_share_gradient():
    x = f64([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.amax().backward()
    assert_close(x.grad, np.array([0.0, 0.5, 0.5, 0.0]))
    y = f64([2.0, 2.0], requires_grad=True)
    gj.maximum(y, f64([2.0, 1.0])).sum().backward()
    assert_close(y.grad, np.array([0.5, 1.0]))


# ---- graphjit.grad --------------------------------------------------------------------------

def test_grad_with_grad_outputs():
    x = f64([1.0, -2.0, 3.0], requires_grad=True)
    y = x ** 2
    v = f64([1.0, 0.5, -1.0])
    (g,) = gj.grad(y, x, grad_outputs=v)
    assert_close(g, 2 * values(x) * values(v))
    assert x.grad is None  # grad() never touches .grad
    assert not g.requires_grad


def test_grad_of_several_inputs_and_outputs():
    x = f64([1.0, 2.0], requires_grad=True)
    w = f64([3.0, -1.0], requires_grad=True)
    y1 = (x * w).sum()
    y2 = (x ** 2).sum()
    gx, gw = gj.grad([y1, y2], [x, w])
    assert_close(gx, values(w) + 2 * values(x))
    assert_close(gw, values(x))


def test_grad_allow_unused():
    x = f64([1.0, 2.0], requires_grad=True)
    unused = f64([5.0], requires_grad=True)
    y = (x * x).sum()
    with pytest.raises(gj.AutogradError, match="allow_unused"):
        gj.grad(y, [x, unused], retain_graph=True)
    gx, gu = gj.grad(y, [x, unused], allow_unused=True)
    assert gu is None
    assert_close(gx, 2 * values(x))


def test_create_graph_higher_derivatives():
    x = f64([0.5, -1.0, 2.0], requires_grad=True)
    y = (x ** 3).sum()
    (g1,) = gj.grad(y, x, create_graph=True)
    assert g1.requires_grad
    assert_close(g1, 3 * values(x) ** 2)
    (g2,) = gj.grad(g1.sum(), x, create_graph=True)
    assert_close(g2, 6 * values(x))  # d2/dx2 x^3 = 6x
    (g3,) = gj.grad(g2.sum(), x)
    assert_close(g3, np.full(3, 6.0))  # third derivative = 6


def test_create_graph_through_backward():
    x = f64([0.5, 1.5], requires_grad=True)
    y = (gj.sin(x) * x).sum()
    y.backward(create_graph=True)
    xv = values(x)
    assert_close(x.grad, np.cos(xv) * xv + np.sin(xv))
    assert x.grad.requires_grad  # the gradient is itself on the tape
    (h,) = gj.grad(x.grad.sum(), x)
    assert_close(h, -np.sin(xv) * xv + 2 * np.cos(xv))


def test_hessian_vector_product():
    x = f64([1.0, 2.0], requires_grad=True)
    f = x[0] ** 2 * x[1] + x[1] ** 3  # H = [[2 x1, 2 x0], [2 x0, 6 x1]]
    (g,) = gj.grad(f, x, create_graph=True)
    v = f64([1.0, -1.0])
    (hv,) = gj.grad((g * v).sum(), x)
    x0, x1 = values(x)
    assert_close(hv, np.array([[2 * x1, 2 * x0], [2 * x0, 6 * x1]]) @ values(v))


# ---- grad mode ------------------------------------------------------------------------------

def test_no_grad_context_manager():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    with gj.no_grad():
        assert not gj.is_grad_enabled()
        y = x * 2.0
    assert gj.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert_close(y, np.array([2.0, 4.0], dtype=np.float32))


def test_no_grad_decorator():
    @gj.no_grad()
    def double(t):
        assert not gj.is_grad_enabled()
        return t * 2.0

    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = double(x)
    assert not y.requires_grad
    assert gj.is_grad_enabled()
    assert_close(y, np.array([2.0, 4.0], dtype=np.float32))


def test_enable_grad_inside_no_grad():
    x = f64([1.0, 2.0], requires_grad=True)
    with gj.no_grad():
        with gj.enable_grad():
            y = x * x
        z = x * x
    assert y.requires_grad and not z.requires_grad
    y.sum().backward()
    assert_close(x.grad, 2 * values(x))

    @gj.enable_grad()
    def square(t):
        return t * t

    with gj.no_grad():
        s = square(x)
    assert s.requires_grad


def test_set_grad_enabled():
    x = gj.tensor([1.0], requires_grad=True)
    with gj.set_grad_enabled(False):
        assert not (x * 2.0).requires_grad
    assert gj.is_grad_enabled()
    with gj.set_grad_enabled(True):
        assert (x * 2.0).requires_grad
    gj.set_grad_enabled(False)
    try:
        assert not gj.is_grad_enabled()
        assert not (x * 2.0).requires_grad
    finally:
        gj.set_grad_enabled(True)
    assert (x * 2.0).requires_grad


# ---- in-place operations and version counters ------------------------------------------------

def test_inplace_on_saved_tensor_raises():
    x = f64([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    z = y * y  # mul saves y for its gradient
    y.add_(1.0)
    with pytest.raises(gj.AutogradError) as info:
        z.sum().backward()
    text = str(info.value)
    assert "in-place" in text and "version" in text


def test_inplace_on_saved_output_raises():
    x = f64([0.5, 1.0], requires_grad=True)
    e = gj.exp(x)  # exp's gradient reads its output
    e.mul_(2.0)
    with pytest.raises(gj.AutogradError, match="in-place"):
        e.sum().backward()


def test_inplace_on_unsaved_tensor_is_fine():
    x = f64([1.0, 2.0], requires_grad=True)
    y = x + 1.0
    z = y + 2.0  # add saves nothing
    y.add_(x)  # y is now 2x + 1, recorded on the tape
    assert_close(y, 2 * values(x) + 1.0)
    assert "Add" in y.grad_fn.name() and not y.is_leaf
    (z.sum() + y.sum()).backward()
    assert_close(x.grad, np.full(2, 1.0 + 2.0))


def test_inplace_scalar_mul_on_non_leaf_keeps_gradient():
    # PyTorch: y.mul_(3.0) saves only the scalar, so backward through it works.
    x = f64([1.0, 2.0], requires_grad=True)
    y = x + 1.0
    y.mul_(3.0)
    assert_close(y, 3 * (values(x) + 1.0))
    assert "Mul" in y.grad_fn.name()
    y.sum().backward()
    assert_close(x.grad, np.full(2, 3.0))


def test_inplace_on_base_of_saved_view_raises():
    # a view shares its base's version counter, so modifying the base invalidates the view
    x = f64([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1.0
    v = y[0:2]
    z = v * v  # saves the view
    y.add_(1.0)
    with pytest.raises(gj.AutogradError, match="in-place"):
        z.sum().backward()


def test_inplace_through_detach_is_detected():
    # PyTorch: detach() shares storage and the version counter, so misuse is caught
    x = f64([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    x.detach().mul_(2.0)
    assert_close(x, np.array([2.0, 4.0]))
    with pytest.raises(gj.AutogradError, match="in-place"):
        y.backward()


def test_inplace_through_data_is_invisible_to_autograd():
    # PyTorch: .data shares storage but has its own version counter; changes through it are
    # not tracked, and backward uses the new values (the 0.4 migration guide's example)
    w = f64([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    w.data.mul_(2.0)  # invisible to autograd: the gradient uses the new values
    loss.backward()
    assert_close(w.grad, np.array([4.0, 8.0]))


def test_inplace_on_leaf_requiring_grad_raises():
    w = f64([1.0, 2.0], requires_grad=True)
    with pytest.raises(gj.AutogradError, match="leaf"):
        w.add_(1.0)
    assert_close(w, np.array([1.0, 2.0]))
    with pytest.raises(gj.AutogradError):
        w.mul_(2.0)
    assert_close(w, np.array([1.0, 2.0]))


def test_inplace_updates_under_no_grad():
    w = f64([1.0, -2.0], requires_grad=True)
    (w ** 2).sum().backward()
    g = values(w.grad).copy()
    with gj.no_grad():
        w.sub_(w.grad, alpha=0.1)  # an SGD step
        w.mul_(0.5)
        w.add_(gj.ones_like(w))
    expected = (np.array([1.0, -2.0]) - 0.1 * g) * 0.5 + 1.0
    assert_close(w, expected)
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    # the updated values are what the next forward sees
    w.grad = None
    (w ** 2).sum().backward()
    assert_close(w.grad, 2 * expected)


def test_inplace_after_use_in_later_graph_only():
    w = f64([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    loss.backward()
    with gj.no_grad():
        w.sub_(0.5)
    # a fresh graph after the update works and sees the new values
    (w * w).sum().backward()
    assert_close(w.grad, 2 * np.array([1.0, 2.0]) + 2 * np.array([0.5, 1.5]))


# ---- conversions and printing ---------------------------------------------------------------

def test_numpy_on_requires_grad_tensor_raises():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(gj.AutogradError, match="detach"):
        x.numpy()
    np.testing.assert_array_equal(x.detach().numpy(), np.array([1.0, 2.0], dtype=np.float32))
    y = gj.tensor([1.0, 2.0])
    assert y.numpy() is y.numpy() or np.shares_memory(y.numpy(), y.numpy())


def test_item():
    x = f64([1.5, -2.0], requires_grad=True)
    s = (x * x).sum()
    v = s.item()
    assert isinstance(v, float) and v == 1.5 ** 2 + 4.0
    i = gj.tensor([3, 4]).sum().item()
    assert isinstance(i, int) and i == 7
    b = (gj.tensor([1.0]) > 0).item()
    assert b is True
    with pytest.raises(gj.ShapeError):
        x.item()


def test_repr_shows_autograd_state():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], requires_grad=True)"
    assert repr(x * 2.5) == "tensor([2.5000, 5.0000], grad_fn=<MulBackward0>)"
    assert repr(gj.tensor([1.0])) == "tensor([1.])"


@pytest.mark.parametrize("make,text", [
    (lambda: gj.tensor([1.5, 2.25]), "tensor([1.5000, 2.2500])"),
    (lambda: gj.tensor(3.5), "tensor(3.5000)"),
    (lambda: gj.tensor([-12.0, -8.0]), "tensor([-12.,  -8.])"),
    (lambda: gj.tensor([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
    (lambda: gj.tensor([float("nan"), 1.5, float("inf")]), "tensor([   nan, 1.5000,    inf])"),
    (lambda: gj.arange(2000.0), "tensor([   0.,    1.,    2., ..., 1997., 1998., 1999.])"),
    (lambda: gj.tensor([1.0], dtype=gj.float64), "tensor([1.], dtype=graphjit.float64)"),
    (lambda: gj.tensor([[1, 2], [3, 4]]), "tensor([[1, 2],\n        [3, 4]])"),
    (lambda: gj.tensor([True, False]), "tensor([ True, False])"),
])
def test_repr_formats_numbers_like_torch(make, text):
    assert repr(make()) == text


def test_no_grad_decorates_without_parentheses():
    @gj.no_grad
    def f(x):
        return x * 2

    @gj.enable_grad
    def g(x):
        return x * 2

    x = gj.ones(2, requires_grad=True)
    assert not f(x).requires_grad
    with gj.no_grad():
        assert g(x).requires_grad


def test_numpy_conversion_of_a_tensor_that_requires_grad_is_an_error():
    x = gj.ones(2, requires_grad=True)
    for convert in (lambda: x.numpy(), lambda: np.asarray(x)):
        with pytest.raises(gj.AutogradError, match="detach"):
            convert()
    np.testing.assert_array_equal(np.asarray(x.detach()), [1.0, 1.0])


# ---- in-place operators and copy_ (the tutorial's manual update) ----------------------------

def test_augmented_assignment_updates_in_place_under_no_grad():
    w = gj.tensor([1.0, 2.0], requires_grad=True)
    alias = w
    (w * w).sum().backward()
    with gj.no_grad():
        w -= 0.1 * w.grad
        w *= 2.0
        w += 1.0
        w /= 2.0
    assert w is alias and w.requires_grad and w.is_leaf
    np.testing.assert_allclose(w.detach().numpy(), ((np.array([1.0, 2.0]) * 0.8) * 2 + 1) / 2, rtol=1e-6)
    with pytest.raises(gj.AutogradError, match="leaf tensor that requires grad"):
        w += 1.0  # in grad mode, as in PyTorch


def test_copy_from_a_tensor_that_requires_grad_carries_its_gradient():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    s = gj.tensor([7.0, 8.0], requires_grad=True)
    y = x * 3
    y.copy_(s)
    (y * y).sum().backward()
    np.testing.assert_allclose(s.grad.numpy(), [14.0, 16.0])
    assert x.grad is None or not x.grad.numpy().any()  # y's old value no longer counts
    t = gj.zeros(2)
    t.copy_(s)
    assert t.requires_grad


# ---- in-place changes through views: a clear error, never a wrong gradient -------------------

def _view_of_modified_then_backward():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y[0:1].mul_(5)
    y.sum().backward()


def _base_modified_then_view_backward():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    v = y[0:1]
    y.mul_(5)
    v.sum().backward()


def _view_of_leaf_modified():
    x = gj.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[0:2].add_(10)


@pytest.mark.parametrize("case", [_view_of_modified_then_backward, _base_modified_then_view_backward,
                                  _view_of_leaf_modified])
def test_in_place_through_views_is_an_error(case):
    with pytest.raises(gj.AutogradError, match="view"):
        case()


def test_in_place_on_views_without_autograd_and_on_plain_results_still_work():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y.mul_(5)  # not a view: the tape records it
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])
    with gj.no_grad():
        x[0:1].add_(10)  # an optimizer-style update of a view
    np.testing.assert_allclose(x.detach().numpy(), [11.0, 2.0])


def test_copy_broadcasts_and_casts_its_source():
    t = gj.zeros(2, 3)
    src = gj.tensor([1.0, 2.0, 3.0], dtype=gj.float64, requires_grad=True)
    t.copy_(src)
    assert t.dtype is gj.float32 and t.requires_grad
    np.testing.assert_array_equal(t.detach().numpy(), np.tile([1.0, 2.0, 3.0], (2, 1)))
    (t * gj.tensor([[1.0], [2.0]])).sum().backward()
    np.testing.assert_allclose(src.grad.numpy(), [3.0, 3.0, 3.0])  # summed over the broadcast
    with pytest.raises(gj.ShapeError, match=r"cannot expand shape \(3,\) to \(2,\)"):
        gj.zeros(2).copy_(gj.ones(3))
