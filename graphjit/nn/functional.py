"""``graphjit.nn.functional``: PyTorch's ``torch.nn.functional`` names and numbers.

Everything is written with graphjit ops, so it runs eagerly, traces into graphs and
differentiates with no extra rules. Activations and linear algebra here; embeddings,
normalisation and attention below them; the losses live in ``functional_loss`` and are
re-exported.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..autograd_tape import no_grad
from ..errors import DTypeError, ShapeError
from ..ops import api
from ..ops.api import (gelu, leaky_relu, log_softmax, relu, sigmoid, silu, softmax,  # noqa: F401
                       softplus, tanh)
from ..ops.composite import elu as _elu
from ..shapes import broadcast_shapes, normalize_dim
from .functional_loss import (_host, binary_cross_entropy,  # noqa: F401
                              binary_cross_entropy_with_logits, cosine_embedding_loss,
                              cross_entropy, huber_loss, kl_div, l1_loss, mse_loss, nll_loss,
                              smooth_l1_loss)


def elu(input, alpha: float = 1.0, inplace: bool = False):
    """``F.elu``; ``inplace`` is accepted and computed out of place (as the modules do)."""
    return _elu(input, alpha)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` with ``weight`` of shape [out_features, in_features]."""
    out = api.matmul(input, api.transpose(weight, 0, 1) if len(weight.shape) == 2 else weight)
    return out if bias is None else api.add(out, bias)


# ---- dropout masks --------------------------------------------------------------------------

def _dropout(x, p: float, who: str, mask_shape=None):
    """``x`` with each element (or each slice, when the mask has ``mask_shape``, broadcast
    over ``x``) zeroed with probability ``p`` and the rest scaled by ``1 / (1 - p)``, as
    PyTorch's dropout. The mask is drawn from graphjit's default generator, eagerly and in
    compiled functions alike ([Random numbers while tracing] in graphjit/jit/trace.py), so a
    compiled training step draws the masks the eager one would."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: dropout probability has to be between 0 and 1, got {p}")
    if p == 0:
        return x
    if not x.dtype.is_floating_point:
        raise DTypeError(f"dropout needs a floating point tensor, got {x.dtype.name} of shape "
                         f"{tuple(x.shape)}", op=who)
    if p == 1:
        return api.mul(x, 0.0)
    from .. import random as _random
    u = _random.uniform(tuple(x.shape) if mask_shape is None else mask_shape, x.dtype)
    return api.mul(api.mul(x, api.cast(api.lt(u, 1.0 - p), x.dtype)), 1.0 / (1.0 - p))


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` while
    ``training`` (``torch.nn.functional.dropout``); the identity otherwise."""
    if not training:
        return input
    out = _dropout(input, p, "dropout")
    return input.copy_(out) if inplace and out is not input else out


def _feature_dropout(input, p, training, inplace, who, spatial):
    if not training:
        return input
    shape = tuple(input.shape)
    if len(shape) not in (spatial + 1, spatial + 2):
        raise ShapeError(f"expects a {spatial + 1}-D (unbatched) or {spatial + 2}-D (batched) "
                         f"input, got shape {shape}", op=who)
    # One draw per channel: the mask covers the batch and channel dims, 1 elsewhere.
    lead = len(shape) - spatial
    out = _dropout(input, p, who, shape[:lead] + (1,) * spatial)
    return input.copy_(out) if inplace and out is not input else out


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of [N, C, L] (or [C, L]) with probability ``p``."""
    return _feature_dropout(input, p, training, inplace, "dropout1d", 1)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of [N, C, H, W] (or [C, H, W]) with probability ``p``."""
    return _feature_dropout(input, p, training, inplace, "dropout2d", 2)


# ---- embeddings -----------------------------------------------------------------------------

def _vector_norm(x, p, dim):
    """The ``p``-norm of ``x`` along ``dim`` (kept)."""
    a = api.abs(x)
    if p == math.inf:
        return api.amax(a, dim, keepdim=True)
    if p == 2:
        return api.sqrt(api.sum(api.mul(x, x), dim, keepdim=True))
    if p == 1:
        return api.sum(a, dim, keepdim=True)
    return api.pow(api.sum(api.pow(a, float(p)), dim, keepdim=True), 1.0 / p)


def _lookup_counts(input, weight):
    """How often each row of ``weight`` is looked up by ``input``, as a [rows, 1] float."""
    ones = api.full(input.shape, 1, weight.dtype)
    counts = api.index_backward(ones, (weight.shape[0],), [input], (("t", 0),))
    return api.unsqueeze(counts, 1)


def _embedding_renorm_(weight, input, max_norm, norm_type):
    # PyTorch's embedding_renorm_: each row that input looks up whose norm exceeds max_norm
    # is scaled by max_norm / (norm + 1e-7), in place. Written over the whole matrix (rows
    # not looked up get a scale of exactly 1), so it traces as well.
    with no_grad():
        norm = _vector_norm(weight, norm_type, 1)
        over = api.logical_and(api.gt(_lookup_counts(input, weight), 0), api.gt(norm, max_norm))
        scale = api.where(over, api.div(max_norm, api.add(norm, 1e-7)), 1.0)
        weight.copy_(api.mul(weight, scale))


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False):
    """Rows of ``weight`` [num_embeddings, embedding_dim] picked by the int64 ``input``:
    shape ``input.shape + (embedding_dim,)``. The row ``padding_idx`` gets no gradient;
    ``max_norm`` first renormalises, in place, the looked-up rows whose ``norm_type``-norm
    exceeds it (as PyTorch, so ``weight`` changes); ``scale_grad_by_freq`` divides each
    row's gradient by how often the batch looks it up. ``sparse=True`` is refused:
    graphjit's gradients are dense."""
    op = "embedding"
    if input.dtype is not dtypes.int64:
        raise DTypeError(f"indices must be int64, got {input.dtype.name} of shape "
                         f"{tuple(input.shape)}", op=op)
    if len(weight.shape) != 2:
        raise ShapeError(f"weight must be 2-D [num_embeddings, embedding_dim], got shape "
                         f"{tuple(weight.shape)}", op=op)
    rows = weight.shape[0]
    if sparse:
        raise ValueError(f"{op}: sparse=True needs sparse gradients, which graphjit does not "
                         "have; use sparse=False (dense gradients, same numbers)")
    padding_idx = _padding_index(padding_idx, rows, op)
    data = _host(input)
    if data is not None and data.size and (data.min() < 0 or data.max() >= rows):
        bad = int(data.min() if data.min() < 0 else data.max())
        raise ShapeError(f"index {bad} is out of range for an embedding of {rows} rows "
                         f"(weight {tuple(weight.shape)}, indices {tuple(input.shape)})", op=op)
    if max_norm is not None:
        _embedding_renorm_(weight, input, float(max_norm), norm_type)
    out = api.index(weight, [input], (("t", 0),))
    if scale_grad_by_freq:
        # frozen + (out - frozen) * s is out exactly, and passes s times out's gradient.
        scale = api.div(1.0, api.index(_lookup_counts(input, weight), [input], (("t", 0),)))
        frozen = api.detach(out)
        out = api.add(frozen, api.mul(api.sub(out, frozen), scale))
    if padding_idx is not None:
        out = api.where(api.unsqueeze(api.eq(input, padding_idx), -1), api.detach(out), out)
    return out


def _padding_index(padding_idx, rows, who):
    if padding_idx is None:
        return None
    if not -rows <= padding_idx < rows:
        raise ValueError(f"{who}: padding_idx {padding_idx} must be within num_embeddings "
                         f"({rows})")
    return padding_idx % rows


# ---- normalisation --------------------------------------------------------------------------

def _normalized(x, dims, eps):
    """``(x - mean) / sqrt(var + eps)`` over ``dims`` (biased variance, as PyTorch's norms)."""
    d = api.sub(x, api.mean(x, dims, keepdim=True))
    var = api.mean(api.mul(d, d), dims, keepdim=True)
    return api.mul(d, api.rsqrt(api.add(var, eps)))


def _shape_tuple(shape) -> tuple:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalise over the last ``len(normalized_shape)`` dims (mean 0, biased variance 1),
    then ``* weight + bias`` (both of ``normalized_shape``)."""
    shape = _shape_tuple(normalized_shape)
    n = len(shape)
    if n == 0 or len(input.shape) < n or tuple(input.shape[len(input.shape) - n:]) != shape:
        raise ShapeError(f"input of shape {tuple(input.shape)} does not end in normalized_shape "
                         f"{shape}", op="layer_norm")
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ShapeError(f"{what} of shape {tuple(t.shape)} must have normalized_shape "
                             f"{shape}", op="layer_norm")
    out = _normalized(input, tuple(range(len(input.shape) - n, len(input.shape))), eps)
    if weight is not None:
        out = api.mul(out, weight)
    return out if bias is None else api.add(out, bias)


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """Input [N, C, *]: the C channels in ``num_groups`` groups, each normalised over its
    channels and the trailing dims; then ``* weight + bias`` per channel (shape [C])."""
    shape = tuple(input.shape)
    if len(shape) < 2:
        raise ShapeError(f"input must be [N, C, *], got shape {shape}", op="group_norm")
    c = shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ShapeError(f"{c} channels (input {shape}) cannot be split into {num_groups} "
                         "groups", op="group_norm")
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"{what} of shape {tuple(t.shape)} must have one entry per channel, "
                             f"({c},), for input {shape}", op="group_norm")
    grouped = api.reshape(input, (shape[0], num_groups, -1))
    out = api.reshape(_normalized(grouped, (2,), eps), shape)
    per_channel = (c,) + (1,) * (len(shape) - 2)
    if weight is not None:
        out = api.mul(out, api.reshape(weight, per_channel))
    return out if bias is None else api.add(out, api.reshape(bias, per_channel))


def _nonzero_norm(x, dim, eps):
    """``max(||x||_2, eps)`` along ``dim`` (kept), with a finite gradient where it is eps."""
    sq = api.sum(api.mul(x, x), dim, keepdim=True)
    small = api.le(sq, eps * eps)
    return api.where(small, eps, api.sqrt(api.where(small, 1.0, sq)))


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12):
    """``input / max(||input||_p, eps)`` along ``dim``."""
    d = normalize_dim("normalize", dim, len(input.shape))
    norm = _nonzero_norm(input, d, eps) if p == 2 else api.maximum(_vector_norm(input, p, d), eps)
    return api.div(input, norm)


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8):
    """``x1 . x2 / (max(||x1||, eps) max(||x2||, eps))`` along ``dim``; ``x1`` and ``x2``
    broadcast against each other."""
    shape = broadcast_shapes("cosine_similarity", tuple(x1.shape), tuple(x2.shape))
    x1, x2 = api.expand(x1, shape), api.expand(x2, shape)
    d = normalize_dim("cosine_similarity", dim, len(shape))
    n1, n2 = _nonzero_norm(x1, d, eps), _nonzero_norm(x2, d, eps)
    return api.sum(api.mul(api.div(x1, n1), api.div(x2, n2)), d)


# ---- attention ------------------------------------------------------------------------------

def _causal_mask(q_len: int, k_len: int):
    """[q_len, k_len] bool, True on and below the diagonal (``tril``): who may attend."""
    return api.constant(np.tril(np.ones((q_len, k_len), dtype=bool)))


def _mask_bias(mask, true_keeps: bool, dtype):
    """A bool mask as an additive float one of ``dtype``: 0 where attention is allowed,
    -inf where not. ``true_keeps``: True marks allowed positions (scaled_dot_product_
    attention's convention) rather than masked ones (MultiheadAttention's)."""
    keep, drop = (0.0, -math.inf) if true_keeps else (-math.inf, 0.0)
    return api.cast(api.where(mask, keep, drop), dtype)


def _attention(q, k, v, bias, scale, dropout_p, who):
    """``(softmax(q k^T * scale + bias) v, the weights)``; ``bias`` is None or a float
    additive mask (-inf where attention is not allowed), broadcast over the scores."""
    scores = api.mul(api.matmul(q, api.transpose(k, -2, -1)), scale)
    if bias is not None:
        scores = api.add(scores, bias)
    weights = _dropout(api.softmax(scores, -1), dropout_p, who)
    return api.matmul(weights, v), weights


def _repeat_heads(x, groups: int):
    """``repeat_interleave(x, groups, dim=-3)``: each key/value head shared by ``groups``
    query heads (grouped-query attention)."""
    shape = tuple(x.shape)
    lead, h = shape[:-3], shape[-3]
    x = api.expand(api.unsqueeze(x, -3), lead + (h, groups) + shape[-2:])
    return api.reshape(x, lead + (h * groups,) + shape[-2:])


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False):
    """``softmax(Q K^T * scale + mask) V`` for query [..., L, E], key [..., S, E] and value
    [..., S, Ev] (leading dims broadcast), with scale ``1/sqrt(E)`` unless given. A bool
    ``attn_mask`` says which positions TAKE PART (True) and a float one is added to the
    scores; ``is_causal`` masks everything above the diagonal (and excludes ``attn_mask``).
    As in PyTorch, ``dropout_p`` applies whatever the training mode (pass 0 in evaluation);
    a fully masked row gives NaN. ``enable_gqa``: key and value may have fewer heads (dim
    -3) than query, a divisor of its count."""
    op = "scaled_dot_product_attention"
    q, k, v = query, key, value
    if min(len(q.shape), len(k.shape), len(v.shape)) < 2 or q.shape[-1] != k.shape[-1] \
            or k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"query {tuple(q.shape)}, key {tuple(k.shape)} and value "
                         f"{tuple(v.shape)} must be [..., L, E], [..., S, E] and [..., S, Ev]",
                         op=op)
    if enable_gqa and len(q.shape) >= 3 and k.shape[-3] != q.shape[-3]:
        if q.shape[-3] % k.shape[-3] or k.shape[-3] != v.shape[-3]:
            raise ShapeError(f"{q.shape[-3]} query heads (query {tuple(q.shape)}) cannot share "
                             f"key {tuple(k.shape)} and value {tuple(v.shape)} heads", op=op)
        k = _repeat_heads(k, q.shape[-3] // k.shape[-3])
        v = _repeat_heads(v, q.shape[-3] // v.shape[-3])
    q_len, k_len = q.shape[-2], k.shape[-2]
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
        attn_mask = _causal_mask(q_len, k_len)
    bias = None
    if attn_mask is not None:
        # The scores' shape: the leading dims of query and key broadcast, then [L, S]. The
        # mask must broadcast to it without growing it.
        scores = broadcast_shapes(op, tuple(q.shape[:-2]), tuple(k.shape[:-2])) + (q_len, k_len)
        try:
            fits = broadcast_shapes(op, tuple(attn_mask.shape), scores) == scores
        except ShapeError:
            fits = False
        if not fits:
            raise ShapeError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast "
                             f"to the scores' {scores} (query {tuple(q.shape)}, key "
                             f"{tuple(k.shape)})", op=op)
        bias = (_mask_bias(attn_mask, True, q.dtype) if attn_mask.dtype is dtypes.bool_
                else attn_mask)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return _attention(q, k, v, bias, scale, dropout_p, op)[0]

from .functional_conv import *  # noqa: E402,F401,F403  conv, pooling, batch norm, pad, interpolate
