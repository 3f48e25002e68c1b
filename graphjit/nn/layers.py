"""Layers and containers: Linear, activations, Flatten, Identity, Sequential, ModuleList/Dict."""
from __future__ import annotations

import math
import operator
from collections import OrderedDict

from .. import creation
from ..ops import api
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """``y = x @ weight.T + bias``; weight [out, in] and bias drawn from U(-1/sqrt(in), 1/sqrt(in))
    (PyTorch's default: kaiming_uniform_ with a=sqrt(5))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(creation.empty(out_features, in_features, dtype=dtype))
        if bias:
            self.bias = Parameter(creation.empty(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)  # initialised on the host (one random stream), then moved

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


def _activation(name, fn, doc, inplace=False, **defaults):
    """A Module class wrapping ``fn``; constructor arguments become keyword arguments.

    With ``inplace=True`` the class accepts PyTorch's ``inplace`` flag (so model code written
    for torch runs) but still computes out of place: the result is the same tensor values,
    the input is left unchanged."""
    params = dict(defaults, inplace=False) if inplace else dict(defaults)

    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        if len(args) > len(params):
            raise TypeError(f"{name}() takes at most {len(params)} arguments ({len(args)} given)")
        opts = dict(params)
        for key, value in zip(params, args):
            opts[key] = value
        for key, value in kwargs.items():
            if key not in params:
                raise TypeError(f"{name}() got an unexpected argument {key!r}")
            opts[key] = value
        object.__setattr__(self, "_opts", opts)

    def forward(self, x):
        return fn(x, **{k: v for k, v in self._opts.items() if k != "inplace"})

    def extra_repr(self) -> str:
        # As torch prints them: the options, and ``inplace=True`` only when set.
        return ", ".join(f"{k}={v!r}" for k, v in self._opts.items()
                         if k != "inplace" or v)

    return type(name, (Module,), {"__init__": __init__, "forward": forward,
                                  "extra_repr": extra_repr, "__doc__": doc})


ReLU = _activation("ReLU", api.relu, "max(x, 0)", inplace=True)
Tanh = _activation("Tanh", api.tanh, "tanh(x)")
Sigmoid = _activation("Sigmoid", api.sigmoid, "1 / (1 + exp(-x))")
GELU = _activation("GELU", api.gelu, "x * Phi(x) ('none') or its tanh approximation ('tanh')",
                   approximate="none")
SiLU = _activation("SiLU", api.silu, "x * sigmoid(x)", inplace=True)
LeakyReLU = _activation("LeakyReLU", api.leaky_relu, "x if x > 0 else negative_slope * x",
                        inplace=True, negative_slope=0.01)
ELU = _activation("ELU", lambda x, alpha: F.elu(x, alpha), "x if x > 0 else alpha * (exp(x) - 1)",
                  inplace=True, alpha=1.0)
Softplus = _activation("Softplus", api.softplus, "log(1 + exp(beta x)) / beta", beta=1.0,
                       threshold=20.0)


def _softmax_dim(ndim: int) -> int:
    # PyTorch's legacy choice when Softmax is built without a dim.
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """``exp(x) / sum(exp(x))`` over ``dim`` (without a dim: 0 for 0-, 1- and 3-d input,
    else 1, as PyTorch does)."""

    _fn = staticmethod(api.softmax)

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return self._fn(x, _softmax_dim(x.ndim) if self.dim is None else self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``x - logsumexp(x)`` over ``dim`` (same default dim as ``Softmax``)."""

    _fn = staticmethod(api.log_softmax)


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        return api.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Sequential(Module):
    """Modules applied in order; indexable (``model[0]``, ``model[-1]``, ``model[1:]``)."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def _index(self, idx: int) -> int:
        n = len(self._modules)
        idx = operator.index(idx)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a Sequential of {n} modules")
        return idx % n

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[self._index(idx)][1]

    def __setitem__(self, idx, module):
        key = list(self._modules)[self._index(idx)]
        self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __delitem__(self, idx):
        keys = list(self._modules)
        if isinstance(idx, slice):
            for key in keys[idx]:
                del self._modules[key]
        else:
            del self._modules[keys[self._index(idx)]]
        # Keep the numbering 0..n-1, as PyTorch does after a deletion.
        _renumber(self)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module):
        _insert(self, index, module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


def _renumber(container) -> None:
    mods = list(container._modules.values())
    container._modules.clear()
    for i, m in enumerate(mods):
        container._modules[str(i)] = m


def _insert(container, index: int, module) -> None:
    n = len(container._modules)
    index = operator.index(index)
    if index < 0:
        index = max(index + n, 0)
    mods = list(container._modules.values())
    mods.insert(min(index, n), module)
    container._modules.clear()
    for i, m in enumerate(mods):
        container.add_module(str(i), m)


class ModuleList(Module):
    """A list of modules whose parameters the owner registers (``torch.nn.ModuleList``)."""

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def __getitem__(self, idx):
        items = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(items[idx])
        try:
            return items[operator.index(idx)]
        except IndexError:
            raise IndexError(f"index {idx} is out of range for a ModuleList of {len(items)} "
                             "modules") from None

    def __setitem__(self, idx, module):
        key = list(self._modules)[idx]
        self.add_module(key, module)

    def __delitem__(self, idx):
        keys = list(self._modules)
        for key in (keys[idx] if isinstance(idx, slice) else [keys[idx]]):
            del self._modules[key]
        _renumber(self)

    def __iadd__(self, modules):
        return self.extend(modules)

    def insert(self, index: int, module) -> None:
        _insert(self, index, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


class ModuleDict(Module):
    """A dict of modules, in insertion order (``torch.nn.ModuleDict``)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules) -> None:
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self.add_module(k, m)

    def __delitem__(self, key):
        del self._modules[key]

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self) -> None:
        self._modules.clear()

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()
