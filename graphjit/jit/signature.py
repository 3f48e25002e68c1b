"""What a call looks like to the cache: flattened arguments, their signature, and names.

A call's arguments are flattened (nested tuples, lists and dicts of tensors; ``_flatten``)
into the tensors that become "arg" inputs and a hashable description of the rest (Python
scalars by value, other objects by identity), which with each tensor's signature and the
grad mode is the cache key (``CompiledFunction._key``). ``_describe_sig_change`` words a
changed signature for ``explain()``. The rest names things for the graph and for messages:
the arguments' names, and readable names (``model.0.weight``) for the tensors the function
reaches (its globals, closure cells, ``self`` and arguments), which become the names of
lifted inputs.
"""
from __future__ import annotations

import inspect

from ..tensor import Tensor


def _flatten(obj, path, leaves, names, objects=None):
    """Flatten nested tuples/lists/dicts; returns a hashable tree description. The objects
    it describes by identity are added to ``objects`` when given."""
    if isinstance(obj, Tensor):
        leaves.append(obj)
        names.append(path)
        return ("T",)
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__,) + tuple(_flatten(v, f"{path}.{i}", leaves, names, objects)
                                             for i, v in enumerate(obj))
    if isinstance(obj, dict):
        return ("dict",) + tuple((k, _flatten(obj[k], f"{path}.{k}", leaves, names, objects))
                                 for k in sorted(obj, key=repr))
    if isinstance(obj, (bool, int, float, str, type(None))):
        return ("S", type(obj).__name__, obj)  # a static value: part of the key
    if objects is not None:
        objects.append(obj)
    # Modules, optimizers, ``self`` of a compiled method: by identity. Each program holds
    # the objects its key names this way (``Assumed.objects``), so while it is cached no
    # new object can get one of their ids and be taken for it.
    return ("O", id(obj))


def _tensor_sig(t: Tensor):
    return (tuple(t.shape), t.dtype.name, t.requires_grad, t._grad_fn is None, str(t.device))


def _describe_sig_change(old, new, names) -> list[str]:
    out = []
    for name, a, b in zip(names, old, new):
        if a[0] != b[0]:
            dims = [f"dim {i}: {x} -> {y}" for i, (x, y) in enumerate(zip(a[0], b[0])) if x != y]
            what = ", ".join(dims) if len(a[0]) == len(b[0]) else f"shape {a[0]} -> {b[0]}"
            out.append(f"argument {name}: {what}")
        if a[1] != b[1]:
            out.append(f"argument {name}: dtype {a[1]} -> {b[1]}")
        if a[2] != b[2]:
            out.append(f"argument {name}: requires_grad {a[2]} -> {b[2]}")
        if a[4:] != b[4:]:
            out.append(f"argument {name}: device {a[4]} -> {b[4]}")
    return out


# ---- names -------------------------------------------------------------------------------------

def _inspected(fn):
    """What names a compiled callable's arguments and what it can reach (globals, closure,
    ``self``): a module's ``forward``, bound to it, for a module; else ``fn`` itself."""
    from ..nn import Module
    return fn.forward if isinstance(fn, Module) else fn


def _reachable(fn, args, kwargs) -> dict:
    """The objects the function names: its globals and closure cells, ``self``, arguments."""
    found = {}
    target = getattr(fn, "__func__", fn)
    if getattr(fn, "__self__", None) is not None:
        found["self"] = fn.__self__
    code = getattr(target, "__code__", None)
    if code is not None:
        glb = getattr(target, "__globals__", {})
        for n in code.co_names:
            if n in glb:
                found.setdefault(n, glb[n])
        for n, cell in zip(code.co_freevars, getattr(target, "__closure__", None) or ()):
            try:
                found.setdefault(n, cell.cell_contents)
            except ValueError:
                pass
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        found.update(bound.arguments)
    except (TypeError, ValueError):
        pass
    return found


def _bound_arguments(fn, args, kwargs) -> list:
    try:
        return list(inspect.signature(fn).bind(*args, **kwargs).arguments.items())
    except (TypeError, ValueError):
        return [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())


def _reachable_modules(found) -> list:
    """``(name, module)`` for every module reachable from the objects in ``found``."""
    from ..nn import Module
    out, seen = [], set()
    for base, obj in found.items():
        if isinstance(obj, Module):
            for n, m in obj.named_modules():
                if id(m) not in seen:
                    seen.add(id(m))
                    out.append((f"{base}.{n}" if n else base, m))
    return out


def _scan_names(found) -> dict:
    """Readable names (``model.0.weight``) for tensors reachable from the function."""
    from ..nn import Module
    from ..optim import Optimizer
    names = {}
    for base, obj in found.items():
        if isinstance(obj, Module):
            for n, p in obj.named_parameters():
                names.setdefault(id(p), f"{base}.{n}")
            for n, b in obj.named_buffers():
                names.setdefault(id(b), f"{base}.{n}")
        elif isinstance(obj, Tensor):
            names.setdefault(id(obj), base)
    for base, obj in found.items():
        if isinstance(obj, Optimizer):
            names[("opt", id(obj))] = base
            # Parameters no module named: by their index in the optimizer (its state_dict's).
            params = [p for g in obj.param_groups for p in g["params"]]
            for i, p in enumerate(params):
                names.setdefault(id(p), f"{base}.params.{i}")
    return names


def _arg_names(fn, args, kwargs, count) -> list[str]:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        leaves, names = [], []
        for k, v in bound.arguments.items():
            _flatten(v, k, leaves, names)
        if len(names) == count:
            return names
    except (TypeError, ValueError):
        pass
    return [f"arg{i}" for i in range(count)]

