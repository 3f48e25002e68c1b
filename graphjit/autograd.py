"""``graphjit.autograd``: autograd's public names, as ``torch.autograd`` has them.

Only names, gathered from where they live: grad mode, the tape's nodes and the eager
interpreter (graphjit/autograd_tape.py), ``backward``/``grad`` and the backward hooks
(graphjit/autograd_engine.py), anomaly mode (graphjit/anomaly.py), custom Functions
(graphjit/autograd_function.py, their ctx in autograd_function_ctx.py). Code inside graphjit
imports those modules, never this one (only graphjit/__init__.py, the package's own list of
public names, does): it stands above all of them ([The tape under Tensor] in
graphjit/autograd_tape.py).
"""
from __future__ import annotations

from .anomaly import (AnomalyError, detect_anomaly, is_anomaly_check_nan_enabled,
                      is_anomaly_enabled, set_detect_anomaly)
from .autograd_engine import RemovableHandle, backward, grad, queue_callback
from .autograd_function import Function, once_differentiable
from .autograd_function_ctx import BackwardCFunction, FunctionCtx
from .autograd_tape import (AccumulateGrad, EagerInterpreter, Node, enable_grad, is_grad_enabled,
                            no_grad, set_grad_enabled)

__all__ = [
    "AccumulateGrad", "AnomalyError", "BackwardCFunction", "EagerInterpreter", "Function",
    "FunctionCtx", "Node", "RemovableHandle", "backward", "detect_anomaly", "enable_grad",
    "grad", "is_anomaly_check_nan_enabled", "is_anomaly_enabled", "is_grad_enabled",
    "no_grad", "once_differentiable", "queue_callback", "set_detect_anomaly",
    "set_grad_enabled"]
