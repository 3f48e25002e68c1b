"""Graph IR: text round trip, verifier errors, networkx view."""
import math

import networkx
import pytest

import graphjit  # noqa: F401  (registers ops)
from graphjit import dtypes
from graphjit.ir import Graph, IRParseError, IRVerifyError, parse_graph, print_graph, verify
from graphjit.ops import get
from graphjit.shapes import TensorType

TEXT = """graph step(%x: f32[8,4] {arg}, %w: f32[3,4] {param}, %b: f32[3] {param}, %y: i64[8] {arg}, %lr: f32[] {hyper}) {
  %0 = permute(%w, dims=[1, 0]) : f32[4,3]
  %1 = matmul(%x, %0) : f32[8,3]
  %2 = add(%1, %b) : f32[8,3]
  %3 = gelu(%2, approximate='tanh') : f32[8,3]
  %4 = clamp(%3, max=none, min=-inf) : f32[8,3]
  %5 = full(dtype=f32, shape=[], value=0.5) : f32[]
  %6 = mul(%4, %5) : f32[8,3]
  %7 = sum(%6, dims=[0, 1], keepdim=false) : f32[]
  %8 = index(%6, %y, key=[['t', 0], ['s', none, none, none]]) : f32[8,3]
  %9 = mul(%b, %lr) : f32[3]
  %10 = sub(%b, %9) : f32[3]
  return %7, %8
  update %b <- %10
}"""


def test_round_trip_is_exact():
    g = parse_graph(TEXT)
    verify(g)
    assert print_graph(g) == TEXT
    assert print_graph(parse_graph(print_graph(g))) == TEXT


def test_parsed_graph_structure():
    g = parse_graph(TEXT)
    assert [v.role for v in g.inputs] == ["arg", "param", "param", "arg", "hyper"]
    assert g.nodes[1].op is get("matmul")
    assert g.nodes[3].attrs == {"approximate": "tanh"}
    assert g.nodes[4].attrs == {"min": -math.inf, "max": None}
    assert g.nodes[8].attrs["key"] == (("t", 0), ("s", None, None, None))
    assert g.updates[0][0] is g.inputs[2] and g.updates[0][1] is g.nodes[10].out
    assert g.nodes[5].out.type == TensorType((), dtypes.float32)


def test_verifier_rejects_wrong_type_with_window():
    bad = TEXT.replace("%2 = add(%1, %b) : f32[8,3]", "%2 = add(%1, %b) : f32[8,4]")
    g = parse_graph(bad)
    with pytest.raises(IRVerifyError) as e:
        verify(g)
    msg = str(e.value)
    assert "node 2 (add)" in msg and "f32[8,4]" in msg and "f32[8,3]" in msg
    assert "-> " in msg and "matmul" in msg  # shows the surrounding graph text


def test_verifier_rejects_ill_typed_op():
    bad = TEXT.replace("%1 = matmul(%x, %0)", "%1 = matmul(%x, %w)")
    with pytest.raises(IRVerifyError, match="matmul"):
        verify(parse_graph(bad))


def test_verifier_rejects_bad_update():
    bad = TEXT.replace("update %b <- %10", "update %b <- %9\n  update %b <- %10")
    with pytest.raises(IRVerifyError, match="updated twice"):
        verify(parse_graph(bad))
    bad = TEXT.replace("update %b <- %10", "update %b <- %2")
    with pytest.raises(IRVerifyError, match="update of %b"):
        verify(parse_graph(bad))


@pytest.mark.parametrize("text, message", [
    ("%2 = add(%1, %zz) : f32[8,3]", "used before it is defined"),
    ("%2 = frobnicate(%1, %b) : f32[8,3]", "unknown op"),
    ("%2 = add(%1, %b) : q32[8,3]", "unknown dtype"),
])
def test_parse_errors(text, message):
    bad = TEXT.replace("%2 = add(%1, %b) : f32[8,3]", text)
    with pytest.raises(IRParseError, match=message):
        parse_graph(bad)


def test_redefinition_is_rejected():
    bad = TEXT.replace("%3 = gelu", "%2 = gelu")
    with pytest.raises(IRParseError, match="defined twice"):
        parse_graph(bad)


def test_networkx_view():
    nxg = parse_graph(TEXT).to_networkx()
    assert isinstance(nxg, networkx.DiGraph)
    assert networkx.is_directed_acyclic_graph(nxg)
    assert nxg.nodes["1"]["op"] == "matmul" and nxg.nodes["w"]["role"] == "param"
    assert networkx.has_path(nxg, "w", "7") and not networkx.has_path(nxg, "lr", "7")
    assert set(nxg.predecessors("2")) == {"1", "b"}


def test_builder_api_and_unknown_role():
    g = Graph("g")
    x = g.add_input(TensorType((2,), dtypes.float64), "x")
    y = g.add_node(get("exp"), [x], {}, TensorType((2,), dtypes.float64))
    g.outputs.append(y)
    verify(g)
    assert "%0 = exp(%x) : f64[2]" in print_graph(g)
    with pytest.raises(ValueError, match="role"):
        g.add_input(TensorType((), dtypes.float32), "z", role="weights")
