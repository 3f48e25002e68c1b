"""Adam and AdamW."""

from __future__ import annotations

from ..creation import zeros_like
from ..ops.api import maximum

from .optimizer import Optimizer, required

__all__ = ["Adam", "AdamW"]


def _check_adam_args(lr, betas, eps, weight_decay):
    if lr is not required and lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if eps < 0.0:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    r"""Adam (with optional AMSGrad).

    For each parameter with gradient ``g`` (negated when ``maximize``)::

        t = t + 1
        g = g + weight_decay * theta            (coupled L2, if weight_decay != 0)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** t)
        if amsgrad: v_max = max(v_max, v); v_hat = v_max / (1 - beta2 ** t)
        else:       v_hat = v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (sqrt(v_hat) + eps)

    State: ``"step"`` (0-d tensor), ``"exp_avg"``, ``"exp_avg_sq"`` and, with
    ``amsgrad``, ``"max_exp_avg_sq"``.
    """

    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0, amsgrad=False, *, maximize=False, fused=None):
        _check_adam_args(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize)
        super().__init__(params, defaults, fused=fused)

    def _init_state(self, p, amsgrad):
        state = self.state[p]
        state["step"] = self._new_step_tensor(p)
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)
        if amsgrad:
            state["max_exp_avg_sq"] = zeros_like(p)
        return state

    def _update(self, p, g, group):
        lr = group["lr"]
        beta1, beta2 = group["betas"]
        amsgrad = group["amsgrad"]
        state = self.state[p]
        if not state:
            self._init_state(p, amsgrad)
        elif amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = zeros_like(p)
        step_t = state["step"]
        step_t.add_(1)
        if self._decoupled_weight_decay and group["weight_decay"] != 0:
            p.mul_(1 - lr * group["weight_decay"])

        exp_avg = state["exp_avg"]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(g, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** step_t
        bias_correction2 = 1 - beta2 ** step_t
        if amsgrad:
            max_sq = state["max_exp_avg_sq"]
            max_sq.copy_(maximum(max_sq, exp_avg_sq))
            second = max_sq
        else:
            second = exp_avg_sq
        denom = (second / bias_correction2).sqrt().add_(group["eps"])
        p.sub_((exp_avg / denom).mul_(lr / bias_correction1))


class AdamW(Adam):
    r"""Adam with decoupled weight decay.

    Identical to :class:`Adam` except that weight decay is applied directly
    to the parameter (``theta = theta * (1 - lr * weight_decay)``) before the
    moment updates instead of being added to the gradient.
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=1e-2, amsgrad=False, *, maximize=False, fused=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, fused=fused)
