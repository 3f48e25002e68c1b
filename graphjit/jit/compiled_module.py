"""``graphjit.compile(module)``: the module, with its calls compiled (``torch.compile(module)``).

# NOTE: [Compiled modules]
``graphjit.compile(model)`` returns a ``CompiledModule``: an ``nn.Module`` that stands for
``model``. Calling it (or its ``forward``) calls ``model`` compiled: ``model.__call__`` is
traced like any compiled function, its parameters and buffers lifted into program inputs,
and its outputs get a compiled backward when they require grad. Everything else is the
original's: attribute reads, writes and deletions, and every ``Module`` method
(``parameters()``, ``state_dict()``, ``load_state_dict()``, ``train()``, ``eval()``, ``to()``,
``zero_grad()``, ``children()``, ``modules()``, ...) runs on ``model`` itself, its own
overrides included. So there is one model with two ways to call it: an optimizer made from
either's parameters trains both, and a change made through either is seen by the next
compiled call (``train()``/``eval()`` flip the ``training`` flags that the program guards, so
the next call traces again for the other mode and both programs are kept).

Unlike PyTorch's ``OptimizedModule``, whose ``state_dict()`` keys gain an ``_orig_mod.``
prefix, the keys are the original's, so a checkpoint saved from one loads into the other.
A ``Module`` method that returns the original itself (``train``, ``eval``, ``to``,
``cuda``, ``apply``, ``requires_grad_``) returns the compiled module, so
``model = gj.compile(model).to(device)`` stays compiled. ``_orig_mod`` (or ``orig_mod``) is
the original; ``explain()``, ``graphs()``, ``wait_compiled()``, ``lower()`` and
``lower_for()`` are the compiled function's. Inside a function being traced (a compiled step calling a compiled model) the
call is traced inline, as any code is.
"""
from __future__ import annotations

from .. import _tracing
from ..nn.module import Module
from .compile import CompiledFunction


class CompiledModule(Module):
    """What ``graphjit.compile(module)`` returns ([Compiled modules])."""

    def __init__(self, module: Module, *, verify: bool = False, fastmath: bool = False,
                 tiered=None):
        # Not Module.__init__: a compiled module has no parameters, buffers or children of its
        # own; what it does not define is looked up on the original (__getattr__).
        object.__setattr__(self, "_orig_mod", module)
        object.__setattr__(self, "_compiled", CompiledFunction(module, verify=verify,
                                                               fastmath=fastmath,
                                                               tiered=tiered))

    @property
    def orig_mod(self) -> Module:
        """The original module (also ``_orig_mod``, PyTorch's name)."""
        return self._orig_mod

    def __call__(self, *args, **kwargs):
        if _tracing.active() is not None:
            return self._orig_mod(*args, **kwargs)
        return self._compiled(*args, **kwargs)

    forward = __call__

    # ---- the compiled function's introspection ------------------------------------------------

    def explain(self) -> str:
        """Why each trace happened (``CompiledFunction.explain``)."""
        return self._compiled.explain()

    def graphs(self):
        """The optimised graphs of every cached program."""
        return self._compiled.graphs()

    def wait_compiled(self, timeout=None) -> bool:
        """``CompiledFunction.wait_compiled``: every program on native code from now on."""
        return self._compiled.wait_compiled(timeout)

    def lower(self, *args, **kwargs):
        """``CompiledFunction.lower``: the IR after each stage and the generated source."""
        return self._compiled.lower(*args, **kwargs)

    def lower_for(self, device, *args, **kwargs):
        return self._compiled.lower_for(device, *args, **kwargs)

    # ---- everything else is the original's ---------------------------------------------------

    def __getattr__(self, name):
        d = self.__dict__
        if "_orig_mod" not in d:  # (being copied or unpickled: nothing to forward to yet)
            raise AttributeError(name)
        return getattr(d["_orig_mod"], name)

    def __setattr__(self, name, value):
        setattr(self._orig_mod, name, value)

    def __delattr__(self, name):
        delattr(self._orig_mod, name)

    def __dir__(self):
        return sorted(set(dir(type(self))) | set(dir(self._orig_mod)))

    def __repr__(self) -> str:
        inner = repr(self._orig_mod).replace("\n", "\n  ")
        return f"{type(self).__name__}(\n  (_orig_mod): {inner}\n)"

    def __reduce__(self):
        # copy.deepcopy and pickle: the original, compiled again (programs are not copied).
        c = self._compiled
        return (_compiled_again, (self._orig_mod, c.verify, c.fastmath, c.tiered))


def _compiled_again(module, verify, fastmath, tiered=None):
    return CompiledModule(module, verify=verify, fastmath=fastmath, tiered=tiered)


def _to_original(name: str):
    """A ``CompiledModule`` method that runs ``Module`` method ``name`` on the original."""
    def method(self, *args, **kwargs):
        original = self._orig_mod
        result = getattr(original, name)(*args, **kwargs)
        return self if result is original else result

    method.__name__ = name
    method.__qualname__ = f"CompiledModule.{name}"
    method.__doc__ = getattr(Module, name).__doc__
    return method


# Every method Module defines, private helpers included (a parent module's traversal calls
# its children's ``named_modules``, ``_save_to``...), runs on the original; what Module does
# not define reaches it through __getattr__.
for _name, _value in vars(Module).items():
    if callable(_value) and not _name.startswith("__") and _name not in vars(CompiledModule):
        setattr(CompiledModule, _name, _to_original(_name))
del _name, _value
