"""``custom_function``: a value whose gradient rule is registered at run time.

# NOTE: [Custom gradient rules]
``%y = custom_function(%o, %x0, ..., %xn, %e0, ..., key='MyFn_3', index=0)`` is ``%o``:
its value is its first operand. What makes it an op is its gradient: the VJP with respect
to the other operands is the rule registered under ``key`` (``register_rule``), asked for
result ``index`` of that rule's function. ``graphjit.autograd.Function`` inside a compiled
function traces the user's ``forward`` as ordinary ops into ``%o`` (under ``no_grad``,
so no gradient flows through them), traces its ``backward`` at once into a small program
of registry ops over a gradient placeholder and the values it reads (the inputs ``%xi``,
saved tensors and anything else, passed as the extra operands ``%ei``), and binds this op
to tie them together (graphjit/autograd_function_trace.py). ``passes/autodiff`` then
calls the rule like any VJP, which replays that program through the active interpreter;
``passes/decompose`` (after autodiff) replaces the node by ``%o``, so no backend ever
sees it. Replaying the program on NumPy values (the eager interpreter, the reference
interpreter) works too: the rule only binds registry ops.

The key is a string attribute, so the IR text form of a graph round-trips (the printer and
parser need nothing special), but the rule itself lives in this process: parsing the text
elsewhere gives a graph whose forward runs and whose ``grad`` requests through the node
fail with an error naming the key.

A rule is any object with ``name`` (for messages) and ``vjp(g, inputs, index)``, returning
one gradient (or None) per entry of ``inputs`` (the operands after ``%o``), written with
registry ops (``graphjit.ops.api``) as every VJP rule is. Rules are kept for the life of
the process (one per traced ``Function.apply`` call site and trace; they hold no tensors).
"""
from __future__ import annotations

import itertools
import re

from ..errors import GraphjitError
from .registry import OpDef, bind, register

_RULES: dict = {}
_counter = itertools.count()


def register_rule(rule, name: str) -> str:
    """Keep ``rule`` for the life of the process; returns its new key (``name`` made an
    identifier, plus a number)."""
    key = f"{re.sub(r'[^0-9A-Za-z_.]', '_', name)}_{next(_counter)}"
    _RULES[key] = rule
    return key


def rule(key: str):
    try:
        return _RULES[key]
    except KeyError:
        raise GraphjitError(f"no gradient rule is registered under key {key!r} in this process "
                            "(the rule of a graphjit.autograd.Function lives in the process that "
                            "traced it; IR text naming it can be differentiated only there)",
                            op="custom_function") from None


def custom_function(value, *inputs, key: str, index: int = 0):
    """``value``, with the gradient with respect to ``inputs`` given by rule ``key``."""
    return bind(CUSTOM_FUNCTION, value, *inputs, key=key, index=index)


def _infer(value, *inputs, key, index):
    return value


def _impl(value, *inputs, key, index):
    return value.copy()  # a result of its own: an in-place change of it leaves value alone


def _vjp(g, out, value, *inputs, key, index):
    r = rule(key)
    grads = tuple(r.vjp(g, inputs, index))
    if len(grads) != len(inputs):
        raise GraphjitError(f"the gradient rule of {r.name} returned {len(grads)} gradients for "
                            f"{len(inputs)} inputs", op="custom_function")
    return (None,) + grads  # none through the value: it was computed under no_grad


def _decompose(value, *inputs, key, index):
    return value


def _cost(out, *inputs, key, index):
    return 0, 0  # decomposed before any backend runs it


CUSTOM_FUNCTION = register(OpDef(
    name="custom_function", kind="opaque", infer=_infer, impl=_impl, vjp=_vjp,
    saves=("1:",), variadic=True, decompose=_decompose, cost=_cost))


# NOTE: [In-place changes under no_grad]
# ``with no_grad(): y.zero_()`` on a tensor ``y`` that has a history (a non-leaf requiring
# grad) changes its data and leaves its ``grad_fn`` as it was: a later backward through
# ``y`` reaches what ``y`` was computed from, as if the change had not happened (PyTorch's
# rule; eager mode keeps the node). In a graph the new data is a new value computed under
# no_grad, with no gradient path to anything. The tracer makes it
# ``%y2 = reattach(%new, %y)``: the value of ``%new``, with the gradient passed to ``%y``
# unchanged (and none to ``%new``). ``passes/decompose`` (after autodiff) replaces the
# node by ``%new``, so no backend ever sees it.

def reattach(value, history):
    """``value``, whose gradient goes to ``history`` (see [In-place changes under no_grad])."""
    return bind(REATTACH, value, history)


def _reattach_infer(value, history):
    return value


REATTACH = register(OpDef(
    name="reattach", kind="opaque", infer=_reattach_infer,
    impl=lambda value, history: value.copy(),
    vjp=lambda g, out, value, history: (None, g), saves=(),
    decompose=lambda value, history: value, cost=_cost))
