"""``Embedding``: a lookup table of learned vectors (``torch.nn.Embedding``)."""
from __future__ import annotations

from .. import creation
from ..autograd_tape import no_grad
from ..errors import ShapeError
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class Embedding(Module):
    """``weight`` [num_embeddings, embedding_dim], drawn from N(0, 1) with the ``padding_idx``
    row zeroed, as PyTorch; ``forward(input)`` is ``F.embedding`` (int64 indices of any shape
    -> ``input.shape + (embedding_dim,)``). ``_weight`` gives the table to use (shared, not
    copied) and ``_freeze`` makes it untrainable, as in PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, max_norm=None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
                 _weight=None, _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = F._padding_index(padding_idx, num_embeddings, "Embedding")
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = Parameter(creation.empty(num_embeddings, embedding_dim, dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ShapeError(f"_weight of shape {tuple(_weight.shape)} does not match "
                                 f"num_embeddings, embedding_dim = ({num_embeddings}, "
                                 f"{embedding_dim})", op="Embedding")
            self.weight = Parameter(_weight, requires_grad=not _freeze)
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0.0)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None, max_norm=None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False):
        """An Embedding whose table is ``embeddings`` (2-D; shared, not copied), untrainable
        unless ``freeze=False``; its ``padding_idx`` row is left as given."""
        if len(embeddings.shape) != 2:
            raise ShapeError(f"embeddings must be 2-D, got shape {tuple(embeddings.shape)}",
                             op="Embedding.from_pretrained")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings,
                   _freeze=freeze)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        for name, default in (("padding_idx", None), ("max_norm", None), ("norm_type", 2.0),
                              ("scale_grad_by_freq", False), ("sparse", False)):
            value = getattr(self, name)
            if value != default and not (name == "norm_type" and self.max_norm is None):
                s += f", {name}={value}"
        return s
