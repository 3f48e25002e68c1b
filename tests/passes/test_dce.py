"""passes/dce: IR text in -> IR text out."""

import numpy as np

from graphjit import dtypes
from graphjit.ir import Graph, parse_graph, run_graph
from graphjit.ops import get
from graphjit.shapes import TensorType
from passes.dce import dce
from ir_text import round_trip, text


def run_dce(before: str) -> str:
    g = parse_graph(text(before))
    assert round_trip(g) == text(before)
    return round_trip(dce.run(g))


def test_removes_dead_chains_and_keeps_the_signature():
    out = run_dce("""
    graph f(%x: f32[4] {arg}, %unused: f32[2] {param}, %lr: f32[] {hyper}) {
      %0 = exp(%x) : f32[4]
      %1 = log(%0) : f32[4]
      %2 = neg(%1) : f32[4]
      %3 = sin(%x) : f32[4]
      return %3
    }""")
    assert out == text("""
    graph f(%x: f32[4] {arg}, %unused: f32[2] {param}, %lr: f32[] {hyper}) {
      %0 = sin(%x) : f32[4]
      return %0
    }""")
    assert dce.last_stats == {"nodes_removed": 3, "consts_removed": 0}


def test_updates_keep_their_nodes():
    out = run_dce("""
    graph step(%w: f32[3] {param}, %g: f32[3] {grad}, %lr: f32[] {hyper}) {
      %0 = mul(%g, %lr) : f32[3]
      %1 = sub(%w, %0) : f32[3]
      %2 = mul(%w, %w) : f32[3]
      return %0
      update %w <- %1
    }""")
    assert out == text("""
    graph step(%w: f32[3] {param}, %g: f32[3] {grad}, %lr: f32[] {hyper}) {
      %0 = mul(%g, %lr) : f32[3]
      %1 = sub(%w, %0) : f32[3]
      return %0
      update %w <- %1
    }""")


def test_nothing_to_do():
    before = """
    graph f(%x: f64[2] {arg}) {
      %0 = exp(%x) : f64[2]
      %1 = add(%0, %x) : f64[2]
      return %1, %0
    }"""
    assert run_dce(before) == text(before)


def test_grad_requests_and_fills_are_plain_nodes():
    out = run_dce("""
    graph f(%x: f64[2] {param}) {
      %0 = full(dtype=f64, shape=[2], value=1.0) : f64[2]
      %1 = mul(%x, %0) : f64[2]
      %2 = sum(%1, dims=[0], keepdim=false) : f64[]
      %3 = grad(%2, %x) : f64[2]
      return %2
    }""")
    assert "grad(" not in out and out.count(" = ") == 3


def test_unused_const_inputs_are_dropped(rng):
    g = Graph("f")
    x = g.add_input(TensorType((3,), dtypes.float64), "x")
    used = g.add_constant(np.array([1.0, 2.0, 3.0]))
    dead = g.add_constant(np.array([4.0, 5.0, 6.0]))
    a = g.add_node(get("mul"), [x, used], {}, TensorType((3,), dtypes.float64))
    g.add_node(get("add"), [x, dead], {}, TensorType((3,), dtypes.float64))
    g.outputs = [a]
    round_trip(g)
    dce.run(g)
    round_trip(g)
    assert g.inputs == [x, used] and list(g.constants) == [used]
    assert dce.last_stats == {"nodes_removed": 1, "consts_removed": 1}
    xs = rng.normal(size=3)
    np.testing.assert_array_equal(run_graph(g, [xs])[0][0], xs * [1.0, 2.0, 3.0])
