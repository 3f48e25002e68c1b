"""L-BFGS, as ``torch.optim.LBFGS``: options, algorithm, state keys and numbers.

Unlike the other optimizers, a step is a loop of Python decisions on loss values (when to
stop, how far the line search goes), so it runs eagerly only: inside a compiled function
``step`` raises ``TraceError``. The closure it calls may use compiled code (a compiled
model, or a compiled loss-and-backward function); each evaluation is then one call.

The algorithm (Nocedal & Wright, "Numerical Optimization", algorithms 7.4 and 3.5-3.6, with
PyTorch's choices): the parameters are seen as one flat vector. Each iteration takes the
direction ``d = -H g`` from the two-loop recursion over the last ``history_size`` curvature
pairs ``(s, y)`` (a pair is kept only when ``y.s > 1e-10``; ``H0 = (y.s / y.y) I``), then a
step ``t``: ``lr`` (``min(1, 1/|g|_1) * lr`` on the very first iteration), either taken as it
is (``line_search_fn=None``, one evaluation) or refined by a strong-Wolfe line search
(``c1=1e-4``, ``c2=0.9``, cubic interpolation, at most 25 evaluations). It stops after
``max_iter`` iterations or ``max_eval`` evaluations, when ``max |g| <= tolerance_grad``, or
when the step, ``max |t d|``, or the change of the loss falls to ``tolerance_change``.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd_tape import enable_grad, no_grad
from ..ops.api import cat
from ..tensor import Tensor
from graphjit import _tracing
from graphjit.errors import TraceError

from .optimizer import Optimizer

__all__ = ["LBFGS"]


def _dot(a, b) -> float:
    return float(a.dot(b))


def _max_abs(t) -> float:
    return float(t.abs().max())


def _evaluate(closure):
    with enable_grad():
        return closure()


class LBFGS(Optimizer):
    """L-BFGS over all parameters as one vector (``torch.optim.LBFGS``).

    Args: ``lr`` (1), ``max_iter`` (20: iterations per ``step``), ``max_eval`` (closure
    evaluations per step; default ``max_iter * 5 // 4``), ``tolerance_grad`` (1e-7),
    ``tolerance_change`` (1e-9), ``history_size`` (100), ``line_search_fn`` (None or
    ``"strong_wolfe"``).

    ``step(closure)`` needs a closure that clears the gradients, computes the loss, calls
    ``backward()`` and returns the loss; it returns the loss of the first evaluation, as
    PyTorch's. One parameter group only (as in PyTorch). The state (``func_evals``,
    ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``,
    ``prev_flat_grad``, ``prev_loss``, ``al``) is kept under the first parameter, so
    ``state_dict()`` / ``load_state_dict()`` resume a run exactly; scalars are Python
    floats where PyTorch keeps 0-d tensors.

    Its ``step`` decides in Python on loss values, so it refuses to run inside
    ``graphjit.compile`` (``TraceError``); call it outside, with a closure that may call
    compiled code.
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got "
                             f"{line_search_fn!r} (only 'strong_wolfe' is supported)")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults, fused=False)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As every optimizer's. Called in a compiled closure, it does not make the program
        depend on the optimizer: reading ``param_groups`` while tracing would register it
        with the tracer (see [Custom optimizers while tracing] in optimizer.py), whose
        guards would then see the state tensors each step replaces and trace again at every
        step. Only ``.grad`` changes here, and the tracer follows that by itself."""
        changes = self._changes
        owner, changes.owner = changes.owner, None
        try:
            super().zero_grad(set_to_none)
        finally:
            changes.owner = owner

    # ---- the parameters as one flat vector ----------------------------------------------------

    @property
    def _params(self):
        return self.param_groups[0]["params"]

    def _gather_flat_grad(self):
        """The gradients as one new vector (zeros for parameters without one)."""
        views = [p.new_zeros(p.numel()) if p.grad is None else p.grad.reshape(-1)
                 for p in self._params]
        # (A copy even for one parameter: the closure may zero .grad in place later.)
        return cat(views, 0) if len(views) > 1 else views[0].clone()

    def _add_grad(self, step_size: float, update) -> None:
        """``params += step_size * update`` (``update`` flat)."""
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(update[offset:offset + n].view_as(p), alpha=step_size)
            offset += n

    def _clone_param(self):
        return [p.detach().clone() for p in self._params]

    def _set_param(self, values) -> None:
        for p, v in zip(self._params, values):
            p.copy_(v)

    def _directional_evaluate(self, closure, x, t, d):
        """Loss and flat gradient at ``x + t d``; the parameters are put back to ``x``."""
        self._add_grad(t, d)
        loss = float(_evaluate(closure))
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # ---- the step -----------------------------------------------------------------------------

    def step(self, closure):
        """Up to ``max_iter`` L-BFGS iterations; returns the closure's first loss."""
        if _tracing.active() is not None:
            raise TraceError("LBFGS's step makes Python decisions on loss values; call it "
                             "outside the compiled function, which may compile the closure's "
                             "model")
        if closure is None:
            raise RuntimeError("LBFGS.step needs a closure that clears the gradients, "
                               "computes the loss, calls backward() and returns the loss")
        with no_grad():
            return self._step(closure)

    def _step(self, closure):
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size, line_search_fn = group["history_size"], group["line_search_fn"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = _evaluate(closure)
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if _max_abs(flat_grad) <= tolerance_grad:
            return orig_loss  # already optimal

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # 1. the direction
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = _dot(y, s)
                if ys > 1e-10:  # keep the pair only where the curvature is positive
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / _dot(y, y)
                d = _two_loop(flat_grad, old_dirs, old_stps, ro, H_diag,
                              state.setdefault("al", [None] * history_size))
            prev_flat_grad = flat_grad.clone()
            prev_loss = loss

            # 2. the step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(flat_grad.abs().sum())) * lr
            else:
                t = lr
            gtd = _dot(flat_grad, d)  # the directional derivative
            if gtd > -tolerance_change:
                break  # not a descent direction (any more)

            if line_search_fn is not None:
                x_init = self._clone_param()

                def along(x, step, direction):
                    return self._directional_evaluate(closure, x, step, direction)

                loss, flat_grad, t, ls_evals = _strong_wolfe(along, x_init, t, d, loss,
                                                             flat_grad, gtd)
                self._add_grad(t, d)
                opt_cond = _max_abs(flat_grad) <= tolerance_grad
            else:
                self._add_grad(t, d)
                ls_evals = 0
                opt_cond = False
                if n_iter != max_iter:  # (the last iteration's loss is the next step's)
                    loss = float(_evaluate(closure))
                    flat_grad = self._gather_flat_grad()
                    opt_cond = _max_abs(flat_grad) <= tolerance_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals

            # 3. stop?
            if (n_iter == max_iter or evals >= max_eval or opt_cond
                    or _max_abs(d.mul(t)) <= tolerance_change
                    or abs(loss - prev_loss) < tolerance_change):
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss


def _two_loop(flat_grad, old_dirs, old_stps, ro, H_diag, al, on_arrays=None):
    """``-H g`` for the inverse Hessian approximation of the stored pairs (Nocedal & Wright,
    algorithm 7.4); ``al`` (kept in the state, as PyTorch's) receives the alphas."""
    # Four small vector operations per stored pair, hundreds per iteration with the default
    # history: on the CPU they run on the tensors' NumPy arrays (about 2 us each, where an
    # eager graphjit op costs about 100 us), elsewhere as graphjit ops; the same arithmetic.
    if on_arrays is None:
        on_arrays = all(type(t._data) is np.ndarray for t in (flat_grad, *old_dirs, *old_stps))
    if on_arrays:
        def vec(t):
            return t._data

        def dot(a, b):
            return float(np.dot(a, b))
    else:
        vec, dot = (lambda t: t), _dot
    q = -vec(flat_grad)
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = dot(vec(old_stps[i]), q) * ro[i]
        q = q + -al[i] * vec(old_dirs[i])
    r = q * H_diag
    for i in range(len(old_dirs)):
        be_i = dot(vec(old_dirs[i]), r) * ro[i]
        r = r + (al[i] - be_i) * vec(old_stps[i])
    return Tensor._wrap(r) if on_arrays else r


# ---- the strong-Wolfe line search ---------------------------------------------------------------

def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """The minimiser of the cubic through ``(x1, f1)`` and ``(x2, f2)`` with slopes ``g1``,
    ``g2``, clamped to ``bounds`` (default: the interval between x1 and x2); the middle of
    the bounds when the cubic has none."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    with np.errstate(all="ignore"):  # (a degenerate bracket gives inf/nan, not an exception)
        x1, f1, g1, x2, f2, g2 = (np.float64(v) for v in (x1, f1, g1, x2, f2, g2))
        d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
        d2_square = d1 * d1 - g1 * g2
        if not d2_square >= 0:
            return float((lo + hi) / 2.0)
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            at = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            at = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return float(min(max(at, lo), hi))


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                  max_ls=25):
    """A step ``t`` along ``d`` from ``x`` (loss ``f``, gradient ``g``, slope ``gtd``) meeting
    the strong Wolfe conditions (Nocedal & Wright, algorithms 3.5 and 3.6): first widen
    until a bracket holds an acceptable step, then narrow it by cubic interpolation, with
    safeguards against steps too close to its ends. ``obj_func(x, t, d)`` gives
    ``(loss, flat gradient)`` at ``x + t d``. Returns ``(loss, gradient, t, evaluations)``."""
    d_norm = _max_abs(d)
    f_new, g_new = obj_func(x, t, d)
    evals = 1
    gtd_new = _dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0

    # Phase 1: bracketing.
    while ls_iter < max_ls:
        no_decrease = f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev)
        if not no_decrease and abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]  # both conditions hold
            done = True
            break
        if no_decrease or gtd_new >= 0:
            # The minimum is before t, or the slope turned: it is between t_prev and t.
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # Still going down: extrapolate, between 1.01 t - 0.01 t_prev and 10 t.
        low, high = t + 0.01 * (t - t_prev), t * 10
        t_prev, t = t, _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                          bounds=(low, high))
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # Phase 2: zoom. bracket[low] always has the lower loss.
    insufficient_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break  # the bracket is too small to matter
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        # A point too close to an end of the bracket makes little progress: move it
        # in by a tenth of the bracket when that happened twice, or at an end itself.
        top, bottom = max(bracket), min(bracket)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:
            if insufficient_progress or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            # No sufficient decrease: t becomes the high end.
            bracket[high], bracket_f[high] = t, f_new
            bracket_g[high], bracket_gtd[high] = g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True  # the curvature condition holds too
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                # The old low end becomes the high end.
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low] = t, f_new
            bracket_g[low], bracket_gtd[low] = g_new, gtd_new

    return bracket_f[low], bracket_g[low], bracket[low], evals
