"""passes/cse: IR text in -> IR text out."""
import math

import numpy as np

from graphjit import dtypes
from graphjit.ir import Graph, parse_graph, run_graph
from graphjit.ops import get
from graphjit.shapes import TensorType
from passes.cse import attr_key, cse
from passes.dce import dce
from ir_text import round_trip, text


def run_cse(before: str) -> str:
    g = parse_graph(text(before))
    assert round_trip(g) == text(before)
    return round_trip(cse.run(g))


def test_merges_equal_nodes_and_what_that_exposes():
    out = run_cse("""
    graph f(%x: f32[4] {arg}, %y: f32[4] {arg}) {
      %0 = exp(%x) : f32[4]
      %1 = exp(%x) : f32[4]
      %2 = mul(%0, %y) : f32[4]
      %3 = mul(%1, %y) : f32[4]
      %4 = add(%2, %3) : f32[4]
      return %4, %3
    }""")
    assert out == text("""
    graph f(%x: f32[4] {arg}, %y: f32[4] {arg}) {
      %0 = exp(%x) : f32[4]
      %1 = mul(%0, %y) : f32[4]
      %2 = add(%1, %1) : f32[4]
      return %2, %1
    }""")
    assert cse.last_stats == {"nodes_merged": 2}


def test_commutative_operands():
    out = run_cse("""
    graph f(%x: f32[4] {arg}, %y: f32[4] {arg}) {
      %0 = mul(%x, %y) : f32[4]
      %1 = mul(%y, %x) : f32[4]
      %2 = maximum(%x, %y) : f32[4]
      %3 = maximum(%y, %x) : f32[4]
      %4 = sub(%x, %y) : f32[4]
      %5 = sub(%y, %x) : f32[4]
      return %0, %1, %2, %3, %4, %5
    }""")
    # mul merges; maximum does not (maximum(-0.0, 0.0) depends on the order); sub does not
    # commute.
    assert out == text("""
    graph f(%x: f32[4] {arg}, %y: f32[4] {arg}) {
      %0 = mul(%x, %y) : f32[4]
      %1 = maximum(%x, %y) : f32[4]
      %2 = maximum(%y, %x) : f32[4]
      %3 = sub(%x, %y) : f32[4]
      %4 = sub(%y, %x) : f32[4]
      return %0, %0, %1, %2, %3, %4
    }""")


def test_full_nodes_and_signed_zeros_and_nans():
    out = run_cse("""
    graph f(%x: f32[] {arg}) {
      %0 = full(dtype=f32, shape=[], value=0.0) : f32[]
      %1 = full(dtype=f32, shape=[], value=-0.0) : f32[]
      %2 = full(dtype=f32, shape=[], value=0.0) : f32[]
      %3 = full(dtype=f32, shape=[], value=nan) : f32[]
      %4 = full(dtype=f32, shape=[], value=nan) : f32[]
      %5 = full(dtype=f64, shape=[], value=0.0) : f64[]
      %6 = full(dtype=f32, shape=[1], value=0.0) : f32[1]
      return %0, %1, %2, %3, %4, %5, %6
    }""")
    assert out == text("""
    graph f(%x: f32[] {arg}) {
      %0 = full(dtype=f32, shape=[], value=0.0) : f32[]
      %1 = full(dtype=f32, shape=[], value=-0.0) : f32[]
      %2 = full(dtype=f32, shape=[], value=nan) : f32[]
      %3 = full(dtype=f64, shape=[], value=0.0) : f64[]
      %4 = full(dtype=f32, shape=[1], value=0.0) : f32[1]
      return %0, %1, %0, %2, %2, %3, %4
    }""")


def test_attributes_must_be_equal():
    out = run_cse("""
    graph f(%x: f32[2,3] {arg}) {
      %0 = sum(%x, dims=[0], keepdim=false) : f32[3]
      %1 = sum(%x, dims=[0], keepdim=true) : f32[1,3]
      %2 = sum(%x, dims=[0], keepdim=false) : f32[3]
      %3 = pow_scalar(%x, exponent=2) : f32[2,3]
      %4 = pow_scalar(%x, exponent=2.0) : f32[2,3]
      %5 = leaky_relu(%x, negative_slope=0.01) : f32[2,3]
      %6 = leaky_relu(%x, negative_slope=0.02) : f32[2,3]
      return %0, %1, %2, %3, %4, %5, %6
    }""")
    # 2 and 2.0 are kept apart: attribute kinds are part of the key (NOTE: [Attribute keys]).
    assert out.count(" = ") == 6 and out.endswith("return %0, %1, %0, %2, %3, %4, %5\n}")


def test_attr_keys():
    assert attr_key(0.0) != attr_key(-0.0)
    assert attr_key(math.nan) == attr_key(float("nan"))
    assert attr_key(1) != attr_key(1.0) != attr_key(True)
    assert attr_key((1, 2)) == attr_key([1, 2]) != attr_key((2, 1))
    assert attr_key(dtypes.float32) == attr_key(dtypes.float32) != attr_key(dtypes.float64)
    assert attr_key(None) != attr_key(0) and attr_key("a") != attr_key(("a",))


def test_outputs_and_updates_follow_the_merge():
    out = run_cse("""
    graph step(%w: f64[2] {param}, %lr: f64[] {hyper}) {
      %0 = mul(%w, %lr) : f64[2]
      %1 = sub(%w, %0) : f64[2]
      %2 = mul(%w, %lr) : f64[2]
      %3 = sub(%w, %2) : f64[2]
      return %1
      update %w <- %3
    }""")
    assert out == text("""
    graph step(%w: f64[2] {param}, %lr: f64[] {hyper}) {
      %0 = mul(%w, %lr) : f64[2]
      %1 = sub(%w, %0) : f64[2]
      return %1
      update %w <- %1
    }""")


def test_identical_const_inputs_merge(rng):
    f64 = TensorType((3,), dtypes.float64)
    g = Graph("f")
    x = g.add_input(f64, "x")
    c0 = g.add_constant(np.array([1.0, -0.0, 2.0]))
    c1 = g.add_constant(np.array([1.0, -0.0, 2.0]))
    c2 = g.add_constant(np.array([1.0, 0.0, 2.0]))  # differs from c0 in the sign of a zero
    a = g.add_node(get("mul"), [x, c0], {}, f64)
    b = g.add_node(get("mul"), [x, c1], {}, f64)
    c = g.add_node(get("mul"), [x, c2], {}, f64)
    g.outputs = [a, b, c]
    round_trip(g)
    cse.run(g)
    dce.run(g)
    round_trip(g)
    assert g.inputs == [x, c0, c2] and g.outputs[0] is g.outputs[1]
    xs = rng.normal(size=3)
    np.testing.assert_array_equal(run_graph(g, [xs])[0][2], xs * [1.0, 0.0, 2.0])
