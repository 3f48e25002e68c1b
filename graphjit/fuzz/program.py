"""A fuzz program: its parts, and its text as a runnable script.

A ``Program`` is data (inputs, statements, optimizer, calls), so the shrinker can take
parts away and the generator can reason about it; ``render`` turns it into one Python
script that builds fresh state, runs the program eagerly and compiled, and compares. The
runner executes that very text (see [One text] below), so a printed reproducer is exactly
what was checked.

# NOTE: [One text]
The runner never runs a program any other way than by ``exec`` of ``render(program)``:
the harness at the end of every script (``HARNESS``: ``run(mode)`` and ``compare``) is
what both the fuzzer and a reader of a reproducer run. What a script's ``run(mode)`` does:

- ``eager``: ``step(*args)`` for each call, op by op (optimizers with ``fused=False``);
- ``compiled``: ``graphjit.compile(step)``, the whole program (prologue, forward,
  ``loss.backward()``, tail, optimizer step) as compiled programs, called ``CALLS`` times
  (the first call and the steady state);
- ``forward``: ``graphjit.compile(forward)``, whose outputs carry a compiled backward; the
  prologue, ``loss.backward()`` and the tail (optimizer step included) run eagerly, with
  graphjit's own optimizers in their default compiled-update mode (``fused=True``).

After every call it snapshots the results, every parameter, buffer and argument with its
``.grad``, and the optimizer's state, as NumPy copies.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import numpy as np

FLOAT_DTYPES = ("float32", "float64")


@dataclass
class Input:
    """A tensor the program is given: an argument of ``step`` (new data at every call), a
    parameter (``nn.Parameter``, optimised) or a buffer (state without gradient)."""
    name: str
    role: str                  # "arg", "param" or "buffer"
    shape: tuple
    dtype: str                 # "float32", "float64", "int64", "bool"
    domain: str = "real"       # see make_data
    requires_grad: bool = False
    seed: int = 0

    def data(self, call: int = 0) -> np.ndarray:
        """The values for ``call`` (arguments change at every call; parameters and buffers
        are created once, from call 0's). Deterministic in (seed, name, shape, call)."""
        key = zlib.crc32(f"{self.seed}/{self.name}/{self.shape}/{call}".encode())
        return make_data(np.random.default_rng(key), self.shape, self.domain, self.dtype)


def make_data(rng, shape, domain: str, dtype: str) -> np.ndarray:
    """Sample values from a domain. Floats are multiples of 1/128 (exact in float32, short
    to print), and "real" values keep 1/16 away from the kinks the generator uses
    (0, +-0.5, +-1: relu, abs, clamp bounds and comparison constants), so an op with a kink
    sees the same side of it in every mode.

    Domains: "real" (+-[0.0625, 2]), "positive" ([0.5, 2]), "unit" ((-0.5, 0.5) without
    0), "index:N" (int64 in [0, N)), "sindex:N" (int64 in [-N, N)), "mask" (bool, both
    values present)."""
    n = int(np.prod(shape, dtype=np.int64))
    if domain.startswith("index:") or domain.startswith("sindex:"):
        high = int(domain.split(":")[1])
        low = -high if domain.startswith("s") else 0
        return rng.integers(low, high, size=shape).astype(np.int64)
    if domain == "mask":
        m = rng.random(size=n) < 0.5
        if n >= 2:
            m[0], m[1] = True, False
        return m.reshape(shape)
    if domain == "positive":
        vals = rng.integers(64, 257, size=n) / 128.0
    elif domain == "unit":
        vals = rng.integers(1, 64, size=n) * rng.choice([-1.0, 1.0], size=n) / 128.0
    else:
        grid = np.arange(8, 257) / 128.0
        grid = grid[(np.abs(grid - 0.5) >= 0.0625) & (np.abs(grid - 1.0) >= 0.0625)]
        vals = rng.choice(grid, size=n) * rng.choice([-1.0, 1.0], size=n)
    arr = vals.reshape(shape)
    if dtype in FLOAT_DTYPES:
        return arr.astype(dtype)
    if dtype == "int64":
        return np.round(arr * 2).astype(np.int64)
    return arr > 0


@dataclass
class Stmt:
    """One statement (or a block of them) of the program.

    ``code`` is a format string: ``{out}`` is the variable it defines, ``{a0}``, ``{a1}``,
    ... the variables it reads (``args``), ``{dev}`` the device. A statement with
    ``variadic`` set renders ``code`` once per argument, joined by `` + `` (a loss made of
    terms). Blocks (``block`` = "no_grad" or "loop") hold ``body``; a loop runs ``count``
    times with ``it`` as its index. ``types`` are the (shape, dtype) of the arguments and
    ``out_type`` the output's, used by the shrinker to bypass a statement. ``spec`` names
    the generator spec that made it, ``feature`` the feature switch it belongs to."""
    code: str = ""
    args: list = field(default_factory=list)
    out: str | None = None
    spec: str = ""
    feature: str = ""
    types: list = field(default_factory=list)
    out_type: tuple | None = None
    block: str | None = None
    body: list = field(default_factory=list)
    count: int = 0
    variadic: bool = False

    def copy(self) -> "Stmt":
        return replace(self, args=list(self.args), types=list(self.types),
                       body=[s.copy() for s in self.body])

    def render(self, dev: str = "DEVICE") -> str:
        if self.variadic:
            parts = [self.code.format(a0=a, dev=dev) for a in self.args]
            return f"{self.out} = " + " + ".join(parts)
        names = {f"a{i}": a for i, a in enumerate(self.args)}
        return self.code.format(out=self.out, dev=dev, **names)


@dataclass
class OptConfig:
    """The optimizer: ``kind`` is a class of graphjit.optim, "user" (the script's own
    Optimizer subclass with its own step(), ``UserSGD``), or "manual" (``p -= lr * p.grad``
    under no_grad in the tail). ``groups``: None for one group of every parameter, else a
    list of (parameter names, extra options) per group."""
    kind: str
    options: dict = field(default_factory=dict)
    groups: list | None = None


@dataclass
class Program:
    seed: int
    index: int
    dtype: str
    device: str = "cpu"
    inputs: list = field(default_factory=list)       # Input, in creation order
    forward: list = field(default_factory=list)      # Stmt
    outputs: list = field(default_factory=list)      # names returned by forward
    loss: Stmt | None = None                         # variadic "loss = t0 + t1"
    tail: list = field(default_factory=list)         # Stmt, after forward; may read "loss"
    tail_outputs: list = field(default_factory=list)
    optimizer: OptConfig | None = None
    zero_grad: str = "none"       # "none", "to_none", "zeros" at the start of step, "end"
    calls: int = 3
    lr_decay: float | None = None  # lr *= lr_decay for every group before calls 1, 2, ...
    modes: tuple = ("eager", "compiled", "forward")

    def copy(self) -> "Program":
        return replace(self, inputs=[replace(i) for i in self.inputs],
                       forward=[s.copy() for s in self.forward], outputs=list(self.outputs),
                       loss=None if self.loss is None else self.loss.copy(),
                       tail=[s.copy() for s in self.tail], tail_outputs=list(self.tail_outputs),
                       optimizer=None if self.optimizer is None else replace(
                           self.optimizer, options=dict(self.optimizer.options),
                           groups=None if self.optimizer.groups is None else
                           [(list(n), dict(o)) for n, o in self.optimizer.groups]),
                       modes=tuple(self.modes))

    def by_role(self, role: str) -> list:
        return [i for i in self.inputs if i.role == role]

    def statements(self):
        """Every statement, blocks' bodies included, in program order."""
        def walk(stmts):
            for s in stmts:
                yield s
                yield from walk(s.body)
        yield from walk(self.forward)
        if self.loss is not None:
            yield self.loss
        yield from walk(self.tail)


# ---- rendering ---------------------------------------------------------------------------

USER_OPTIMIZER = '''

class UserSGD(gj.optim.Optimizer):
    """SGD with momentum written as a user would (its own step(); state made on step 1)."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def step(self):
        with gj.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    d_p = p.grad
                    if group["momentum"] != 0:
                        state = self.state[p]
                        if "momentum_buffer" not in state:
                            buf = state["momentum_buffer"] = d_p.clone()
                        else:
                            buf = state["momentum_buffer"]
                            buf.mul_(group["momentum"]).add_(d_p)
                        d_p = buf
                    p.add_(d_p, alpha=-group["lr"])
'''


USER_FUNCTION = '''

class UserXTanh(gj.autograd.Function):
    """x * tanh(x) with a hand-written backward (a user's torch.autograd.Function)."""

    @staticmethod
    def forward(ctx, x):
        t = x.tanh()
        ctx.save_for_backward(x, t)
        return x * t

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        return g * (t + x * (1 - t * t))
'''


def _literal(arr: np.ndarray) -> str:
    if arr.dtype == np.bool_:
        return repr(arr.tolist())
    if arr.dtype.kind == "i":
        return repr(arr.tolist())
    # float64 repr of the (float32-exact) values: round-trips exactly
    return repr(np.asarray(arr, dtype=np.float64).tolist())


def _tensor_expr(inp: Input, call: int = 0, requires_grad=None) -> str:
    rg = inp.requires_grad if requires_grad is None else requires_grad
    extra = ", requires_grad=True" if rg else ""
    return (f"gj.tensor({_literal(inp.data(call))}, dtype=gj.{_gj_dtype(inp.dtype)}, "
            f"device=DEVICE{extra})")


def _gj_dtype(dtype: str) -> str:
    return "bool" if dtype == "bool" else dtype


def _block(stmts, indent: str) -> list:
    lines = []
    for s in stmts:
        if s.block == "no_grad":
            lines.append(f"{indent}with gj.no_grad():")
            lines += _block(s.body, indent + "    ") or [f"{indent}    pass"]
        elif s.block == "loop":
            lines.append(f"{indent}for it in range({s.count}):")
            lines += _block(s.body, indent + "    ") or [f"{indent}    pass"]
        elif s.block == "if_grad":
            lines.append(f"{indent}if {s.args[0]}.grad is not None:")
            lines += _block(s.body, indent + "    ") or [f"{indent}    pass"]
        else:
            lines += [indent + line for line in s.render().split("\n")]
    return lines


def _optimizer_lines(p: Program, fused_name: str) -> list:
    opt = p.optimizer
    params = [i.name for i in p.by_role("param")]
    if opt is None or opt.kind == "manual" or not params:
        return []
    opts = dict(opt.options)
    if opt.kind == "user":
        cls = "UserSGD"
    else:
        cls = f"gj.optim.{opt.kind}"
        opts["fused"] = fused_name  # rendered as a name, not a string
    if opt.groups:
        groups = []
        for names, extra in opt.groups:
            names = [n for n in names if n in params]
            if names:
                inner = ", ".join([f'"params": [{", ".join(names)}]']
                                  + [f'"{k}": {v!r}' for k, v in extra.items()])
                groups.append("{" + inner + "}")
        plist = "[" + ", ".join(groups) + "]" if groups else None
    else:
        plist = "[" + ", ".join(params) + "]"
    if plist is None:
        return []
    kw = ", ".join(f"{k}={v}" if k == "fused" else f"{k}={v!r}" for k, v in opts.items())
    return [f"opt = {cls}({plist}, {kw})"]


def precision(p: Program) -> str:
    """The least precise float dtype the program computes in: values are compared at its
    tolerance (a float32 result cast to float64 keeps float32's rounding)."""
    types = [i.dtype for i in p.inputs] + [p.dtype]
    types += [s.out_type[1] for s in p.statements() if s.out_type is not None]
    return "float32" if "float32" in types or any(".float()" in s.code or "float32" in s.code
                                                   or "gj.zeros(" in s.code or "gj.ones(" in s.code
                                                   or "gj.full(" in s.code
                                                   for s in p.statements()) else "float64"


def render(p: Program, modes=None, note: str = "") -> str:
    """The program as a standalone script (see [One text])."""
    modes = tuple(modes or p.modes)
    args = p.by_role("arg")
    params = p.by_role("param")
    state_inputs = [i for i in p.inputs if i.role in ("param", "buffer")]
    has_opt = bool(_optimizer_lines(p, "fused"))
    lines = ['"""graphjit fuzz program: seed %d, graph %d (%s, %s).' % (p.seed, p.index, p.dtype,
                                                                          p.device)]
    if note:
        lines += [""] + note.rstrip().split("\n")
    lines += ["", "Run it: eager mode and @graphjit.compile must agree (exit status 1 when "
              "they do not).", '"""',
              "import sys", "", "import numpy as np", "", "import graphjit as gj",
              "import graphjit.nn.functional as F", "",
              f"DEVICE = {p.device!r}", f"CALLS = {p.calls}", f"LR_DECAY = {p.lr_decay!r}",
              f"MODES = {modes!r}", f"PRECISION = {precision(p)!r}"]
    if p.optimizer is not None and p.optimizer.kind == "user" and params:
        lines += USER_OPTIMIZER.split("\n")
    if any("UserXTanh." in s.code for s in p.statements()):
        lines += USER_FUNCTION.split("\n")
    lines += ["", "", "def build(fused=False):",
              '    """Fresh parameters, buffers, optimizer and random generator (the same for '
              'every mode)."""', "    gj.manual_seed(0)"]
    for i in state_inputs:
        expr = _tensor_expr(i, 0, requires_grad=False)
        if i.role == "param":
            rg = "" if i.requires_grad else ", requires_grad=False"
            lines.append(f"    {i.name} = gj.nn.Parameter({expr}{rg})")
        else:
            lines.append(f"    {i.name} = {expr}")
    lines += ["    " + line for line in _optimizer_lines(p, "fused")]
    if not has_opt:
        lines.append("    opt = None")
    lines += ["", "    def prologue():"]
    body = []
    if p.zero_grad in ("to_none", "zeros"):
        if has_opt:
            body.append(f"opt.zero_grad(set_to_none={p.zero_grad == 'to_none'})")
        elif params:
            body += [f"{q.name}.grad = None" for q in params]
    lines += ["        " + b for b in body] or ["        pass"]
    arg_list = ", ".join(a.name for a in args)
    lines += ["", f"    def forward({arg_list}):"]
    lines += _block(p.forward, "        ")
    if p.loss is not None:
        lines.append("        " + p.loss.render())
    loss_name = "loss" if p.loss is not None else "None"
    lines.append(f"        return [{', '.join(p.outputs)}], {loss_name}")
    lines += ["", "    def tail(outs, loss):"]
    tail = _block(p.tail, "        ")
    if p.zero_grad == "end":
        if has_opt:
            tail.append("        opt.zero_grad()")
        else:
            tail += [f"        {q.name}.grad = None" for q in params]
    lines += tail
    extra = ", ".join(p.tail_outputs)
    lines.append(f"        return outs + [{extra}{', ' if extra else ''}loss]")
    lines += ["", f"    def step({arg_list}):", "        prologue()",
              f"        outs, loss = forward({arg_list})", "        return tail(outs, loss)", "",
              "    state = dict(" + ", ".join(f"{i.name}={i.name}" for i in state_inputs) + ")",
              "    return dict(step=step, prologue=prologue, forward=forward, tail=tail, "
              "opt=opt, state=state)", "", "",
              "def make_args(call):", "    return ["]
    if args:
        for a in args:
            calls = ", ".join(_tensor_expr(a, c) for c in range(p.calls))
            lines.append(f"        [{calls}][call],")
    lines += ["    ]", "", f"ARG_NAMES = {[a.name for a in args]!r}"]
    lines += HARNESS.split("\n")
    return "\n".join(lines) + "\n"


HARNESS = r'''

# ---- harness (the same in every graphjit fuzz script) ---------------------------------------
# Tolerances: |compiled - eager| <= rtol * (|eager| + max|eager of that tensor| + 1) per
# element, rtol of the value's dtype or of PRECISION (the least precise float dtype the
# program computes in), whichever is larger: float64 1e-9, float32 2e-5 (the README's ~1e-10
# / ~1e-5, with room for the sums a fused program reassociates and for the few ops and
# optimizer steps a program chains). The "+ 1" is an absolute floor of rtol: the programs'
# values are O(1) by construction, and a result that cancels to ~0 (the gradient of
# softmax(x).sum()) is rounding noise of that size in either mode.
RTOL = {"float32": 2e-5, "float64": 1e-9}


def _value(v):
    if v is None:
        return None
    if isinstance(v, gj.Tensor):
        arr = np.array(v.detach().numpy(), copy=True)
        return (str(v.dtype.name), tuple(v.shape), arr)
    if isinstance(v, (int, float, bool)):
        return ("number", (), np.asarray(float(v)))
    return ("object", (), repr(v))


def snapshot(result, st, args):
    snap = {}
    for i, r in enumerate(result):
        snap[f"result[{i}]"] = _value(r)
    for name, t in st["state"].items():
        snap[name] = _value(t)
        snap[name + ".grad"] = _value(t.grad)
    for name, a in zip(ARG_NAMES, args):
        snap["arg " + name] = _value(a)
        snap["arg " + name + ".grad"] = _value(a.grad)
    opt = st["opt"]
    if opt is not None:
        for name, t in st["state"].items():
            for key, v in sorted(opt.state.get(t, {}).items()):
                snap[f"opt.state[{name}][{key!r}]"] = _value(v)
        for i, group in enumerate(opt.param_groups):
            snap[f"opt.param_groups[{i}]['lr']"] = _value(group["lr"])
    return snap


def run(mode):
    """One list entry per call: a snapshot, or ("error", class name, message) at the first
    call that raised (later calls are not run)."""
    st = build(fused=(mode == "forward"))
    if mode == "compiled":
        fn = gj.compile(st["step"])
    elif mode == "forward":
        fwd = gj.compile(st["forward"])

        def fn(*a):
            st["prologue"]()
            outs, loss = fwd(*a)
            return st["tail"](outs, loss)
    else:
        fn = st["step"]
    snaps = []
    for call in range(CALLS):
        if call and LR_DECAY is not None and st["opt"] is not None:
            for group in st["opt"].param_groups:
                group["lr"] = group["lr"] * LR_DECAY
        args = make_args(call)
        try:
            result = fn(*args)
        except Exception as e:  # noqa: BLE001 - every error is compared
            snaps.append(("error", type(e).__name__, str(e).split("\n")[0][:300]))
            break
        snaps.append(snapshot(result, st, args))
    return snaps


def _close(a, b, dtype):
    if a.shape != b.shape:
        return False, "shape"
    if a.dtype.kind not in "fc":
        same = np.array_equal(a, b)
        return same, None if same else int(np.argmax(np.asarray(a != b).reshape(-1)))
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb], equal_nan=True):
        return False, int(np.argmax((fa != fb).reshape(-1))) if not np.array_equal(fa, fb) else 0
    a64, b64 = a[fa].astype(np.float64), b[fb].astype(np.float64)
    if not a64.size:
        return True, None
    scale = float(np.max(np.abs(a64)))
    rtol = max(RTOL.get(dtype, 1e-9), RTOL[PRECISION])
    bad = np.abs(a64 - b64) > rtol * (np.abs(a64) + scale + 1.0)
    return (not bad.any()), (int(np.argmax(bad)) if bad.any() else None)


def compare(expected, got):
    """The first difference between two runs, as (kind, text), or None. Kinds: "error"
    (one run raised where the other did not, or another class), "structure" (None against a
    tensor, other keys, shapes or dtypes), "values" (numbers beyond the tolerance)."""
    for call, (e, g) in enumerate(zip(expected, got)):
        e_err, g_err = e[0] == "error" if isinstance(e, tuple) else False, \
            g[0] == "error" if isinstance(g, tuple) else False
        if e_err or g_err:
            if e_err and g_err and e[1] == g[1]:
                return None
            what = lambda s, err: f"raised {s[1]}: {s[2]}" if err else "ran"  # noqa: E731
            return ("error", f"call {call}: eager {what(e, e_err)}; other {what(g, g_err)}")
        for key in list(e) + [k for k in g if k not in e]:
            if key not in e or key not in g:
                return ("structure", f"call {call}: {key} is in only one run")
            ev, gv = e[key], g[key]
            if ev is None or gv is None:
                if ev is not gv:
                    return ("structure", f"call {call}: {key}: eager {ev and ev[:2]}, other "
                                         f"{gv and gv[:2]}")
                continue
            if ev[0] != gv[0] or ev[1] != gv[1]:
                return ("structure", f"call {call}: {key}: eager {ev[:2]}, other {gv[:2]}")
            if ev[0] == "object":
                if ev[2] != gv[2]:
                    return ("values", f"call {call}: {key}: eager {ev[2]}, other {gv[2]}")
                continue
            ok, where = _close(ev[2], gv[2], ev[0])
            if not ok:
                ea, ga = ev[2].reshape(-1), gv[2].reshape(-1)
                at = f" (element {where}: {ea[where]!r} vs {ga[where]!r})" if where is not None \
                    and where < ea.size and where < ga.size else ""
                return ("values", f"call {call}: {key}{at}\n  eager:    "
                                  f"{np.array2string(ev[2], precision=9)}\n  other:    "
                                  f"{np.array2string(gv[2], precision=9)}")
    if len(expected) != len(got):
        return ("error", f"eager ran {len(expected)} calls, other {len(got)}")
    return None


if __name__ == "__main__":
    import warnings
    warnings.simplefilter("ignore")
    eager = run("eager")
    failed = False
    for mode in MODES[1:]:
        diff = compare(eager, run(mode))
        if diff is None:
            print(f"{mode}: same as eager")
        else:
            failed = True
            print(f"{mode}: DIFFERS from eager ({diff[0]}): " + diff[1].replace("other", mode))
    sys.exit(1 if failed else 0)
'''
