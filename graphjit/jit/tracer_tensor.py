"""``TracerTensor``: a tensor inside a trace, with a static type and an IR value but no data.

Its metadata (shape, dtype, device) comes from the value; what would need data (``.item()``,
``.numpy()``, ``if t:``) raises ``TraceError`` naming the way out; autograd calls
(``backward``, ``detach_``, ``requires_grad = False``) go to its tracer ([Tracing model] in
trace.py). ``HyperTensor`` (an optimizer option) is in optimizers.py.
"""
from __future__ import annotations

from .. import autograd_engine
from ..errors import TraceError
from ..tensor import Tensor
from ..tensor_inplace import Version

_WAYS_OUT = ("Use graphjit.where(cond, a, b) for a data-dependent choice, compute the value "
             "outside the compiled function, or pass it in as a Python number (a static value)")


class TracerTensor(Tensor):
    """A tensor inside a trace: it has a static type and an IR value, but no data."""

    @classmethod
    def _make(cls, value, tracer, requires_grad: bool) -> "TracerTensor":
        t = object.__new__(cls)
        t._data = None
        t._value = value
        t._tracer = tracer
        t._requires_grad = requires_grad
        t._grad_fn = None
        t._output_nr = 0
        t._grad = None
        t._version = Version()
        t._accumulator = None
        t._view = None  # see [Views while tracing]
        return t

    # static metadata
    @property
    def shape(self):
        return tuple(self._value.shape)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self):
        return self._value.dtype

    @property
    def device(self):
        return self._tracer.device  # one device per trace: its tensors'

    @property
    def is_cuda(self) -> bool:
        return self._tracer.device.type == "cuda"

    @property
    def ndim(self):
        return len(self._value.shape)

    def dim(self):
        return self.ndim

    def numel(self):
        n = 1
        for s in self._value.shape:
            n *= s
        return n

    def __len__(self):
        if not self.ndim:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if not self.ndim:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    @property
    def is_leaf(self):
        return False

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        if flag and not self._requires_grad:
            raise TraceError(f"requires_grad_() on a tensor computed inside a compiled function "
                             f"({self._value.type}) would make it a new leaf, which a compiled "
                             "program cannot hand back with its .grad; create the tensor outside "
                             "the compiled function and pass it in, or use graphjit.grad")
        if not flag and self._requires_grad:
            self._tracer.stop_gradient(self)

    # what needs data
    def _untraceable(self, what: str):
        raise TraceError(f"{what} needs the value of a traced tensor ({self._value.type}), which "
                         f"does not exist while graphjit.compile traces the function. {_WAYS_OUT}")

    def numpy(self):
        self._untraceable(".numpy()")

    def __array__(self, dtype=None, copy=None):
        self._untraceable("converting to a NumPy array")

    def item(self):
        self._untraceable(".item()")

    def tolist(self):
        self._untraceable(".tolist()")

    def __float__(self):
        self._untraceable("float()")

    def __int__(self):
        self._untraceable("int()")

    def __index__(self):
        self._untraceable("using a tensor as an index")

    def __bool__(self):
        self._untraceable("Python control flow (if/while/and/or) on a tensor")

    def __repr__(self):
        return f"TracerTensor({self._value.type})"

    def detach_(self):
        self._tracer.stop_gradient(self)
        return self

    def retain_grad(self):
        raise TraceError("retain_grad() is not supported inside a compiled function; return the "
                         "tensor and use graphjit.grad on it instead")

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        # Through autograd_engine.backward, for its hooks and callbacks ([Backward hooks]).
        autograd_engine.backward([self], None if gradient is None else [gradient], retain_graph,
                          create_graph, inputs)


def traced_tensors(tree):
    """The ``TracerTensor``s in a function's result (nested tuples, lists and dict values),
    depth first, in order."""
    if isinstance(tree, TracerTensor):
        yield tree
    elif isinstance(tree, (tuple, list)):
        for v in tree:
            yield from traced_tensors(v)
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from traced_tensors(v)
