"""Graph IR: data structure, text form (printer + parser), verifier, networkx view."""
from .graph import ROLES, Graph, Node, Value  # noqa: F401
from .parser import IRParseError, parse_graph  # noqa: F401
from .printer import print_graph  # noqa: F401
from .verify import IRVerifyError, verify  # noqa: F401
from .builder import GraphBuilder  # noqa: F401
from .interpret import run_graph  # noqa: F401
from . import fused, gemm  # noqa: F401  (register the fused and gemm ops)
