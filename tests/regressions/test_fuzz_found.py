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
