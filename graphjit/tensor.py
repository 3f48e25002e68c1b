"""``Tensor``: a NumPy array plus autograd state, with PyTorch's methods.

Methods are thin: every computation goes through ``graphjit.ops.api`` (and so through the
op registry), which is what lets the same user code run eagerly or be traced later.
"""
from __future__ import annotations

import numpy as np

from . import _tracing
from . import autograd_engine as _engine
from . import autograd_tape as _tape
from . import devices, dtypes, tensor_copy, tensor_inplace, tensor_print
from .dtypes import DType
from .errors import AutogradError, DTypeError, ShapeError
from .ops import api, composite
from .tensor_data import numpy_index, shape_args, to_array
from .tensor_device import TensorDevices


def _unpickle(data, device, requires_grad, attributes):
    """A pickled tensor (see [Copies of tensors] in graphjit/tensor_copy.py). Pickles name
    this function, so it stays here."""
    t = Tensor._wrap(devices.to_device(data, devices.as_device(device)))
    t._requires_grad = requires_grad
    t.__dict__.update(attributes)
    return t


class Tensor(TensorDevices):
    """A multi-dimensional array with autograd, following ``torch.Tensor``. Its device
    methods (``device``, ``to``, ``numpy``, ``item`` ...) are in graphjit/tensor_device.py."""

    __slots__ = ("_data", "_requires_grad", "_grad_fn", "_output_nr", "_grad", "_version",
                 "_accumulator", "__weakref__", "__dict__")
    # NumPy defers binary operators to ours (ndarray * Tensor -> Tensor.__rmul__).
    __array_ufunc__ = None

    def __init__(self, *args, requires_grad: bool = False):
        """As ``torch.Tensor``: ``Tensor(2, 3)`` (sizes: a float tensor of the default dtype,
        zeros here where PyTorch leaves it uninitialised), ``Tensor()`` (empty), ``Tensor(t)``
        (sharing t's memory), ``Tensor(array)`` (sharing a NumPy array of a graphjit dtype),
        ``Tensor([1, 2])`` (data, converted to the default float dtype as PyTorch's legacy
        constructor does; ``graphjit.tensor`` infers the dtype instead)."""
        if not args or all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                           for a in args):
            data = np.zeros(tuple(int(a) for a in args) if args else (0,),
                            dtypes.get_default_dtype().np)
        elif len(args) == 1:
            data = args[0]
            if isinstance(data, (float, bool, complex)):
                raise TypeError(f"Tensor(): data must be a sequence or sizes, got "
                                f"{type(data).__name__} (use graphjit.tensor({data!r}))")
        else:
            raise TypeError(f"Tensor(): expected sizes (ints) or one data argument, got "
                            f"{', '.join(type(a).__name__ for a in args)}")
        if isinstance(data, Tensor):
            tracer = _tracing.active()
            if tracer is not None:
                tracer.refuse(f"{type(self).__name__}(tensor), which shares the tensor's memory,",
                              "use t.detach() (a view) or t.clone() (a copy), or make the "
                              "Parameter outside the compiled function")
            arr = data._data
        elif isinstance(data, np.ndarray) and data.dtype in (d.np for d in dtypes.ALL):
            arr = data if type(data) is np.ndarray else data.view(np.ndarray)  # (np.memmap)
        else:
            arr = to_array(data, dtypes.get_default_dtype())
        self._data = arr
        self._requires_grad = False
        self._grad_fn = None
        self._output_nr = 0
        self._grad = None
        self._version = tensor_inplace.Version()
        self._accumulator = None
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _wrap(cls, arr: np.ndarray) -> "Tensor":
        t = object.__new__(cls)
        t._data = arr
        t._requires_grad = False
        t._grad_fn = None
        t._output_nr = 0
        t._grad = None
        t._version = tensor_inplace.Version()
        t._accumulator = None
        return t

    @staticmethod
    def _plain(arr: np.ndarray) -> "Tensor":
        """A Tensor, never a subclass, holding ``arr`` (for tensor_device.py, which cannot
        import this module)."""
        return Tensor._wrap(arr)

    # ---- copies and pickles (graphjit/tensor_copy.py) -------------------------------------

    def __deepcopy__(self, memo):
        return tensor_copy.deepcopy(self, memo)

    def __reduce_ex__(self, protocol):
        return _unpickle, tensor_copy.pickle_args(self)

    # ---- metadata ---------------------------------------------------------------------------

    @property
    def shape(self) -> tuple:
        shape = self._data.shape
        # (Numba's CUDA simulator gives a tuple subclass that refuses negative indices.)
        return shape if type(shape) is tuple else tuple(shape)

    def size(self, dim=None):
        if dim is None:
            return self.shape
        return self.shape[dim]

    @property
    def dtype(self) -> DType:
        return dtypes.from_numpy(self._data.dtype)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    __hash__ = object.__hash__

    # ---- autograd state ---------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        flag = bool(flag)
        if self._grad_fn is not None:
            if not flag:
                raise AutogradError("you can only change requires_grad of leaf tensors; use "
                                    "detach() to get a tensor that does not require grad")
            return
        if flag and not self.dtype.is_floating_point:
            raise DTypeError(f"only floating point tensors can require gradients, got "
                             f"{self.dtype.name} of shape {self.shape}")
        self._requires_grad = flag

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad_fn(self):
        return self._grad_fn

    @property
    def grad(self):
        tracer = _tracing.active()
        if tracer is not None:
            tracer.note_grad_read(self)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                raise ShapeError(f"assigned grad has shape {value.shape} but the tensor has shape "
                                 f"{self.shape}", op="grad")
            if value.dtype is not self.dtype:
                raise DTypeError(f"assigned grad has dtype {value.dtype.name} but the tensor has "
                                 f"dtype {self.dtype.name}", op="grad")
        tracer = _tracing.active()
        if tracer is not None:
            tracer.note_grad_assign(self, self._grad)
            value = tracer.grad_value(self, value)
        self._grad = value

    def _accumulate_node(self):
        if self._accumulator is None:
            self._accumulator = _tape.AccumulateGrad(self)
        return self._accumulator

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` each time ``backward`` has accumulated into this leaf's
        ``.grad`` (``torch.Tensor.register_post_accumulate_grad_hook``); returns a handle
        whose ``remove()`` unregisters it. See [Backward hooks] in autograd_engine.py."""
        if self._grad_fn is not None:
            raise AutogradError("post accumulate grad hooks cannot be registered on non-leaf "
                                "tensors")
        hooks = self.__dict__.setdefault("_post_accumulate_grad_hooks", {})
        return _engine.RemovableHandle(hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor in later backward passes."""
        if self._grad_fn is None:
            if not self._requires_grad:
                raise AutogradError("can't retain_grad on a tensor that does not require grad")
            return
        _engine.add_retained(self._grad_fn, self)

    @property
    def retains_grad(self) -> bool:
        node = self._grad_fn
        return bool(node is not None and node.retained and any(r() is self for r in node.retained))

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate the gradient of this tensor into the leaves' ``.grad`` (``torch.Tensor.backward``)."""
        _engine.backward([self], None if gradient is None else [gradient], retain_graph,
                         create_graph, inputs)

    def detach(self) -> "Tensor":
        """A tensor sharing this one's data, outside the graph."""
        if _tape.is_grad_enabled() and self._requires_grad:
            with _tape.no_grad():
                out = api.detach(self)
        else:
            out = api.detach(self)
        out._version = self._version
        return out

    def detach_(self) -> "Tensor":
        self._grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self) -> "Tensor":
        # As in PyTorch, .data has its own version counter: changes through it are invisible to
        # autograd's in-place checks (which is why detach() is the safer way).
        tracer = _tracing.active()
        if tracer is not None:  # a traced view ([Views while tracing] in jit/tracer_views.py)
            return tracer.alias(self)
        alias = Tensor._wrap(self._data)
        alias._version = tensor_inplace.Version(storage=self._version.storage)
        return alias

    @data.setter
    def data(self, value: "Tensor") -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be a Tensor, got {type(value).__name__}")
        tracer = _tracing.active()
        if tracer is not None:
            tracer.refuse("assigning t.data", "copy into the tensor instead (t.data.copy_(value), "
                          "same shape), or replace its data outside the compiled function")
        self._data = value._data

    # ---- copies in memory (to(), cuda(), float() ...: graphjit/tensor_device.py) ------------

    def contiguous(self) -> "Tensor":
        return self

    def clone(self) -> "Tensor":
        if self._requires_grad and _tape.is_grad_enabled():
            return api.clone(self)  # recorded (CloneBackward0), as in PyTorch
        tracer = _tracing.active()
        if tracer is not None:  # the value it holds now, which this trace may have changed
            return tracer.clone(self)
        return Tensor._wrap(devices.copy(self._data))

    # ---- printing (graphjit/tensor_print.py) -----------------------------------------------

    def __repr__(self) -> str:
        return tensor_print.tensor_repr(self)

    def __format__(self, spec: str) -> str:
        """``f"{loss:.4f}"``: a 0-d tensor formats its value (as PyTorch does); an empty spec
        is ``str(t)``; any other spec on a tensor with dims is a TypeError, as for objects."""
        return tensor_print.tensor_format(self, spec)

    # ---- operators --------------------------------------------------------------------------

    def __add__(self, other):
        return api.add(self, other)

    def __radd__(self, other):
        return api.add(other, self)

    def __sub__(self, other):
        return api.sub(self, other)

    def __rsub__(self, other):
        return api.sub(other, self)

    def __mul__(self, other):
        return api.mul(self, other)

    def __rmul__(self, other):
        return api.mul(other, self)

    def __truediv__(self, other):
        return api.div(self, other)

    def __rtruediv__(self, other):
        return api.div(other, self)

    def __pow__(self, other):
        return api.pow(self, other)

    def __rpow__(self, other):
        return api.pow(api.constant(other, _scalar_like(other, self)), self)

    def __neg__(self):
        return api.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return api.abs(self)

    def __matmul__(self, other):
        return api.matmul(self, other)

    def __rmatmul__(self, other):
        return api.matmul(other, self)

    def __eq__(self, other):  # noqa: D105 - elementwise, as in PyTorch
        return api.eq(self, other)

    def __ne__(self, other):
        return api.ne(self, other)

    def __lt__(self, other):
        return api.lt(self, other)

    def __le__(self, other):
        return api.le(self, other)

    def __gt__(self, other):
        return api.gt(self, other)

    def __ge__(self, other):
        return api.ge(self, other)

    def __invert__(self):
        if self.dtype is not dtypes.bool_:
            raise DTypeError(f"~ is only defined for bool tensors here, got {self.dtype.name}", op="invert")
        return api.logical_not(self)

    def __and__(self, other):
        return api.logical_and(self, other)

    def __or__(self, other):
        return api.logical_or(self, other)

    def __getitem__(self, key):
        return api.getitem(self, _unwrap_index(key))

    def __setitem__(self, key, value):
        """In-place ``x[key] = value`` (outside autograd: under no_grad or on tensors that do not
        require grad; with autograd, build the new value with graphjit.where or cat instead)."""
        value_requires = isinstance(value, Tensor) and value._requires_grad
        if _tape.is_grad_enabled() and (self._requires_grad or value_requires):
            raise AutogradError("index assignment (x[i] = v) is not recorded by autograd; build the "
                                "value with graphjit.where / graphjit.cat, or assign under no_grad")
        tracer = _tracing.active()
        if tracer is not None:  # an in-place update of the selected elements
            tracer.setitem(self, _unwrap_index(key), value)
            return
        np_key = numpy_index(key)
        src = devices.to_host(value._data) if isinstance(value, Tensor) else value
        tensor_inplace.write_items(self, np_key, src)

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    # ---- in-place ops (their checks and the write: graphjit/tensor_inplace.py) -------------

    def _is_view(self) -> bool:
        return tensor_inplace.is_view(self)

    def _inplace(self, op_name: str, compute):
        return tensor_inplace.inplace(self, op_name, compute)

    # `w -= lr * w.grad` updates w itself, as in PyTorch (Python would otherwise rebind w
    # to a new tensor and leave the parameter unchanged).
    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def add_(self, other, alpha=1):
        return self._inplace("add_", lambda: api.add(self, other, alpha))

    def sub_(self, other, alpha=1):
        return self._inplace("sub_", lambda: api.sub(self, other, alpha))

    def mul_(self, other):
        return self._inplace("mul_", lambda: api.mul(self, other))

    def div_(self, other):
        return self._inplace("div_", lambda: api.div(self, other))

    def pow_(self, exponent):
        return self._inplace("pow_", lambda: api.pow(self, exponent))

    def neg_(self):
        return self._inplace("neg_", lambda: api.neg(self))

    def sqrt_(self):
        return self._inplace("sqrt_", lambda: api.sqrt(self))

    def clamp_(self, min=None, max=None):  # noqa: A002 - PyTorch's names
        return self._inplace("clamp_", lambda: api.clamp(self, min, max))

    def addcmul_(self, tensor1, tensor2, value=1):
        return self._inplace("addcmul_", lambda: api.add(self, api.mul(tensor1, tensor2), value))

    def addcdiv_(self, tensor1, tensor2, value=1):
        return self._inplace("addcdiv_", lambda: api.add(self, api.div(tensor1, tensor2), value))

    def lerp_(self, end, weight):
        return self._inplace("lerp_", lambda: api.add(self, api.mul(api.sub(end, self), weight)))

    def copy_(self, src):
        if not isinstance(src, Tensor):
            tracer = _tracing.active()
            arr = to_array(src, self.dtype)
            src = tracer.made(arr) if tracer is not None else Tensor._wrap(arr)
        if src._data is not None and self._data is not None and src.device != self.device:
            src = src.to(self.device)  # copy_ crosses devices, as in PyTorch
        def compute():
            out = api.expand(api.cast(src, self.dtype), self.shape)
            # Already the right dtype and shape: still a new node, so that the gradient
            # reaches `src` (and not whatever `self` held before).
            return api.mul(out, 1.0) if out is src and src._requires_grad else out
        return self._inplace("copy_", compute)

    def fill_(self, value):
        def compute():
            if _tracing.active() is None and self.is_cuda:  # filled on the GPU, not copied over
                kind = api.python_kind(self.dtype)
                filled = Tensor._wrap(devices.full(self.shape, kind(value), self.dtype.np,
                                                   self.device))
            else:
                filled = api.full(self.shape, value, self.dtype)
            if self._requires_grad and _tape.is_grad_enabled():
                # Keep the tensor in the graph with a zero gradient, as PyTorch does.
                return api.where(api.full((), True, dtypes.bool_), filled, self)
            return filled
        return self._inplace("fill_", compute)

    def zero_(self):
        return self.fill_(0)

    # ---- reductions with PyTorch's tuple results ---------------------------------------------

    def max(self, dim=None, keepdim=False):
        if dim is None:
            return api.amax(self)
        return composite.ValuesIndices(api.amax(self, dim, keepdim), api.argmax(self, dim, keepdim))

    def min(self, dim=None, keepdim=False):
        if dim is None:
            return api.amin(self)
        return composite.ValuesIndices(api.amin(self, dim, keepdim), api.argmin(self, dim, keepdim))

    def any(self, dim=None, keepdim=False):
        return api.gt(api.sum(api.cast(self, dtypes.bool_), dim, keepdim), 0)

    def all(self, dim=None, keepdim=False):
        b = api.cast(self, dtypes.bool_)
        return api.eq(api.sum(api.logical_not(b), dim, keepdim), 0)

    # ---- shape helpers taking *args ----------------------------------------------------------

    def reshape(self, *shape):
        return api.reshape(self, shape_args(shape))

    def view(self, *shape):
        return api.reshape(self, shape_args(shape))

    def view_as(self, other):
        return api.reshape(self, other.shape)

    def reshape_as(self, other):
        return api.reshape(self, other.shape)

    def expand(self, *sizes):
        return api.expand(self, shape_args(sizes))

    def expand_as(self, other):
        return api.expand(self, other.shape)

    def permute(self, *dims):
        return api.permute(self, shape_args(dims))

    def repeat(self, *sizes):
        return composite.repeat(self, shape_args(sizes))

    def tile(self, *dims):
        return composite.tile(self, shape_args(dims))

    def masked_fill_(self, mask, value):
        return self._inplace("masked_fill_", lambda: composite.masked_fill(self, mask, value))

    def tril_(self, diagonal=0):
        return self._inplace("tril_", lambda: composite.tril(self, diagonal))

    def triu_(self, diagonal=0):
        return self._inplace("triu_", lambda: composite.triu(self, diagonal))

    def flip(self, *dims):
        return composite.flip(self, shape_args(dims))

    # ---- new tensors with this one's dtype and device (PyTorch's new_*) -----------------------

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        """Zeros of ``size`` with this tensor's dtype and device unless given (PyTorch's)."""
        return _finish(np.zeros(shape_args(size), dtype=(dtype or self.dtype).np),
                       requires_grad, device or self.device)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return _finish(np.ones(shape_args(size), dtype=(dtype or self.dtype).np),
                       requires_grad, device or self.device)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        # (Zeros while tracing, as graphjit.empty.)
        make = np.zeros if _tracing.active() is not None else np.empty
        return _finish(make(shape_args(size), dtype=(dtype or self.dtype).np),
                       requires_grad, device or self.device)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        return _finish(np.full(shape_args((size,)), fill_value, dtype=(dtype or self.dtype).np),
                       requires_grad, device or self.device)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad)

    # ---- Python answers about the data (eager only: they read it) ----------------------------

    def equal(self, other) -> bool:
        """Same shape and the same elements (``torch.equal``): a Python bool."""
        return tuple(self.shape) == tuple(other.shape) and bool(api.eq(self, other).all())

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
        return bool(composite.isclose(self, other, rtol, atol, equal_nan).all())

    @property
    def T(self):
        return api.permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self):
        return api.transpose(self, -2, -1)


def _scalar_like(value, t: Tensor) -> DType:
    d = dtypes.scalar_dtype(value)
    return t.dtype if d.category <= t.dtype.category else d


def _unwrap_index(key):
    """Lists of ints become int64 tensors; everything else passes through."""
    items = key if isinstance(key, tuple) else (key,)
    tracer = _tracing.active()
    out = []
    for k in items:
        if isinstance(k, (list, np.ndarray)):
            arr = to_array(k, None) if isinstance(k, list) else \
                np.asarray(k, dtype=np.bool_ if k.dtype == np.bool_ else np.int64)
            if tracer is not None:  # a value of the program, on its device
                k = tracer.made(arr)
            else:
                k = Tensor._wrap(arr)
                k._made_here = True  # may index a CUDA tensor (see [Devices])
        out.append(k)
    return tuple(out) if isinstance(key, tuple) else out[0]


# ---- attach the tensor functions as methods ---------------------------------------------------

def _method(fn):
    def method(self, *args, **kwargs):
        return fn(self, *args, **kwargs)
    method.__name__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


for _name in ("add", "sub", "mul", "div", "neg", "pow", "exp", "log", "log1p", "sqrt", "rsqrt",
              "abs", "sign", "sin", "cos", "tanh", "sigmoid", "relu", "clamp", "maximum",
              "minimum", "eq", "ne", "lt", "le", "gt", "ge", "sum", "mean", "var", "std", "amax",
              "amin", "logsumexp", "argmax", "argmin", "matmul", "mm", "transpose", "t", "squeeze",
              "unsqueeze", "flatten", "softmax", "log_softmax", "gather", "split", "chunk",
              "narrow", "logical_and", "logical_or", "logical_not"):
    setattr(Tensor, _name, _method(getattr(api, _name)))
for _name in ("square", "masked_fill", "isnan", "isinf", "isfinite", "nan_to_num", "isclose",
              "roll", "tril", "triu", "diag", "bmm", "mv", "dot", "outer", "addmm", "baddbmm", "norm",
              "floor", "ceil", "round", "trunc", "frac", "cumsum", "prod", "argsort", "sort",
              "topk"):
    setattr(Tensor, _name, _method(getattr(composite, _name)))
Tensor.where = lambda self, condition, other: api.where(condition, self, other)
Tensor.where.__doc__ = "``torch.Tensor.where``: ``self`` where ``condition``, else ``other``."
Tensor.clip = Tensor.clamp
Tensor.multiply = Tensor.mul
Tensor.divide = Tensor.div
Tensor.subtract = Tensor.sub


def _finish(arr: np.ndarray, requires_grad: bool, device=None) -> Tensor:
    """A new tensor holding ``arr``, on ``device`` (made on the host, then copied over: see
    [Devices]); the creation functions' and ``Tensor.new_*``'s. Inside a compiled function,
    a value of the program (see ``Tracer.made``)."""
    tracer = _tracing.active()
    if tracer is not None:
        if requires_grad:
            _refuse_leaf(tracer)
        return tracer.made(arr)
    if device is not None:
        arr = devices.to_device(arr, devices.as_device(device))
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad = True
    return t


def _refuse_leaf(tracer):
    tracer.refuse("creating a tensor that requires grad (a new leaf)",
                  "create it outside the compiled function and pass it in (its .grad then "
                  "accumulates as in eager mode)")


def tensor(data, dtype: DType | None = None, requires_grad: bool = False, device=None) -> Tensor:
    """Copy ``data`` (nested lists, scalars, NumPy arrays, tensors) into a new leaf tensor
    (on ``device``). Float data gets the default dtype (float32) unless it is a NumPy
    float64 array."""
    tracer = _tracing.active()
    if tracer is not None:
        if requires_grad:
            tracer.refuse("creating a tensor that requires grad (a new leaf)",
                          "create it outside the compiled function and pass it in")
        out = _traced_tensor(tracer, data)
        return out if dtype is None or out.dtype is dtype else api.cast(out, dtype)
    if isinstance(data, Tensor) and device is None:
        device = data.device
    arr = to_array(data, dtype)
    t = Tensor._wrap(arr if device is None else devices.to_device(arr, devices.as_device(device)))
    if requires_grad:
        t.requires_grad = True
    return t


def _holds_tensor(data) -> bool:
    return isinstance(data, Tensor) or (isinstance(data, (list, tuple))
                                        and any(map(_holds_tensor, data)))


def _traced_tensor(tracer, data):
    """``tensor(data)`` while tracing: a copy of the tensors' current values, stacked."""
    if isinstance(data, Tensor):
        return tracer.clone(data)
    if _holds_tensor(data):
        parts = api._promote(*[_traced_tensor(tracer, d) for d in data])
        return api.stack(parts)
    return tracer.made(to_array(data, None))



_tape.set_tensor_class(Tensor, tensor)  # see [The tape under Tensor] in autograd_tape.py
