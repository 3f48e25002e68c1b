"""passes/partition: a joint graph in -> forward and backward graphs out ([Forward/backward
partition]). IR text in, snapshots of the two graphs out, and the reference interpreter
checks that forward then backward computes what the joint graph computes (no Numba)."""

import numpy as np

from graphjit.ir import parse_graph, run_graph
from passes.partition import partition
from ir_text import round_trip, text
from snapshots import assert_matches_snapshot

# y = sum(exp(x) * w), with the gradients for x and w from the seed of y:
# dy/dx = seed * w * exp(x), dy/dw = seed * exp(x).
ONE_OUTPUT = """
graph f(%x: f32[4] {arg}, %w: f32[4] {param}, %seed0: f32[] {arg}) {
  %0 = exp(%x) : f32[4]
  %1 = mul(%0, %w) : f32[4]
  %2 = sum(%1, dims=[0], keepdim=false) : f32[]
  %3 = reshape(%seed0, shape=[1]) : f32[1]
  %4 = expand(%3, shape=[4]) : f32[4]
  %5 = mul(%4, %w) : f32[4]
  %6 = mul(%5, %0) : f32[4]
  %7 = mul(%4, %0) : f32[4]
  return %2, %6, %7
}"""


def inputs_named(g, *names):
    by_name = {v.name: v for v in g.inputs}
    return [by_name[n] for n in names]


def split(before: str, seeds, n_outputs):
    g = parse_graph(text(before))
    assert round_trip(g) == text(before)
    return partition(g, inputs_named(g, *seeds), n_outputs)


def check_same_numbers(before: str, seeds, n_outputs, rng, constants=None):
    """Forward, then backward on the saved values and the seeds, gives the joint graph's
    outputs and gradients."""
    joint = parse_graph(text(before))
    for name, array in (constants or {}).items():
        joint.constants[inputs_named(joint, name)[0]] = array
    args = {v.name: rng.standard_normal(v.shape).astype(v.dtype.np)
            for v in joint.inputs if v.role != "const"}
    expected, expected_updates = run_graph(joint, list(args.values()))
    p = partition(joint, inputs_named(joint, *seeds), n_outputs)
    fw_out, fw_updates = run_graph(p.forward, [args[v.name] for v in p.forward.inputs
                                               if v.role != "const"])
    saved = [args[x.name] if kind == "input" else fw_out[x] for kind, x in p.saved]
    bw_out, _ = run_graph(p.backward, saved + [args[s] for s in seeds])
    for a, b in zip(expected, fw_out[:n_outputs] + bw_out, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(expected_updates, fw_updates, strict=True):
        np.testing.assert_array_equal(a, b)


def test_one_output_saves_a_node_value_and_reads_an_input_again(rng):
    p = split(ONE_OUTPUT, ["seed0"], 1)
    assert_matches_snapshot("partition/one_output_forward", round_trip(p.forward))
    assert_matches_snapshot("partition/one_output_backward", round_trip(p.backward))
    # exp(x) comes out of the forward program; w is read from the caller's tensor again.
    assert [(kind, x if kind == "output" else x.name) for kind, x in p.saved] == \
        [("input", "w"), ("output", 1)]
    assert [v.name for v in p.forward.inputs] == ["x", "w"]
    check_same_numbers(ONE_OUTPUT, ["seed0"], 1, rng)


# Two differentiable outputs, each with its seed. The second output, exp(x), is also what
# its gradient reads, so the forward returns it twice: as the function's output and as a
# saved value. The buffer update stays with the forward program.
TWO_OUTPUTS = """
graph g(%x: f64[3] {arg}, %b: f64[3] {buffer}, %seed0: f64[3] {arg}, %seed1: f64[3] {arg}) {
  %0 = mul(%x, %x) : f64[3]
  %1 = exp(%x) : f64[3]
  %2 = add(%b, %x) : f64[3]
  %3 = mul(%seed0, %x) : f64[3]
  %4 = add(%3, %3) : f64[3]
  %5 = mul(%seed1, %1) : f64[3]
  %6 = add(%4, %5) : f64[3]
  return %0, %1, %6
  update %b <- %2
}"""


def test_two_seeds_and_an_output_that_is_also_saved(rng):
    p = split(TWO_OUTPUTS, ["seed0", "seed1"], 2)
    assert_matches_snapshot("partition/two_outputs_forward", round_trip(p.forward))
    assert_matches_snapshot("partition/two_outputs_backward", round_trip(p.backward))
    assert p.forward.outputs[1] is p.forward.outputs[2]  # exp(x): returned and saved
    assert [v.name for v in p.backward.inputs] == ["saved0", "saved1", "seed0", "seed1"]
    check_same_numbers(TWO_OUTPUTS, ["seed0", "seed1"], 2, rng)


CONSTANT = """
graph h(%x: f32[3] {arg}, %c0: f32[3] {const}, %seed0: f32[3] {arg}) {
  %0 = mul(%x, %c0) : f32[3]
  %1 = mul(%seed0, %c0) : f32[3]
  %2 = mul(%1, %x) : f32[3]
  return %0, %2
}"""


def test_a_constant_the_backward_reads_becomes_its_own_constant(rng):
    data = np.array([0.5, -2.0, 3.0], np.float32)
    g = parse_graph(text(CONSTANT))
    c0, seed = inputs_named(g, "c0", "seed0")
    g.constants[c0] = data
    p = partition(g, [seed], 1)
    # The constant keeps its place in the numbering of the saved values (saved1 is x).
    assert_matches_snapshot("partition/constant_backward", round_trip(p.backward))
    (const,) = [v for v in p.backward.inputs if v.role == "const"]
    assert p.backward.constants[const] is data
    assert [(kind, x.name) for kind, x in p.saved] == [("input", "x")]
    assert p.residuals == inputs_named(g, "x")
    check_same_numbers(CONSTANT, ["seed0"], 1, rng, constants={"c0": data})


def test_saved_host_scalars_stay_on_the_host():
    # A CUDA program's host inputs ([Host scalars]): a saved learning-rate-like scalar, and a
    # host node's result, reach the backward as host inputs too; a saved tensor does not.
    g = parse_graph(text("""
    graph k(%x: f32[2] {arg}, %s: f64[] {hyper}, %seed0: f32[2] {arg}) {
      %0 = mul(%s, %s) : f64[]
      %1 = cast(%0, dtype=f32) : f32[]
      %2 = mul(%x, %1) : f32[2]
      %3 = mul(%seed0, %1) : f32[2]
      %4 = mul(%3, %x) : f32[2]
      %5 = cast(%s, dtype=f32) : f32[]
      %6 = mul(%4, %5) : f32[2]
      return %2, %6
    }"""))
    g.host_inputs = inputs_named(g, "s")
    p = partition(g, inputs_named(g, "seed0"), 1)
    assert [v.name for v in p.backward.inputs] == ["saved0", "saved1", "saved2", "seed0"]
    assert [v.name for v in p.backward.host_inputs] == ["saved0", "saved2"]
    assert p.forward.host_inputs == g.host_inputs


def test_nothing_depends_on_the_seed():
    # Gradients that do not read the seed (here: none at all) leave an empty backward.
    g = parse_graph(text("""
    graph f(%x: f32[2] {arg}, %seed0: f32[2] {arg}) {
      %0 = neg(%x) : f32[2]
      return %0
    }"""))
    p = partition(g, inputs_named(g, "seed0"), 1)
    assert round_trip(p.forward) == text("""
    graph f_forward(%x: f32[2] {arg}) {
      %0 = neg(%x) : f32[2]
      return %0
    }""")
    assert round_trip(p.backward) == text("""
    graph f_backward(%seed0: f32[2] {arg}) {
      return
    }""")
    assert p.saved == [] and p.residuals == []


def test_the_pass_imports_only_the_ir():
    # passes/ never imports the front end, the backends, tensors or autograd (DESIGN's
    # layering table): a partition needs no tracer and no Numba.
    import ast

    import passes.partition as mod
    tree = ast.parse(open(mod.__file__, encoding="utf-8").read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "dataclasses", "graphjit.ir", "graphjit.ir.host"}
