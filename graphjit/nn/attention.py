"""``MultiheadAttention`` (``torch.nn.MultiheadAttention``), built on the attention of
``F.scaled_dot_product_attention``."""
from __future__ import annotations

import math

from .. import creation, dtypes
from ..errors import DTypeError, ShapeError
from ..ops import api
from . import functional as F
from . import init
from .layers import Linear
from .module import Module
from .parameter import Parameter

_WHO = "MultiheadAttention"


class MultiheadAttention(Module):
    """Attention over ``num_heads`` heads of ``embed_dim // num_heads`` features each.

    Parameters as PyTorch names them: ``in_proj_weight`` [3E, E] (query, key and value
    projections stacked, xavier-uniform) when key and value have the query's size E, else
    ``q_proj_weight`` [E, E], ``k_proj_weight`` [E, kdim], ``v_proj_weight`` [E, vdim];
    ``in_proj_bias`` [3E] (zeros); ``bias_k`` / ``bias_v`` [1, 1, E] with ``add_bias_kv``
    (xavier-normal); ``out_proj`` a Linear(E, E) whose bias starts at zero.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"{_WHO}: embed_dim ({embed_dim}) and num_heads ({num_heads}) must "
                             "be greater than 0")
        if embed_dim % num_heads:
            raise ValueError(f"{_WHO}: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{_WHO}: dropout must be in [0, 1], got {dropout}")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        e = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(creation.empty(3 * e, e, dtype=dtype))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(creation.empty(e, e, dtype=dtype))
            self.k_proj_weight = Parameter(creation.empty(e, self.kdim, dtype=dtype))
            self.v_proj_weight = Parameter(creation.empty(e, self.vdim, dtype=dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(creation.empty(3 * e, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, dtype=dtype)
        if add_bias_kv:
            self.bias_k = Parameter(creation.empty(1, 1, e, dtype=dtype))
            self.bias_v = Parameter(creation.empty(1, 1, e, dtype=dtype))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()
        if device is not None:
            self.to(device)

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def _projections(self, query, key, value):
        """Query, key and value projected: [L, N, E], [S, N, E], [S, N, E]."""
        e = self.embed_dim
        b = (None,) * 3 if self.in_proj_bias is None else api.split(self.in_proj_bias, e)
        if self._qkv_same_embed_dim:
            if query is key is value:  # self-attention: one product for all three
                return api.chunk(F.linear(query, self.in_proj_weight, self.in_proj_bias), 3, -1)
            w = api.split(self.in_proj_weight, e)
        else:
            w = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        return tuple(F.linear(x, wi, bi) for x, wi, bi in zip((query, key, value), w, b))

    def _check(self, query, key, value, key_padding_mask):
        q, k, v = (tuple(t.shape) for t in (query, key, value))
        batched = len(q) == 3
        if len(q) not in (2, 3) or len(k) != len(q) or len(v) != len(q):
            raise ShapeError(f"query {q}, key {k} and value {v} must all be 3-D (batched) or "
                             "all 2-D (unbatched)", op=_WHO)
        seq, feat = (slice(0, -1), -1)
        if q[feat] != self.embed_dim or k[feat] != self.kdim or v[feat] != self.vdim:
            raise ShapeError(f"query {q}, key {k} and value {v} must end in embed_dim "
                             f"{self.embed_dim}, kdim {self.kdim} and vdim {self.vdim}", op=_WHO)
        if k[seq] != v[seq]:
            raise ShapeError(f"key {k} and value {v} must have the same sequence and batch "
                             "sizes", op=_WHO)
        bdim = (0 if self.batch_first else 1) if batched else None
        if batched and k[bdim] != q[bdim]:
            raise ShapeError(f"query {q} and key {k} must have the same batch size", op=_WHO)
        weight = self.out_proj.weight
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dtype is not weight.dtype:
                raise DTypeError(f"{name} must have the parameters' dtype {weight.dtype.name}, "
                                 f"got {t.dtype.name}", op=_WHO)
        if key_padding_mask is not None:
            expected = (k[bdim], k[1 - bdim]) if batched else (k[0],)
            if tuple(key_padding_mask.shape) != expected:
                raise ShapeError(f"key_padding_mask of shape {tuple(key_padding_mask.shape)} "
                                 f"must be [batch, source length] = {expected} (key {k})",
                                 op=_WHO)
        return batched

    def _float_mask(self, mask, dtype):
        if mask is None or mask.dtype.is_floating_point:
            return mask
        if mask.dtype is not dtypes.bool_:
            raise DTypeError(f"masks must be bool or floating point, got {mask.dtype.name}",
                             op=_WHO)
        return F._mask_bias(mask, False, dtype)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        """``(attn_output, attn_weights)``. Query [L, N, E], key [S, N, kdim], value [S, N,
        vdim] ([N, L, E] ... with ``batch_first``; [L, E] ... unbatched); output like the
        query. ``key_padding_mask`` [N, S]: True (or -inf) for keys to ignore.
        ``attn_mask`` [L, S] or [N * num_heads, L, S]: True where a query may NOT attend, or
        a float mask added to the scores. ``is_causal`` is a hint that ``attn_mask`` is the
        causal mask (which must still be given, as in PyTorch). The weights [N, L, S]
        (averaged over heads) or [N, num_heads, L, S], None unless ``need_weights``;
        dropout (training mode only) applies to them."""
        batched = self._check(query, key, value, key_padding_mask)
        if is_causal and attn_mask is None:
            raise ValueError(f"{_WHO}: is_causal=True is a hint and needs the causal attn_mask "
                             "too (a bool [L, S] mask, True above the diagonal)")
        same = query is key is value
        if batched and self.batch_first:
            query, key, value = (api.transpose(t, 0, 1) for t in (query, key, value))
        elif not batched:
            query, key, value = (api.unsqueeze(t, 1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = api.unsqueeze(key_padding_mask, 0)
        if same:
            key = value = query
        tgt_len, bsz, e = query.shape
        src_len = key.shape[0]
        heads, hd = self.num_heads, self.head_dim
        attn_mask = self._float_mask(attn_mask, query.dtype)
        if attn_mask is not None:
            shapes = {2: (tgt_len, src_len), 3: (bsz * heads, tgt_len, src_len)}
            if tuple(attn_mask.shape) != shapes.get(len(attn_mask.shape)):
                raise ShapeError(f"attn_mask of shape {tuple(attn_mask.shape)} must be "
                                 f"{shapes[2]} or {shapes[3]} ([L, S] or [N * num_heads, L, "
                                 "S])", op=_WHO)
        key_padding_mask = self._float_mask(key_padding_mask, query.dtype)
        q, k, v = self._projections(query, key, value)
        if self.bias_k is not None:
            k = api.cat([k, api.expand(self.bias_k, (1, bsz, e))], 0)
            v = api.cat([v, api.expand(self.bias_v, (1, bsz, e))], 0)
            attn_mask, key_padding_mask = _pad_masks(attn_mask, key_padding_mask)
        # [len, N, E] -> [N, heads, len, head_dim]
        q, k, v = (api.permute(api.reshape(t, (t.shape[0], bsz, heads, hd)), (1, 2, 0, 3))
                   for t in (q, k, v))
        if self.add_zero_attn:
            zeros = creation.zeros(bsz, heads, 1, hd, dtype=q.dtype, device=q.device)
            k, v = api.cat([k, zeros], 2), api.cat([v, zeros], 2)
            attn_mask, key_padding_mask = _pad_masks(attn_mask, key_padding_mask)
        bias = None
        if attn_mask is not None:
            bias = attn_mask if len(attn_mask.shape) == 2 else \
                api.reshape(attn_mask, (bsz, heads) + tuple(attn_mask.shape[1:]))
        if key_padding_mask is not None:
            kpm = api.reshape(key_padding_mask, (bsz, 1, 1, key_padding_mask.shape[-1]))
            bias = kpm if bias is None else api.add(bias, kpm)
        dropout = self.dropout if self.training else 0.0
        out, weights = F._attention(q, k, v, bias, 1.0 / math.sqrt(hd), dropout, _WHO)
        out = api.reshape(api.permute(out, (2, 0, 1, 3)), (tgt_len, bsz, e))
        out = self.out_proj(out)
        if batched and self.batch_first:
            out = api.transpose(out, 0, 1)
        elif not batched:
            out = api.squeeze(out, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = api.mean(weights, 1)
        return out, (weights if batched else api.squeeze(weights, 0))



def _pad_masks(attn_mask, key_padding_mask):
    """One more (always allowed) key at the end: a zero column on each float mask."""
    def pad(m):
        if m is None:
            return None
        return api.cat([m, api.full(tuple(m.shape[:-1]) + (1,), 0, m.dtype)], -1)
    return pad(attn_mask), pad(key_padding_mask)
