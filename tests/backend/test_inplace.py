"""Updates computed straight into their targets' buffers (NOTE [In-place updates] in
graphjit/ir/buffers.py): which updates qualify, and that the numbers are those of the
interpreter with every buffer the caller passed left as it should be."""

import numpy as np

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.backend.cpu import compile_graph, generate
from graphjit.ir import parse_graph, run_graph

# A weight gradient made by a GEMM and a bias gradient summed with keepdim and reshaped,
# neither target read; a momentum-like elementwise update of %m; a second GEMM result.
GRADS = """
graph f(%x: f32[6,4] {arg}, %g: f32[6,3] {arg}, %w.grad: f32[3,4] {grad}, %b.grad: f32[3] {grad}, %m: f32[3,4] {state}, %v: f32[3,4] {state}) {
  %0 = permute(%g, dims=[1, 0]) : f32[3,6]
  %1 = matmul(%0, %x) : f32[3,4]
  %2 = sum(%g, dims=[0], keepdim=true) : f32[1,3]
  %3 = reshape(%2, shape=[3]) : f32[3]
  %4 = add(%m, %1) : f32[3,4]
  %5 = matmul(%0, %x) : f32[3,4]
  %6 = mul(%5, %m) : f32[3,4]
  return %6
  update %w.grad <- %1
  update %b.grad <- %3
  update %m <- %4
  update %v <- %5
}"""


def _in_place_targets(text):
    g = parse_graph(text)
    module = generate(g, inplace=True)
    return {g.updates[j][0].name for j in module.in_place}, g


def test_unread_targets_take_any_kernel_result_and_read_ones_only_elementwise():
    targets, _ = _in_place_targets(GRADS)
    # w.grad, b.grad, v: unread targets, results of a GEMM and of a reshaped sum. m: its
    # elementwise update is followed by a read of its old value (%6), so not in place.
    assert targets == {"w.grad", "b.grad", "v"}
    # A GEMM result into a target that a node reads: not in place; m now qualifies.
    read = GRADS.replace("%6 = mul(%5, %m)", "%6 = mul(%5, %v)")
    targets, _ = _in_place_targets(read)
    assert targets == {"w.grad", "b.grad", "m"}
    # An update value that is also an output stays a result of its own (no aliasing).
    returned = GRADS.replace("return %6", "return %6, %1")
    targets, _ = _in_place_targets(returned)
    assert targets == {"b.grad", "v"}


def test_in_place_results_are_the_interpreters():
    rng = np.random.default_rng(0)
    g = parse_graph(GRADS)
    inputs = [rng.normal(size=v.shape).astype(np.float32) for v in g.inputs]
    expected_out, expected_updates = run_graph(g, [a.copy() for a in inputs])
    program = compile_graph(g, inplace=True)
    flat = [a.copy() for a in inputs]
    outs, updates = program(flat)
    np.testing.assert_allclose(outs[0], expected_out[0], rtol=1e-5, atol=1e-6)
    for got, want in zip(updates, expected_updates):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The in-place updates are the caller's own arrays, now holding the new values.
    names = [v.name for v in g.inputs]
    in_place, _ = _in_place_targets(GRADS)
    for (target, _), got in zip(g.updates, updates):
        arr = flat[names.index(target.name)]
        assert np.shares_memory(arr, got) == (target.name in in_place), target.name
    # The inputs no update targets are untouched.
    for name in ("x", "g"):
        np.testing.assert_array_equal(flat[names.index(name)], inputs[names.index(name)])


def test_a_compiled_training_step_writes_gradients_into_grad_without_copies():
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    twin = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    twin.load_state_dict(model.state_dict())
    opts = [gj.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (model, twin)]
    x = gj.tensor(rng.normal(size=(8, 5)).astype(np.float32))
    y = gj.tensor(rng.normal(size=(8, 2)).astype(np.float32))

    def step(m, opt):
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        return loss

    compiled = gj.compile(lambda: step(model, opts[0]))
    pointers = []
    for _ in range(5):
        loss = compiled()
        want = step(twin, opts[1])
        np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-5)
        pointers.append([p.grad._data.ctypes.data for p in model.parameters()])
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)
    # From the third call on (the steady-state program) the gradients live in the same
    # arrays, written by their kernels: every update of the program is in place. (Each
    # .grad the call creates after zero_grad() is a new tensor, its buffer from a pool of
    # two, reused once the previous .grad is let go: [Gradients a call creates] in
    # jit/runtime.py.)
    assert pointers[2] == pointers[4]
    program = [e.program for es in compiled._cache.values() for e in es][-1]
    assert len(program._in_place) == len(program.graph.updates)
