"""Helpers the pass tests share: IR text in, IR text out."""
import textwrap

from graphjit.ir import parse_graph, print_graph, verify


def text(s: str) -> str:
    """``s`` without its common indentation and surrounding blank lines."""
    return textwrap.dedent(s).strip()


def round_trip(g) -> str:
    """The graph's text, after checking that it verifies and parses back to the same text."""
    verify(g)
    out = print_graph(g)
    again = parse_graph(out)
    verify(again)
    assert print_graph(again) == out
    return out
