"""Test helpers: numerical gradient checks, closeness assertions, domain-aware samples.

- ``gradcheck(fn, inputs)`` compares the gradients graphjit's autograd computes with float64
  central differences, like ``torch.autograd.gradcheck``.
- ``gradgradcheck(fn, inputs)`` does the same for second derivatives (``create_graph=True``),
  like ``torch.autograd.gradgradcheck``.
- ``assert_close(actual, expected)`` compares tensors, arrays and scalars with dtype-based
  default tolerances, like ``torch.testing.assert_close``.
- ``make_array(rng, shape, domain, dtype)`` samples test data from an op's domain, keeping
  away from the points where finite differences are invalid (kinks, ties, poles).

Only NumPy is imported at module level; graphjit is imported lazily so that this module can
be imported on its own (and by the core's own modules) without cycles.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck", "assert_close", "make_array",
           "DOMAINS"]


class GradcheckError(AssertionError):
    """An analytical gradient that disagrees with the numerical one (or is malformed)."""


def _gj():
    import graphjit  # lazy: graphjit may import this module itself
    return graphjit


def _is_tensor(x) -> bool:
    return isinstance(x, _gj().Tensor)


def _as_tuple(x) -> tuple:
    if isinstance(x, (tuple, list)):
        return tuple(x)
    return (x,)


def _storage(t) -> np.ndarray:
    """The NumPy array behind tensor ``t`` (shares memory; writes change ``t``)."""
    return _gj().Tensor.detach(t).numpy()


def _to_numpy(t) -> np.ndarray:
    return np.array(_storage(t), copy=True)


def _is_float_tensor(t) -> bool:
    return _is_tensor(t) and t.dtype.is_floating_point


# ---- gradcheck ------------------------------------------------------------------------------

def _eval_outputs(fn, inputs) -> list:
    """Run ``fn`` and return its floating outputs as float64 NumPy arrays (None for others)."""
    outs = _as_tuple(fn(*inputs))
    result = []
    for o in outs:
        if _is_float_tensor(o):
            result.append(np.asarray(_to_numpy(o), dtype=np.float64))
        else:
            result.append(None)
    return result


def _numerical_jacobians(fn, inputs, diff_idx, out_templates, eps):
    """``jac[(i, k)]``: d out_k / d input_i by central differences, shape (numel_in, numel_out).

    Each input element is perturbed in place (in the tensor's own storage, under no_grad) and
    restored to its exact original bits afterwards.
    """
    gj = _gj()
    jac = {}
    for i in diff_idx:
        x = inputs[i]
        storage = _storage(x)
        n_in = storage.size
        for k, tmpl in enumerate(out_templates):
            if tmpl is not None:
                jac[(i, k)] = np.zeros((n_in, tmpl.size), dtype=np.float64)
        for flat in range(n_in):
            idx = np.unravel_index(flat, storage.shape)
            orig = storage[idx].copy()
            try:
                with gj.no_grad():
                    storage[idx] = orig + eps
                    plus = _eval_outputs(fn, inputs)
                    storage[idx] = orig - eps
                    minus = _eval_outputs(fn, inputs)
            finally:
                storage[idx] = orig
            for k, tmpl in enumerate(out_templates):
                if tmpl is None:
                    continue
                if plus[k] is None or minus[k] is None:
                    raise GradcheckError(f"gradcheck: output {k} changed from a floating tensor to "
                                         "a non-floating value between evaluations")
                jac[(i, k)][flat] = ((plus[k] - minus[k]) / (2.0 * eps)).reshape(-1)
    return jac


def _analytical_jacobians(fn, inputs, diff_idx):
    """``jac[(i, k)]`` from one backward pass per output element (vector-Jacobian products
    with unit vectors), plus the float64 forward values of the outputs."""
    gj = _gj()
    with gj.enable_grad():
        outs = _as_tuple(fn(*inputs))
    diff_inputs = [inputs[i] for i in diff_idx]
    templates = []
    jac = {}
    for k, o in enumerate(outs):
        if not _is_float_tensor(o):
            templates.append(None)
            continue
        value = np.asarray(_to_numpy(o), dtype=np.float64)
        templates.append(value)
        n_out = value.size
        for i in diff_idx:
            jac[(i, k)] = np.zeros((inputs[i].numel(), n_out), dtype=np.float64)
        if not o.requires_grad:
            continue  # output independent of every input, as far as autograd knows: zero rows
        for j in range(n_out):
            unit = np.zeros(value.shape, dtype=o.dtype.np)
            unit.reshape(-1)[j] = 1
            grads = gj.grad(o, diff_inputs, grad_outputs=gj.tensor(unit, dtype=o.dtype),
                            retain_graph=True, allow_unused=True)
            for i, x, g in zip(diff_idx, diff_inputs, grads):
                if g is None:
                    continue
                if tuple(g.shape) != tuple(x.shape):
                    raise GradcheckError(f"gradcheck: the gradient of input {i} has shape "
                                         f"{tuple(g.shape)}, expected the input's shape "
                                         f"{tuple(x.shape)}")
                if g.dtype is not x.dtype:
                    raise GradcheckError(f"gradcheck: the gradient of input {i} has dtype "
                                         f"{g.dtype}, expected the input's dtype {x.dtype}")
                jac[(i, k)][:, j] = np.asarray(_to_numpy(g), dtype=np.float64).reshape(-1)
    return jac, templates


def _fmt_index(flat, shape):
    if len(shape) == 0:
        return "()"
    return str(tuple(int(v) for v in np.unravel_index(flat, shape)))


def _jacobian_report(i, k, x_shape, out_shape, analytical, numerical, atol, rtol):
    diff = np.abs(analytical - numerical)
    allowed = atol + rtol * np.abs(numerical)
    excess = diff - allowed
    # NaNs never compare close; put them first.
    excess = np.where(np.isnan(excess), np.inf, excess)
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    rel = diff / np.maximum(np.abs(numerical), np.finfo(np.float64).tiny)
    n_bad = int(np.sum(~(diff <= allowed)))
    lines = [
        f"Jacobian mismatch for output {k} with respect to input {i}",
        f"  input {i} shape {tuple(x_shape)}, output {k} shape {tuple(out_shape)}",
        f"  mismatched entries: {n_bad} / {diff.size}",
        f"  worst entry: d out{k}{_fmt_index(worst[1], out_shape)} / "
        f"d in{i}{_fmt_index(worst[0], x_shape)}: analytical {float(analytical[worst])!r}, "
        f"numerical {float(numerical[worst])!r}",
        f"  max abs error {np.nanmax(diff) if diff.size else 0.0:.6g}, "
        f"max rel error {np.nanmax(rel) if rel.size else 0.0:.6g} (atol={atol}, rtol={rtol})",
    ]
    if diff.size <= 64:
        with np.printoptions(precision=6, suppress=True, linewidth=120):
            lines.append("  analytical (rows: input elements, cols: output elements):\n"
                         + _indent(str(analytical), 4))
            lines.append("  numerical:\n" + _indent(str(numerical), 4))
    return "\n".join(lines)


def _indent(text, n):
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Check the gradients of ``fn`` at ``inputs`` against float64 central differences.

    ``inputs`` is a tensor or a tuple of tensors (other values are passed through); every
    floating tensor with ``requires_grad=True`` is checked, and should be float64. ``fn``
    returns a tensor or a tuple of tensors; its floating outputs are checked. For each pair
    (input i, output k) the analytical Jacobian, built from one vector-Jacobian product per
    output element, must satisfy ``|analytical - numerical| <= atol + rtol * |numerical|``
    everywhere, where the numerical Jacobian is ``(f(x + eps) - f(x - eps)) / (2 eps)`` per
    input element. The inputs are restored bit for bit afterwards.

    Returns True on success. On failure raises ``GradcheckError`` (an AssertionError) naming
    the input, the output, the worst entry with both values and the largest errors, or
    returns False when ``raise_exception`` is False. Matches ``torch.autograd.gradcheck``.
    """
    inputs = _as_tuple(inputs)
    diff_idx = [i for i, x in enumerate(inputs) if _is_tensor(x) and x.requires_grad]
    if not diff_idx:
        raise ValueError("gradcheck expects at least one input tensor to require gradient")
    for i in diff_idx:
        x = inputs[i]
        if not x.dtype.is_floating_point:
            raise ValueError(f"gradcheck: input {i} requires grad but has dtype {x.dtype}")
        if x.dtype.np != np.float64:
            warnings.warn(f"gradcheck: input {i} requires grad but is {x.dtype}, not float64; "
                          "finite differences will be imprecise", stacklevel=2)
    saved = [_to_numpy(x) if _is_tensor(x) else None for x in inputs]
    try:
        analytical, templates = _analytical_jacobians(fn, inputs, diff_idx)
        if all(t is None for t in templates):
            raise ValueError("gradcheck: fn returned no floating point tensor")
        numerical = _numerical_jacobians(fn, inputs, diff_idx, templates, eps)
    except GradcheckError:
        if raise_exception:
            raise
        return False
    for i, (x, before) in enumerate(zip(inputs, saved)):
        if before is not None and not np.array_equal(_to_numpy(x), before, equal_nan=True):
            raise GradcheckError(f"gradcheck: input {i} was modified by fn or by the check")
    reports = []
    for k, tmpl in enumerate(templates):
        if tmpl is None:
            continue
        for i in diff_idx:
            a, n = analytical[(i, k)], numerical[(i, k)]
            ok = np.all(np.abs(a - n) <= atol + rtol * np.abs(n))
            if not ok:
                reports.append(_jacobian_report(i, k, inputs[i].shape, tmpl.shape, a, n,
                                                atol, rtol))
    if reports:
        if raise_exception:
            raise GradcheckError("gradcheck failed:\n" + "\n".join(reports))
        return False
    return True


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3,
                  raise_exception=True, seed=0):
    """Check second derivatives: gradcheck of ``(inputs, v) -> vjp(fn, inputs, v)``.

    The vector-Jacobian product is taken with ``create_graph=True``, so this checks that
    graphjit's gradients are themselves correctly differentiable, with respect to both the
    inputs and the cotangent ``v``. ``grad_outputs`` defaults to random float64 tensors (a
    fixed ``seed``). Matches ``torch.autograd.gradgradcheck``.
    """
    gj = _gj()
    inputs = _as_tuple(inputs)
    diff_idx = [i for i, x in enumerate(inputs) if _is_tensor(x) and x.requires_grad]
    if not diff_idx:
        raise ValueError("gradgradcheck expects at least one input tensor to require gradient")
    with gj.enable_grad():
        outs = _as_tuple(fn(*inputs))
    float_outs = [k for k, o in enumerate(outs) if _is_float_tensor(o)]
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = tuple(
            gj.tensor(rng.uniform(-1.0, 1.0, size=tuple(outs[k].shape)).astype(outs[k].dtype.np),
                      dtype=outs[k].dtype, requires_grad=True)
            for k in float_outs)
    else:
        grad_outputs = _as_tuple(grad_outputs)
    n = len(inputs)

    def first_derivative(*args):
        # gradcheck evaluates its function under no_grad for the finite differences; the
        # first derivative needs the tape whatever the ambient mode is.
        xs, vs = args[:n], args[n:]
        diff = [xs[i] for i in diff_idx]
        with gj.enable_grad():
            ys = _as_tuple(fn(*xs))
            pairs = [(ys[k], v) for k, v in zip(float_outs, vs) if ys[k].requires_grad]
            if not pairs:
                return tuple(gj.zeros_like(x) for x in diff)
            grads = gj.grad([p[0] for p in pairs], diff, grad_outputs=[p[1] for p in pairs],
                            create_graph=True, allow_unused=True)
        return tuple(gj.zeros_like(x) if g is None else g for x, g in zip(diff, grads))

    return gradcheck(first_derivative, tuple(inputs) + tuple(grad_outputs), eps=eps, atol=atol,
                     rtol=rtol, raise_exception=raise_exception)


# ---- assert_close ---------------------------------------------------------------------------

# (rtol, atol) by NumPy dtype kind/size, as torch.testing.assert_close.
_DEFAULT_TOLERANCES = {
    np.dtype(np.float16): (1e-3, 1e-5),
    np.dtype(np.float32): (1.3e-6, 1e-5),
    np.dtype(np.float64): (1e-7, 1e-7),
}


def _default_tolerance(dtype: np.dtype):
    if dtype.kind == "f":
        return _DEFAULT_TOLERANCES.get(dtype, (1e-7, 1e-7))
    return (0.0, 0.0)


def _describe(x):
    """(array, dtype label, whether the dtype is meaningful) for a tensor, array or scalar."""
    if _is_tensor(x):
        return np.asarray(_to_numpy(x)), repr(x.dtype), True
    if isinstance(x, np.ndarray):
        return x, f"numpy.{x.dtype}", True
    if isinstance(x, np.generic):
        return np.asarray(x), f"numpy.{x.dtype}", True
    if isinstance(x, (bool, int, float)):
        return np.asarray(x), type(x).__name__, False
    if isinstance(x, (list, tuple)):
        return np.asarray(x), type(x).__name__, False
    raise TypeError(f"assert_close: cannot compare a {type(x).__name__}")


def _np_dtype_of(x, arr):
    if _is_tensor(x):
        return x.dtype.np
    return arr.dtype


def assert_close(actual, expected, rtol=None, atol=None, msg=None, *, check_dtype=True,
                 equal_nan=False):
    """Assert ``actual`` and ``expected`` are close, like ``torch.testing.assert_close``.

    Accepts graphjit tensors, NumPy arrays and Python scalars (or lists). Shapes must be
    equal (no broadcasting); with ``check_dtype`` the dtypes must be equal too when both
    sides carry one (a Python scalar or list adapts to the other side). Floating values pass
    when ``|actual - expected| <= atol + rtol * |expected|``; integers and bools must be
    equal. Default tolerances by dtype: float32 rtol 1.3e-6 / atol 1e-5, float64 1e-7 / 1e-7,
    exact for integers and bools; when the two dtypes differ the looser one applies. Pass
    both rtol and atol or neither. ``msg`` (a string, or a callable taking the default
    message) replaces the message.
    """
    if (rtol is None) != (atol is None):
        raise ValueError("assert_close: pass both rtol and atol, or neither "
                         f"(got rtol={rtol}, atol={atol})")
    a, a_label, a_typed = _describe(actual)
    e, e_label, e_typed = _describe(expected)
    a_dt, e_dt = _np_dtype_of(actual, a), _np_dtype_of(expected, e)

    def fail(text):
        if callable(msg):
            text = msg(text)
        elif msg is not None:
            text = msg
        raise AssertionError(text)

    if a.shape != e.shape:
        fail(f"The values for attribute 'shape' do not match: {a.shape} != {e.shape}.")
    if check_dtype and a_typed and e_typed and a_dt != e_dt:
        fail(f"The values for attribute 'dtype' do not match: {a_label} != {e_label}.")

    if rtol is None:
        candidates = [_default_tolerance(dt) for dt, typed in ((a_dt, a_typed), (e_dt, e_typed))
                      if typed or dt.kind == "f"]
        if not candidates:
            candidates = [(0.0, 0.0)]
        rtol = max(c[0] for c in candidates)
        atol = max(c[1] for c in candidates)

    floating = a.dtype.kind in "fc" or e.dtype.kind in "fc"
    if not floating:
        a_cmp, e_cmp = a, e
        if a.dtype.kind == "b" and e.dtype.kind == "b":
            ok = a_cmp == e_cmp
        else:
            a_cmp, e_cmp = a.astype(np.int64), e.astype(np.int64)
            diff = np.abs(a_cmp - e_cmp)
            ok = diff <= atol + rtol * np.abs(e_cmp)
        if np.all(ok):
            return
        n_bad = int(np.sum(~ok))
        first = np.unravel_index(int(np.argmax(~ok)), ok.shape) if ok.ndim else ()
        lines = [f"{'Scalars' if a.ndim == 0 else 'Tensor-likes'} are not equal!", "",
                 f"Mismatched elements: {n_bad} / {ok.size} ({100.0 * n_bad / ok.size:.1f}%)"]
        if a.dtype.kind == "b" and e.dtype.kind == "b":
            lines.append(f"First mismatch at index {tuple(int(i) for i in first)}: "
                         f"{bool(a[first])} != {bool(e[first])}")
        else:
            worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
            lines.append(f"Greatest absolute difference: {int(diff[worst])} at index "
                         f"{tuple(int(i) for i in worst)} (up to {atol} allowed)")
            lines.append(f"Actual {int(a_cmp[worst])} vs expected {int(e_cmp[worst])}")
        fail("\n".join(lines))
        return

    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a64 - e64)
        ok = diff <= atol + rtol * np.abs(e64)
        # Equal infinities are close; inf - inf is nan.
        ok |= (a64 == e64)
        if equal_nan:
            ok |= np.isnan(a64) & np.isnan(e64)
    if np.all(ok):
        return
    n_bad = int(np.sum(~ok))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = diff / np.abs(e64)
    diff_k = np.where(np.isnan(diff), np.inf, diff)
    rel_k = np.where(np.isnan(rel), np.inf, rel)
    worst_abs = np.unravel_index(int(np.argmax(diff_k)), diff.shape) if diff.ndim else ()
    worst_rel = np.unravel_index(int(np.argmax(rel_k)), rel.shape) if rel.ndim else ()
    kind = "Scalars" if a.ndim == 0 else "Tensor-likes"
    lines = [
        f"{kind} are not close!", "",
        f"Mismatched elements: {n_bad} / {ok.size} ({100.0 * n_bad / ok.size:.1f}%)",
        f"Greatest absolute difference: {float(diff[worst_abs])!r} at index "
        f"{tuple(int(i) for i in worst_abs)} (up to {atol} allowed)",
        f"Greatest relative difference: {float(rel[worst_rel])!r} at index "
        f"{tuple(int(i) for i in worst_rel)} (up to {rtol} allowed)",
        f"At the worst absolute difference: actual {float(a64[worst_abs])!r}, "
        f"expected {float(e64[worst_abs])!r}",
    ]
    fail("\n".join(lines))


# ---- sample data ----------------------------------------------------------------------------

def _real(rng, shape):
    return rng.uniform(-2.0, 2.0, size=shape)


def _positive(rng, shape):
    return rng.uniform(0.5, 2.5, size=shape)


def _nonzero(rng, shape):
    """Away from 0 (the kink of abs/relu/sign, the pole of 1/x) by at least 0.25."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.25, 2.0, size=shape)


def _distinct(rng, shape):
    """Pairwise distinct values at least 0.1 apart (unique max/min/argmax everywhere)."""
    n = int(np.prod(shape, dtype=np.int64))
    values = (rng.permutation(n) - n / 2.0) * 0.25 + rng.uniform(-0.05, 0.05, size=n)
    return values.reshape(shape)


def _small_int(rng, shape):
    """Floats drawn from a few integers, so comparisons see ties."""
    return rng.integers(-2, 3, size=shape).astype(np.float64)


def _unit(rng, shape):
    """Inside (-0.9, 0.9): where log1p, atanh-like functions are well conditioned."""
    return rng.uniform(-0.9, 0.9, size=shape)


DOMAINS = {
    "real": _real,
    "positive": _positive,
    "nonzero": _nonzero,
    "away_from_kinks": _nonzero,
    "distinct": _distinct,
    "small_int": _small_int,
    "unit": _unit,
}


def make_array(rng, shape, domain="real", dtype=np.float64) -> np.ndarray:
    """A NumPy array of ``shape`` sampled from ``domain`` (see ``DOMAINS``) as ``dtype``.

    ``dtype`` may be a NumPy dtype or a graphjit dtype. For integer dtypes the samples are
    small integers (in [-5, 5], or [1, 5] for "positive"/"nonzero"); for bool, fair coins.
    """
    dtype = np.dtype(getattr(dtype, "np", dtype))
    shape = tuple(shape)
    if dtype.kind == "b":
        return rng.random(size=shape) < 0.5
    if dtype.kind in "iu":
        if domain in ("positive", "nonzero"):
            return rng.integers(1, 6, size=shape).astype(dtype)
        return rng.integers(-5, 6, size=shape).astype(dtype)
    try:
        sampler = DOMAINS[domain]
    except KeyError:
        raise ValueError(f"make_array: unknown domain {domain!r}; "
                         f"known: {sorted(DOMAINS)}") from None
    out = sampler(rng, shape).astype(dtype)
    if dtype.kind == "f" and domain == "distinct" and out.size:
        # float32 rounding keeps values 0.1 apart distinct; assert it to catch misuse.
        assert len(np.unique(out)) == out.size
    return out
