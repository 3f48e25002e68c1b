"""Stochastic gradient descent (optionally with momentum / Nesterov momentum)."""

from __future__ import annotations


from .optimizer import Optimizer, required

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent.

    For each parameter :math:`\theta` with gradient :math:`g` (negated when
    ``maximize``)::

        g = g + weight_decay * theta                    (if weight_decay != 0)
        if momentum != 0:
            b = g                                       (first step)
            b = momentum * b + (1 - dampening) * g      (later steps)
            g = g + momentum * b   if nesterov else b
        theta = theta - lr * g

    State: ``"momentum_buffer"`` (only when ``momentum != 0``).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize)
        super().__init__(params, defaults, fused=fused)

    def _update(self, p, g, group):
        momentum = group["momentum"]
        if momentum != 0:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.detach().clone()
            else:
                buf.mul_(momentum).add_(g, alpha=1 - group["dampening"])
            g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])
