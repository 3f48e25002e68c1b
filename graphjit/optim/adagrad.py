"""Adagrad."""

from __future__ import annotations

from ..creation import full_like

from .optimizer import Optimizer, required

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad.

    For each parameter with gradient ``g`` (negated when ``maximize``)::

        t = t + 1
        g = g + weight_decay * theta                 (if weight_decay != 0)
        clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + g * g
        theta = theta - clr * g / (sqrt(sum) + eps)

    State: ``"step"`` (0-d tensor) and ``"sum"`` (initialised to
    ``initial_accumulator_value``), created on a parameter's first update.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, *, maximize=False,
                 fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if lr_decay < 0.0:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if initial_accumulator_value < 0.0:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps,
                        weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value,
                        maximize=maximize)
        super().__init__(params, defaults, fused=fused)

    def _update(self, p, g, group):
        state = self.state[p]
        if not state:
            state["step"] = self._new_step_tensor(p)
            state["sum"] = full_like(p, float(group["initial_accumulator_value"]))
        step_t = state["step"]
        step_t.add_(1)
        clr = group["lr"] / ((step_t - 1) * group["lr_decay"] + 1)
        acc = state["sum"]
        acc.addcmul_(g, g, value=1)
        std = acc.sqrt().add_(group["eps"])
        p.sub_((g / std).mul_(clr))
