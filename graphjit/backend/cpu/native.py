"""Calling a compiled kernel through its address: ``run_kernel(address, (arrays...))``.

# NOTE: [Kernel calls by address]
The driver does not call its kernels' dispatchers: it calls their machine code through
addresses it is given (``kernels``, its second argument: an intp array, one entry per
distinct kernel and signature, filled by ``compile_graph``), with Numba's own calling
convention, so a kernel's exception still propagates out of the driver.

Why: a Numba function that calls another dispatcher links the callee's LLVM module into
its own, and LLVM then optimises and generates machine code for the whole again. So every
kernel was compiled to machine code twice, once on its own and once inside the driver, and
the driver's share was the larger one: W2's cold compile spent 1.2 s finalising the driver
(0.64 s re-optimising the linked kernels, 0.52 s emitting their code again) against 0.85 s
for all 18 kernels' own (the driver's compile, Python included, was 1.55 s of 5.4). Called
by address, the driver is a few dozen calls: 0.64 s, Numba typing and lowering them (one
``run_kernel`` instance per distinct argument types); its cache entry holds no kernel code, and a program loads each kernel from
the kernel's own cache entry (``kernel_address``), which a new process with another program
sharing the kernel finds already there.

The price: LLVM cannot inline a kernel into the driver (kernels are whole loops, so
nothing is lost), and nothing checks the address table against the kernels' signatures at
run time: ``compile_graph`` builds the table from the same dtypes the driver passes, every
argument is a 1-D C-contiguous array (``run_kernel`` refuses anything else when the driver
is typed), and a kernel compiled for other types would read garbage. So only generated
drivers call this.
"""
from __future__ import annotations

import os

import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

# The dtype of the address table (a pointer-sized integer).
ADDRESS_DTYPE = np.intp


@intrinsic
def run_kernel(typingctx, address, args):
    """``run_kernel(address, (a0, a1, ...))``: call the kernel compiled for ``(a0, a1,
    ...)``'s types whose code is at ``address``; returns nothing."""
    if not isinstance(address, types.Integer):
        raise TypingError(f"run_kernel: the address must be an integer, got {address}")
    if not isinstance(args, types.BaseTuple):
        raise TypingError(f"run_kernel: the arguments must be a tuple, got {args}")
    for t in args.types:
        if not (isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C"):
            raise TypingError(f"run_kernel: kernels take 1-D C-contiguous arrays, got {t}")
    sig = types.none(address, args)

    def codegen(context, builder, sig, llargs):
        argtys = list(sig.args[1].types)
        values = [builder.extract_value(llargs[1], i) for i in range(len(argtys))]
        return _call(context, builder, llargs[0], argtys, values)

    return sig, codegen


def _call(context, builder, address, argtys, values):
    """Call the kernel at ``address`` (an intp value) on array values ``values`` of types
    ``argtys``, with Numba's calling convention, passing its exception on."""
    fnty = context.call_conv.get_function_type(types.none, argtys)
    fn = builder.inttoptr(address, fnty.as_pointer())
    status, _ = context.call_conv.call_function(builder, fn, types.none, argtys, values)
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return context.get_dummy_value()


def _view(context, builder, element, address, length):
    """The value of a 1-D C array of ``length`` (an intp value) ``element``s at ``address``
    (an intp value), owning nothing."""
    from numba.np.arrayobj import populate_array
    data_type = context.get_data_type(element)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(data_type))
    view = context.make_array(types.Array(element, 1, "C"))(context, builder)
    populate_array(view, data=builder.inttoptr(address, data_type.as_pointer()),
                   shape=[length], strides=[itemsize], itemsize=itemsize, meminfo=None)
    return view._getvalue()


@intrinsic
def buffer_view(typingctx, address, length, dtype):
    """``buffer_view(address, n, np.float32)``: the 1-D C array of ``n`` elements at
    ``address``, owning nothing (a driver's view of one of its buffers, which its caller
    keeps alive: [Driver arguments]). Builds the array structure and nothing else:
    ``numba.carray`` here compiled far more code per call."""
    if not isinstance(address, types.Integer) or not isinstance(length, types.Integer):
        raise TypingError(f"buffer_view: address and length must be integers, got {address}, "
                          f"{length}")
    if isinstance(dtype, types.NumberClass):
        element = dtype.instance_type
    elif isinstance(dtype, types.DType):
        element = dtype.dtype
    else:
        raise TypingError(f"buffer_view: the dtype must be a NumPy scalar type, got {dtype}")
    array_type = types.Array(element, 1, "C")

    def codegen(context, builder, sig, llargs):
        address = context.cast(builder, llargs[0], sig.args[0], types.intp)
        length = context.cast(builder, llargs[1], sig.args[1], types.intp)
        return _view(context, builder, element, address, length)

    return array_type(address, length, dtype), codegen


# NOTE: [Driver arguments]
# A driver takes two arguments whatever its program: ``at``, an intp array holding the
# address of each of its buffers' array *objects* (``id(array)``: the inputs, the result
# buffers, the workspace arenas, in that order), and ``kernels`` ([Kernel calls by address]).
# Its first lines replace each entry with the array's data pointer, read from the object
# (``load_address(at[j] + DATA_OFFSET)``), and it makes its buffers' views from those
# (``buffer_view``), as a looped driver always did ([Looped drivers] in looped.py).
#
# Why: Numba's compile time grows faster than linearly with a function's argument count:
# its CPython wrapper unboxes each array argument with code of its own, and the function
# then takes seven LLVM values per array. With every buffer an argument, a driver of 32
# buffers compiled in 0.52 s, 128: 3.5 s, 256: 14.5 s (benchmarks/driver_compile.py; now
# 0.10-0.11 s for all), and drivers were a third of the test suite's Numba time (102 s in
# tests/programs, tests/nn, tests/passes and two more files; the suite's cold run went
# from 636 s to 511 s on 2 cores). A call costs about the same: ``np.fromiter(map(id,
# arrays))`` takes 0.45 us for 3 arrays and 3 us for 70, where Numba's dispatcher took
# 4.5 us to unbox 70 (benchmarks/call_overhead.py: 0.3 us more for a one-op program).
#
# ``DATA_OFFSET`` is where NumPy's array object keeps its data pointer: ``char *data`` right
# after the object header (PyArrayObject_fields in NumPy's C API, the field its PyArray_DATA
# reads, unchanged since NumPy 1.0); ``_data_offset`` checks it on arrays at import, and
# each generated driver writes the number out, so its module's hash covers it. The caller
# (``CompiledProgram.run_trusted``) keeps every array alive for the call; each is a flat
# C-contiguous array of the dtype and length the driver's views assume ([Trusted program
# calls] in program.py): nothing checks that at run time.

def _data_offset() -> int:
    """The byte offset of an ndarray object's data pointer ([Driver arguments])."""
    import ctypes
    offset = object.__basicsize__  # the object header (ob_refcnt, ob_type, ...)
    for a in (np.empty(3), np.arange(6.0)[2:], np.zeros((2, 3), np.float32).T):
        if ctypes.c_void_p.from_address(id(a) + offset).value != a.__array_interface__["data"][0]:
            raise ImportError(f"graphjit: NumPy {np.__version__}'s array objects do not keep "
                              f"their data pointer after the object header (offset {offset}); "
                              "compiled CPU programs cannot read their buffers")
    return offset


DATA_OFFSET = _data_offset()


@intrinsic
def load_address(typingctx, address):
    """``load_address(address)``: the pointer-sized integer stored at ``address`` (a
    driver reading an array object's data pointer: [Driver arguments])."""
    if not isinstance(address, types.Integer):
        raise TypingError(f"load_address: the address must be an integer, got {address}")

    def codegen(context, builder, sig, llargs):
        word = context.get_value_type(types.intp)
        return builder.load(builder.inttoptr(llargs[0], word.as_pointer()))

    return types.intp(address), codegen


def object_addresses(arrays) -> np.ndarray:
    """A driver's first argument: the addresses of the array objects ``arrays`` (see
    [Driver arguments]); the caller keeps them alive while the driver runs."""
    return np.fromiter(map(id, arrays), ADDRESS_DTYPE, len(arrays))


def load_address_in_python(address) -> int:
    """What ``load_address`` gives a driver run as plain Python."""
    import ctypes
    return ctypes.c_ssize_t.from_address(int(address)).value


@intrinsic
def run_row(typingctx, kernels, at, row, dtypes):
    """``run_row(kernels, at, row, (np.float32, ...))``: a looped driver's call of one row
    ([Looped drivers] in looped.py), what ``run_kernel(kernels[row[1]],
    (buffer_view(at[row[2]] + row[3], row[4], np.float32), ...))`` does, built in LLVM IR
    at once: each argument's buffer (its entry in ``at``), byte offset and length are the
    row's next three numbers. Numba lowered that expression's reads, views and tuple one by
    one: 0.2 s of a 5-form driver's 0.28 s compile."""
    arrays = (kernels, at, row)
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
               and isinstance(a.dtype, types.Integer) for a in arrays):
        raise TypingError(f"run_row: kernels, at and row must be 1-D C integer arrays, got "
                          f"{kernels}, {at}, {row}")
    if not (isinstance(dtypes, types.BaseTuple)
            and all(isinstance(d, types.NumberClass) for d in dtypes.types)):
        raise TypingError(f"run_row: the dtypes must be a tuple of NumPy scalar types, got "
                          f"{dtypes}")
    elements = [d.instance_type for d in dtypes.types]
    argtys = [types.Array(element, 1, "C") for element in elements]

    def codegen(context, builder, sig, llargs):
        def item(arr_index, index):  # (kernels, at, row)[arr_index][index], an intp
            arr_type = sig.args[arr_index]
            arr = context.make_array(arr_type)(context, builder, llargs[arr_index])
            value = builder.load(builder.gep(arr.data, [index]))
            return context.cast(builder, value, arr_type.dtype, types.intp)

        def row_item(k):
            return item(2, context.get_constant(types.intp, k))

        values = [_view(context, builder, element,
                        builder.add(item(1, row_item(2 + 3 * a)), row_item(3 + 3 * a)),
                        row_item(4 + 3 * a))
                  for a, element in enumerate(elements)]
        return _call(context, builder, item(0, row_item(1)), argtys, values)

    return types.none(kernels, at, row, dtypes), codegen


def run_row_in_python(kernels, at, row, dtypes) -> None:
    """What ``run_row`` does, for a driver run as plain Python."""
    views = [buffer_view_in_python(at[row[2 + 3 * a]] + row[3 + 3 * a], row[4 + 3 * a], dt)
             for a, dt in enumerate(dtypes)]
    run_kernel_in_python(kernels[row[1]], views)


def run_kernel_in_python(kernel, args) -> None:
    """What ``run_kernel`` does, for a driver run as plain Python (Numba's JIT disabled, as
    tests do) with the kernel functions themselves in its table."""
    kernel(*args)


def buffer_view_in_python(address, n, dtype) -> np.ndarray:
    """What ``buffer_view`` gives a driver run as plain Python."""
    import ctypes
    size = int(n) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * size).from_address(int(address)), dtype, int(n))


# Kernels whose machine code this process loaded from a bundle: ``bundle_key`` -> address
# ([Kernel bundles] in kernel_bundle.py).
BUNDLED: dict = {}


def bundle_key(dispatcher, signature) -> tuple:
    """What names a kernel's machine code: its module's file name (the hash of its text) and
    the signature."""
    return (os.path.basename(dispatcher.py_func.__code__.co_filename), str(tuple(signature)))


def kernel_address(dispatcher, signature) -> int:
    """The address of ``dispatcher``'s machine code for ``signature`` (a tuple of Numba
    types): loaded from a bundle before, or compiled, or loaded from Numba's cache, first
    if need be."""
    if BUNDLED and tuple(signature) not in dispatcher.overloads:
        address = BUNDLED.get(bundle_key(dispatcher, signature))
        if address is not None:
            return address
    dispatcher.compile(signature)
    compiled = dispatcher.overloads[tuple(signature)]
    address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    if not address:
        raise RuntimeError(f"no machine code for {compiled.fndesc.llvm_func_name} "
                           f"({dispatcher.py_func.__code__.co_filename})")
    return address
