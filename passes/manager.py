"""Running passes in order: verification between them, and a text snapshot after each.

A pass is anything with a ``name`` (one word: it labels dumps and errors) and a
``run(graph) -> Graph`` method. ``graph_pass("dce")`` turns a plain function into one.

# NOTE: [Pass contract]
A pass may rewrite the graph it is given in place and return it, or build a new one; the
caller must use the returned graph either way and not look at the old one again. The passes
in this package rewrite in place (cheap, and the manager prints the text after each pass,
so nothing is lost for the dump tool). A pass may leave ``last_stats`` (a dict, e.g. how
often each simplify rule fired); the manager keeps a copy per stage in ``stats``.
"""
from __future__ import annotations

import os
from typing import Callable, Protocol, runtime_checkable

from graphjit.errors import GraphjitError
from graphjit.ir import IRVerifyError, print_graph, verify


@runtime_checkable
class Pass(Protocol):
    name: str

    def run(self, graph):  # -> Graph
        ...


class FunctionPass:
    """A plain ``Graph -> Graph`` function with a name; calling it runs the pass."""

    def __init__(self, name: str, fn: Callable, doc: str | None = None):
        self.name = name
        self.fn = fn
        self.__doc__ = doc if doc is not None else fn.__doc__
        self.last_stats = None

    def run(self, graph):
        return self.fn(graph)

    __call__ = run

    def __repr__(self) -> str:
        return f"<pass {self.name}>"


def graph_pass(name: str):
    """Decorator: ``@graph_pass("dce") def dce(graph): ...`` makes ``dce`` a Pass."""
    def wrap(fn):
        return FunctionPass(name, fn)
    return wrap


class PassVerifyError(GraphjitError):
    """A pass produced a graph the IR verifier rejects (the message names the pass)."""


def verify_requested(flag: bool = False) -> bool:
    """True when asked for explicitly or by the environment (``GRAPHJIT_VERIFY=1``)."""
    return bool(flag) or os.environ.get("GRAPHJIT_VERIFY", "") not in ("", "0")


class PassManager:
    """Run ``passes`` in order over a graph.

    ``snapshots`` is a list of ``(stage, graph_text)``, beginning with ``("trace", ...)``
    for the graph as given, then one entry per pass under the pass's name. ``stats`` is a
    list of ``(stage, dict)`` for the passes that report statistics (``last_stats``).
    With ``verify`` (or ``GRAPHJIT_VERIFY=1``) the IR verifier runs on the input graph and
    after every pass; a failure raises ``PassVerifyError`` naming the stage.
    """

    def __init__(self, passes, verify: bool = False):
        self.passes = list(passes)
        for p in self.passes:
            name, run = getattr(p, "name", None), getattr(p, "run", None)
            is_pass = isinstance(name, str) and callable(run)
            if not is_pass:
                raise TypeError(f"{p!r} is not a pass: it needs a `name` and a `run(graph)` method "
                                "(wrap a plain function with passes.manager.graph_pass)")
        self.verify = verify_requested(verify)
        self.snapshots: list[tuple[str, str]] = []
        self.stats: list[tuple[str, dict]] = []

    def _check(self, stage: str, graph) -> None:
        if not self.verify:
            return
        try:
            verify(graph)
        except IRVerifyError as e:
            what = "the input graph" if stage == "trace" else f"pass {stage!r}"
            raise PassVerifyError(f"{what} produced an invalid graph: {e}", where="") from e

    def run(self, graph):
        self.snapshots = [("trace", print_graph(graph))]
        self.stats = []
        self._check("trace", graph)
        for p in self.passes:
            try:
                result = p.run(graph)
            except Exception as e:
                if hasattr(e, "add_note"):  # Python 3.11+
                    e.add_note(f"(while running pass {p.name!r})")
                raise
            if result is None:
                raise TypeError(f"pass {p.name!r} returned None; a pass returns the graph")
            graph = result
            self._check(p.name, graph)
            self.snapshots.append((p.name, print_graph(graph)))
            stats = getattr(p, "last_stats", None)
            if stats is not None:
                self.stats.append((p.name, dict(stats)))
        return graph
