"""Shrink a failing program to a small one that fails the same way (delta debugging).

``shrink(program, fails)`` repeats these reductions until none helps (or the budget is
spent), keeping a candidate only when ``fails(candidate)`` still holds — the runner's
check with the same mismatch signature (mode, kind, error classes):

1. fewer calls; no learning-rate change; no zero_grad; a simpler optimizer or none;
2. statements: ddmin over the forward statements, the tail, and each block's body; every
   candidate is first made consistent (``normalize``): a statement whose inputs are gone is
   dropped too, unused inputs disappear;
3. outputs and loss terms;
4. blocks unwrapped (a ``no_grad`` or loop body inlined), loop counts lowered;
5. bypasses: a statement replaced by one of its inputs of the same shape and dtype;
6. shapes: every size s of the inputs replaced by a smaller one, all at once and one
   input at a time.

Each check compiles, so identical candidates are checked once (keyed by their text).
"""
from __future__ import annotations

import re
import time

from .program import FLOAT_DTYPES, Input, Program, _optimizer_lines, render


def _base(name: str) -> str:
    return name.split("[")[0]


def _prune_block(stmts, defined: set) -> list:
    kept = []
    for s in stmts:
        if s.block is not None:
            if any(_base(a) not in defined for a in s.args):
                continue
            inner = set(defined) | ({"it"} if s.block == "loop" else set())
            s.body = _prune_block(s.body, inner)
            if not s.body:
                continue
            # names defined inside a block stay visible after it (Python scoping); a name a
            # loop or branch only rebinds was defined before it.
            defined |= {n for n in inner if n != "it"}
            kept.append(s)
            continue
        if any(_base(a) not in defined for a in s.args):
            continue
        kept.append(s)
        if s.out:
            defined.add(s.out)
    return kept


def normalize(p: Program) -> Program:
    """Drop what refers to something no longer defined; drop unused inputs (twice: dropping
    the last parameter drops the optimizer, and with it ``opt.step()``)."""
    _normalize_once(p)
    return _normalize_once(p)


def _normalize_once(p: Program) -> Program:
    names = {i.name for i in p.inputs}
    defined = set(names) | ({"opt"} if _optimizer_lines(p, "fused") else set())
    p.forward = _prune_block(p.forward, defined)
    if p.loss is not None:
        p.loss.args = [a for a in p.loss.args if a in defined]
        if not p.loss.args:
            p.loss = None
    p.outputs = [o for o in p.outputs if _base(o) in defined]
    tail_defined = set(defined) | ({"loss"} if p.loss is not None else set())
    p.tail = _prune_block(p.tail, tail_defined)
    p.tail_outputs = [o for o in p.tail_outputs if _base(o) in tail_defined]
    used = {_base(a) for s in p.statements() for a in s.args} | {_base(o) for o in p.outputs}
    p.inputs = [i for i in p.inputs if i.name in used]
    return p


class Shrinker:
    def __init__(self, fails, budget_s: float = 180.0, max_checks: int = 400, log=None):
        self.fails = fails
        self.deadline = time.monotonic() + budget_s
        self.max_checks = max_checks
        self.checks = 0
        self.seen: dict[str, bool] = {}
        self.log = log
        self.original_returns_input = False

    def out_of_budget(self) -> bool:
        return self.checks >= self.max_checks or time.monotonic() > self.deadline

    def test(self, cand: Program) -> bool:
        cand = normalize(cand)
        key = render(cand)
        if key in self.seen:
            return self.seen[key]
        if _returns_input(cand) and not self.original_returns_input:
            # A bypass or cut can make an output an argument as it is: a program of another
            # shape, whose mismatch may be another bug (shrinking would slip to it).
            self.seen[key] = False
            return False
        if self.out_of_budget():
            return False
        self.checks += 1
        try:
            ok = bool(self.fails(cand))
        except Exception:  # noqa: BLE001 - a candidate the harness cannot even run
            ok = False
        self.seen[key] = ok
        return ok

    # ---- reductions --------------------------------------------------------------------------

    def _try(self, best: Program, edit) -> Program:
        cand = best.copy()
        if edit(cand) is False:
            return best
        if self.test(cand):
            return normalize(cand)
        return best

    def ddmin(self, best: Program, getter) -> Program:
        """Remove chunks of the list ``getter(program)``, then single items."""
        n = 2
        while not self.out_of_budget():
            items = getter(best)
            if not items:
                break
            size = max(1, len(items) // n)
            progressed = False
            for start in range(0, len(items), size):
                def edit(c, start=start):
                    lst = getter(c)
                    if start >= len(lst):
                        return False
                    del lst[start:start + size]
                cand_best = self._try(best, edit)
                if cand_best is not best:
                    best, progressed = cand_best, True
                    break
            if progressed:
                n = max(2, n - 1)
                continue
            if size == 1:
                break
            n = min(len(items), n * 2)
        return best

    def blocks(self, best: Program, getter) -> Program:
        """Statements minimised inside each block, blocks unwrapped, loops shortened."""
        i = 0
        while i < len(getter(best)) and not self.out_of_budget():
            s = getter(best)[i]
            if s.block is not None:
                def body_of(c, i=i):
                    lst = getter(c)
                    return lst[i].body if i < len(lst) and lst[i].block else []
                best = self.ddmin(best, body_of)
                best = self.blocks(best, body_of)

                def unwrap(c, i=i):
                    lst = getter(c)
                    if i >= len(lst) or lst[i].block is None:
                        return False
                    blk = lst[i]
                    body = blk.body
                    if blk.block == "loop":
                        body = [self._unloop(b, blk.count) for b in body]
                    lst[i:i + 1] = body
                best = self._try(best, unwrap)
                s = getter(best)[i] if i < len(getter(best)) else None
                if s is not None and s.block == "loop" and s.count > 1:
                    def fewer(c, i=i):
                        c_s = getter(c)[i]
                        if c_s.block != "loop" or c_s.count <= 1:
                            return False
                        c_s.count = 1
                    best = self._try(best, fewer)
            i += 1
        return best

    @staticmethod
    def _unloop(stmt, count):
        stmt = stmt.copy()
        stmt.code = re.sub(r"\[it\]", "[0]", stmt.code)
        return stmt

    def bypass(self, best: Program) -> Program:
        """Replace ``v = f(a, b)`` by using ``a`` (same type) wherever ``v`` was used."""
        def flat(p):
            out = []

            def walk(stmts):
                for s in stmts:
                    out.append(s)
                    walk(s.body)
            walk(p.forward)
            return out
        idx = 0
        while idx < len(flat(best)) and not self.out_of_budget():
            s = flat(best)[idx]
            if s.out and s.out_type is not None and not s.block:
                # (shapes may have shrunk since the types were recorded: same dtype is
                # enough to try; a shape that does not fit fails the check)
                for j, t in enumerate(s.types):
                    if t[1] != s.out_type[1] or j >= len(s.args):
                        continue
                    src = s.args[j]

                    def edit(c, idx=idx, src=src):
                        target = flat(c)[idx]
                        old = target.out

                        def rename(stmts):
                            for st in stmts:
                                st.args = [src if a == old else a for a in st.args]
                                rename(st.body)
                        _remove(c.forward, target)
                        rename(c.forward)
                        if c.loss is not None:
                            c.loss.args = [src if a == old else a for a in c.loss.args]
                        c.outputs = [src if o == old else o for o in c.outputs]
                    new = self._try(best, edit)
                    if new is not best:
                        best = new
                        idx -= 1
                        break
            idx += 1
        return best

    def cut(self, best: Program) -> Program:
        """Replace a top-level forward statement ``v = f(...)`` by a new argument ``v`` of the
        same shape and dtype: whatever only fed ``v`` can then go."""
        i = 0
        while i < len(best.forward) and not self.out_of_budget():
            s = best.forward[i]
            names = [st.out for st in best.statements() if st.out]
            if (s.block is None and s.out and s.out_type is not None and s.out != "loss"
                    and names.count(s.out) == 1 and s.out_type[1] in FLOAT_DTYPES
                    and s.out not in {inp.name for inp in best.inputs}):
                for domain, rg in (("real", False), ("real", True), ("positive", False)):
                    def edit(c, i=i, domain=domain, rg=rg):
                        st = c.forward[i]
                        if st.out != s.out:
                            return False
                        del c.forward[i]
                        c.inputs.append(Input(st.out, "arg", tuple(st.out_type[0]),
                                              st.out_type[1], domain, rg, seed=c.seed * 100003
                                              + c.index))
                    new = self._try(best, edit)
                    if new is not best:
                        best = new
                        i -= 1
                        break
            i += 1
        return best

    def shapes(self, best: Program) -> Program:
        for big, small in ((4, 3), (4, 2), (3, 2), (4, 1), (3, 1), (2, 1)):
            def everywhere(c, big=big, small=small):
                changed = False
                for inp in c.inputs:
                    new = tuple(small if s == big else s for s in inp.shape)
                    changed |= new != inp.shape
                    inp.shape = new
                return changed or False
            best = self._try(best, everywhere)
        for k in range(len(best.inputs)):
            for d in range(len(best.inputs[k].shape) if k < len(best.inputs) else 0):
                def one(c, k=k, d=d):
                    if k >= len(c.inputs) or d >= len(c.inputs[k].shape):
                        return False
                    s = c.inputs[k].shape
                    if s[d] <= 1:
                        return False
                    c.inputs[k].shape = s[:d] + (1,) + s[d + 1:]
                best = self._try(best, one)
        return best

    def settings(self, best: Program) -> Program:
        for calls in range(1, best.calls):
            best = self._try(best, lambda c, calls=calls: setattr(c, "calls", calls))
            if best.calls == calls:
                break
        best = self._try(best, lambda c: setattr(c, "lr_decay", None) if c.lr_decay else False)
        if best.zero_grad != "none":
            best = self._try(best, lambda c: setattr(c, "zero_grad", "none"))
        if best.optimizer is not None:
            best = self._try(best, lambda c: setattr(c, "optimizer", None))
        if best.optimizer is not None:
            best = self._try(best, lambda c: setattr(c.optimizer, "groups", None)
                             if c.optimizer.groups else False)
            for key in list(best.optimizer.options):
                if key == "lr":
                    continue
                best = self._try(best, lambda c, key=key: c.optimizer.options.pop(key, None))
        for k in range(len(best.inputs)):
            def no_grad_arg(c, k=k):
                if k >= len(c.inputs) or c.inputs[k].role != "arg" or not c.inputs[k].requires_grad:
                    return False
                c.inputs[k].requires_grad = False
            best = self._try(best, no_grad_arg)
        return best

    def run(self, program: Program) -> Program:
        best = normalize(program.copy())
        self.original_returns_input = _returns_input(best)
        while not self.out_of_budget():
            before = render(best)
            best = self.settings(best)
            best = self.ddmin(best, lambda c: c.tail)
            best = self.ddmin(best, lambda c: c.forward)
            best = self.blocks(best, lambda c: c.forward)
            best = self.blocks(best, lambda c: c.tail)
            best = self.ddmin(best, lambda c: c.outputs)
            best = self.ddmin(best, lambda c: c.tail_outputs)
            if best.loss is not None and len(best.loss.args) > 1:
                best = self.ddmin(best, lambda c: c.loss.args if c.loss is not None else [])
            best = self.bypass(best)
            best = self.cut(best)
            best = self.shapes(best)
            if render(best) == before:
                break
        return best


def _returns_input(p: Program) -> bool:
    names = {i.name for i in p.inputs}
    outs = list(p.outputs) + list(p.tail_outputs) + (p.loss.args if p.loss is not None else [])
    return any(_base(o) in names for o in outs)


def _remove(stmts, target) -> bool:
    for i, s in enumerate(stmts):
        if s is target:
            del stmts[i]
            return True
        if _remove(s.body, target):
            return True
    return False


def shrink(program: Program, fails, budget_s: float = 180.0, max_checks: int = 400,
           log=None) -> tuple[Program, int]:
    """The smallest program found that still ``fails``, and how many checks it took."""
    s = Shrinker(fails, budget_s, max_checks, log)
    best = s.run(program)
    return best, s.checks
