"""scaled_dot_product_attention, MultiheadAttention and the Transformer encoder against NumPy
written here from PyTorch's documented equations (eager; compiled in test_compiled_layers.py)."""
import math

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.testing import gradcheck
from nn_reference import close, f64, layer_norm, npy, params, softmax


def b(a):
    return gj.tensor(np.asarray(a, dtype=bool))


# ---- references ----------------------------------------------------------------------------------

def ref_sdpa(q, k, v, bias=None, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if bias is not None:
        s = s + bias
    w = softmax(s)
    return w @ v, w


def ref_mha(p, q, k, v, heads, kpm=None, mask=None, bias_kv=False, zero_attn=False):
    """Time-major q [L, N, E], k [S, N, kdim], v [S, N, vdim]; masks as additive floats
    (kpm [N, S], mask [L, S] or [N * heads, L, S]). Returns (out [L, N, E], weights
    [N, H, L, S])."""
    E = q.shape[-1]
    if "in_proj_weight" in p:
        wq, wk, wv = np.split(p["in_proj_weight"], 3)
    else:
        wq, wk, wv = p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"]
    bq, bk, bv = np.split(p["in_proj_bias"], 3) if "in_proj_bias" in p else (0, 0, 0)
    Q, K, V = q @ wq.T + bq, k @ wk.T + bk, v @ wv.T + bv
    L, N, _ = Q.shape
    if bias_kv:
        K = np.concatenate([K, np.broadcast_to(p["bias_k"], (1, N, E))])
        V = np.concatenate([V, np.broadcast_to(p["bias_v"], (1, N, E))])
    hd = E // heads

    def split(x):  # [len, N, E] -> [N, H, len, hd]
        return x.reshape(x.shape[0], N, heads, hd).transpose(1, 2, 0, 3)
    Q, K, V = split(Q), split(K), split(V)
    if zero_attn:
        K = np.concatenate([K, np.zeros((N, heads, 1, hd))], axis=2)
        V = np.concatenate([V, np.zeros((N, heads, 1, hd))], axis=2)
    S = K.shape[2]
    bias = np.zeros((N, heads, L, S))
    pad = S - (kpm.shape[-1] if kpm is not None else mask.shape[-1] if mask is not None else S)
    if mask is not None:
        m = np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)])
        bias = bias + (m if m.ndim == 2 else m.reshape(N, heads, L, S))
    if kpm is not None:
        bias = bias + np.pad(kpm, [(0, 0), (0, pad)])[:, None, None, :]
    out, w = ref_sdpa(Q, K, V, bias)
    out = out.transpose(2, 0, 1, 3).reshape(L, N, E)
    out = out @ p["out_proj.weight"].T + p.get("out_proj.bias", 0)
    return out, w


def neg_inf_where(mask):
    return np.where(mask, -np.inf, 0.0)


# ---- scaled_dot_product_attention ----------------------------------------------------------------

def test_sdpa_masks_scale_and_causal(rng):
    q, k, v = (rng.standard_normal(s) for s in ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2)))
    close(F.scaled_dot_product_attention(f64(q), f64(k), f64(v)), ref_sdpa(q, k, v)[0])
    close(F.scaled_dot_product_attention(f64(q), f64(k), f64(v), scale=0.3),
          ref_sdpa(q, k, v, scale=0.3)[0])
    keep = rng.random((4, 6)) < 0.7
    keep[:, 0] = True
    close(F.scaled_dot_product_attention(f64(q), f64(k), f64(v), attn_mask=b(keep)),
          ref_sdpa(q, k, v, np.where(keep, 0.0, -np.inf))[0])
    fmask = rng.standard_normal((3, 4, 6))  # broadcast over the batch dim
    close(F.scaled_dot_product_attention(f64(q), f64(k), f64(v), attn_mask=f64(fmask)),
          ref_sdpa(q, k, v, fmask)[0])
    causal = np.where(np.tril(np.ones((4, 6), bool)), 0.0, -np.inf)
    close(F.scaled_dot_product_attention(f64(q), f64(k), f64(v), is_causal=True),
          ref_sdpa(q, k, v, causal)[0])


def test_sdpa_grouped_query_attention(rng):
    q, k, v = (rng.standard_normal(s) for s in ((1, 4, 3, 2), (1, 2, 5, 2), (1, 2, 5, 2)))
    ref = ref_sdpa(q, np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1))[0]
    close(F.scaled_dot_product_attention(f64(q), f64(k), f64(v), enable_gqa=True), ref)


def test_sdpa_dropout_draws_from_graphjits_generator(rng):
    q, k, v = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    gj.manual_seed(3)
    out = F.scaled_dot_product_attention(f64(q), f64(k), f64(v), dropout_p=0.4)
    gj.manual_seed(3)
    keep = npy(gj.rand(2, 3, 3, dtype=gj.float64)) < 0.6
    s = q @ np.swapaxes(k, -1, -2) / 2
    close(out, (softmax(s) * keep / 0.6) @ v)


def test_sdpa_gradcheck(rng):
    q, k, v = (f64(rng.standard_normal(s), requires_grad=True) for s in ((1, 3, 2), (1, 4, 2),
                                                                           (1, 4, 2)))
    mask = b(np.tril(np.ones((3, 4), bool)))
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                     (q, k, v))


def test_sdpa_errors():
    z = gj.zeros(2, 3, 4)
    with pytest.raises(gj.ShapeError, match=r"scaled_dot_product_attention: query \(2, 3, 4\), "
                                            r"key \(2, 3, 5\)"):
        F.scaled_dot_product_attention(z, gj.zeros(2, 3, 5), z)
    with pytest.raises(gj.ShapeError, match=r"attn_mask of shape \(2, 2\) does not broadcast"):
        F.scaled_dot_product_attention(z, z, z, attn_mask=b(np.ones((2, 2))))
    with pytest.raises(gj.ShapeError, match=r"scaled_dot_product_attention: attn_mask of shape "
                                            r"\(5, 3, 3\) does not broadcast to the scores' "
                                            r"\(2, 3, 3\)"):
        F.scaled_dot_product_attention(z, z, z, attn_mask=gj.zeros(5, 3, 3))  # would grow them
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(z, z, z, attn_mask=b(np.ones((3, 3))), is_causal=True)


# ---- MultiheadAttention --------------------------------------------------------------------------

def test_mha_parameters_names_and_init():
    gj.manual_seed(0)
    m = nn.MultiheadAttention(8, 2)
    assert list(m.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight",
                                    "out_proj.bias"]
    assert m.in_proj_weight.shape == (24, 8) and m.in_proj_bias.shape == (24,)
    assert np.all(npy(m.in_proj_bias) == 0) and np.all(npy(m.out_proj.bias) == 0)
    bound = math.sqrt(6 / (8 + 24))  # xavier_uniform_ of [3E, E]
    w = npy(m.in_proj_weight)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    m = nn.MultiheadAttention(8, 2, kdim=3, vdim=5, add_bias_kv=True, bias=False)
    assert list(m.state_dict()) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k",
                                    "bias_v", "out_proj.weight"]
    assert m.k_proj_weight.shape == (8, 3) and m.v_proj_weight.shape == (8, 5)
    assert m.in_proj_weight is None and m.bias_k.shape == (1, 1, 8)


@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_self_attention_with_masks(batch_first, rng):
    m = nn.MultiheadAttention(6, 3, batch_first=batch_first, dtype=gj.float64)
    with gj.no_grad():  # non-zero biases, so their wiring is checked
        m.in_proj_bias.copy_(f64(rng.standard_normal(18)))
        m.out_proj.bias.copy_(f64(rng.standard_normal(6)))
    L, N = 4, 2
    x = rng.standard_normal((L, N, 6))
    kpm = np.array([[False, False, True, True], [False] * 4])
    causal = ~np.tril(np.ones((L, L), bool))  # True: may NOT attend (MHA's convention)
    xin = f64(x.transpose(1, 0, 2) if batch_first else x)
    out, w = m(xin, xin, xin, key_padding_mask=b(kpm), attn_mask=b(causal), is_causal=True)
    ref, ref_w = ref_mha(params(m), x, x, x, 3, neg_inf_where(kpm), neg_inf_where(causal))
    close(out, ref.transpose(1, 0, 2) if batch_first else ref)
    close(w, ref_w.mean(axis=1))
    out, w = m(xin, xin, xin, need_weights=True, average_attn_weights=False)
    ref, ref_w = ref_mha(params(m), x, x, x, 3)
    close(w, ref_w)
    assert m(xin, xin, xin, need_weights=False)[1] is None


def test_mha_cross_attention_kdim_vdim_bias_kv_zero_attn(rng):
    m = nn.MultiheadAttention(4, 2, kdim=3, vdim=5, add_bias_kv=True, add_zero_attn=True,
                              dtype=gj.float64)
    q, k, v = (rng.standard_normal(s) for s in ((3, 2, 4), (5, 2, 3), (5, 2, 5)))
    fmask = rng.standard_normal((2 * 2, 3, 5))  # per batch and head
    fkpm = rng.standard_normal((2, 5))
    out, w = m(f64(q), f64(k), f64(v), key_padding_mask=f64(fkpm), attn_mask=f64(fmask))
    ref, ref_w = ref_mha(params(m), q, k, v, 2, fkpm, fmask, bias_kv=True, zero_attn=True)
    close(out, ref)
    close(w, ref_w.mean(axis=1))


def test_mha_unbatched_and_separate_key_value(rng):
    m = nn.MultiheadAttention(4, 2, dtype=gj.float64)
    q, k, v = (rng.standard_normal(s) for s in ((3, 4), (5, 4), (5, 4)))
    out, w = m(f64(q), f64(k), f64(v), key_padding_mask=b([0, 0, 0, 1, 0]))
    kpm = neg_inf_where(np.array([[0, 0, 0, 1, 0]], bool))
    ref, ref_w = ref_mha(params(m), q[:, None], k[:, None], v[:, None], 2, kpm)
    close(out, ref[:, 0])
    close(w, ref_w.mean(axis=1)[0])


def test_mha_gradcheck(rng):
    m = nn.MultiheadAttention(4, 2, dtype=gj.float64)
    x = f64(rng.standard_normal((3, 1, 4)), requires_grad=True)
    mask = b(~np.tril(np.ones((3, 3), bool)))
    assert gradcheck(lambda x, *w: m(x, x, x, attn_mask=mask)[0], (x,) + tuple(m.parameters()))


def test_mha_errors():
    m = nn.MultiheadAttention(4, 2)
    x = gj.zeros(3, 2, 4)
    with pytest.raises(ValueError, match=r"MultiheadAttention: embed_dim \(5\) must be divisible "
                                         r"by num_heads \(2\)"):
        nn.MultiheadAttention(5, 2)
    with pytest.raises(gj.ShapeError, match=r"MultiheadAttention: query \(3, 2, 5\).*embed_dim 4"):
        m(gj.zeros(3, 2, 5), x, x)
    with pytest.raises(gj.ShapeError, match=r"attn_mask of shape \(3, 4\) must be \(3, 3\)"):
        m(x, x, x, attn_mask=b(np.zeros((3, 4))))
    with pytest.raises(gj.ShapeError, match=r"key_padding_mask of shape \(3, 2\) must be .*"
                                            r"\(2, 3\)"):
        m(x, x, x, key_padding_mask=b(np.zeros((3, 2))))
    with pytest.raises(gj.ShapeError, match="same batch size"):
        m(x, gj.zeros(3, 1, 4), gj.zeros(3, 1, 4))
    with pytest.raises(gj.ShapeError, match="must all be 3-D"):
        m(x, gj.zeros(3, 4), x)
    with pytest.raises(ValueError, match="is_causal=True is a hint"):
        m(x, x, x, is_causal=True)


# ---- Transformer encoder -------------------------------------------------------------------------

def ref_encoder_layer(p, x, heads, norm_first, act, pre="", kpm=None, mask=None, eps=1e-5):
    """x time-major [S, N, E]; PyTorch's post-norm (or norm_first) encoder layer."""
    q = {k[len(pre + "self_attn."):]: v for k, v in p.items() if k.startswith(pre + "self_attn.")}

    def sa(x):
        return ref_mha(q, x, x, x, heads, kpm, mask)[0]

    def ff(x):
        h = act(x @ p[pre + "linear1.weight"].T + p[pre + "linear1.bias"])
        return h @ p[pre + "linear2.weight"].T + p[pre + "linear2.bias"]

    def norm(x, i):
        return layer_norm(x, (-1,), eps) * p[f"{pre}norm{i}.weight"] + p[f"{pre}norm{i}.bias"]
    if norm_first:
        x = x + sa(norm(x, 1))
        return x + ff(norm(x, 2))
    x = norm(x + sa(x), 1)
    return norm(x + ff(x), 2)


def relu(x):
    return np.maximum(x, 0)


def gelu(x):
    from math import erf
    return x * 0.5 * (1 + np.vectorize(erf)(x / math.sqrt(2)))


@pytest.mark.parametrize("norm_first, activation", [(False, "relu"), (True, "gelu")])
def test_encoder_layer(norm_first, activation, rng):
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, activation=activation,
                                       norm_first=norm_first, batch_first=True, dtype=gj.float64)
    layer.eval()  # dropout 0.1 by default: evaluation mode has none
    x = rng.standard_normal((2, 3, 4))
    kpm = np.array([[False, False, True], [False] * 3])
    out = layer(f64(x), src_key_padding_mask=b(kpm))
    ref = ref_encoder_layer(params(layer), x.transpose(1, 0, 2), 2, norm_first,
                            relu if activation == "relu" else gelu, kpm=neg_inf_where(kpm))
    close(out, ref.transpose(1, 0, 2))


def test_encoder_layer_names_and_training_dropout(rng):
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8)
    assert list(layer.state_dict()) == [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
        "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
    assert layer.linear1.weight.shape == (8, 4)
    x = gj.randn(3, 2, 4)
    assert not np.allclose(npy(layer(x)), npy(layer(x)))  # training: dropout on
    layer.eval()
    close(layer(x), npy(layer(x)))
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not .tanh."):
        nn.TransformerEncoderLayer(4, 2, activation="tanh")


def test_encoder_layer_dropout_modules_are_pytorchs(rng):
    # PyTorch's sub-modules, in its order: the Dropout modules are attributes users reach.
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.3,
                                       activation=nn.GELU(), dtype=gj.float64)
    assert [n for n, _ in layer.named_children()] == [
        "self_attn", "linear1", "dropout", "linear2", "norm1", "norm2", "dropout1", "dropout2",
        "activation"]
    assert [layer.dropout.p, layer.dropout1.p, layer.dropout2.p, layer.self_attn.dropout] == \
        [0.3] * 4
    x = rng.standard_normal((3, 2, 4))
    ref = ref_encoder_layer(params(layer), x, 2, False, gelu)
    assert not np.allclose(npy(layer(f64(x))), ref)  # training: the dropouts are on
    for module in (layer.dropout, layer.dropout1, layer.dropout2):
        module.p = 0.0
    layer.self_attn.dropout = 0.0
    close(layer(f64(x)), ref)  # still training: the modules' p is what counts


def test_encoder_stack_with_causal_mask_and_final_norm(rng):
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, dtype=gj.float64)
    enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(4, dtype=gj.float64))
    keys = list(enc.state_dict())
    assert keys[0] == "layers.0.self_attn.in_proj_weight" and keys[12] == \
        "layers.1.self_attn.in_proj_weight" and keys[-2:] == ["norm.weight", "norm.bias"]
    with gj.no_grad():  # the copies are independent
        enc.layers[1].linear1.weight.mul_(2.0)
    assert not np.allclose(npy(enc.layers[0].linear1.weight), npy(enc.layers[1].linear1.weight))
    x = rng.standard_normal((3, 2, 4))
    mask = np.triu(np.full((3, 3), -np.inf), 1)  # float causal mask
    out = enc(f64(x), mask=f64(mask), is_causal=True)
    p = params(enc)
    ref = x
    for i in range(2):
        ref = ref_encoder_layer(p, ref, 2, False, relu, pre=f"layers.{i}.", mask=mask)
    close(out, layer_norm(ref, (-1,), 1e-5) * p["norm.weight"] + p["norm.bias"])
