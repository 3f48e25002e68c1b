"""The looped driver of a CPU program with many kernel calls ([Looped drivers]): the steps
as rows of a constant table, and one loop that dispatches on each row's form."""
from __future__ import annotations

from ..core.literals import np_type


def tuple_expression(items) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


# NOTE: [Looped drivers]
# The straight-line driver is one statement group per kernel call, and Numba compiles it
# in time proportional to that (about 12-15 ms a call on the development VM: typing, then
# LLVM on one long function; segments of it in functions of their own measured no faster).
# An unrolled RNN has hundreds of calls: W5's driver alone took 7-11 s of its cold start
# (issue 22). A program with at least LOOPED_DRIVER_MIN_CALLS calls gets a looped driver
# instead, whose code grows with the number of distinct call *forms*, not of calls:
#
#     STEPS = np.array([[0, 0, 0, 0, 64, 3, 0, 64], [0, 1, 3, 0, 64, 3, 256, 64], ...])
#
#     def run_f(at, kernels):
#         for j in range(4):                         # the buffers' data pointers
#             at[j] = load_address(at[j] + 16)      # ([Driver arguments] in native.py)
#         for s in range(STEPS.shape[0]):
#             row = STEPS[s]
#             if row[0] == 0:  # float32, float32: k0_exp, k1_neg
#                 run_row(kernels, at, row, (np.float32, np.float32))
#             ...
#
# A row is one step in program order: a call (its form; its kernel's entry in the address
# table; per argument, the buffer's position among the driver's buffers, the byte offset in
# it (a workspace slot: [Workspace arenas] in codegen.py) and the length) or a
# fill of a result with a literal before its kernel (a form per dtype and literal). A form
# is a call's argument dtypes, so each form's ``run_row`` is typed once. The rows are a
# constant of the compiled driver (Numba freezes a global array). Running costs a row read
# and a branch per step, nanoseconds against a kernel call. Each row of the table is
# commented with the IR line it runs.
#
# Which driver a program gets (``wants_loop``) is a guess of which compiles sooner. With the
# buffers' addresses as the driver's one argument ([Driver arguments] in native.py) and
# each form one ``run_row`` (native.py), a straight-line driver took about 0.1 s + 15-20 ms
# a call and a looped one 0.1 s + 20 ms a form (34 drivers of the op-table test's float64
# rows: 5.9 s all looped, 6.1 s by this rule; with the forms written out as
# ``run_kernel(kernels[row[1]], (buffer_view(...), ...))``, 50 ms a form, they took 9.1 s
# all looped and 16.7 s straight-line below 64 calls). So a program gets the looped driver
# from LOOPED_DRIVER_MIN_CALLS calls on, when it has at least CALLS_PER_FORM calls a form;
# the smallest ones keep the straight-line driver, which reads better in the dump.
LOOPED_DRIVER_MIN_CALLS = 8
CALLS_PER_FORM = 1.5


def wants_loop(steps) -> bool:
    """Whether a program of ``steps`` gets the looped driver (see [Looped drivers])."""
    calls = sum(isinstance(step, Call) for step in steps)
    forms = {_form(step) for step in steps}
    return calls >= LOOPED_DRIVER_MIN_CALLS and calls >= CALLS_PER_FORM * len(forms)


def _form(step) -> tuple:
    """A step's form: a call's argument dtypes, a fill's dtype and literal."""
    if isinstance(step, Call):
        return ("call", tuple(dt for *_, dt in step.args))
    return ("fill", step.dtype, step.literal)


class Call:
    """A kernel call of the program: its address-table entry, per argument (driver
    parameter, first element there, length, dtype), the kernel's name and the IR line."""

    def __init__(self, entry, args, kernel, ir_line):
        self.entry, self.args, self.kernel, self.ir_line = entry, args, kernel, ir_line


class Fill:
    """A fill of a result with a literal before its kernel runs: ``at`` is (driver
    parameter, first element), ``n`` the length."""

    def __init__(self, at, n, dtype, literal, ir_line):
        self.at, self.n, self.dtype, self.literal, self.ir_line = at, n, dtype, literal, ir_line


def looped_driver(steps, steps_name, params, table_param, at, namer):
    """``(table lines, body lines)`` of a looped driver over ``steps`` ([Looped drivers]):
    the rows, each commented with the IR line it runs, and the body, which reads them as
    the module constant ``steps_name``; ``at`` holds the data addresses of the buffers
    ``params`` in their order ([Driver arguments] in native.py)."""
    position = {p: j for j, p in enumerate(params)}
    forms, rows = {}, []
    for step in steps:
        form = forms.setdefault(_form(step), [len(forms), []])
        if isinstance(step, Call):
            form[1].append(step.kernel)
            row = [form[0], step.entry]
            for param, first, n, dt in step.args:
                row += [position[param], first * dt.itemsize, n]
        else:
            (param, first), n = step.at, step.n
            row = [form[0], 0, position[param], first * step.dtype.itemsize, n]
        rows.append(row)
    width = max(len(r) for r in rows)
    table = [f"    [{', '.join(map(str, r + [0] * (width - len(r))))}],  # {step.ir_line}"
             for r, step in zip(rows, steps)]
    s, row = namer.fresh("s"), namer.fresh("row")
    body = [f"    for {s} in range({steps_name}.shape[0]):",
            f"        {row} = {steps_name}[{s}]"]

    def arg(dt, k):  # the argument at k of a row: (buffer, byte offset, length)
        return f"buffer_view({at}[{row}[{k}]] + {row}[{k + 1}], {row}[{k + 2}], {np_type(dt)})"

    for key, (number, kernels) in forms.items():
        body.append(f"        {'if' if number == 0 else 'elif'} {row}[0] == {number}:")
        if key[0] == "call":
            dts = key[1]
            body.append(f"            # {', '.join(dt.name for dt in dts)}: "
                        f"{', '.join(sorted(set(kernels)))}")
            dtypes = tuple_expression([np_type(dt) for dt in dts])
            body.append(f"            run_row({table_param}, {at}, {row}, {dtypes})")
        else:
            _, dt, literal = key
            body.append(f"            {arg(dt, 2)}[:] = {literal}")
    return table, body


# NOTE: [Long concatenations]
# A ``cat`` of many inputs (the batch pass stacks an unrolled loop's 50 steps into one GEMM
# operand) was one kernel of 50 array arguments: 2.9 s of Numba time for W5, and its call
# form cost the driver more (2.6 s of 5.2). Where the inputs are whole contiguous blocks of
# the result (every dim before ``dim`` is 1), it runs as calls of at most CAT_PART inputs,
# each writing its slice of the result; parts of equal shapes are one kernel.
CAT_PART = 8


def cat_parts(node):
    """``[(part node, first element of its slice of the result)]`` for a long ``cat`` whose
    parts are contiguous ([Long concatenations]), else None."""
    if node.op.name != "cat" or len(node.inputs) <= CAT_PART:
        return None
    dim, shape = node.attrs["dim"], node.out.shape
    if any(shape[d] != 1 for d in range(dim)):
        return None
    from ...ir.graph import Node
    from ...shapes import TensorType, numel
    parts, first = [], 0
    for start in range(0, len(node.inputs), CAT_PART):
        chunk = node.inputs[start:start + CAT_PART]
        part_shape = list(shape)
        part_shape[dim] = sum(x.shape[dim] for x in chunk)
        part = Node(node.op, list(chunk), dict(node.attrs),
                    TensorType(tuple(part_shape), node.out.dtype), node.source)
        parts.append((part, first))
        first += numel(tuple(part_shape))
    return parts
