"""Guards on the Python values a traced function can read, and escapes of traced tensors.

# NOTE: [Python values in a compiled function]
A trace runs the user's Python once; every Python number it reads is then a constant of the
program. Arguments are part of the cache key, optimizer options are runtime inputs
([Hyper-parameters] in optimizers.py), and the rest is guarded here: the simple values (numbers,
strings, None, tuples of those) that the function can reach by name, namely its globals and
closure variables (also those of the functions and comprehensions defined in it), the
attributes of every module reachable from it or its arguments (``self.scale``,
``self.eps``), and the attributes of other objects it names or is passed (a config object's
``cfg.lr``). Their values from before the trace are compared at every call; a changed one
traces again, and ``explain()`` names it. Attributes of modules are compared only after some
module attribute was set since the last comparison (``Module.__setattr__`` counts), so a
steady-state call pays one integer comparison for them.

A Python side effect of the function (``self.calls += 1``) happens once, while tracing,
not at every call; a value it changes is then different at the next call, which traces
again (and warns after a few traces): slower, never silently different.

A traced tensor stored where it outlives the trace (``self.cache = x * 2`` on a module or
an object, a global list) would escape the program; ``check_escapes`` refuses that at trace
time, naming the attribute, and puts the attribute back as it was.
"""
from __future__ import annotations

import dis
import functools
import types

_SIMPLE = (bool, int, float, complex, str, bytes, type(None))
# Module attributes that are not user values (containers of the module's own registry) or
# that other guards own (``training``).
_MODULE_SKIP = frozenset(("_parameters", "_buffers", "_modules", "_non_persistent", "training"))


def _simple(value) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    return type(value) is tuple and all(map(_simple, value))


def _same(a, b) -> bool:
    """Equal values of the same type, NaN equal to NaN (a NaN option must not retrace)."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b or (a != a and b != b)


def _global_reads(code, out: set) -> set:
    """Global names that ``code`` and the code objects nested in it (comprehensions, inner
    functions) load (``LOAD_GLOBAL``: not attribute or method names, which share
    ``co_names``)."""
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            out.add(ins.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _global_reads(const, out)
    return out


def _plain_object(obj) -> bool:
    """An instance of a user class whose attributes Python code may read (not a module,
    function, class or library object)."""
    if isinstance(obj, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                        types.MethodType, type, functools.partial)):
        return False
    return hasattr(obj, "__dict__") and not isinstance(obj, _SIMPLE)


class Reachable:
    """What a function can reach by name: globals, closure cells, ``self``, and the modules
    and plain objects among those and its arguments."""

    def __init__(self, fn, arg_values):
        from ..nn import Module
        target = getattr(fn, "__func__", fn)
        self.globals = []   # (globals dict, name)
        self.cells = []     # (cell, name)
        self.objects = []   # (name, object): plain objects (not modules)
        self.modules = []   # (name, module), every module of every tree
        roots = []
        bound_self = getattr(fn, "__self__", None)
        if bound_self is not None:
            roots.append(("self", bound_self))
        code = getattr(target, "__code__", None)
        if code is not None:
            glb = getattr(target, "__globals__", {})
            for n in sorted(_global_reads(code, set())):
                if n in glb:
                    self.globals.append((glb, n))
                    roots.append((n, glb[n]))
            for n, cell in zip(code.co_freevars, getattr(target, "__closure__", None) or ()):
                self.cells.append((cell, n))
                try:
                    roots.append((n, cell.cell_contents))
                except ValueError:  # an empty cell
                    pass
        elif isinstance(fn, Module):  # a module called directly
            roots.append(("self", fn))
        roots += list(arg_values)
        seen = set()
        for name, obj in roots:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, Module):
                for sub_name, m in obj.named_modules():
                    if id(m) not in seen or m is obj:
                        seen.add(id(m))
                        self.modules.append((f"{name}.{sub_name}" if sub_name else name, m))
            elif _plain_object(obj) and not _is_library_object(obj):
                self.objects.append((name, obj))


def _is_library_object(obj) -> bool:
    """Objects whose attributes are not the user's values: tensors and optimizers (guarded
    elsewhere), and objects of graphjit's, NumPy's and Numba's own classes (a compiled
    function, an array)."""
    from ..optim import Optimizer
    from ..tensor import Tensor
    return (isinstance(obj, (Tensor, Optimizer))
            or type(obj).__module__.split(".")[0] in ("graphjit", "numpy", "numba", "passes"))


class PythonGuards:
    """The simple values a program assumed ([Python values in a compiled function])."""

    def __init__(self, reach: Reachable):
        from ..nn import module as module_mod
        self._counter = module_mod.attribute_changes
        self.entries = []          # (read, expected, description)
        self.module_entries = []
        for glb, n in reach.globals:
            value = glb[n]
            if _simple(value):
                self.entries.append((lambda d=glb, k=n: d.get(k, _MISSING), value, f"global {n}"))
        for cell, n in reach.cells:
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if _simple(value):
                self.entries.append((lambda c=cell: _cell_value(c), value, f"closure variable {n}"))
        for name, obj in reach.objects:
            for k, v in list(vars(obj).items()):
                if _simple(v):
                    self.entries.append((lambda d=vars(obj), key=k: d.get(key, _MISSING), v,
                                         f"attribute {name}.{k}"))
        for name, m in reach.modules:
            for k, v in list(m.__dict__.items()):
                if k not in _MODULE_SKIP and _simple(v):
                    self.module_entries.append((lambda d=m.__dict__, key=k: d.get(key, _MISSING),
                                                v, f"module attribute {name}.{k}"))
        self._checked_at = self._counter()

    def holds(self) -> bool:
        for read, expected, _ in self.entries:
            if not _same(read(), expected):
                return False
        if self.module_entries:
            now = self._counter()
            if now != self._checked_at:
                for read, expected, _ in self.module_entries:
                    if not _same(read(), expected):
                        return False
                self._checked_at = now
        return True

    def failures(self) -> list[str]:
        bad = []
        for read, expected, what in self.entries + self.module_entries:
            now = read()
            if not _same(now, expected):
                shown = "deleted" if now is _MISSING else repr(now)
                bad.append(f"{what}: {expected!r} -> {shown}")
        return bad

    def __bool__(self) -> bool:
        return bool(self.entries or self.module_entries)


_MISSING = object()


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:
        return _MISSING


class AttributeSnapshot:
    """The attribute dicts of what a trace can reach, as they were before it (to find and
    undo escapes of traced tensors)."""

    def __init__(self, reach: Reachable):
        self.dicts = []  # (description, the dict, a shallow copy)
        for name, m in reach.modules:
            self.dicts.append((name, m.__dict__, dict(m.__dict__)))
            self.dicts.append((f"{name} (buffer)", m._buffers, dict(m._buffers)))
        for name, obj in reach.objects:
            self.dicts.append((name, vars(obj), dict(vars(obj))))
        for glb, n in reach.globals:
            value = glb.get(n)
            if isinstance(value, dict):
                self.dicts.append((n, value, dict(value)))
        self.lists = [(n, glb[n], list(glb[n])) for glb, n in reach.globals
                      if isinstance(glb.get(n), list)]

    def check_escapes(self, is_traced) -> None:
        """Raise TraceError if a traced tensor was stored in one of the snapshotted places
        (restoring them first)."""
        found = []
        for name, d, before in self.dicts:
            for k, v in list(d.items()):
                if _holds_traced(v, is_traced) and before.get(k) is not v:
                    found.append(f"{name}.{k}" if not name.endswith("(buffer)")
                                 else f"{name[:-9]}.{k}")
        for name, lst, before in self.lists:
            if any(_holds_traced(v, is_traced) for v in lst):
                found.append(f"{name}[...]")
        if not found:
            return
        self.restore()
        from ..errors import TraceError
        raise TraceError(
            f"{', '.join(found)} was given a tensor computed inside the compiled function; it "
            "would outlive the trace without a value. Return it from the function instead, or "
            "update an existing tensor in place (self.buf.copy_(value), or a buffer registered "
            "with register_buffer)")

    def restore(self) -> None:
        for _, d, before in self.dicts:
            d.clear()
            d.update(before)
        for _, lst, before in self.lists:
            lst[:] = before


def _holds_traced(value, is_traced, depth: int = 1) -> bool:
    if is_traced(value):
        return True
    if depth and isinstance(value, (list, tuple)):
        return any(_holds_traced(v, is_traced, depth - 1) for v in value)
    if depth and isinstance(value, dict):
        return any(_holds_traced(v, is_traced, depth - 1) for v in value.values())
    return False
