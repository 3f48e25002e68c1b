"""``graphjit run SCRIPT.py [args]``: run an existing PyTorch script with graphjit standing in
for ``torch``.

An import hook answers ``import torch``, ``import torch.nn as nn``, ``from torch.utils.data
import DataLoader`` and every other ``torch.X`` module with an *alias module* of graphjit's
module of the same path (``torch.nn.functional`` -> ``graphjit.nn.functional``). An alias
hands out graphjit's own objects (``torch.Tensor is graphjit.Tensor``, subclassing
``torch.nn.Module`` subclasses graphjit's), so the script runs exactly as a graphjit program
written by hand would. ``torch.compile`` is ``graphjit.compile`` (torch's tuning options,
which have no graphjit meaning, are accepted and ignored; ``disable=True`` is honoured).

A name graphjit lacks raises :class:`MissingTorchName` (an ``AttributeError``, so
``hasattr(torch, "x")`` and ``getattr(torch, "x", default)`` work as with torch), whose
message is ``graphjit has no torch.nn.X yet`` followed by the script's file and line; a
missing module raises :class:`MissingTorchModule` (a ``ModuleNotFoundError``) the same way.

The runner adds only what a script needs to start and that has no computing meaning: the
``torch.backends`` flags scripts set (``cudnn.deterministic``, ``cudnn.benchmark``) and ask
(``mps.is_available()`` is False), see ``_SHIMS``. Everything else is graphjit's.

From Python: ``with graphjit.run.torch_aliases(): import torch`` (tests do this), or
:func:`torch_alias` for the ``torch`` alias module itself without touching ``sys.modules``.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import re
import runpy
import sys
import traceback
import types

_GRAPHJIT_DIR = os.path.dirname(os.path.abspath(__file__))


class MissingTorchName(AttributeError):
    """A ``torch`` name that graphjit does not have (yet)."""


class MissingTorchModule(ModuleNotFoundError):
    """A ``torch`` module that graphjit does not have (yet)."""


def graphjit_name(torch_name: str) -> str:
    """``torch.nn.functional`` -> ``graphjit.nn.functional``."""
    return "graphjit" + torch_name[len("torch"):]


def _user_location(skip_runner=True):
    """The innermost frame outside graphjit and the import system, as 'file, line N: code'."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        inside = (os.path.abspath(filename).startswith(_GRAPHJIT_DIR + os.sep)
                  or filename.startswith("<frozen importlib"))
        if not inside:
            line = (traceback.extract_stack(frame, limit=1)[0].line or "").strip()
            return f"{filename}, line {frame.f_lineno}" + (f": {line}" if line else "")
        frame = frame.f_back
    return None


def _missing(what: str) -> str:
    where = _user_location()
    return f"graphjit has no {what} yet" + (f" (at {where})" if where else "")


# --- what the runner adds ----------------------------------------------------------------

def _compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
             options=None, disable=False):
    """``torch.compile`` with graphjit: ``graphjit.compile(model)``. torch's ``fullgraph``,
    ``dynamic``, ``backend``, ``mode`` and ``options`` choose among torch's own compilers
    and have no graphjit meaning; they are accepted and ignored."""
    import graphjit
    if disable:
        return model if model is not None else (lambda fn: fn)
    return graphjit.compile(model) if model is not None else graphjit.compile


class _Flags(types.SimpleNamespace):
    pass


def _backends():
    mps = _Flags(is_available=lambda: False, is_built=lambda: False)
    cudnn = _Flags(deterministic=False, benchmark=False, enabled=True,
                   is_available=lambda: False)
    return types.SimpleNamespace(mps=mps, cudnn=cudnn)


# torch name -> what the alias returns for it when graphjit has no such name itself.
_SHIMS = {
    "torch.compile": lambda: _compile,
    "torch.backends": _backends,
}


# --- alias modules -----------------------------------------------------------------------

_ALIASES: dict[str, "TorchAlias"] = {}


class TorchAlias(types.ModuleType):
    """``torch.X`` standing for ``graphjit.X``: attribute reads go to graphjit's module
    (submodules come back as aliases), writes stay on the alias."""

    def __init__(self, torch_name, target):
        super().__init__(torch_name, getattr(target, "__doc__", None))
        self.__dict__["_graphjit_module"] = target
        self.__dict__["__file__"] = getattr(target, "__file__", None)
        if hasattr(target, "__path__"):
            self.__dict__["__path__"] = []        # a package: `import torch.nn.x` asks the hook

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        target = self.__dict__["_graphjit_module"]
        full = f"{self.__name__}.{attr}"
        if full in _SHIMS and full not in self.__dict__:
            self.__dict__[full] = _SHIMS[full]()
        if full in self.__dict__:
            return self.__dict__[full]
        try:
            value = getattr(target, attr)
        except AttributeError:
            value = _import_or_none(f"{target.__name__}.{attr}")
            if value is None:
                raise MissingTorchName(_missing(full)) from None
        if isinstance(value, types.ModuleType) and value.__name__.startswith("graphjit"):
            return alias(full, value)
        return value

    def __dir__(self):
        return sorted(set(dir(self.__dict__["_graphjit_module"])) | set(self.__dict__))

    def __repr__(self):
        return f"<module {self.__name__!r} (graphjit run: {self.__dict__['_graphjit_module'].__name__})>"


def _import_or_none(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            return None
        raise


def alias(torch_name, module=None):
    """The alias module for ``torch_name`` (one per name, made on first use)."""
    if torch_name not in _ALIASES:
        if module is None:
            module = _import_or_none(graphjit_name(torch_name))
            if module is None:
                raise MissingTorchModule(_missing(f"module {torch_name}"), name=torch_name)
        _ALIASES[torch_name] = TorchAlias(torch_name, module)
    return _ALIASES[torch_name]


def torch_alias():
    """The ``torch`` alias module: ``torch_alias().nn.Linear is graphjit.nn.Linear``."""
    import graphjit
    return alias("torch", graphjit)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of ``torch`` and ``torch.*`` with alias modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch" and not fullname.startswith("torch."):
            return None
        module = alias(fullname)
        return importlib.util.spec_from_loader(fullname, self,
                                               is_package=hasattr(module, "__path__"))

    def create_module(self, spec):
        return alias(spec.name)

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def torch_aliases():
    """Within the block, ``import torch...`` gives graphjit's aliases; afterwards the
    ``torch`` entries of ``sys.modules`` are as they were."""
    saved = {k: v for k, v in sys.modules.items() if k == "torch" or k.startswith("torch.")}
    for k in saved:
        del sys.modules[k]
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        yield torch_alias()
    finally:
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if k == "torch" or k.startswith("torch.")]:
            del sys.modules[k]
        sys.modules.update(saved)


# --- the command -------------------------------------------------------------------------

USAGE = "graphjit run SCRIPT.py [script args]"
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)' from '(torch(?:\.\w+)*)'")


def _print_error(exc, script):
    """The traceback from the script's own frames on, without the runner's and without
    the alias machinery's frames under the script's line."""
    tb = traceback.extract_tb(exc.__traceback__)
    script = os.path.abspath(script)
    start = next((i for i, f in enumerate(tb) if os.path.abspath(f.filename) == script), 0)
    frames = tb[start:]
    if isinstance(exc, (MissingTorchName, MissingTorchModule)):
        while frames and os.path.abspath(frames[-1].filename) == os.path.abspath(__file__):
            frames = frames[:-1]
    print("Traceback (most recent call last):", file=sys.stderr)
    print("".join(traceback.format_list(frames)), end="", file=sys.stderr)
    print("".join(traceback.format_exception_only(type(exc), exc)), end="", file=sys.stderr)


def run_script(script, args=()) -> int:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *args]`` and the torch
    aliases installed; the exit status (1 with the script's traceback on an exception)."""
    if not os.path.isfile(script):
        print(f"graphjit run: no such script: {script} (usage: {USAGE})", file=sys.stderr)
        return 2
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        with torch_aliases():
            try:
                runpy.run_path(script, run_name="__main__")
            except SystemExit as e:
                return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except ImportError as e:
                m = _CANNOT_IMPORT.search(str(e))
                if m and not isinstance(e, MissingTorchModule):
                    # `from torch.nn import X`: Python turns the alias's MissingTorchName
                    # into its own ImportError, dropping the message; say it again.
                    where = next((f for f in reversed(traceback.extract_tb(e.__traceback__))
                                  if os.path.abspath(f.filename) == os.path.abspath(script)),
                                 None)
                    at = f" (at {where.filename}, line {where.lineno}: {where.line})" if where else ""
                    err = MissingTorchName(f"graphjit has no {m.group(2)}.{m.group(1)} yet{at}")
                    err.__traceback__ = e.__traceback__
                    _print_error(err, script)
                else:
                    _print_error(e, script)
                return 1
            except BaseException as e:  # noqa: BLE001 - reported like Python would
                if isinstance(e, KeyboardInterrupt):
                    raise
                _print_error(e, script)
                return 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return 0


def main(argv) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {USAGE}\n\n" + __doc__.split("\n\n")[1], file=sys.stderr)
        return 0 if argv else 2
    return run_script(argv[0], argv[1:])
