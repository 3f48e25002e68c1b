"""Helpers of the tests in tests/nn: float64 tensors, comparisons, NumPy references."""
from __future__ import annotations

import numpy as np

import graphjit as gj


def f64(a, requires_grad=False):
    return gj.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def npy(t):
    return None if t is None else t.detach().numpy().astype(np.float64)


def close(actual, expected, rtol=1e-10, atol=1e-12):
    if isinstance(actual, gj.Tensor):
        actual = npy(actual)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def params(module) -> dict:
    """The module's parameters as float64 NumPy arrays, by state dict name."""
    return {k: npy(v) for k, v in module.state_dict().items()}


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def layer_norm(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)
