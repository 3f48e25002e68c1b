"""The ``gemm`` op: a 2-D matrix product with its operands' transposes folded in and an
optional elementwise epilogue (made by passes/gemm after fusion).

# NOTE: [GEMM nodes]
    %5 = gemm(%x, %w, %b, epilogue='t0 = add(i0, i1); t1 = relu(t0)', trans_a=false,
              trans_b=true) : f32[256,512]

computes ``P = op(a) @ op(b)`` (``op`` transposes when ``trans_a``/``trans_b``), then, with an
``epilogue``, the fused body (see [Fused nodes] in fused.py) over inputs ``i0 = P`` and
``i1, i2...`` = the node's inputs after ``a`` and ``b``; the node's results are the body's.
The BLAS call reads a transposed operand in place (a transpose of a C-contiguous matrix
is Fortran-contiguous, which BLAS takes as a flag), so no ``permute`` is materialised, and
the epilogue runs over the product while it is still in cache, writing its results once
instead of storing ``P`` and reading it back in another kernel. An epilogue has no inner
reductions (it may sum over the rows, a bias gradient), and one of its results has ``P``'s
type and is computed from ``P``: the code generator computes ``P`` into that result's buffer
(``product_output``). Each element of that buffer is then read (as ``i0``) before the
epilogue stores the result there. A result that does not read ``P`` (``relu(i1)`` next to
``where(mask, i0, 0)``) would be stored over ``P`` before the body had read it: a wrong
gradient, found by the fuzzer.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ops import registry
from ..shapes import TensorType, numel
from .fused import _impl as fused_impl
from .fused import body_graph, domain, reduced_dims, reduction_layout


def product_type(a: TensorType, b: TensorType, trans_a: bool, trans_b: bool) -> TensorType:
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"needs 2-D operands, got {list(a.shape)} and {list(b.shape)}",
                         op="gemm")
    m, k = a.shape[::-1] if trans_a else a.shape
    k2, n = b.shape[::-1] if trans_b else b.shape
    if k != k2 or a.dtype is not b.dtype:
        raise ShapeError(f"cannot multiply {a.dtype.short}{list(a.shape)}{'.T' * trans_a} and "
                         f"{b.dtype.short}{list(b.shape)}{'.T' * trans_b}", op="gemm")
    return TensorType((m, n), a.dtype)


def epilogue_graph(epilogue: str, product: TensorType, extras):
    """The epilogue body as a Graph over (product, extras...), checked to be legal."""
    body = body_graph(epilogue, [product] + list(extras))
    if tuple(domain(body)) != tuple(product.shape):
        raise ShapeError(f"epilogue runs over {list(domain(body))}, not over the product "
                         f"{list(product.shape)}", op="gemm")
    dims = reduced_dims(body)
    if dims is not None and reduction_layout(product.shape, dims) != "outer":
        raise ShapeError("an epilogue may only reduce over the rows (an outer reduction)",
                         op="gemm")
    if product_output(body, product) is None:
        raise ShapeError(f"no epilogue result computed from the product has its type {product}",
                         op="gemm")
    return body


def product_output(body, product: TensorType):
    """The index of the epilogue result whose buffer the product is computed into (see
    [GEMM nodes]): the first that has the product's type and reads it, or None."""
    reads = {body.inputs[0]}
    for n in body.nodes:
        if any(v in reads for v in n.inputs):
            reads.update(n.outs)
    return next((j for j, v in enumerate(body.outputs) if v.type == product and v in reads),
                None)


def _infer(a, b, *extras, trans_a, trans_b, epilogue):
    p = product_type(a, b, trans_a, trans_b)
    if not epilogue:
        if extras:
            raise ShapeError("extra inputs without an epilogue", op="gemm")
        return p
    types = [v.type for v in epilogue_graph(epilogue, p, extras).outputs]
    return types[0] if len(types) == 1 else types


def _impl(a, b, *extras, trans_a, trans_b, epilogue):
    p = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
    return fused_impl(p, *extras, body=epilogue) if epilogue else p


def _cost(out, a, b, *extras, trans_a, trans_b, epilogue):
    p = product_type(a, b, trans_a, trans_b)
    flops = 2 * numel(p.shape) * (a.shape[0] if trans_a else a.shape[1])
    outs = out if isinstance(out, list) else [out]
    moved = sum(numel(t.shape) * t.dtype.itemsize for t in [a, b, *extras, *outs])
    if epilogue:
        body = epilogue_graph(epilogue, p, extras)
        flops += sum(n.op.cost(n.out.type, *[v.type for v in n.inputs], **n.attrs)[0]
                     for n in body.nodes)
    return flops, moved


GEMM = registry.register(registry.OpDef(
    name="gemm", kind="matmul", infer=_infer, impl=_impl, vjp=None, cost=_cost,
    no_grad_reason="gemm nodes are made by passes/gemm after autodiff has derived every "
                   "gradient"))


# NOTE: [Window GEMM nodes]
#     %4 = window_gemm(%w, %x, %b, epilogue='t0 = add(i0, i1)', kernel=[5, 5], dilation=[1, 1],
#                      stride=[1, 1], padding=[0, 0, 0, 0], pad_value=0.0, trans_a=false,
#                      trans_b=false) : f32[6,50176]
# is ``gemm(a, B, extras...)`` where ``B = reshape(unfold(x, ..., layout='CN'), [C*KH*KW,
# N*OH*OW])``: the windows of image ``x`` as a convolution's right operand (see [Window
# layout] in graphjit/ops/window.py). passes/gemm makes it from such a gemm, so the windows
# are never stored whole: the CPU kernel unfolds a few images at a time into a scratch that
# stays in cache and multiplies right away (a convolution's forward product, ``trans_b``
# false, one GEMM per chunk of images into that chunk's columns), or adds the chunk's part of
# a weight gradient (``a @ B.T``, dot products over the chunk's columns: gemm_nt.py). W7's
# first convolution unfolded 15 MB of windows: written once, read by the forward product and
# again by the weight gradient, from memory each time; and kept alive from the forward to
# the backward. Its ``impl`` unfolds all of ``x`` and runs ``gemm``'s. passes/gemm reads a
# windows value this way only when every product of it gains: a weight gradient that is
# ``dots_shaped``, a forward product of at most WINDOW_FORWARD_MAX_ROWS output channels
# (W8's wider ResNet layers lost 5-10% a step when all of them did).

def dots_shaped(m: int, n: int, k: int) -> bool:
    """Whether ``a[m, k] @ b[n, k].T`` is faster as blocked dot products (the CPU kernel
    backend/cpu/gemm_nt.py, [Dot-product GEMM]) than as an OpenBLAS GEMM: a long inner
    dimension and a small product, as convolutions' weight gradients have
    (benchmarks/gemm_nt.py measures the table this is drawn from)."""
    return k >= 1024 and m * n <= 4096 and min(m, n) <= 32


# A convolution's forward product reads its windows in chunks only when it has at most this
# many output channels: one GEMM per chunk of images has fewer columns than the whole batch,
# which costs OpenBLAS more the more rows the product has (where BLAS is at its best anyway).
WINDOW_FORWARD_MAX_ROWS = 32


def windows_type(x: TensorType, kernel, dilation, stride, padding, pad_value) -> TensorType:
    """The type of ``B`` (above): [C*KH*KW, N*OH*OW]."""
    from ..ops.window import _unfold_infer
    cols = _unfold_infer(x, kernel, dilation, stride, padding, pad_value, "CN")
    c, kh, kw, n, oh, ow = cols.shape
    return TensorType((c * kh * kw, n * oh * ow), x.dtype)


def _window_infer(a, x, *extras, trans_a, trans_b, epilogue, kernel, dilation, stride, padding,
                  pad_value):
    b = windows_type(x, kernel, dilation, stride, padding, pad_value)
    return _infer(a, b, *extras, trans_a=trans_a, trans_b=trans_b, epilogue=epilogue)


def _window_impl(a, x, *extras, trans_a, trans_b, epilogue, kernel, dilation, stride, padding,
                 pad_value):
    from ..ops.window import _unfold
    cols = _unfold(x, tuple(kernel), tuple(dilation), tuple(stride), tuple(padding), pad_value,
                   "CN")
    b = cols.reshape(cols.shape[0] * cols.shape[1] * cols.shape[2], -1)
    return _impl(a, b, *extras, trans_a=trans_a, trans_b=trans_b, epilogue=epilogue)


def _window_cost(out, a, x, *extras, trans_a, trans_b, epilogue, kernel, dilation, stride,
                 padding, pad_value):
    b = windows_type(x, kernel, dilation, stride, padding, pad_value)
    flops, moved = _cost(out, a, b, *extras, trans_a=trans_a, trans_b=trans_b,
                         epilogue=epilogue)
    return flops, moved + (numel(x.shape) - numel(b.shape)) * x.dtype.itemsize


WINDOW_GEMM = registry.register(registry.OpDef(
    name="window_gemm", kind="matmul", infer=_window_infer, impl=_window_impl, vjp=None,
    cost=_window_cost,
    no_grad_reason="window_gemm nodes are made by passes/gemm after autodiff has derived "
                   "every gradient"))
