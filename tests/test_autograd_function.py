"""graphjit.autograd.Function: custom forward/backward with ctx, eagerly (against gradcheck
and against the same math written with ordinary ops) and inside graphjit.compile (a
training step and a compiled forward, against eager mode), PyTorch's errors, and the
``custom_function`` op that carries a traced Function's gradient (IR text round trip,
decomposition before the backends)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphjit as gj
from graphjit.autograd import Function, once_differentiable
from graphjit.ir import parse_graph, print_graph
from graphjit.ops import custom
from graphjit.testing import assert_close, gradcheck, gradgradcheck

THIS_FILE = os.path.basename(__file__)


# ---- the Functions under test -----------------------------------------------------------------

class ClippedExp(Function):
    """exp(min(x, limit)), its gradient written by hand: g * exp(x) where x < limit."""

    @staticmethod
    def forward(ctx, x, limit):
        y = x.clamp(max=limit).exp()
        ctx.save_for_backward(x, y)  # an input and the output
        ctx.limit = limit            # a non-tensor attribute
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g * y * (x < ctx.limit), None


def clipped_exp_ref(x, limit):
    return x.clamp(max=limit).exp()


class ScaleAndGap(Function):
    """Two outputs and a non-tensor argument: (x * w * k, (x - w) ** 2)."""

    @staticmethod
    def forward(ctx, x, w, k):
        ctx.k = k
        ctx.save_for_backward(x, w)
        return x * w * k, (x - w) ** 2

    @staticmethod
    def backward(ctx, ga, gb):
        x, w = ctx.saved_tensors
        gap = 2 * (x - w) * gb
        gx = ga * w * ctx.k + gap if ctx.needs_input_grad[0] else None
        gw = (ga * x * ctx.k - gap).sum(0) if ctx.needs_input_grad[1] else None
        return gx, gw, None


def scale_and_gap_ref(x, w, k):
    return x * w * k, (x - w) ** 2


class RowNormalize(Function):
    """x / |x| per row, saving the intermediate norm (neither an input nor an output)."""

    @staticmethod
    def forward(ctx, x):
        norm = (x * x).sum(1, keepdim=True).sqrt()
        y = x / norm
        ctx.save_for_backward(y, norm)
        return y

    @staticmethod
    def backward(ctx, g):
        y, norm = ctx.saved_tensors
        return (g - y * (g * y).sum(1, keepdim=True)) / norm


def row_normalize_ref(x):
    return x / (x * x).sum(1, keepdim=True).sqrt()


def f64(rng, *shape, requires_grad=True):
    return gj.tensor(rng.standard_normal(shape), dtype=gj.float64, requires_grad=requires_grad)


def grads_of(fn, tensors, rng):
    """The gradients of a random weighting of fn's outputs."""
    for t in tensors:
        t.grad = None
    outs = fn(*tensors)
    outs = outs if isinstance(outs, tuple) else (outs,)
    total = sum((o * gj.tensor(rng.uniform(-1, 1, o.shape), dtype=o.dtype)).sum() for o in outs)
    total.backward()
    return [t.grad for t in tensors]


# ---- eager: values and gradients --------------------------------------------------------------

def test_clipped_exp_gradcheck_and_ordinary_ops(rng):
    x = f64(rng, 4, 5)
    assert gradcheck(lambda x: ClippedExp.apply(x, 0.3), [x])
    assert_close(ClippedExp.apply(x, 0.3), clipped_exp_ref(x, 0.3))
    seed = rng.integers(1 << 30)
    mine = grads_of(lambda x: ClippedExp.apply(x, 0.3), [x], np.random.default_rng(seed))
    ref = grads_of(lambda x: clipped_exp_ref(x, 0.3), [x], np.random.default_rng(seed))
    assert_close(mine[0], ref[0], rtol=1e-14, atol=0)


def test_two_outputs_with_a_non_tensor_argument(rng):
    x, w = f64(rng, 3, 4), f64(rng, 4)
    assert gradcheck(lambda x, w: ScaleAndGap.apply(x, w, 1.5), [x, w])
    seed = rng.integers(1 << 30)
    mine = grads_of(lambda x, w: ScaleAndGap.apply(x, w, 1.5), [x, w], np.random.default_rng(seed))
    ref = grads_of(lambda x, w: scale_and_gap_ref(x, w, 1.5), [x, w], np.random.default_rng(seed))
    for a, b in zip(mine, ref):
        assert_close(a, b, rtol=1e-13, atol=1e-14)
    a, b = ScaleAndGap.apply(x, w, 1.5)
    assert a.grad_fn is b.grad_fn  # one node for both outputs, as in PyTorch
    assert (a._output_nr, b._output_nr) == (0, 1)
    assert a.grad_fn.name() == "ScaleAndGapBackward"
    assert type(a.grad_fn).__name__ == "ScaleAndGapBackward"


def test_only_one_output_used_gets_zeros_for_the_other(rng):
    x, w = f64(rng, 3, 4), f64(rng, 4)
    _, b = ScaleAndGap.apply(x, w, 2.0)
    b.sum().backward()
    assert_close(x.grad, 2 * (x - w).detach())


def test_saving_an_intermediate(rng):
    x = f64(rng, 3, 5)
    assert gradcheck(RowNormalize.apply, [x])
    seed = rng.integers(1 << 30)
    mine = grads_of(RowNormalize.apply, [x], np.random.default_rng(seed))
    ref = grads_of(row_normalize_ref, [x], np.random.default_rng(seed))
    assert_close(mine[0], ref[0], rtol=1e-12, atol=1e-14)


def test_ctx_needs_input_grad_and_none_gradients(rng):
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, a, n, b):
            seen.append(ctx.needs_input_grad)
            return a * b * n

        @staticmethod
        def backward(ctx, g):
            return g * 2.0, None, None, None, None  # extra trailing Nones are allowed

    a = f64(rng, 3)
    b = f64(rng, 3, requires_grad=False)
    Probe.apply(a, 2, b).sum().backward()
    assert seen == [(True, False, False)]
    assert_close(a.grad, gj.full((3,), 2.0, dtype=gj.float64))
    assert b.grad is None


class MaxAndIndex(Function):
    """Row maxima, with the argmax and a bool mask as non-differentiable outputs."""
    received = []  # what backward got for the non-differentiable outputs

    @staticmethod
    def forward(ctx, x):
        values = x.amax(1)
        index = x.argmax(1)
        above = values > 0
        ctx.mark_non_differentiable(index, above)
        ctx.save_for_backward(x, index)
        return values, index, above

    @staticmethod
    def backward(ctx, g, g_index, g_above):
        MaxAndIndex.received.append((g_index, g_above))
        x, index = ctx.saved_tensors
        return gj.one_hot(index, x.shape[1]).to(x.dtype) * g.unsqueeze(1)


class NoZeros(Function):
    """(2x, 3x) without materialized gradients: None for an output nothing reached."""
    received = []

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, ga, gb):
        NoZeros.received.append((ga, gb))
        if ga is None:
            return gb * 3
        return ga * 2 if gb is None else ga * 2 + gb * 3


def test_mark_non_differentiable_and_materialize_grads(rng):
    x = f64(rng, 4, 6)
    values, index, above = MaxAndIndex.apply(x)
    assert values.requires_grad and not index.requires_grad and not above.requires_grad
    values.sum().backward()
    g_index, g_above = MaxAndIndex.received[-1]
    assert g_index.dtype is gj.int64 and not g_index.numpy().any()  # zeros by default
    assert g_above.dtype is gj.bool and not g_above.numpy().any()
    assert gradcheck(lambda x: MaxAndIndex.apply(x)[0], [x])

    x = f64(rng, 3)
    a, _ = NoZeros.apply(x)
    a.sum().backward()
    assert NoZeros.received[-1][1] is None
    assert_close(x.grad, gj.full((3,), 2.0, dtype=gj.float64))


def test_setup_context_and_keyword_arguments(rng):
    class Scale(Function):
        @staticmethod
        def forward(x, factor=3.0):
            return x * factor

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.factor = inputs[1]

        @staticmethod
        def backward(ctx, g):
            return g * ctx.factor, None

    x = f64(rng, 4)
    Scale.apply(x).sum().backward()
    assert_close(x.grad, gj.full((4,), 3.0, dtype=gj.float64))
    x.grad = None
    Scale.apply(x, factor=0.5).sum().backward()
    assert_close(x.grad, gj.full((4,), 0.5, dtype=gj.float64))


def test_an_input_returned_as_it_is_is_a_new_tensor(rng):
    class Identity(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = f64(rng, 3)
    y = Identity.apply(x)
    assert y is not x and x.grad_fn is None and y.grad_fn.name() == "IdentityBackward"
    y.sum().backward()
    assert_close(x.grad, gj.full((3,), 2.0, dtype=gj.float64))


def test_no_node_without_grad(rng):
    x = f64(rng, 3)
    with gj.no_grad():
        y = ClippedExp.apply(x, 0.0)
    assert not y.requires_grad and y.grad_fn is None
    y = ClippedExp.apply(x.detach(), 0.0)
    assert not y.requires_grad


def test_higher_order_through_a_backward_written_with_graphjit_ops(rng):
    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x ** 2 * g

    x = f64(rng, 5)
    assert gradgradcheck(Cube.apply, [x])
    (g,) = gj.grad(Cube.apply(x).sum(), [x], create_graph=True)
    (gg,) = gj.grad(g.sum(), [x])
    assert_close(gg, 6 * x.detach(), rtol=1e-14, atol=0)

    class Square(Function):  # saves its output: create_graph reaches the node again
        @staticmethod
        def forward(ctx, x):
            y = x * x
            ctx.save_for_backward(x, y)
            return y

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            return 2 * g * y / x  # = 2 x g, through the saved output

    assert gradgradcheck(Square.apply, [x])


def test_once_differentiable(rng):
    class NumpyExp(Function):
        @staticmethod
        def forward(ctx, x):
            y = gj.tensor(np.exp(x.detach().numpy()))
            ctx.save_for_backward(y)
            return y

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return gj.tensor(g.detach().numpy() * y.detach().numpy())

    x = f64(rng, 4)
    assert gradcheck(NumpyExp.apply, [x])
    (g,) = gj.grad(NumpyExp.apply(x).sum(), [x], create_graph=True)
    assert not g.requires_grad  # the seed needs no gradient: nothing to differentiate
    y = NumpyExp.apply(x)
    v = gj.ones_like(y).requires_grad_()
    (g,) = gj.grad(y, [x], grad_outputs=[v], create_graph=True)
    with pytest.raises(gj.AutogradError, match="differentiate twice.*once_differentiable"):
        g.sum().backward()


# ---- eager: errors as PyTorch's -----------------------------------------------------------------

class WrongCount(Function):
    @staticmethod
    def forward(ctx, x, w):
        return x * w

    @staticmethod
    def backward(ctx, g):
        return g


class WrongShape(Function):
    @staticmethod
    def forward(ctx, x):
        return x.sum(1)

    @staticmethod
    def backward(ctx, g):
        return g  # [3], where x is [3, 2]


def test_wrong_number_of_gradients(rng):
    x, w = f64(rng, 3), f64(rng, 3)
    y = WrongCount.apply(x, w)  # the line the error names
    line = f"{THIS_FILE}:{test_wrong_number_of_gradients.__code__.co_firstlineno + 2}"
    with pytest.raises(gj.AutogradError) as info:
        y.sum().backward()
    text = str(info.value)
    assert "function WrongCountBackward returned an incorrect number of gradients " \
           "(expected 2, got 1)" in text
    assert line in text and "WrongCount.backward is at" in text


def test_wrong_gradient_shape(rng):
    x = f64(rng, 3, 2)
    with pytest.raises(gj.ShapeError, match=r"Function WrongShapeBackward returned an invalid "
                       r"gradient at index 0 - got \[3\] but expected shape compatible with "
                       r"\[3, 2\]") as info:
        WrongShape.apply(x).sum().backward()
    assert THIS_FILE in str(info.value)


def test_broadcast_gradients_are_summed_and_non_tensor_gradients_refused(rng):
    class Bias(Function):
        @staticmethod
        def forward(ctx, x, b, k):
            return x + b * k

        @staticmethod
        def backward(ctx, g):
            return g, g, None  # g is [3, 4] for b of [4]: summed to [4]

    x, b = f64(rng, 3, 4), f64(rng, 4)
    Bias.apply(x, b, 1).sum().backward()
    assert_close(b.grad, gj.full((4,), 3.0, dtype=gj.float64))

    class GradForAnInt(Function):
        @staticmethod
        def forward(ctx, x, n):
            return x * n

        @staticmethod
        def backward(ctx, g):
            return g * 2, g

    with pytest.raises(gj.AutogradError, match="gradient different than None at position 2, "
                       "but the corresponding forward input was not a Tensor"):
        GradForAnInt.apply(x, 2).sum().backward()


def test_mark_dirty_is_refused(rng):
    class AddOne_(Function):
        @staticmethod
        def forward(ctx, x):
            x.add_(1)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    x = f64(rng, 3, requires_grad=False)
    with pytest.raises(gj.AutogradError, match="mark_dirty in AddOne_.forward.*not supported"):
        AddOne_.apply(x)


def test_saved_tensors_are_checked_and_freed(rng):
    x = f64(rng, 4)
    y = ClippedExp.apply(x, 10.0)
    y.mul_(2)  # the saved output changed
    with pytest.raises(gj.AutogradError, match="modified by an inplace operation.*output 0 of "
                       "ClippedExpBackward.*version 1; expected version 0"):
        y.sum().backward()
    y = ClippedExp.apply(x, 10.0)
    s = y.sum()
    s.backward(retain_graph=True)
    s.backward()  # retained: works again
    with pytest.raises(gj.AutogradError, match="second time"):
        s.backward()
    assert_close(x.grad, 2 * x.detach().exp())


def test_calling_an_instance_and_missing_methods(rng):
    with pytest.raises(RuntimeError, match=r"ClippedExp.apply"):
        ClippedExp()(f64(rng, 2))

    class NoBackward(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

    with pytest.raises(NotImplementedError, match="backward"):
        NoBackward.apply(f64(rng, 2)).sum().backward()


# ---- compiled -----------------------------------------------------------------------------------

def _model(seed):
    gj.manual_seed(seed)
    lin = gj.nn.Linear(4, 3).double()
    w = gj.tensor(np.random.default_rng(seed).standard_normal(3), dtype=gj.float64,
                  requires_grad=True)
    return lin, w


def _loss(lin, w, x):
    h = lin(x)
    a, b = ScaleAndGap.apply(ClippedExp.apply(h, 0.4), w, 1.5)
    return a.mean() + b.sum() * 0.1 + RowNormalize.apply(h).pow(2).mul(w).sum()


def test_compiled_training_step_matches_eager(rng):
    """One program: forward through three custom Functions (two outputs, non-tensor
    arguments, a saved intermediate), their backward from the gradient programs, SGD."""
    models = [_model(7), _model(7)]
    opts = [gj.optim.SGD(list(lin.parameters()) + [w], lr=0.05, momentum=0.9)
            for lin, w in models]

    def step(lin, w, opt, x):
        opt.zero_grad(set_to_none=False)
        loss = _loss(lin, w, x)
        loss.backward()
        opt.step()
        return loss

    compiled = gj.compile(step)
    for k in range(3):
        x = gj.tensor(rng.standard_normal((5, 4)))
        eager_loss = step(*models[0], opts[0], x)
        compiled_loss = compiled(*models[1], opts[1], x)
        assert_close(compiled_loss, eager_loss, rtol=1e-10, atol=1e-12)
        for (n, p), q in zip(models[0][0].named_parameters(), models[1][0].parameters()):
            assert_close(q, p, rtol=1e-10, atol=1e-12, msg=lambda m: f"step {k} {n}: {m}")
        assert_close(models[1][1], models[0][1], rtol=1e-10, atol=1e-12)
    graph = compiled.graphs()[-1]
    assert not any(n.op.name == "custom_function" for n in graph.nodes)  # decomposed


def test_compiled_forward_then_eager_backward_matches_eager(rng):
    lin, w = _model(3)
    x = gj.tensor(rng.standard_normal((6, 4)))
    compiled = gj.compile(_loss)
    loss_c = compiled(lin, w, x)
    loss_c.backward()
    grads_c = [p.grad.numpy().copy() for p in list(lin.parameters()) + [w]]
    for p in list(lin.parameters()) + [w]:
        p.grad = None
    loss_e = _loss(lin, w, x)
    loss_e.backward()
    assert_close(loss_c, loss_e, rtol=1e-10, atol=1e-12)
    for g, p in zip(grads_c, list(lin.parameters()) + [w]):
        assert_close(gj.tensor(g), p.grad, rtol=1e-10, atol=1e-12)


def _lowered(fn, *args):
    """IR of fn traced (no Numba compilation)."""
    return gj.compile(fn).lower(*args)


def _run_traced(fn, x, *others):
    """``fn(x)`` traced, its gradient requests expanded and its custom_function nodes
    decomposed, run by the reference interpreter (no Numba); ``others``: the arrays of the
    other inputs the trace lifted, in order."""
    from graphjit.ir import run_graph
    from passes.autodiff import autodiff
    from passes.decompose import decompose
    from passes.pipeline import run_pipeline

    graph = parse_graph(_lowered(fn, x).as_text("trace"))
    graph, _ = run_pipeline(graph, verify=True, passes=[autodiff, decompose])
    assert {n.op.name for n in graph.nodes}.isdisjoint({"custom_function", "grad"})
    rest = iter(others)
    feeds = [x.detach().numpy() if v.role == "arg" else next(rest) for v in graph.inputs]
    return run_graph(graph, feeds)[0]


def test_traced_ir_round_trips_and_differentiates_after_parsing(rng):
    from passes.pipeline import run_pipeline

    x = f64(rng, 3, 4)
    w = f64(rng, 4)

    def fn(x, w):
        a, b = ScaleAndGap.apply(x, w, 2.0)
        return gj.grad((a * b).sum() + ClippedExp.apply(x, 0.1).sum(), [x, w])

    text = _lowered(fn, x, w).as_text("trace")
    assert "custom_function(" in text and "key='ScaleAndGap_" in text and "index=1" in text
    graph = parse_graph(text)
    assert print_graph(graph) == text
    optimised, _ = run_pipeline(graph, verify=True)
    ops = {n.op.name for n in optimised.nodes}
    assert "custom_function" not in ops and "grad" not in ops


def test_a_forgotten_rule_names_its_key():
    with pytest.raises(gj.GraphjitError, match="no gradient rule is registered under key "
                       "'Gone_0'"):
        custom.rule("Gone_0")


def test_compiled_errors_come_at_trace_time_at_the_users_line(rng):
    x, w = f64(rng, 3), f64(rng, 3)

    def wrong(x, w):
        return WrongCount.apply(x, w).sum()  # the line the error names

    line = f"{THIS_FILE}:{wrong.__code__.co_firstlineno + 1}"
    with pytest.raises(gj.AutogradError, match="incorrect number of gradients") as info:
        gj.compile(wrong)(x, w)
    assert line in str(info.value)

    class ReadsData(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * 2

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * float(x.sum())

    with pytest.raises(gj.TraceError, match="float"):
        gj.compile(lambda x: ReadsData.apply(x).sum())(x)

    class Dirty(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.mark_dirty(x)
            return x

    with pytest.raises(gj.AutogradError, match="mark_dirty"):
        gj.compile(lambda x: Dirty.apply(x))(x)


def test_compiled_backward_programs_hold_what_backward_reads(rng):
    """A backward that reads a tensor it was not given (a global) and builds with creation
    functions and a masked assignment on a clone (the PyTorch tutorial's ReLU)."""
    scale = gj.tensor([0.5, 2.0, -1.0], dtype=gj.float64)

    class MyReLU(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            grad = g.clone()
            grad[x < 0] = 0
            return grad * scale + gj.zeros(3, dtype=gj.float64)

    def fn(x):
        return gj.grad(MyReLU.apply(x).sum(), [x])[0]

    x = f64(rng, 3)
    assert "where(" in _lowered(fn, x).as_text("autodiff")
    expected = fn(x)
    assert_close(expected, (x.detach() > 0).to(gj.float64) * scale)
    (got,) = _run_traced(fn, x, scale.numpy())
    np.testing.assert_array_equal(got, expected.numpy())


def test_compiled_non_differentiable_outputs_and_unmaterialized_grads_match_eager(rng):
    """Int and bool outputs, a zero int gradient made in the gradient program, None for an
    output no gradient reaches: the traced program (run by the reference interpreter after
    autodiff and decompose, no Numba) gives eager's values and gradients."""
    def fn(x):
        values, index, above = MaxAndIndex.apply(x)
        _, b = NoZeros.apply(x)
        loss = (values * above).sum() + (b * b).sum()
        return (loss.detach(), index) + gj.grad(loss, [x])

    x = f64(rng, 4, 6)
    got = _run_traced(fn, x, np.arange(6))  # (one_hot's arange, made in backward, is lifted)
    for g, e in zip(got, fn(x)):
        np.testing.assert_allclose(g, e.detach().numpy(), rtol=1e-14, atol=0)

