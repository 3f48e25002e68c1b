"""passes/autodiff: IR text in -> IR text out, and gradients checked against eager autograd
(to 1e-10 in float64) and float64 central differences."""

import numpy as np
import pytest

import graphjit as gj
from graphjit import dtypes
from graphjit.ir import Graph, GraphBuilder, parse_graph, print_graph, run_graph
from graphjit.ops import api, registry
from graphjit.shapes import TensorType
from passes.autodiff import autodiff
from passes.dce import dce
from passes.fuse import fuse
from passes.pipeline import DEFAULT, run_pipeline
from ir_text import round_trip, text

F64 = dtypes.float64


def run_text(passes, before: str) -> str:
    g = parse_graph(text(before))
    assert round_trip(g) == text(before)
    for p in passes:
        g = p.run(g)
    return round_trip(g)


# ---- building graphs and running them eagerly ----------------------------------------------

def request(y, x, seed=None):
    """A ``grad`` node, as a traced backward() records it."""
    inputs = (y, x) if seed is None else (y, x, seed)
    return registry.bind(registry.get("grad"), *inputs)


def build(fn, arrays, wrt=(), seed=None, frozen=()):
    """A graph computing ``fn(**inputs)`` (written with graphjit.ops.api) as output 0 and, if
    ``wrt`` is given, grad requests for those inputs as the following outputs."""
    g = Graph("f")
    values = {}
    for name, arr in arrays.items():
        role = "param" if name in wrt or name in frozen else "arg"
        values[name] = g.add_input(TensorType(arr.shape, dtypes.from_numpy(arr.dtype)), name, role)
    seed_value = None
    if seed is not None:
        seed_value = g.add_input(TensorType(seed.shape, F64), "seed", "arg")
    with registry.interpreter(GraphBuilder(g)):
        y = fn(**values)
        grads = [request(y, values[name], seed_value) for name in wrt]
    g.outputs = [y] + grads
    round_trip(g)
    return g


def graph_args(arrays, seed=None):
    return list(arrays.values()) + ([seed] if seed is not None else [])


def gradients(fn, arrays, wrt, seed=None, passes=(autodiff, dce)):
    """(graph after the passes, y, [gradients]) computed from the IR."""
    g = build(fn, arrays, wrt, seed)
    for p in passes:
        g = p.run(g)
    out = round_trip(g)
    assert "grad(" not in out
    outs, _ = run_graph(g, graph_args(arrays, seed))
    return g, outs[0], outs[1:]


def eager_gradients(fn, arrays, wrt, seed=None):
    tensors = {name: gj.tensor(arr, dtype=dtypes.from_numpy(arr.dtype), requires_grad=name in wrt)
               for name, arr in arrays.items()}
    y = fn(**tensors)
    y.backward(None if seed is None else gj.tensor(seed, dtype=F64))
    return y.detach().numpy(), [tensors[name].grad.numpy() for name in wrt]


def numeric_gradient(fn, arrays, name, seed=None, eps=1e-6):
    """Central differences of sum(fn(...) * seed) with respect to input ``name``."""
    g = build(fn, arrays)
    base = {k: v.copy() for k, v in arrays.items()}
    out = np.zeros_like(arrays[name])
    for i in np.ndindex(arrays[name].shape):
        vals = []
        for step in (eps, -eps):
            base[name] = arrays[name].copy()
            base[name][i] += step
            y = run_graph(g, list(base.values()))[0][0]
            vals.append(np.sum(y * (1.0 if seed is None else seed)))
        out[i] = (vals[0] - vals[1]) / (2 * eps)
    return out


def check(fn, arrays, wrt, seed=None, numeric=False):
    g, y, grads = gradients(fn, arrays, wrt, seed)
    y_eager, grads_eager = eager_gradients(fn, arrays, wrt, seed)
    np.testing.assert_allclose(y, y_eager, rtol=1e-10, atol=1e-12)
    for name, got, want in zip(wrt, grads, grads_eager):
        assert got.shape == arrays[name].shape and got.dtype == arrays[name].dtype
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"d/d{name}")
        if numeric:
            np.testing.assert_allclose(got, numeric_gradient(fn, arrays, name, seed),
                                       rtol=1e-6, atol=1e-7, err_msg=f"d/d{name} (numeric)")
    return g


# ---- closed forms -----------------------------------------------------------------------------

def q_fn(a, b):
    return api.sub(api.mul(api.pow(a, 3), 3.0), api.pow(b, 2))


def test_q_closed_form_with_seed(rng):
    # PyTorch's tutorial: Q = 3a^3 - b^2, Q.backward(gradient=ones) gives 9a^2 and -2b.
    arrays = {"a": rng.normal(size=4), "b": rng.normal(size=4)}
    seed = np.ones(4)
    g = check(q_fn, arrays, ["a", "b"], seed=seed, numeric=True)
    _, _, (ga, gb) = gradients(q_fn, arrays, ["a", "b"], seed)
    np.testing.assert_allclose(ga, 9 * arrays["a"] ** 2, rtol=1e-12)
    np.testing.assert_allclose(gb, -2 * arrays["b"], rtol=1e-12)
    assert all(n.op.name != "grad" for n in g.nodes)


def test_q_through_the_pipeline_is_the_closed_form():
    before = """
    graph f(%a: f64[3] {param}, %b: f64[3] {param}) {
      %0 = pow_scalar(%a, exponent=3) : f64[3]
      %1 = full(dtype=f64, shape=[], value=3.0) : f64[]
      %2 = mul(%0, %1) : f64[3]
      %3 = pow_scalar(%b, exponent=2) : f64[3]
      %4 = sub(%2, %3) : f64[3]
      %5 = sum(%4, dims=[0], keepdim=false) : f64[]
      %6 = grad(%5, %a) : f64[3]
      %7 = grad(%5, %b) : f64[3]
      return %5, %6, %7
    }"""
    # The algebraic part of the pipeline (fusion after it is tested in test_fuse.py).
    algebraic = DEFAULT[:DEFAULT.index(fuse)]
    g, snapshots = run_pipeline(parse_graph(text(before)), verify=True, passes=algebraic)
    assert [name for name, _ in snapshots] == ["trace", "autodiff", "decompose", "simplify",
                                               "cse", "batch", "dce"]
    # d/da = 9 a^2, d/db = -2 b, with every constant folded.
    assert round_trip(g) == text("""
    graph f(%a: f64[3] {param}, %b: f64[3] {param}) {
      %0 = pow_scalar(%a, exponent=3) : f64[3]
      %1 = full(dtype=f64, shape=[], value=3.0) : f64[]
      %2 = mul(%0, %1) : f64[3]
      %3 = pow_scalar(%b, exponent=2) : f64[3]
      %4 = sub(%2, %3) : f64[3]
      %5 = sum(%4, dims=[0], keepdim=false) : f64[]
      %6 = full(dtype=f64, shape=[3], value=-2.0) : f64[3]
      %7 = mul(%6, %b) : f64[3]
      %8 = full(dtype=f64, shape=[3], value=9.0) : f64[3]
      %9 = pow_scalar(%a, exponent=2) : f64[3]
      %10 = mul(%8, %9) : f64[3]
      return %5, %10, %7
    }""")


# ---- text in -> text out --------------------------------------------------------------------

def test_fan_out_sums_both_uses():
    out = run_text([autodiff], """
    graph f(%x: f64[3] {param}) {
      %0 = mul(%x, %x) : f64[3]
      %1 = sum(%0, dims=[0], keepdim=false) : f64[]
      %2 = grad(%1, %x) : f64[3]
      return %2
    }""")
    # Seed, the sum's VJP (reshape + expand), one product per use of x, and their sum.
    assert out == text("""
    graph f(%x: f64[3] {param}) {
      %0 = mul(%x, %x) : f64[3]
      %1 = sum(%0, dims=[0], keepdim=false) : f64[]
      %2 = full(dtype=f64, shape=[], value=1.0) : f64[]
      %3 = reshape(%2, shape=[1]) : f64[1]
      %4 = expand(%3, shape=[3]) : f64[3]
      %5 = mul(%4, %x) : f64[3]
      %6 = mul(%4, %x) : f64[3]
      %7 = add(%5, %6) : f64[3]
      return %7
    }""")


def test_fan_out_numbers(rng):
    x = rng.normal(size=(2, 3))
    _, _, (gx,) = gradients(lambda x: api.sum(api.mul(x, x)), {"x": x}, ["x"])
    np.testing.assert_allclose(gx, 2 * x, rtol=1e-12)


def test_unreachable_x_gets_zeros_and_uses_are_replaced_everywhere():
    out = run_text([autodiff], """
    graph step(%x: f64[2] {param}, %z: f64[2,2] {param}, %lr: f64[] {hyper}) {
      %0 = exp(%x) : f64[2]
      %1 = sum(%0, dims=[0], keepdim=false) : f64[]
      %2 = grad(%1, %z) : f64[2,2]
      %3 = grad(%1, %x) : f64[2]
      %4 = mul(%3, %lr) : f64[2]
      %5 = sub(%x, %4) : f64[2]
      return %1, %2
      update %x <- %5
    }""")
    assert out == text("""
    graph step(%x: f64[2] {param}, %z: f64[2,2] {param}, %lr: f64[] {hyper}) {
      %0 = exp(%x) : f64[2]
      %1 = sum(%0, dims=[0], keepdim=false) : f64[]
      %2 = full(dtype=f64, shape=[], value=1.0) : f64[]
      %3 = reshape(%2, shape=[1]) : f64[1]
      %4 = expand(%3, shape=[2]) : f64[2]
      %5 = mul(%4, %0) : f64[2]
      %6 = full(dtype=f64, shape=[2, 2], value=0.0) : f64[2,2]
      %7 = mul(%5, %lr) : f64[2]
      %8 = sub(%x, %7) : f64[2]
      return %1, %6
      update %x <- %8
    }""")


def test_comparisons_and_integer_paths_stop_gradients():
    # y depends on x only through gt (a comparison) and a cast to i64: no gradient work.
    out = run_text([autodiff], """
    graph f(%x: f64[2] {param}, %w: f64[2] {param}) {
      %0 = full(dtype=f64, shape=[], value=0.0) : f64[]
      %1 = gt(%x, %0) : b8[2]
      %2 = cast(%x, dtype=i64) : i64[2]
      %3 = cast(%2, dtype=f64) : f64[2]
      %4 = where(%1, %w, %3) : f64[2]
      %5 = sum(%4, dims=[0], keepdim=false) : f64[]
      %6 = grad(%5, %x) : f64[2]
      return %6
    }""")
    assert out.endswith(text("""
      %6 = full(dtype=f64, shape=[2], value=0.0) : f64[2]
      return %6
    }"""))
    assert out.count(" = ") == 7  # the forward nodes and one zero fill


def test_detach_stops_gradients(rng):
    x = rng.normal(size=3)
    fn = lambda x: api.sum(api.mul(x, api.detach(x)))  # noqa: E731
    _, _, (gx,) = gradients(fn, {"x": x}, ["x"])
    np.testing.assert_allclose(gx, x, rtol=1e-12)  # not 2x


def test_backward_nodes_carry_the_forward_source():
    g = parse_graph(text("""
    graph f(%x: f64[3] {param}) {
      %0 = exp(%x) : f64[3]
      %1 = sum(%0, dims=[0], keepdim=false) : f64[]
      %2 = grad(%1, %x) : f64[3]
      return %2
    }"""))
    g.nodes[0].source = "model.py:10"
    g.nodes[1].source = "model.py:11"
    g.nodes[2].source = "train.py:5"
    g = autodiff.run(g)
    sources = {(n.op.name, n.source) for n in g.nodes[2:]}
    assert sources == {("full", "train.py:5"), ("reshape", "model.py:11"),
                       ("expand", "model.py:11"), ("mul", "model.py:10")}
    assert "# model.py:10" in print_graph(g, sources=True)


def test_no_source_stays_none():
    g = parse_graph(text("""
    graph f(%x: f64[3] {param}) {
      %0 = exp(%x) : f64[3]
      %1 = sum(%0, dims=[0], keepdim=false) : f64[]
      %2 = grad(%1, %x) : f64[3]
      return %2
    }"""))
    g = autodiff.run(g)
    assert all(n.source is None for n in g.nodes)


def test_x_equal_to_y_gets_the_seed():
    out = run_text([autodiff], """
    graph f(%x: f64[2] {param}, %s: f64[2] {arg}) {
      %0 = grad(%x, %x, %s) : f64[2]
      return %0
    }""")
    assert out == text("""
    graph f(%x: f64[2] {param}, %s: f64[2] {arg}) {
      return %s
    }""")


# ---- models ---------------------------------------------------------------------------------

def mlp_fn(x, w1, b1, w2, b2, labels):
    h = api.relu(api.add(api.matmul(x, w1), b1))
    logits = api.add(api.matmul(h, w2), b2)
    logp = api.log_softmax(logits, 1)
    rows = np.arange(x.shape[0], dtype=np.int64)
    nll = api.neg(api.mean(api.getitem(logp, (rows, labels))))
    p = api.softmax(logits, 1)
    return api.add(nll, api.mul(api.sum(api.mul(p, p)), 0.1))


def mlp_arrays(rng):
    return {"x": rng.normal(size=(6, 4)), "w1": rng.normal(size=(4, 8)) * 0.5,
            "b1": rng.normal(size=8) * 0.1, "w2": rng.normal(size=(8, 3)) * 0.5,
            "b2": rng.normal(size=3) * 0.1, "labels": rng.integers(0, 3, size=6)}


def test_mlp_layer_against_eager(rng):
    arrays = mlp_arrays(rng)
    check(mlp_fn, arrays, ["x", "w1", "b1", "w2", "b2"])


def test_mlp_after_full_pipeline(rng):
    arrays = mlp_arrays(rng)
    g = build(mlp_fn, arrays, ["w1", "b1", "w2", "b2"])
    g, _ = run_pipeline(g, verify=True)
    round_trip(g)
    outs, _ = run_graph(g, list(arrays.values()))
    _, want = eager_gradients(mlp_fn, arrays, ["w1", "b1", "w2", "b2"])
    for got, w in zip(outs[1:], want):
        np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)
    assert not any(n.op.name == "detach" for n in g.nodes)


def rnn_fn(xs, wx, wh, b):
    steps, batch, _ = xs.shape
    h = api.zeros((batch, wh.shape[0]), wh.dtype)
    total = None
    for t in range(steps):
        h = api.tanh(api.add(api.add(api.matmul(api.getitem(xs, t), wx), api.matmul(h, wh)), b))
        s = api.sum(api.mul(h, h))
        total = s if total is None else api.add(total, s)
    return total


def test_elman_rnn_bptt_against_eager(rng):
    arrays = {"xs": rng.normal(size=(10, 3, 4)), "wx": rng.normal(size=(4, 5)) * 0.5,
              "wh": rng.normal(size=(5, 5)) * 0.5, "b": rng.normal(size=5) * 0.1}
    g = check(rnn_fn, arrays, ["xs", "wx", "wh", "b"])
    # Forward: 10 x_t @ wx and 10 h @ wh. Backward: d/dx_t and d/dwx for each step, d/dwh for
    # each step, d/dh for 9 (h0 is a constant fill, off every path from a requested input).
    assert sum(1 for n in g.nodes if n.op.name == "matmul") == 20 + 20 + 19


def test_frozen_parameter_gets_no_gradient_work(rng):
    arrays = {"x": rng.normal(size=(5, 4)), "w1": rng.normal(size=(4, 6)),
              "w2": rng.normal(size=(6, 2))}

    def fn(x, w1, w2):
        return api.sum(api.tanh(api.matmul(api.tanh(api.matmul(x, w1)), w2)))

    # Request w2 only (w1 frozen): nothing flows back through the first layer.
    g = build(fn, arrays, ["w2"], frozen=["w1"])
    g = autodiff.run(g)
    out = round_trip(g)
    matmuls = [n for n in g.nodes if n.op.name == "matmul"]
    assert len(matmuls) == 3  # two forward, one for d/dw2 = h^T @ g
    assert "permute(%w2" not in out  # g @ w2^T would be the gradient of the hidden layer
    assert "permute(%x" not in out and "permute(%w1" not in out
    # Not even dead nodes: the pruning happens inside autodiff, and dce finds nothing more.
    before = len(g.nodes)
    dce.run(g)
    assert len(g.nodes) == before
    _, want = eager_gradients(fn, arrays, ["w2"])
    got = run_graph(g, list(arrays.values()))[0][1]
    np.testing.assert_allclose(got, want[0], rtol=1e-10)


def test_frozen_weight_of_a_requested_input(rng):
    # d/dx of x @ w is g @ w^T; the matmul x^T @ g (the frozen w's gradient) is absent.
    out = run_text([autodiff, dce], """
    graph f(%x: f64[2,3] {arg}, %w: f64[3,4] {param}) {
      %0 = matmul(%x, %w) : f64[2,4]
      %1 = sum(%0, dims=[0, 1], keepdim=false) : f64[]
      %2 = grad(%1, %x) : f64[2,3]
      return %1, %2
    }""")
    assert out == text("""
    graph f(%x: f64[2,3] {arg}, %w: f64[3,4] {param}) {
      %0 = matmul(%x, %w) : f64[2,4]
      %1 = sum(%0, dims=[0, 1], keepdim=false) : f64[]
      %2 = full(dtype=f64, shape=[], value=1.0) : f64[]
      %3 = reshape(%2, shape=[1, 1]) : f64[1,1]
      %4 = expand(%3, shape=[2, 4]) : f64[2,4]
      %5 = permute(%w, dims=[1, 0]) : f64[4,3]
      %6 = matmul(%4, %5) : f64[2,3]
      return %1, %6
    }""")


# ---- ops in the path ------------------------------------------------------------------------

def ops_fn(x, y, idx):
    a = api.gather(x, 1, idx)                                   # [3,2]
    b = api.getitem(x, (slice(None), slice(0, None, 2)))         # [3,3], a strided slice
    c = api.cat([a, b], 1)                                       # [3,5]
    r = api.getitem(c, [0, 2, 2])                                # index with a repeat: [3,5]
    m = api.expand(api.amax(y, 1, keepdim=True), (3, 5))         # [3,5]
    w = api.where(api.gt(r, 0.0), r, api.mul(r, 0.1))
    p = api.pow(api.exp(w), api.sigmoid(y))                      # tensor ** tensor
    q = api.div(p, api.add(api.mul(m, m), 1.0))
    return api.sum(api.mul(q, api.permute(api.reshape(y, (5, 3)), (1, 0))), 1)


def test_ops_in_the_path(rng):
    arrays = {"x": rng.normal(size=(3, 5)), "y": rng.normal(size=(3, 5)),
              "idx": rng.integers(0, 5, size=(3, 2))}
    seed = rng.normal(size=3)
    check(ops_fn, arrays, ["x", "y"], seed=seed, numeric=True)


def test_reductions_and_broadcasts(rng):
    def fn(x, v):
        s = api.sum(api.mul(x, v), 0, keepdim=True)             # broadcast v, sum dim 0
        return api.sum(api.sub(api.mean(api.abs(s)), api.amin(x, (0, 1))))

    arrays = {"x": rng.normal(size=(4, 3)), "v": rng.normal(size=3)}
    check(fn, arrays, ["x", "v"], numeric=True)


# ---- groups, intermediates, higher order ----------------------------------------------------

def test_groups_by_y_and_seed(rng):
    arrays = {"x": rng.normal(size=3)}
    seed = rng.normal(size=3)
    g = Graph("f")
    x = g.add_input(TensorType((3,), F64), "x", "param")
    s = g.add_input(TensorType((3,), F64), "s", "arg")
    with registry.interpreter(GraphBuilder(g)):
        y1 = api.sin(x)
        y2 = api.sum(api.mul(x, x))
        g.outputs = [request(y1, x, s), request(y2, x), request(y1, x, s)]
    round_trip(g)
    g = autodiff.run(g)
    round_trip(g)
    assert g.outputs[0] is g.outputs[2]  # one sweep served both requests of (y1, s)
    got = run_graph(g, [arrays["x"], seed])[0]
    np.testing.assert_allclose(got[0], np.cos(arrays["x"]) * seed, rtol=1e-12)
    np.testing.assert_allclose(got[1], 2 * arrays["x"], rtol=1e-12)


def test_gradient_with_respect_to_an_intermediate(rng):
    x = rng.normal(size=3)
    g = Graph("f")
    xv = g.add_input(TensorType((3,), F64), "x", "param")
    with registry.interpreter(GraphBuilder(g)):
        h = api.exp(xv)
        y = api.sum(api.mul(h, xv))
        g.outputs = [request(y, h), request(y, xv)]
    round_trip(g)
    g = autodiff.run(g)
    round_trip(g)
    gh, gx = run_graph(g, [x])[0]
    np.testing.assert_allclose(gh, x, rtol=1e-12)                       # d/dh (h . x) = x
    np.testing.assert_allclose(gx, np.exp(x) * x + np.exp(x), rtol=1e-12)  # total derivative


def test_second_order(rng):
    # y = sum(x^3); g = dy/dx = 3x^2; d/dx sum(g * v) = 6 x v.
    x, v = rng.normal(size=4), rng.normal(size=4)
    g = Graph("f")
    xv = g.add_input(TensorType((4,), F64), "x", "param")
    vv = g.add_input(TensorType((4,), F64), "v", "arg")
    with registry.interpreter(GraphBuilder(g)):
        y = api.sum(api.mul(api.mul(xv, xv), xv))
        first = request(y, xv)
        second = request(api.sum(api.mul(first, vv)), xv)
        g.outputs = [first, second]
    round_trip(g)
    g, _ = run_pipeline(g, verify=True)
    round_trip(g)
    g1, g2 = run_graph(g, [x, v])[0]
    np.testing.assert_allclose(g1, 3 * x * x, rtol=1e-12)
    np.testing.assert_allclose(g2, 6 * x * v, rtol=1e-12)


def test_float32_gradient_dtype(rng):
    x = rng.normal(size=3).astype(np.float32)
    fn = lambda x: api.sum(api.cast(api.mul(api.cast(x, F64), 2.0), dtypes.float32))  # noqa: E731
    g, _, (gx,) = gradients(fn, {"x": x}, ["x"])
    assert gx.dtype == np.float32
    np.testing.assert_allclose(gx, np.full(3, 2.0, np.float32))


def test_stats_count_requests():
    g = parse_graph(text("""
    graph f(%x: f64[] {param}) {
      %0 = grad(%x, %x) : f64[]
      %1 = grad(%x, %x) : f64[]
      return %0, %1
    }"""))
    autodiff.run(g)
    assert autodiff.last_stats == {"requests_expanded": 2}
    assert print_graph(g).count("full(") == 1


@pytest.mark.parametrize("seed_dtype", ["f32", "f64"])
def test_seed_of_another_dtype_is_cast(seed_dtype):
    out = run_text([autodiff], f"""
    graph f(%x: f64[2] {{param}}, %s: {seed_dtype}[2] {{arg}}) {{
      %0 = neg(%x) : f64[2]
      %1 = grad(%0, %x, %s) : f64[2]
      return %1
    }}""")
    assert ("cast(%s, dtype=f64)" in out) == (seed_dtype == "f32")


# ---- broken VJP rules are reported -----------------------------------------------------------

def _fake_op(vjp):
    """An op that is not registered (so no other test sees it): identity with a given vjp."""
    from graphjit.ops.registry import OpDef
    return OpDef(name="fake", kind="elementwise", infer=lambda x: TensorType(x.shape, x.dtype),
                 impl=lambda x: x, vjp=vjp)


@pytest.mark.parametrize("vjp, message", [
    (lambda g, out, x: (api.sum(g),), r"gradient of type f64\[\] for an input of type f64\[3\]"),
    (lambda g, out, x: (g, g), "one entry per input"),
])
def test_a_broken_vjp_rule_is_named(vjp, message):
    from passes.autodiff import AutodiffError
    g = Graph("f")
    x = g.add_input(TensorType((3,), F64), "x", "param")
    with registry.interpreter(GraphBuilder(g)):
        y = api.sum(registry.bind(_fake_op(vjp), x))
        g.outputs = [request(y, x)]
    g.nodes[0].source = "model.py:3"
    with pytest.raises(AutodiffError, match=message) as e:
        autodiff.run(g)
    assert "fake" in str(e.value) and "model.py:3" in str(e.value)
