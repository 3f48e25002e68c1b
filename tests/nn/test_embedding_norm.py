"""Embedding, LayerNorm and GroupNorm against NumPy written here (eager; the compiled
versions are in test_compiled_layers.py)."""
import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.testing import gradcheck
from nn_reference import close, f64, layer_norm, npy


def i64(a):
    return gj.tensor(np.asarray(a, dtype=np.int64))


# ---- Embedding -----------------------------------------------------------------------------------

def test_embedding_lookup_and_gradient(rng):
    w = rng.standard_normal((6, 3))
    idx = np.array([[0, 5, 2], [2, 2, 1]])
    weight = f64(w, requires_grad=True)
    out = F.embedding(i64(idx), weight)
    close(out, w[idx])
    g = rng.standard_normal(out.shape)
    out.backward(f64(g))
    expected = np.zeros_like(w)
    np.add.at(expected, idx, g)  # repeated rows accumulate
    close(weight.grad, expected)


def test_padding_idx_row_gets_no_gradient_and_starts_at_zero(rng):
    gj.manual_seed(0)
    emb = nn.Embedding(5, 3, padding_idx=-1, dtype=gj.float64)  # -1 means row 4, as in PyTorch
    assert emb.padding_idx == 4
    assert np.all(npy(emb.weight)[4] == 0) and np.all(npy(emb.weight)[:4] != 0)
    idx = np.array([4, 1, 4, 0])
    with gj.no_grad():
        emb.weight[4].fill_(7.0)  # a trained padding row is still looked up as it is
    out = emb(i64(idx))
    close(out[0], np.full(3, 7.0))
    g = rng.standard_normal((4, 3))
    out.backward(f64(g))
    expected = np.zeros((5, 3))
    np.add.at(expected, idx, g)
    expected[4] = 0
    close(emb.weight.grad, expected)


def test_max_norm_renormalises_looked_up_rows_in_place(rng):
    w = rng.standard_normal((5, 4)) * 3
    emb = nn.Embedding.from_pretrained(f64(w.copy()), freeze=False, max_norm=1.5)
    idx = np.array([[1, 3], [3, 0]])
    out = emb(i64(idx))
    expected = w.copy()
    for r in (0, 1, 3):  # PyTorch's embedding_renorm_
        norm = np.linalg.norm(w[r])
        if norm > 1.5:
            expected[r] = w[r] * (1.5 / (norm + 1e-7))
    close(emb.weight, expected)  # rows 2 and 4 untouched
    close(out, expected[idx])
    out.sum().backward()
    assert emb.weight.grad is not None
    # Other norms: the 1-norm and the max norm.
    for p, norm_of in ((1.0, lambda r: np.abs(r).sum()), (float("inf"), lambda r: np.abs(r).max())):
        weight = f64(w.copy())
        F.embedding(i64([2]), weight, max_norm=0.5, norm_type=p)
        close(weight[2], w[2] * 0.5 / (norm_of(w[2]) + 1e-7))
        close(weight[1], w[1])


def test_scale_grad_by_freq(rng):
    w = rng.standard_normal((4, 2))
    weight = f64(w, requires_grad=True)
    idx = np.array([1, 1, 1, 2, 3, 3])
    out = F.embedding(i64(idx), weight, scale_grad_by_freq=True)
    close(out, w[idx])
    g = rng.standard_normal((6, 2))
    out.backward(f64(g))
    expected = np.zeros_like(w)
    counts = np.bincount(idx, minlength=4)
    np.add.at(expected, idx, g / counts[idx][:, None])
    close(weight.grad, expected)


def test_embedding_gradcheck(rng):
    weight = f64(rng.standard_normal((4, 2)), requires_grad=True)
    idx = i64([[0, 3], [3, 2]])
    assert gradcheck(lambda w: F.embedding(idx, w), (weight,))  # (padding_idx: by design not)


def test_embedding_module_options_and_names():
    gj.manual_seed(0)
    emb = nn.Embedding(1000, 16)
    assert list(emb.state_dict()) == ["weight"]
    w = npy(emb.weight)
    assert w.shape == (1000, 16) and abs(w.std() - 1) < 0.05 and abs(w.mean()) < 0.05  # N(0, 1)
    table = gj.randn(4, 2)
    frozen = nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    assert repr(nn.Embedding(10, 3, padding_idx=0)) == "Embedding(10, 3, padding_idx=0)"
    assert repr(nn.Embedding(10, 3, max_norm=1.0)) == "Embedding(10, 3, max_norm=1.0)"


def test_embedding_errors():
    with pytest.raises(gj.ShapeError, match=r"embedding: index 5 is out of range .*5 rows"):
        nn.Embedding(5, 2)(i64([1, 5]))
    with pytest.raises(gj.ShapeError, match=r"index -1"):
        nn.Embedding(5, 2)(i64([-1]))
    with pytest.raises(gj.DTypeError, match=r"indices must be int64, got float32"):
        nn.Embedding(5, 2)(gj.zeros(3))
    with pytest.raises(ValueError, match="padding_idx 5 must be within num_embeddings"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="sparse=True"):
        nn.Embedding(5, 2, sparse=True)(i64([1]))
    with pytest.raises(gj.ShapeError, match=r"_weight of shape \(3, 2\)"):
        nn.Embedding(5, 2, _weight=gj.zeros(3, 2))


# ---- LayerNorm / GroupNorm -----------------------------------------------------------------------

def test_layer_norm_values(rng):
    x = rng.standard_normal((2, 3, 4)) * 3 + 1
    w, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    close(F.layer_norm(f64(x), (3, 4), f64(w), f64(b), eps=1e-3),
          layer_norm(x, (1, 2), 1e-3) * w + b)
    ln = nn.LayerNorm(4, dtype=gj.float64)
    assert list(ln.state_dict()) == ["weight", "bias"]
    assert np.all(npy(ln.weight) == 1) and np.all(npy(ln.bias) == 0)
    close(ln(f64(x)), layer_norm(x, (2,), 1e-5))
    assert list(nn.LayerNorm(4, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm([3, 4], elementwise_affine=False).state_dict()) == []
    assert nn.LayerNorm([3, 4]).weight.shape == (3, 4)
    assert repr(nn.LayerNorm(4)) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"


def test_group_norm_values(rng):
    x = rng.standard_normal((2, 6, 5)) * 2 - 1
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    g = x.reshape(2, 3, 10)
    ref = layer_norm(g, (2,), 1e-5).reshape(2, 6, 5) * w[:, None] + b[:, None]
    close(F.group_norm(f64(x), 3, f64(w), f64(b)), ref)
    gn = nn.GroupNorm(2, 6, dtype=gj.float64)
    assert list(gn.state_dict()) == ["weight", "bias"] and gn.weight.shape == (6,)
    x4 = rng.standard_normal((2, 6, 2, 3))
    close(gn(f64(x4)), layer_norm(x4.reshape(2, 2, 18), (2,), 1e-5).reshape(x4.shape))
    assert list(nn.GroupNorm(2, 6, affine=False).state_dict()) == []


def test_norm_gradcheck(rng):
    x = f64(rng.standard_normal((2, 4, 3)), requires_grad=True)
    w = f64(rng.standard_normal((4, 3)), requires_grad=True)
    b = f64(rng.standard_normal((4, 3)), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (4, 3), w, b), (x, w, b))
    gw = f64(rng.standard_normal(4), requires_grad=True)
    gb = f64(rng.standard_normal(4), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), (x, gw, gb))


def test_norm_errors():
    with pytest.raises(gj.ShapeError, match=r"LayerNorm: input of shape \(2, 5\) does not end in "
                                            r"normalized_shape \(4,\)"):
        nn.LayerNorm(4)(gj.zeros(2, 5))
    with pytest.raises(gj.ShapeError, match=r"layer_norm: weight of shape \(3,\)"):
        F.layer_norm(gj.zeros(2, 4), (4,), gj.zeros(3))
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(6\) must be divisible by "
                                         r"num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(gj.ShapeError, match=r"GroupNorm: expected input \[N, 6, \*\], got shape "
                                            r"\(2, 4, 3\)"):
        nn.GroupNorm(2, 6)(gj.zeros(2, 4, 3))
    with pytest.raises(gj.ShapeError, match=r"group_norm: 5 channels"):
        F.group_norm(gj.zeros(2, 5), 2)
