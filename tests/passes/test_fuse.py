"""passes/fuse: IR text in -> IR text out, and legality over many random graphs."""

import numpy as np
import pytest

from graphjit import dtypes
from graphjit.ir import Graph, GraphBuilder, parse_graph, print_graph, run_graph, verify
from graphjit.ops import api, registry
from graphjit.shapes import TensorType
from passes.dce import dce
from passes.fuse import check_convex, find_groups, fuse
from ir_text import round_trip, text
from snapshots import assert_matches_snapshot


def run_fuse(before: str) -> str:
    g = parse_graph(text(before))
    return round_trip(dce.run(fuse.run(g)))


def test_a_chain_becomes_one_node_with_constants_inlined():
    # Q = 3a^3 - b^2: five elementwise nodes, one loop; the 3.0 is copied into the body.
    out = run_fuse("""
    graph f(%a: f32[8] {arg}, %b: f32[8] {arg}) {
      %0 = pow_scalar(%a, exponent=3) : f32[8]
      %1 = full(dtype=f32, shape=[], value=3.0) : f32[]
      %2 = mul(%1, %0) : f32[8]
      %3 = pow_scalar(%b, exponent=2) : f32[8]
      %4 = sub(%2, %3) : f32[8]
      return %4
    }""")
    assert out == text("""
    graph f(%a: f32[8] {arg}, %b: f32[8] {arg}) {
      %0 = fused(%a, %b, body='t0 = pow_scalar(i0, exponent=3); t1 = full(dtype=f32, shape=[], value=3.0); t2 = mul(t1, t0); t3 = pow_scalar(i1, exponent=2); t4 = sub(t2, t3)') : f32[8]
      return %0
    }""")


def test_a_value_read_by_a_reduction_and_a_chain_is_one_loop_with_two_results():
    # exp(x) feeds both the chain and the sum: one loop computes it once, stores the chain's
    # result and accumulates the sum.
    out = run_fuse("""
    graph f(%x: f32[4] {arg}) {
      %0 = exp(%x) : f32[4]
      %1 = neg(%0) : f32[4]
      %2 = mul(%1, %1) : f32[4]
      %3 = sum(%0, dims=[0], keepdim=false) : f32[]
      return %2, %3
    }""")
    assert out == text("""
    graph f(%x: f32[4] {arg}) {
      %0, %1 = fused(%x, body='t0 = exp(i0); t1 = neg(t0); t2 = mul(t1, t1); t3 = sum(t0, dims=[0], keepdim=false); return t2, t3') : f32[4], f32[]
      return %0, %1
    }""")


def test_outputs_and_updates_become_results_and_broadcast_producers_stay_out():
    out = run_fuse("""
    graph f(%x: f32[3,4] {arg}, %y: f32[4] {arg}, %w: f32[3,4] {param}) {
      %0 = exp(%y) : f32[4]
      %1 = add(%x, %0) : f32[3,4]
      %2 = tanh(%1) : f32[3,4]
      %3 = mul(%w, %2) : f32[3,4]
      %4 = sigmoid(%3) : f32[3,4]
      return %2, %4
      update %w <- %3
    }""")
    # exp(y) has another shape (fusing it would compute it 3 times); %2 (an output) and %3
    # (an update) are stored by the loop that computes them, as two more results.
    assert out == text("""
    graph f(%x: f32[3,4] {arg}, %y: f32[4] {arg}, %w: f32[3,4] {param}) {
      %0 = exp(%y) : f32[4]
      %1, %2, %3 = fused(%x, %0, %w, body='t0 = add(i0, i1); t1 = tanh(t0); t2 = mul(i2, t1); t3 = sigmoid(t2); return t1, t2, t3') : f32[3,4], f32[3,4], f32[3,4]
      return %1, %3
      update %w <- %2
    }""")


def test_sibling_gradients_of_a_chain_share_one_loop():
    # Q = 3a^3 - b^2 and Q.sum().backward(): the forward sum and both gradients read a and
    # b over the same domain, so the forward and the backward are one loop.
    out = run_fuse("""
    graph f(%a: f32[8] {arg}, %b: f32[8] {arg}) {
      %0 = pow_scalar(%a, exponent=3) : f32[8]
      %1 = mul(%0, 3.0) : f32[8]
      %2 = mul(%b, %b) : f32[8]
      %3 = sub(%1, %2) : f32[8]
      %4 = sum(%3, dims=[0], keepdim=false) : f32[]
      %5 = mul(%a, %a) : f32[8]
      %6 = mul(%5, 9.0) : f32[8]
      %7 = mul(%b, -2.0) : f32[8]
      return %4, %6, %7
    }""".replace("3.0)", "%c3)").replace("9.0)", "%c9)").replace("-2.0)", "%cm2)")
       .replace("{\n", "{\n      %c3 = full(dtype=f32, shape=[], value=3.0) : f32[]\n"
                "      %c9 = full(dtype=f32, shape=[], value=9.0) : f32[]\n"
                "      %cm2 = full(dtype=f32, shape=[], value=-2.0) : f32[]\n", 1))
    assert out.count("fused(") == 1 and "return t" in out
    assert out.splitlines()[1].lstrip().startswith("%0, %1, %2 = fused(%a, %b,")


def test_loops_sharing_only_a_small_operand_stay_apart():
    # The input projections of unrolled RNN steps plus one bias row: the adds share only
    # the [4] bias, so fusing them saves nothing (and 50 of them made one loop of 100
    # arrays LLVM could not vectorise); a domain-sized shared input still merges siblings.
    g = parse_graph(text("""
    graph f(%x0: f32[3,4] {arg}, %x1: f32[3,4] {arg}, %x2: f32[3,4] {arg}, %b: f32[4] {param}) {
      %0 = add(%x0, %b) : f32[3,4]
      %1 = add(%x1, %b) : f32[3,4]
      %2 = add(%x2, %b) : f32[3,4]
      %3 = mul(%x2, %x2) : f32[3,4]
      return %0, %1, %2, %3
    }"""))
    groups = find_groups(g)
    assert [[g.nodes.index(n) for n in grp] for grp in groups] == [[2, 3]]


def test_a_reduction_over_another_dim_stays_out():
    # Reducing the middle dim of [2,3,4] is neither the innermost nor the outermost dims.
    out = run_fuse("""
    graph f(%x: f32[2,3,4] {arg}) {
      %0 = exp(%x) : f32[2,3,4]
      %1 = sum(%0, dims=[1], keepdim=false) : f32[2,4]
      return %1
    }""")
    assert "%0 = exp(%x)" in out and "%1 = sum(%0" in out


def test_softmax_is_one_loop_over_rows():
    out = run_fuse("""
    graph f(%x: f32[6,10] {arg}) {
      %0 = amax(%x, dims=[1], keepdim=true) : f32[6,1]
      %1 = sub(%x, %0) : f32[6,10]
      %2 = exp(%1) : f32[6,10]
      %3 = sum(%2, dims=[1], keepdim=true) : f32[6,1]
      %4 = div(%2, %3) : f32[6,10]
      return %4
    }""")
    # One fused node holding the whole softmax (tests/snapshots/fuse/softmax.txt).
    assert_matches_snapshot("fuse/softmax", out)


def test_forward_and_backward_of_a_split_program_stay_apart():
    g = parse_graph(text("""
    graph f(%x: f32[4] {arg}, %seed: f32[4] {arg}) {
      %0 = exp(%x) : f32[4]
      %1 = mul(%seed, %0) : f32[4]
      return %0, %1
    }"""))
    g.fusion_split = [g.inputs[1]]
    assert [n.op.name for n in dce.run(fuse.run(g)).nodes] == ["exp", "mul"]


def test_non_elementwise_nodes_end_groups():
    out = run_fuse("""
    graph f(%x: f32[2,3] {arg}, %w: f32[3,3] {arg}) {
      %0 = relu(%x) : f32[2,3]
      %1 = matmul(%0, %w) : f32[2,3]
      %2 = exp(%1) : f32[2,3]
      %3 = neg(%2) : f32[2,3]
      return %3
    }""")
    assert out == text("""
    graph f(%x: f32[2,3] {arg}, %w: f32[3,3] {arg}) {
      %0 = relu(%x) : f32[2,3]
      %1 = matmul(%0, %w) : f32[2,3]
      %2 = fused(%1, body='t0 = exp(i0); t1 = neg(t0)') : f32[2,3]
      return %2
    }""")


def test_bad_fused_bodies_are_clear_errors():
    from graphjit.ir import IRParseError, IRVerifyError
    for body, match in [("t0 = matmul(i0, i0)", "neither an elementwise op"),
                        ("t0 = exp(i0); return t3", "not one of its steps"),
                        ("t0 = exp(i3)", "i3 is not defined"), ("t1 = exp(i0)", "expected t0"),
                        ("t0 = nosuchop(i0)", "unknown op")]:
        with pytest.raises((IRParseError, IRVerifyError), match=match):
            verify(parse_graph(text(f"""
            graph f(%x: f32[2] {{arg}}) {{
              %0 = fused(%x, body='{body}') : f32[2]
              return %0
            }}""")))


# ---- legality and numbers on random graphs -------------------------------------------------

UNARY = ("exp", "neg", "tanh", "sigmoid", "relu", "sin")
BINARY = ("add", "mul", "sub", "maximum")


REDUCE = (lambda a: api.sum(a, 0),                       # outer: [3,4] -> [4]
          lambda a: api.sum(a, 1, keepdim=True),         # inner: [3,4] -> [3,1]
          lambda a: api.amax(a, 1, keepdim=True),
          lambda a: api.sum(a))                          # everything: [3,4] -> []


def random_graph(rng, n_nodes=14):
    """A random DAG of elementwise, reduction and expand nodes over [3,4], [3,1], [4] and []
    values."""
    g = Graph("rand")
    x = g.add_input(TensorType((3, 4), dtypes.float64), "x", "arg")
    y = g.add_input(TensorType((4,), dtypes.float64), "y", "arg")
    values = [x, y]
    with registry.interpreter(GraphBuilder(g)):
        for _ in range(n_nodes):
            kind = rng.integers(4)
            a = values[rng.integers(len(values))]
            if kind == 0:
                values.append(getattr(api, UNARY[rng.integers(len(UNARY))])(a))
            elif kind in (1, 2):
                b = values[rng.integers(len(values))]
                values.append(getattr(api, BINARY[rng.integers(len(BINARY))])(a, b))
            elif a.shape == (3, 4):
                values.append(REDUCE[rng.integers(len(REDUCE))](a))
            elif rng.integers(2):
                values.append(api.expand(a, (3, 4)))  # a zero-stride read when fused
            else:
                values.append(api.mul(a, 0.5))
    outs = [values[i] for i in rng.choice(np.arange(2, len(values)), size=3, replace=False)]
    g.outputs = outs
    verify(g)
    return dce.run(g)


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_fuse_to_convex_groups_with_the_same_values(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    before = print_graph(g)
    groups = find_groups(g)
    for members in groups:
        assert check_convex(g, members), f"non-convex group in\n{before}"
    inputs = [rng.normal(size=(3, 4)), rng.normal(size=4)]
    expected, _ = run_graph(g, inputs)
    fused = dce.run(fuse.run(parse_graph(before)))
    round_trip(fused)
    got, _ = run_graph(fused, inputs)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    n_fusable = sum(n.op.kind in ("elementwise", "reduce") for n in g.nodes)
    if groups:
        assert len(fused.nodes) < len(g.nodes) or n_fusable == 0


@pytest.mark.parametrize("seed", range(12))
def test_random_fused_graphs_compile_to_the_same_values(seed):
    """The CPU code generator on what fusion makes of random graphs (reductions inside and
    outside loops, per-row steps, several results), against the unfused reference."""
    from graphjit.backend.cpu.codegen import compile_graph
    rng = np.random.default_rng(1000 + seed)
    g = random_graph(rng, n_nodes=18)
    before = print_graph(g)
    fused = dce.run(fuse.run(parse_graph(before)))
    program = compile_graph(fused)
    for _ in range(2):
        inputs = [rng.normal(size=(3, 4)), rng.normal(size=4)]
        expected, _ = run_graph(g, inputs)
        got, _ = program(inputs)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{before}\nfused:\n{print_graph(fused)}")


def test_check_convex_rejects_a_group_with_a_path_through_the_outside():
    g = parse_graph(text("""
    graph f(%x: f32[4] {arg}) {
      %0 = exp(%x) : f32[4]
      %1 = sum(%0, dims=[0], keepdim=true) : f32[1]
      %2 = add(%0, %1) : f32[4]
      return %2
    }"""))
    assert not check_convex(g, [g.nodes[0], g.nodes[2]])  # %0 -> sum -> %2 leaves the group
    assert check_convex(g, [g.nodes[1], g.nodes[2]])


def test_an_optimizer_update_with_two_states_is_one_loop_with_two_results():
    # SGD with weight decay and Nesterov: g' = g + wd * p feeds the momentum buffer and the
    # parameter update; both are results of one loop (no buffer for g').
    out = run_fuse("""
    graph f(%p: f64[8] {param}, %g: f64[8] {grad}, %b: f64[8] {state}, %wd: f64[] {hyper}) {
      %0 = mul(%p, %wd) : f64[8]
      %1 = add(%g, %0) : f64[8]
      %2 = add(%b, %1) : f64[8]
      %3 = add(%1, %2) : f64[8]
      %4 = sub(%p, %3) : f64[8]
      return
      update %b <- %2
      update %p <- %4
    }""")
    assert out == text("""
    graph f(%p: f64[8] {param}, %g: f64[8] {grad}, %b: f64[8] {state}, %wd: f64[] {hyper}) {
      %0, %1 = fused(%p, %wd, %g, %b, body='t0 = mul(i0, i1); t1 = add(i2, t0); t2 = add(i3, t1); t3 = add(t1, t2); t4 = sub(i0, t3); return t2, t4') : f64[8], f64[8]
      return
      update %b <- %0
      update %p <- %1
    }""")


@pytest.mark.parametrize("total", ["sum", "amax", "amin"])
def test_a_total_beside_row_reductions_and_column_sums_is_one_loop(total):
    """A softmax over rows, its column sums and a total of its output (a mean loss): one
    loop, the total accumulated across the rows; compiled, against the interpreter."""
    from graphjit.backend.cpu.codegen import compile_graph
    before = f"""
    graph f(%x: f32[6,10] {{arg}}, %y: f32[6,10] {{arg}}) {{
      %0 = amax(%x, dims=[1], keepdim=true) : f32[6,1]
      %1 = sub(%x, %0) : f32[6,10]
      %2 = exp(%1) : f32[6,10]
      %3 = sum(%2, dims=[1], keepdim=true) : f32[6,1]
      %4 = div(%2, %3) : f32[6,10]
      %5 = mul(%4, %y) : f32[6,10]
      %6 = {total}(%5, dims=[0, 1], keepdim=false) : f32[]
      %7 = sum(%4, dims=[0], keepdim=false) : f32[10]
      return %6, %7
    }}"""
    fused = dce.run(fuse.run(parse_graph(text(before))))
    assert [n.op.name for n in fused.nodes] == ["fused"], print_graph(fused)
    program = compile_graph(fused)
    rng = np.random.default_rng(7)
    for _ in range(2):
        inputs = [rng.normal(size=(6, 10)).astype(np.float32) * 3,
                  rng.normal(size=(6, 10)).astype(np.float32)]
        expected, _ = run_graph(parse_graph(text(before)), inputs)
        got, _ = program(inputs)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_total_read_inside_its_own_loop_stays_out():
    out = run_fuse("""
    graph f(%x: f32[6,10] {arg}) {
      %0 = sum(%x, dims=[1], keepdim=true) : f32[6,1]
      %1 = sub(%x, %0) : f32[6,10]
      %2 = sum(%1, dims=[0, 1], keepdim=false) : f32[]
      %3 = mul(%1, %2) : f32[6,10]
      return %3
    }""")
    assert out == text("""
    graph f(%x: f32[6,10] {arg}) {
      %0, %1 = fused(%x, body='t0 = sum(i0, dims=[1], keepdim=true); t1 = sub(i0, t0); t2 = sum(t1, dims=[0, 1], keepdim=false); return t1, t2') : f32[6,10], f32[]
      %2 = mul(%0, %1) : f32[6,10]
      return %2
    }""")


def test_a_long_sum_of_many_inputs_becomes_a_chain_of_kernels_of_at_most_max_arguments():
    # The bias gradient of an unrolled RNN: the sum of 50 per-step parts. One loop over all
    # of them is a 51-argument kernel (Numba's compile time grows faster than linearly with
    # arguments); capped, it is a chain of loops whose middle links have equal bodies, so
    # they share one compiled kernel. The values stay those of the unfused graph.
    from passes import fuse as fuse_module
    n = 50
    params = ", ".join(f"%x{i}: f32[6] {{arg}}" for i in range(n))
    lines = ["%0 = add(%x0, %x1) : f32[6]"]
    lines += [f"%{i - 1} = add(%{i - 2}, %x{i}) : f32[6]" for i in range(2, n)]
    body = "\n      ".join(lines)
    g = parse_graph(text(f"""
    graph f({params}) {{
      {body}
      return %{n - 2}
    }}"""))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(6).astype(np.float32) for _ in range(n)]
    want = run_graph(g, args)
    out = dce.run(fuse.run(g))
    verify(out)
    fused = [nd for nd in out.nodes if nd.op.name == "fused"]
    assert len(fused) == 3
    cap = fuse_module.MAX_ARGUMENTS
    assert all(len(nd.inputs) + len(nd.outs) <= cap for nd in fused)
    assert sum(len(nd.inputs) for nd in fused) == n + len(fused) - 1
    assert fused[0].attrs["body"] == fused[1].attrs["body"]
    np.testing.assert_allclose(run_graph(out, args)[0], want[0], rtol=1e-6)
