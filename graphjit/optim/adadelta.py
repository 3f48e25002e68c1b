"""Adadelta."""

from __future__ import annotations

from ..creation import zeros_like

from .optimizer import Optimizer, required

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta.

    For each parameter with gradient ``g`` (negated when ``maximize``)::

        t = t + 1
        g = g + weight_decay * theta                  (if weight_decay != 0)
        v = rho * v + (1 - rho) * g * g
        dx = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * dx * dx
        theta = theta - lr * dx

    State: ``"step"`` (0-d tensor), ``"square_avg"`` (v) and
    ``"acc_delta"`` (u).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *,
                 maximize=False, fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults, fused=fused)

    def _update(self, p, g, group):
        rho, eps = group["rho"], group["eps"]
        state = self.state[p]
        if not state:
            state["step"] = self._new_step_tensor(p)
            state["square_avg"] = zeros_like(p)
            state["acc_delta"] = zeros_like(p)
        state["step"].add_(1)
        square_avg = state["square_avg"]
        acc_delta = state["acc_delta"]
        square_avg.mul_(rho).addcmul_(g, g, value=1 - rho)
        std = (square_avg + eps).sqrt()
        delta = (acc_delta + eps).sqrt().div_(std).mul_(g)
        acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        p.add_(delta, alpha=-group["lr"])
