"""Anomaly mode (graphjit.autograd.detect_anomaly / set_detect_anomaly), eager and compiled.

The eager tests compile nothing. The compiled ones use two tiny programs (a training step
with SGD + momentum, a forward whose backward is compiled); the error a compiled call
raises is compared with the one eager mode raises for the same code.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import graphjit as gj
from graphjit.autograd import (AnomalyError, detect_anomaly, is_anomaly_check_nan_enabled,
                               is_anomaly_enabled, set_detect_anomaly)

pytestmark = pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")

with open(__file__) as _f:
    _SOURCE = _f.read().splitlines()


def _line(marker: str) -> int:
    """The line of this file that ends with ``# <marker>``."""
    found = [i + 1 for i, text in enumerate(_SOURCE) if text.rstrip().endswith(f"# <{marker}>")]
    assert len(found) == 1, marker
    return found[0]


def _at(marker: str) -> str:
    return f"{__file__}:{_line(marker)}"


@pytest.fixture(autouse=True)
def _anomaly_off():
    assert not is_anomaly_enabled()
    yield
    set_detect_anomaly(False)  # a failing test must not leave it on for the next


# ---- the switches -------------------------------------------------------------------------------

def test_modes_nest_and_restore():
    assert not is_anomaly_enabled() and is_anomaly_check_nan_enabled()
    with detect_anomaly():
        assert is_anomaly_enabled() and is_anomaly_check_nan_enabled()
        with detect_anomaly(check_nan=False):
            assert is_anomaly_enabled() and not is_anomaly_check_nan_enabled()
            with set_detect_anomaly(False):
                assert not is_anomaly_enabled()
            assert is_anomaly_enabled() and not is_anomaly_check_nan_enabled()
        assert is_anomaly_enabled() and is_anomaly_check_nan_enabled()
    assert not is_anomaly_enabled()
    set_detect_anomaly(True)  # at once, not only as a context manager
    assert is_anomaly_enabled()
    set_detect_anomaly(False)
    assert not is_anomaly_enabled()
    with pytest.raises(ValueError), detect_anomaly():
        raise ValueError  # an exception leaving the block restores the mode too
    assert not is_anomaly_enabled()


def test_detect_anomaly_warns_as_pytorch_does():
    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"):
        detect_anomaly()


def test_detect_anomaly_as_decorator():
    seen = []

    @detect_anomaly()
    def f(n):
        seen.append((is_anomaly_enabled(), is_anomaly_check_nan_enabled()))
        if n:
            f(n - 1)  # re-entered while active: the inner exit must not switch it off
            seen.append((is_anomaly_enabled(), is_anomaly_check_nan_enabled()))

    @detect_anomaly
    def g():
        return is_anomaly_enabled()

    @detect_anomaly(check_nan=False)
    def h():
        return is_anomaly_check_nan_enabled()

    f(1)
    assert seen == [(True, True)] * 3
    assert g() is True and h() is False
    assert not is_anomaly_enabled() and is_anomaly_check_nan_enabled()


# ---- eager mode ---------------------------------------------------------------------------------

def test_eager_nan_names_node_and_forward_line():
    x = gj.tensor([0.0, 1.0], requires_grad=True)
    with detect_anomaly():
        y = x.sqrt()  # <eager-sqrt>
        loss = (y * 0.0).sum()
        with pytest.raises(RuntimeError) as info:
            loss.backward()
    e = info.value
    assert isinstance(e, AnomalyError) and isinstance(e, gj.GraphjitError)
    assert isinstance(e, gj.AutogradError)
    assert str(e).startswith("Function 'SqrtBackward0' returned nan values in its 0th output.")
    assert (e.node, e.output, e.kind) == ("SqrtBackward0", 0, "nan")
    assert e.where == _at("eager-sqrt")
    assert "y = x.sqrt()" in str(e) and str(e).endswith(f"(at {_at('eager-sqrt')})")
    assert x.grad is None  # the error came before anything reached the leaf


def test_eager_inf():
    x = gj.tensor([0.0, 2.0], requires_grad=True)
    with detect_anomaly():
        loss = x.log().sum()  # <eager-log>
        with pytest.raises(AnomalyError) as info:
            loss.backward()
    assert str(info.value).startswith(
        "Function 'LogBackward0' returned inf values in its 0th output.")
    assert info.value.where == _at("eager-log")


def test_output_index_is_the_input_whose_gradient_is_bad():
    a = gj.tensor([np.inf, 1.0])  # needs no gradient: only b's is passed on
    b = gj.tensor([1.0, 1.0], requires_grad=True)
    with detect_anomaly():
        # (inf in a forward value is no error)
        z = a * b  # <eager-mul>
        with pytest.raises(AnomalyError) as info:
            z.sum().backward()
    assert (info.value.node, info.value.output, info.value.kind) == ("MulBackward0", 1, "inf")
    assert info.value.where == _at("eager-mul")


def test_no_error_when_off_or_finite_or_only_forward_nan():
    x = gj.tensor([0.0, 1.0], requires_grad=True)
    (x.sqrt() * 0.0).sum().backward()  # off: the NaN gradient goes through silently
    assert np.isnan(x.grad.numpy()[0])
    with detect_anomaly(check_nan=False):
        x.grad = None
        (x.sqrt() * 0.0).sum().backward()
        assert np.isnan(x.grad.numpy()[0])
    with detect_anomaly():
        x = gj.tensor([1.0, 4.0], requires_grad=True)
        x.sqrt().sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), [0.5, 0.25])
        v = gj.tensor([-1.0, 1.0], requires_grad=True)
        loss = v.log().sum()  # NaN forward value, finite gradient (1/v): as PyTorch, no error
        loss.backward()
        assert np.isnan(loss.item())
        np.testing.assert_allclose(v.grad.numpy(), [-1.0, 1.0])


def test_grad_checks_only_what_it_computes():
    x = gj.tensor([0.0, 1.0], requires_grad=True)
    y = gj.tensor([1.0, 1.0], requires_grad=True)
    with detect_anomaly():
        z = (x.sqrt() + y).sum()  # <eager-grad>
        (gy,) = gj.grad(z, [y], retain_graph=True)  # x's branch is not computed
        np.testing.assert_allclose(gy.numpy(), [1.0, 1.0])
        with pytest.raises(AnomalyError) as info:
            gj.grad(z, [x])
    assert info.value.node == "SqrtBackward0" and info.value.kind == "inf"
    assert info.value.where == _at("eager-grad")
    assert x.grad is None and y.grad is None


def test_node_made_before_anomaly_mode_is_still_checked():
    x = gj.tensor([0.0], requires_grad=True)
    loss = x.sqrt().sum()
    with detect_anomaly(), pytest.raises(AnomalyError, match="was not recorded") as info:
        loss.backward()  # <eager-late>
    assert info.value.node == "SqrtBackward0"
    assert info.value.where == _at("eager-late")  # the backward call: all that is known


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes (3.10 warns instead)")
def test_other_backward_errors_get_the_forward_line_as_a_note():
    x = gj.tensor([1.0, 2.0], requires_grad=True)
    with detect_anomaly():
        y = x.exp()  # <eager-exp>
        y.add_(1.0)
        with pytest.raises(gj.AutogradError) as info:
            y.sum().backward()
    assert not isinstance(info.value, AnomalyError)
    note = "\n".join(info.value.__notes__)
    assert "Error detected in ExpBackward0" in note
    assert f'line {_line("eager-exp")}' in note and "y = x.exp()" in note


# ---- compiled programs --------------------------------------------------------------------------

def _make_step():
    w = gj.tensor([1.0, 4.0], requires_grad=True)
    opt = gj.optim.SGD([w], lr=0.1, momentum=0.9)

    def step(x, b):
        opt.zero_grad()
        loss = (x * w).sqrt().sum() + b.log().sum()  # <step-sqrt>
        loss.backward()
        opt.step()
        return loss
    return w, opt, step


def _state(w, opt):
    """Everything a failing call must leave alone, bit for bit."""
    grad = None if w.grad is None else (w.grad.numpy().tobytes(), id(w.grad), w.grad._version.value)
    state = {k: (id(v), v.numpy().tobytes()) for k, v in opt.state.get(w, {}).items()}
    return (w.detach().numpy().tobytes(), id(w._data), w._version.value, grad, state,
            [dict(g, params=None) for g in opt.param_groups])


def _eager_error(x, b):
    _, _, step = _make_step()
    with detect_anomaly(), pytest.raises(AnomalyError) as info:
        step(x, b)
    return info.value


def _same_error(got, want):
    assert (got.node, got.output, got.kind, got.where) == (want.node, want.output, want.kind,
                                                           want.where)
    assert str(got).splitlines()[0] == str(want).splitlines()[0]
    if sys.version_info >= (3, 11):  # found by the eager re-run of a compiled call
        assert "graphjit.compile in anomaly mode" in "\n".join(got.__notes__)


def test_compiled_step_raises_eager_error_and_writes_nothing():
    w, opt, step = _make_step()
    compiled = gj.compile(step)
    ok, b = gj.tensor([1.0, 1.0]), gj.tensor([1.0])
    compiled(ok, b)  # creates the momentum buffer (its program runs once)
    compiled(ok, b)  # the steady-state program
    assert opt.state[w]["momentum_buffer"] is not None
    before = _state(w, opt)
    bad = gj.tensor([0.0, 1.0])
    with detect_anomaly(), pytest.raises(AnomalyError) as info:
        compiled(bad, b)
    assert _state(w, opt) == before
    _same_error(info.value, _eager_error(bad, b))
    assert info.value.node == "SqrtBackward0" and info.value.where == _at("step-sqrt")
    with detect_anomaly(), pytest.raises(AnomalyError):
        compiled(bad, b)  # and again: nothing was cached or half-written by the first
    assert _state(w, opt) == before

    # Off, the same program writes the NaN through, as eager mode would.
    traces = compiled.cache_size
    compiled(bad, b)
    assert np.isnan(w.detach().numpy()[0]) and compiled.cache_size == traces


def test_compiled_first_call_raises_and_undoes_the_trace():
    w, opt, step = _make_step()
    compiled = gj.compile(step)
    before = _state(w, opt)
    bad, b = gj.tensor([0.0, 1.0]), gj.tensor([1.0])
    with detect_anomaly(), pytest.raises(AnomalyError) as info:
        compiled(bad, b)
    assert _state(w, opt) == before and w.grad is None and len(opt.state) == 0
    _same_error(info.value, _eager_error(bad, b))


def test_compiled_step_forward_nan_is_not_an_error():
    """Non-finite results whose gradients eager finds finite: the re-run finds nothing and the
    compiled call goes on, with eager's numbers."""
    w, opt, step = _make_step()
    compiled = gj.compile(step)
    we, opte, eager_step = _make_step()
    ok, b, negative = gj.tensor([1.0, 1.0]), gj.tensor([1.0]), gj.tensor([-1.0])
    with detect_anomaly():
        for bb in (b, b, negative, negative):
            loss = compiled(ok, bb)
            eager_loss = eager_step(ok, bb)
    assert np.isnan(loss.item()) and np.isnan(eager_loss.item())
    gj.testing.assert_close(w, we)
    gj.testing.assert_close(w.grad, we.grad)
    gj.testing.assert_close(opt.state[w]["momentum_buffer"], opte.state[we]["momentum_buffer"])
    assert compiled.cache_size == 1  # the steady-state program; the first one ran once


def _forward(x, w):
    return (x * w).sqrt().sum()  # <forward-sqrt>


def test_compiled_forward_eager_backward():
    compiled = gj.compile(_forward)
    a = gj.tensor([0.0, 1.0], requires_grad=True)
    w = gj.tensor([1.0, 4.0], requires_grad=True)
    w.grad = gj.tensor([5.0, 6.0])
    before = (w.grad.numpy().tobytes(), w.grad._version.value, w.detach().numpy().tobytes())

    with detect_anomaly():
        # A non-leaf argument: its gradient would go on to a.
        loss = compiled(a * 1.0, w)  # <forward-call>
        with pytest.raises(AnomalyError) as info:
            loss.backward()
    assert (w.grad.numpy().tobytes(), w.grad._version.value, w.detach().numpy().tobytes()) == before
    assert a.grad is None

    ae, we = gj.tensor([0.0, 1.0], requires_grad=True), gj.tensor([1.0, 4.0], requires_grad=True)
    with detect_anomaly():
        eager_loss = _forward(ae * 1.0, we)
        with pytest.raises(AnomalyError) as want:
            eager_loss.backward()
    _same_error(info.value, want.value)
    assert info.value.node == "SqrtBackward0" and info.value.where == _at("forward-sqrt")
    # Its caller is the compiled call, not the backward() that re-ran it.
    caller = f'line {_line("forward-call")}, in test_compiled_forward_eager_backward'
    assert caller in str(info.value)

    # A compiled forward run with anomaly mode off: its node is checked, not re-run.
    loss = compiled(a * 1.0, w)
    with detect_anomaly(), pytest.raises(AnomalyError, match="was not recorded") as info:
        loss.backward()
    assert info.value.node == loss.grad_fn.name() and info.value.node.startswith("Compiled")
    assert info.value.kind == "inf"
    assert a.grad is None

    # Finite gradients: no error, eager's gradients (same program: no new trace).
    with detect_anomaly():
        compiled(gj.tensor([1.0, 1.0], requires_grad=True) * 1.0, w).backward()
    np.testing.assert_allclose(w.grad.numpy(), [5.5, 6.25])
    # Off: the NaN gradient goes through silently.
    compiled(a * 1.0, w).backward()
    assert not np.isfinite(a.grad.numpy()[0]) and compiled.cache_size == 1


def test_compiled_calls_do_nothing_extra_when_off(monkeypatch):
    from graphjit import anomaly
    from graphjit import autograd_tape as tape

    def refuse(*args, **kwargs):
        raise AssertionError("anomaly code ran with anomaly mode off")
    for name in ("wants_call", "compiled_call", "watch", "check_results", "record_compiled",
                 "record", "apply_checked"):
        monkeypatch.setattr(anomaly, name, refuse)
    for name in ("_anomaly_record", "_anomaly_apply"):  # anomaly's work, as the tape calls it
        monkeypatch.setattr(tape, name, refuse)
    compiled = gj.compile(_forward)
    w = gj.tensor([1.0, 4.0], requires_grad=True)
    for _ in range(2):
        compiled(gj.tensor([0.0, 1.0]), w).backward()
    assert np.isnan(w.grad.numpy()[0])
    x = gj.tensor([0.0], requires_grad=True)
    x.sqrt().sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not is_anomaly_enabled()
