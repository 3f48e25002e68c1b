"""Parse the text form of ``printer.py`` back into a Graph: ``parse(print(g))`` equals ``g``.

Pass tests are written as IR text in, IR text out; this is what reads the "in".
Comments (``# ...``) are ignored. Types written on node lines are checked by the verifier
against the op's own inference, not trusted.
"""
from __future__ import annotations

import math
import re

from .. import dtypes
from ..errors import GraphjitError
from ..ops import registry
from ..shapes import TensorType
from .graph import Graph

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<num>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d*\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+))
  | (?P<val>%[A-Za-z0-9_.]+)
  | (?P<name>-?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<arrow><-)
  | (?P<punct>[()\[\]{}:,=])
""", re.VERBOSE)


class IRParseError(GraphjitError, ValueError):
    pass


class _Tokens:
    def __init__(self, text: str, line_no: int):
        self.toks = []
        self.line_no = line_no
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise IRParseError(f"line {line_no}: cannot read {text[pos:pos + 20]!r}")
            pos = m.end()
            if m.lastgroup != "ws":
                self.toks.append((m.lastgroup, m.group()))
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def next(self):
        tok = self.peek()
        if tok[0] is None:
            raise IRParseError(f"line {self.line_no}: unexpected end of line")
        self.i += 1
        return tok

    def expect(self, text):
        kind, got = self.next()
        if got != text:
            raise IRParseError(f"line {self.line_no}: expected {text!r}, got {got!r}")
        return got

    def done(self) -> bool:
        return self.i >= len(self.toks)


def _parse_type(toks: _Tokens) -> TensorType:
    kind, short = toks.next()
    try:
        dtype = dtypes.from_short(short)
    except KeyError:
        raise IRParseError(f"line {toks.line_no}: unknown dtype {short!r}") from None
    toks.expect("[")
    shape = []
    while toks.peek()[1] != "]":
        shape.append(int(toks.next()[1]))
        if toks.peek()[1] == ",":
            toks.next()
    toks.expect("]")
    return TensorType(tuple(shape), dtype)


_NAMES = {"true": True, "false": False, "none": None, "inf": math.inf, "-inf": -math.inf,
          "nan": math.nan}


def _parse_attr(toks: _Tokens):
    kind, text = toks.next()
    if text == "[":
        items = []
        while toks.peek()[1] != "]":
            items.append(_parse_attr(toks))
            if toks.peek()[1] == ",":
                toks.next()
        toks.expect("]")
        return tuple(items)
    if kind == "num":
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind == "str":
        return text[1:-1].encode().decode("unicode_escape")
    if kind == "name":
        if text in _NAMES:
            return _NAMES[text]
        try:
            return dtypes.from_short(text)
        except KeyError:
            pass
    raise IRParseError(f"line {toks.line_no}: cannot read attribute value {text!r}")


def parse_call(toks: _Tokens, where: str):
    """``op(a, b, key=value, ...)`` -> (OpDef, operand token texts, attrs). Shared by node
    lines (operands ``%x``) and fused bodies (operands ``i0``, ``t1``)."""
    op_name = toks.next()[1]
    try:
        op = registry.get(op_name)
    except KeyError:
        raise IRParseError(f"{where}: unknown op {op_name!r}") from None
    toks.expect("(")
    operands, attrs = [], {}
    while toks.peek()[1] != ")":
        _, t = toks.next()
        if toks.peek()[1] == "=":
            toks.next()
            attrs[t] = _parse_attr(toks)
        else:
            operands.append(t)
        if toks.peek()[1] == ",":
            toks.next()
    toks.expect(")")
    return op, operands, attrs


def parse_op_call(text: str):
    """``"op(key=value, ...)"`` -> (OpDef, operand texts, attrs): one call in IR syntax."""
    toks = _Tokens(text, 1)
    found = parse_call(toks, "call")
    if not toks.done():
        raise IRParseError(f"call: unexpected text after {text!r}")
    return found


def parse_graph(text: str) -> Graph:
    lines = [(i + 1, line.split("#", 1)[0].strip()) for i, line in enumerate(text.splitlines())]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise IRParseError("empty IR text")
    n0, head = lines[0]
    toks = _Tokens(head, n0)
    toks.expect("graph")
    graph = Graph(name=toks.next()[1])
    env = {}
    toks.expect("(")
    while toks.peek()[1] != ")":
        name = toks.next()[1][1:]
        toks.expect(":")
        type_ = _parse_type(toks)
        toks.expect("{")
        role = toks.next()[1]
        toks.expect("}")
        if name in env:
            raise IRParseError(f"line {n0}: input %{name} is declared twice")
        env[name] = graph.add_input(type_, name, role)
        if toks.peek()[1] == ",":
            toks.next()
    toks.expect(")")
    toks.expect("{")

    def value(tok_text, line_no):
        name = tok_text[1:]
        if name not in env:
            raise IRParseError(f"line {line_no}: %{name} is used before it is defined")
        return env[name]

    for line_no, line in lines[1:]:
        toks = _Tokens(line, line_no)
        kind, first = toks.next()
        if first == "}":
            break
        if first == "return":
            while not toks.done():
                graph.outputs.append(value(toks.next()[1], line_no))
                if toks.peek()[1] == ",":
                    toks.next()
            continue
        if first == "update":
            target = value(toks.next()[1], line_no)
            toks.expect("<-")
            graph.updates.append((target, value(toks.next()[1], line_no)))
            continue
        if kind != "val":
            raise IRParseError(f"line {line_no}: expected a node, return, update or '}}', got {first!r}")
        out_names = [first[1:]]
        while toks.peek()[1] == ",":
            toks.next()
            kind, more = toks.next()
            if kind != "val":
                raise IRParseError(f"line {line_no}: expected a result name (%name), got {more!r}")
            out_names.append(more[1:])
        for out_name in out_names:
            if out_name in env or out_names.count(out_name) > 1:
                raise IRParseError(f"line {line_no}: %{out_name} is defined twice (the IR is SSA)")
        toks.expect("=")
        op, operands, attrs = parse_call(toks, f"line {line_no}")
        bad = [t for t in operands if not t.startswith("%")]
        if bad:
            raise IRParseError(f"line {line_no}: expected a value (%name) or key=value, got "
                               f"{bad[0]!r}")
        inputs = [value(t, line_no) for t in operands]
        toks.expect(":")
        out_types = [_parse_type(toks)]
        while toks.peek()[1] == ",":
            toks.next()
            out_types.append(_parse_type(toks))
        if len(out_types) != len(out_names):
            raise IRParseError(f"line {line_no}: {len(out_names)} results but {len(out_types)} "
                               "types")
        outs = graph.add_node(op, inputs, attrs, out_types if len(out_types) > 1 else out_types[0])
        for out_name, v in zip(out_names, outs if len(out_types) > 1 else [outs]):
            env[out_name] = v
    return graph
