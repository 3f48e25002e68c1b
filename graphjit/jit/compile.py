"""``CompiledFunction``, what ``@graphjit.compile`` makes of a function: a per-signature cache
of traced, optimised, Numba-compiled programs. (``compile`` itself, which makes a
``CompiledFunction`` or, for a module, a ``CompiledModule`` (compiled_module.py, built on
this one), is in graphjit/jit/__init__.py.)

A call flattens its arguments, looks for a cached program whose guards hold (argument
shapes/dtypes/requires_grad, grad mode, the lifted tensors' shapes and flags, whether each
``.grad`` the function looked at exists, the ``training`` flag of the modules it reaches,
optimizer options, parameters and state), and runs it; otherwise it traces the function
again (``explain()`` says what changed). Running a program is one call into generated
code, then the write-back of the graph's updates into the tensors' buffers, done only
after the program succeeded, so a failing call changes nothing. A call like the previous
one takes a planned path that does the same checks cheaply ([Steady-state calls] in
runtime.py).

Where the parts are: signature.py (flattening arguments, the cache key, names),
trace.py (the tracer; its views, autograd and optimizer parts in tracer_views.py,
tracer_autograd.py, optimizers.py), guards.py and optimizers.py (what a program assumed of
Python values and optimizers), lowering.py (trace -> passes -> program), runtime.py (an
entry: guards, the steady-state call path, the write-back), forward_backward.py (a compiled
forward's compiled backward).
"""
from __future__ import annotations

import functools
import types
import warnings

from .. import anomaly, autograd_tape, devices
from .._gc import paused_gc
from ..tensor import Tensor
from . import guards, lowering, tiers
from .lowering import Lowered, _generate_only
from .runtime import Assumed
from .signature import (_arg_names, _bound_arguments, _describe_sig_change, _flatten,
                        _inspected, _reachable, _reachable_modules, _scan_names, _tensor_sig)
from .trace import trace
from .tracer_tensor import TracerTensor

RECOMPILE_WARN_LIMIT = 8


class GraphjitWarning(UserWarning):
    pass


# In a shortcut check (CompiledFunction._remember): a non-tensor argument, compared as the
# key compares it, by value (Python scalars) or by identity (modules, optimizers, ...).
_BY_VALUE = object()
_BY_IDENTITY = object()


class CompiledFunction:
    """What ``graphjit.compile(fn)`` returns: call it like ``fn``."""

    def __init__(self, fn, *, verify: bool = False, fastmath: bool = False, tiered=None):
        if hasattr(fn, "__name__"):  # a function or method: look like it (functools.wraps)
            functools.update_wrapper(self, fn)
        else:
            # A callable object (a module): no function metadata to copy (update_wrapper
            # would merge its attributes into ours and leave us without a __name__).
            self.__name__ = self.__qualname__ = type(fn).__name__
            self.__doc__ = type(fn).__doc__
            self.__wrapped__ = fn
        self.fn = fn
        self.verify = verify
        self.fastmath = fastmath
        self.tiered = tiered  # see tiers.py; None: GRAPHJIT_TIERED decides at each trace
        self._cache: dict = {}
        self._one_shot_tiers: dict = {}  # trace number -> tier note of a program not kept
        self._history: list[str] = []
        # Traces before a recompile warning; graphjit's own helpers (clipping over any
        # parameter list) raise it, since each new parameter list is a legitimate trace.
        self.warn_after = RECOMPILE_WARN_LIMIT
        self._last_sig = None
        self._ran_once = False  # the latest program was one-shot ([Optimizer state created while tracing])
        # (entry, argument checks, grad mode, positions of the tensor arguments or None for
        # all of them): the shortcut of [Steady-state calls]
        self._last_call = None

    def __get__(self, obj, objtype=None):
        # Decorating a method: bind like a function would (``obj.method.explain()`` then
        # reaches this object). The instance is an argument, so it is part of the cache key
        # (by identity): each instance gets programs of its own.
        return self if obj is None else types.MethodType(self, obj)

    def _key(self, args, kwargs):
        leaves, paths = [], []
        tree = _flatten((args, kwargs), "", leaves, paths)
        sig = tuple(_tensor_sig(t) for t in leaves)
        return (tree, sig, autograd_tape.is_grad_enabled()), leaves, sig

    def __call__(self, *args, **kwargs):
        if autograd_tape._anomaly_mode and anomaly.wants_call(self):
            return anomaly.compiled_call(self, args, kwargs)  # [Anomaly mode]
        last = self._last_call
        if last is not None and not kwargs:
            # [Steady-state calls]: the arguments of the previous call's signature, checked
            # as _key would see them, then the program's own guards.
            entry, checks, grad_mode, tensor_at = last
            if len(args) == len(checks) and autograd_tape.is_grad_enabled() == grad_mode:
                for a, check in zip(args, checks):
                    if type(a) is not check[0]:
                        break
                    how = check[1]
                    if how is _BY_VALUE or how is _BY_IDENTITY:
                        if a is not check[2] and (how is _BY_IDENTITY or a != check[2]):
                            break
                        continue
                    d = a._data
                    if (d.shape != check[1] or d.dtype != check[2] or type(d) is not check[5]
                            or a._requires_grad != check[3] or (a._grad_fn is None) != check[4]):
                        break
                else:
                    # The flat arguments are the tensors (what "arg" slots index).
                    flat = args if tensor_at is None else [args[i] for i in tensor_at]
                    if entry.guards_hold(flat):
                        return entry.finish(entry.run(flat), flat)
        key, flat, sig = self._key(args, kwargs)
        entries = self._cache.setdefault(key, [])
        for entry in entries:
            if entry.guards_hold(flat):
                self._remember(entry, args, kwargs, key)
                return entry.finish(entry.run(flat), flat)
        reasons = (entries[-1].guard_failures(flat) or None) if entries else None
        with paused_gc():  # [No GC while compiling] in graphjit/_gc.py
            entry, tracer = self._compile(args, kwargs, flat, sig, key, reasons)
        try:
            outputs = entry.run(flat)
        except BaseException:
            tracer.rollback()  # the first run failed: undo the trace's side effects too
            raise
        self._ran_once = entry.one_shot
        if entry.one_shot:
            self._one_shot_tiers[entry.trace_number] = tiers.tier_note(entry)
        else:
            entries.append(entry)
            self._remember(entry, args, kwargs, key)
        return entry.finish(outputs, flat)

    def _remember(self, entry, args, kwargs, key):
        """Keep ``entry`` for the next call's shortcut when the arguments are positional
        tensors, Python scalars or objects (no containers to flatten): their checks are then
        what _key would compare, grad mode aside."""
        self._last_call = None
        if kwargs:
            return
        checks = []
        for a in args:
            if isinstance(a, Tensor):
                if isinstance(a, TracerTensor):
                    return
                checks.append((type(a), a._data.shape, a._data.dtype, a._requires_grad,
                               a._grad_fn is None, type(a._data)))
            elif isinstance(a, (bool, int, float, str, type(None))):
                checks.append((type(a), _BY_VALUE, a))
            elif isinstance(a, (tuple, list, dict)):
                return  # flattened into the key: not worth comparing by hand
            else:
                checks.append((type(a), _BY_IDENTITY, a))  # modules, optimizers...
        tensor_at = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self._last_call = (entry, tuple(checks), key[2],
                           None if len(tensor_at) == len(args) else tensor_at)

    def _compile(self, args, kwargs, flat, sig, key, reasons):
        names = _arg_names(_inspected(self.fn), args, kwargs, len(flat))
        if self._last_sig is None:
            why = ["first call"]
        elif reasons is not None:
            why = reasons
        else:
            why = _describe_sig_change(self._last_sig[1], sig, names)
            if not why and self._ran_once:
                why = ["the previous trace created optimizer state, so its program ran once; "
                       "this is the steady-state step"]
            why = why or ["a new signature"]
            if self._last_sig[0][2] != key[2]:
                why.append(f"grad mode {self._last_sig[0][2]} -> {key[2]}")
            if self._last_sig[0][0] != key[0]:
                why.append("the structure or the static (non-tensor) values of the arguments changed")
        self._last_sig = (key, sig)
        self._history.append(f"trace {len(self._history) + 1}: " + "; ".join(why))
        if len(self._history) > self.warn_after:
            warnings.warn(f"graphjit.compile: {self.__name__} was traced {len(self._history)} times; "
                          f"the latest because: {'; '.join(why)}. See .explain()",
                          GraphjitWarning, stacklevel=3)
        flat_args = list(flat)
        inspected = _inspected(self.fn)
        found = _reachable(inspected, args, kwargs)
        # Python code may branch on `module.training`: the flags at the call are assumed.
        modules = tuple(_reachable_modules(found))
        reach = guards.Reachable(inspected, _bound_arguments(inspected, args, kwargs))
        python_guards = guards.PythonGuards(reach)  # the values before the trace ran
        objects = []  # what the key names by identity
        _flatten((args, kwargs), "", [], [], objects)
        assumed = Assumed(trace_number=len(self._history), modules=modules,
                          training=tuple(m.training for _, m in modules),
                          python_guards=python_guards if python_guards else None,
                          objects=tuple(objects))
        attributes = guards.AttributeSnapshot(reach)
        tracer, result = trace(self.fn, args, kwargs, flat_args, names, _scan_names(found),
                               self.__name__)
        try:
            attributes.check_escapes(lambda v: isinstance(v, TracerTensor))
            entry = lowering.lower(tracer, result, verify=self.verify, fastmath=self.fastmath,
                                   assumed=assumed, tier=tiers.tier_mode(self.tiered))
        except BaseException:
            tracer.rollback()
            raise
        for hook in lowering.LOWERED_HOOKS:
            hook(self, entry, flat_args)
        return entry, tracer

    def lower(self, *args, **kwargs) -> "Lowered":
        """Trace and optimise for these example arguments without running anything (no Numba
        compilation either), like JAX's ``jit(f).lower(x)``: ``.as_text(stage)`` gives the IR
        after any stage of the pipeline, ``.kernel_source()`` the generated module(s).
        Python side effects of the trace (optimizer state made by a first step) are undone."""
        return self._lower_only(None, args, kwargs)

    def lower_for(self, device, *args, **kwargs) -> "Lowered":
        """``lower(*args, **kwargs)`` for the target of ``device`` whatever device the
        example tensors are on: ``step.lower_for("cuda", x, y).kernel_source()`` shows the
        CUDA kernels of a step traced on CPU tensors, on a machine with no GPU (the launch
        sizes are the GPU's unless Numba's simulator is on)."""
        target = device if isinstance(device, devices.device) else devices.device(device)
        return self._lower_only(target, args, kwargs)  # (no GPU needed: nothing runs)

    def _lower_only(self, device, args, kwargs):
        key, flat, sig = self._key(args, kwargs)
        inspected = _inspected(self.fn)
        names = _arg_names(inspected, args, kwargs, len(flat))
        tracer, result = trace(self.fn, args, kwargs, list(flat), names,
                               _scan_names(_reachable(inspected, args, kwargs)), self.__name__)
        if device is not None:
            tracer.device = device  # the graph is the same; the target follows the device
        try:
            entry = lowering.lower(tracer, result, verify=self.verify, fastmath=self.fastmath,
                                   build=functools.partial(_generate_only, fastmath=self.fastmath,
                                                           device=tracer.device))
        finally:
            tracer.rollback()
        return Lowered(entry)

    # ---- introspection --------------------------------------------------------------------

    def explain(self) -> str:
        """Why each trace happened: the first call, then what changed (argument dims, dtypes,
        requires_grad, grad mode, a ``.grad`` appearing, optimizer options...), one line per
        trace; a program that did not compile before its first call adds what it ran on
        ("ran on: program step: NumPy interpreter for 3 calls while Numba compiled it in the
        background (2.10 s), native since call 4": tiers.py)."""
        if not self._history:
            return "not traced yet"
        live = {e.trace_number: e for entries in self._cache.values() for e in entries}
        return "\n".join(line + (tiers.tier_note(live[n]) if n in live else
                                 self._one_shot_tiers.get(n, ""))
                         for n, line in enumerate(self._history, 1))

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Wait until every program of this function runs native code: those still on the
        NumPy interpreter while Numba compiles them in the background (tiers.py) switch now,
        so the next call is native. False if ``timeout`` seconds passed first. Raises the
        error of a native program that could not be built. (A compiled forward's backward
        program is built at the first backward; call this after one.)"""
        return tiers.wait_native([e for entries in self._cache.values() for e in entries],
                                 timeout)

    @property
    def cache_size(self) -> int:
        return sum(len(v) for v in self._cache.values())

    def graphs(self):
        """The optimised graphs of every cached program."""
        return [e.graph for entries in self._cache.values() for e in entries]
