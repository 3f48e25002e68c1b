"""``grad``: a gradient request in a graph, expanded by ``passes/autodiff``.

``%g = grad(%y, %x)`` is d(sum of y * seed)/dx with seed = ones (``y`` must then have one
element) or ``grad(%y, %x, %seed)`` with an explicit seed of y's shape, as
``backward(gradient=seed)``. Its type is the type of ``x``. A traced ``loss.backward()``
records one such node per leaf that should receive a gradient; the autodiff pass replaces
them all by the backward graph, derived from the VJP rules of the forward nodes.
"""
from __future__ import annotations

from ..errors import DTypeError, GraphjitError, ShapeError
from ..shapes import TensorType, numel
from .registry import OpDef, register


def _grad_infer(y: TensorType, x: TensorType, *seed: TensorType) -> TensorType:
    if len(seed) > 1:
        raise ShapeError("takes (y, x) or (y, x, seed)", op="grad")
    if not y.dtype.is_floating_point or not x.dtype.is_floating_point:
        raise DTypeError(f"needs floating point y and x, got {y.dtype.name} and {x.dtype.name}",
                         op="grad")
    if seed:
        if tuple(seed[0].shape) != tuple(y.shape):
            raise ShapeError(f"seed of shape {seed[0].shape} does not match y of shape {y.shape}",
                             op="grad")
    elif numel(y.shape) != 1:
        raise ShapeError(f"an implicit seed needs a single-element y, got shape {y.shape}", op="grad")
    return TensorType(tuple(x.shape), x.dtype)


def _grad_impl(*arrays):
    raise GraphjitError("a grad request must be expanded by passes/autodiff before it runs",
                        op="grad")


register(OpDef(name="grad", kind="opaque", infer=_grad_infer, impl=_grad_impl, vjp=None,
               no_grad_reason="expanded by passes/autodiff; differentiate again before compiling",
               variadic=True))
