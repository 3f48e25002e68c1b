"""RMSprop."""

from __future__ import annotations

from ..creation import zeros_like

from .optimizer import Optimizer, required

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop.

    For each parameter with gradient ``g`` (negated when ``maximize``)::

        t = t + 1
        g = g + weight_decay * theta                       (if weight_decay != 0)
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            ga = alpha * ga + (1 - alpha) * g
            avg = sqrt(v - ga * ga) + eps
        else:
            avg = sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / avg
            theta = theta - lr * b
        else:
            theta = theta - lr * g / avg

    State: ``"step"`` (0-d tensor), ``"square_avg"``, and
    ``"momentum_buffer"`` (momentum > 0) / ``"grad_avg"`` (centered).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0,
                 momentum=0, centered=False, *, maximize=False, fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if alpha < 0.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults, fused=fused)

    def _update(self, p, g, group):
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        centered = group["centered"]
        state = self.state[p]
        if not state:
            state["step"] = self._new_step_tensor(p)
            state["square_avg"] = zeros_like(p)
        if momentum > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = zeros_like(p)
        if centered and "grad_avg" not in state:
            state["grad_avg"] = zeros_like(p)
        state["step"].add_(1)

        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        if centered:
            grad_avg = state["grad_avg"]
            grad_avg.mul_(alpha).add_(g, alpha=1 - alpha)
            avg = (square_avg - grad_avg * grad_avg).sqrt().add_(eps)
        else:
            avg = square_avg.sqrt().add_(eps)

        if momentum > 0:
            buf = state["momentum_buffer"]
            buf.mul_(momentum).addcdiv_(g, avg, value=1)
            p.add_(buf, alpha=-group["lr"])
        else:
            p.addcdiv_(g, avg, value=-group["lr"])
