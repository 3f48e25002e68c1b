"""``Module``: the container of parameters, buffers and sub-modules (``torch.nn.Module``)."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

from ..autograd_tape import no_grad
from ..errors import ShapeError
from ..tensor import Tensor
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

# How many module attributes were set or deleted so far, by any module: compiled functions
# compare the Python values they assumed only after it moved ([Python values in a compiled
# function] in graphjit/jit/guards.py).
_attribute_changes = 0


def attribute_changes() -> int:
    return _attribute_changes


class Module:
    """Base class of every layer and model.

    Assigning a ``Parameter`` or a ``Module`` to an attribute registers it; ``parameters()``,
    ``state_dict()``, ``train()``, ``zero_grad()`` and ``to()`` then walk the tree.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- attribute registration ---------------------------------------------------------------

    def __setattr__(self, name, value):
        global _attribute_changes
        _attribute_changes += 1
        if "_parameters" not in self.__dict__:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"cannot assign {type(value).__name__} {name!r} before "
                                     "Module.__init__() call")
            object.__setattr__(self, name, value)
            return
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._drop(name)
            params[name] = value
        elif isinstance(value, Module):
            self._drop(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} "
                                "(a Parameter or None is expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule {name!r}")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer {name!r}")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _drop(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        global _attribute_changes
        _attribute_changes += 1
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def _check_name(self, what: str, name) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() before {what}")
        if not isinstance(name, str):
            raise TypeError(f"{what}: name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{what}: name must be non-empty and contain no '.', got {name!r}")

    def register_parameter(self, name: str, param) -> None:
        self._check_name("register_parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got "
                            f"{type(param).__name__}")
        self._drop(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        self._check_name("register_buffer", name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got "
                            f"{type(tensor).__name__}")
        self._drop(name)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        self._check_name("add_module", name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got "
                            f"{type(module).__name__}")
        self._drop(name)
        self._modules[name] = module

    register_module = add_module

    # ---- calling ------------------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal ----------------------------------------------------------------------------

    def named_modules(self, memo=None, prefix: str = ""):
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store: str, prefix: str, recurse: bool):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), v

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(name, parameter) pairs; a parameter shared by two modules is listed once."""
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str = ""):
        """The sub-module at dotted path ``target`` (``""`` is this module)."""
        m = self
        for part in target.split(".") if target else ():
            if part not in m._modules or m._modules[part] is None:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} "
                                     f"(looking up {target!r})")
            m = m._modules[part]
        return m

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients -------------------------------------------------------------------

    def train(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise ValueError("train(mode): mode must be a bool")
        # Each child's own train() runs, so a subclass that overrides it is honoured.
        object.__setattr__(self, "training", mode)
        for m in self.children():
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                with no_grad():
                    p.grad = p.grad.detach()
                    p.grad.zero_()

    # ---- dtype conversion ----------------------------------------------------------------------

    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to("cuda")``, ``to(device, dtype)``: moves every parameter and
        buffer to the device and converts the floating ones to the dtype, in place.
        Parameter objects keep their identity (their ``.grad`` moves with them), so
        optimizers holding them stay valid; an optimizer's state follows its parameters at
        its next step (see Optimizer._follow)."""
        from ..tensor_device import parse_to_args
        dtype, device, _ = parse_to_args("Module.to", args, kwargs)
        with no_grad():
            for m in self.modules():
                for store in (m._parameters, m._buffers):
                    for name, t in store.items():
                        if t is None:
                            continue
                        converted = _converted(t, dtype, device)
                        if converted is t:
                            continue
                        if isinstance(t, Parameter):
                            grad = t.grad
                            t.data = converted
                            if grad is not None:
                                t.grad = _converted(grad, dtype, device)
                        else:
                            store[name] = converted
        return self

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def cpu(self):
        return self.to("cpu")

    def double(self):
        from ..dtypes import float64
        return self.to(float64)

    def float(self):
        from ..dtypes import float32
        return self.to(float32)

    # ---- state dict ----------------------------------------------------------------------------

    def state_dict(self, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by dotted name, sharing memory (detached)."""
        # As in PyTorch: own entries first, then each child; a module reachable under two
        # names (weight sharing) appears under both.
        out = OrderedDict()
        self._save_to(out, prefix, keep_vars)
        return out

    def _save_to(self, out, prefix, keep_vars):
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m._save_to(out, f"{prefix}{name}.", keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values in place; shapes must match; with ``strict`` the keys must match too."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            src = state_dict[k]
            shape = tuple(src.shape) if hasattr(src, "shape") else None
            if shape != tuple(target.shape):
                errors.append(f"size mismatch for {k}: copying a param with shape {shape} from "
                              f"the checkpoint, the shape in the current model is "
                              f"{tuple(target.shape)}")
        if strict and (missing or unexpected):
            if unexpected:
                errors.insert(0, "unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected))
            if missing:
                errors.insert(0, "missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing))
        if errors:
            raise ShapeError(f"error(s) in loading state_dict for {type(self).__name__}:\n\t"
                             + "\n\t".join(errors), op="load_state_dict")
        with no_grad():
            for k, target in own.items():
                if k in state_dict:
                    target.copy_(state_dict[k])
        return IncompatibleKeys(missing, unexpected)

    # ---- printing ------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        head = type(self).__name__ + "("
        if not lines:
            return head + ")"
        if len(lines) == 1 and not self._modules:
            return head + lines[0] + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _converted(t, dtype, device):
    """``t`` on ``device`` (all tensors move) in ``dtype`` (floating tensors only)."""
    out = t if device is None else t.to(device)
    if dtype is not None and out.dtype.is_floating_point:
        out = out.to(dtype)
    return out
