"""Emitting Python source: an indenting writer and unique identifiers."""
from __future__ import annotations

import contextlib
import keyword
import re


class SourceWriter:
    """Lines of Python with managed indentation (4 spaces per level)."""

    def __init__(self, indent: int = 0):
        self.lines: list[str] = []
        self.level = indent

    def line(self, text: str = "") -> None:
        self.lines.append(("    " * self.level + text) if text else "")

    def lines_from(self, text: str) -> None:
        for line in text.splitlines():
            self.line(line)

    @contextlib.contextmanager
    def indent(self):
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    @contextlib.contextmanager
    def block(self, header: str):
        """``header`` (ending in ``:``) and an indented body."""
        self.line(header)
        with self.indent():
            yield

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def identifier(text: str) -> str:
    """``text`` made into a valid Python identifier (``"w0.grad"`` -> ``"w0_grad"``)."""
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name):
        name += "_"
    return name


class Namer:
    """Hands out unique identifiers: the hint itself when free, else ``hint_1``, ``hint_2``..."""

    def __init__(self, reserved=()):
        self.taken = set(reserved)

    def reserve(self, name: str) -> None:
        self.taken.add(name)

    def release(self, name: str) -> None:
        """``name`` may be handed out again (a loop variable whose loop has ended)."""
        self.taken.discard(name)

    def fresh(self, hint: str) -> str:
        base = identifier(hint)
        name, n = base, 0
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name
