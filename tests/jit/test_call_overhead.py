"""The steady-state call path of ``@graphjit.compile`` ([Steady-state calls] in
graphjit/jit/runtime.py): it checks less per call, so every test here changes one thing a
program depends on between steps, through the path a user would take, and checks that the
compiled run traces again (or does not) and still gives eager's numbers.

The model and the step are the same everywhere, so most programs are compiled once (the
on-disk cache shares them across tests).
"""
from __future__ import annotations

import copy
import pickle
from collections import defaultdict

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
from graphjit.backend.cpu import compile_graph
from graphjit.ir import parse_graph

F64 = dict(rtol=1e-10, atol=1e-12)


def _params(seed=0, dtype=gj.float64):
    rng = np.random.default_rng(seed)
    return [gj.tensor(rng.normal(size=s) * 0.4, dtype=dtype, requires_grad=True)
            for s in [(5, 3), (5,), (2, 5)]]


def _loss(params, x, y):
    w1, b1, w2 = params
    return ((gj.tanh(x @ w1.T + b1) @ w2.T - y) ** 2).mean()


def _step_fn(params, opt, zero_grad=True):
    def step(x, y):
        if zero_grad:
            opt.zero_grad()
        loss = _loss(params, x, y)
        loss.backward()
        opt.step()
        return loss
    return step


def _data(seed=1, batch=6, dtype=gj.float64):
    rng = np.random.default_rng(seed)
    return (gj.tensor(rng.normal(size=(batch, 3)), dtype=dtype),
            gj.tensor(rng.normal(size=(batch, 2)), dtype=dtype))


def _traces(fn) -> int:
    return len(fn.explain().splitlines())


def _state_arrays(opt, params):
    return [{k: v.detach().numpy().copy() for k, v in opt.state[p].items()
             if isinstance(v, gj.Tensor)} for p in params if p in opt.state]


def _assert_matches_eager(make_opt, changes, steps_between=2, zero_grad=True, data=None, seed=0):
    """Run the same steps eagerly and compiled; ``changes`` are ``(change, retraces)``
    made between steps, ``change(params, opt, data) -> data`` (``retraces``: how many
    traces it causes, False/True for 0/1). Compares every loss, parameter,
    gradient and state tensor with eager's, and the traces with ``retraces``."""
    runs = []
    for compiled in (False, True):
        params = _params(seed)
        opt = make_opt(params)
        # The reference runs op by op: an eager step() is a compiled program by default.
        opt.fused = compiled
        step = _step_fn(params, opt, zero_grad)
        fn = gj.compile(step) if compiled else step
        batch = data() if data else _data()
        losses = []
        for _ in range(3):  # the first step, then the steady state (through the shortcut)
            losses.append(fn(*batch).item())
        for change, retraces in changes:
            before = _traces(fn) if compiled else 0
            batch = change(params, opt, batch) or batch
            for _ in range(steps_between):
                losses.append(fn(*batch).item())
            if compiled:
                assert _traces(fn) == before + int(retraces), fn.explain()
        grads = [None if p.grad is None else p.grad.numpy().copy() for p in params]
        runs.append((losses, [p.detach().numpy().copy() for p in params], grads,
                     _state_arrays(opt, params), fn))
    (le, pe, ge, se, _), (lc, pc, gc, sc, fn) = runs
    np.testing.assert_allclose(lc, le, **F64)
    for a, b in zip(pc, pe):
        np.testing.assert_allclose(a, b, **F64)
    for a, b in zip(gc, ge):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, **F64)
    assert len(sc) == len(se)
    for a, b in zip(sc, se):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], **F64)
    return fn


def sgd(params):
    return gj.optim.SGD(params, lr=0.1, momentum=0.9)


def _set(key, value, group=0):
    def change(params, opt, data):
        opt.param_groups[group][key] = value
    return change


# ---- optimizer options, through param_groups --------------------------------------------------

def test_lr_set_through_param_groups_is_used_without_a_retrace():
    fn = _assert_matches_eager(sgd, [(_set("lr", 0.05), False), (_set("lr", 0.2), False)])
    (entry,) = [e for es in fn._cache.values() for e in es]
    (guard,) = entry.optimizers
    assert guard.seen is not None  # the counted shortcut was in use


def test_momentum_set_to_zero_through_param_groups_retraces():
    fn = _assert_matches_eager(sgd, [(_set("momentum", 0.5), False), (_set("momentum", 0.0), True)])
    assert "opt.momentum: 0.0 decides" in fn.explain()


def test_nesterov_set_through_param_groups_retraces():
    fn = _assert_matches_eager(sgd, [(_set("nesterov", True), True)])
    assert "options changed" in fn.explain()


def test_a_scheduler_stepped_every_call_never_retraces():
    def make(params):
        opt = sgd(params)
        opt.scheduler = gj.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=50)
        return opt

    def step_scheduler(params, opt, data):
        opt.scheduler.step()  # lr and momentum: numbers replaced by numbers
    _assert_matches_eager(make, [(step_scheduler, False)] * 4, steps_between=1)


def test_an_option_replaced_by_another_kind_retraces():
    # lr 0.1 -> 1 (an int: still a number) keeps the program; lr as a tuple does not fit it.
    fn = _assert_matches_eager(sgd, [(_set("lr", 1), False)])
    assert fn.cache_size == 1


def test_a_list_option_changed_in_place_retraces():
    def make(params):
        return gj.optim.Adam([{"params": params, "betas": [0.9, 0.99]}], lr=0.01)

    def change(params, opt, data):
        opt.param_groups[0]["betas"][0] = 0.5  # no container of the optimizer sees this
    fn = _assert_matches_eager(make, [(change, True)])
    (entry,) = [e for es in fn._cache.values() for e in es if e.trace_number == 3]
    assert entry.optimizers[0].seen is None  # a mutable option: checked in full every call


def test_a_group_replaced_by_a_plain_dict_is_still_guarded():
    def plain(params, opt, data):
        opt.param_groups[0] = dict(opt.param_groups[0])
        assert opt._change_counter() is None

    def nesterov(params, opt, data):
        opt.param_groups[0]["nesterov"] = True  # a plain dict: counted by nobody
    _assert_matches_eager(sgd, [(plain, False), (nesterov, True)])


def test_a_parameter_appended_to_a_group_retraces():
    def make(params):
        return gj.optim.SGD(params[:2], lr=0.1, momentum=0.9)

    def append(params, opt, data):
        opt.param_groups[0]["params"].append(params[2])
    # Two traces: the new parameter's momentum buffer is made by a first step (run once).
    fn = _assert_matches_eager(make, [(append, 2)], steps_between=3)
    assert "the parameters of a param group changed" in fn.explain()


def test_a_replaced_state_tensor_retraces():
    def replace(params, opt, data):
        opt.state[params[0]]["momentum_buffer"] = opt.state[params[0]]["momentum_buffer"] * 0.5
    fn = _assert_matches_eager(sgd, [(replace, True)])
    assert "state tensors were replaced" in fn.explain()


def test_load_state_dict_between_steps():
    saved = {}

    def save(params, opt, data):
        saved["state"] = opt.state_dict()

    def load(params, opt, data):
        opt.load_state_dict(saved["state"])  # new state tensors
    _assert_matches_eager(sgd, [(save, False), (load, True)])


def test_a_deep_copied_or_unpickled_optimizer_counts_its_changes():
    params = _params()
    opt = sgd(params)
    gj.compile(_step_fn(params, opt))(*_data())
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        changes = clone._change_counter()
        assert changes is not None and changes is not opt._changes
        before = changes.structure
        clone.param_groups[0]["nesterov"] = True
        clone.state[clone.param_groups[0]["params"][0]]["x"] = 1
        assert changes.structure == before + 2
        assert type(clone.param_groups[0]) is not dict and clone.param_groups[0]["nesterov"]
    # Copies of the counting containers are plain ones (a copy has no optimizer to count for).
    assert type(copy.copy(opt.param_groups[0])) is dict and type(opt.param_groups[:]) is list
    for plain in (copy.copy(opt.state), opt.state.copy(), opt.state | {}, {} | opt.state):
        assert type(plain) is defaultdict and plain.default_factory is dict
        assert plain == dict(opt.state)
    assert copy.copy(opt)._changes is opt._changes  # a shallow copy shares the containers


# ---- gradients, tensors, arguments ---------------------------------------------------------------

def test_a_grad_set_to_none_between_steps_retraces():
    def drop(params, opt, data):
        params[1].grad = None  # accumulating steps: the program read b1.grad

    def zeros(params, opt, data):
        params[1].grad = gj.zeros(5, dtype=gj.float64)
    _assert_matches_eager(sgd, [(drop, True), (zeros, False)], zero_grad=False)


def test_a_dtype_change_of_an_argument_retraces():
    def to_f32(params, opt, data):
        return data[0].to(gj.float32), data[1]
    _assert_matches_eager(sgd, [(to_f32, True)])


def test_a_shape_change_of_an_argument_retraces():
    def smaller(params, opt, data):
        return _data(seed=3, batch=4)
    _assert_matches_eager(sgd, [(smaller, True)])


def test_requires_grad_switched_off_and_on_retraces():
    def freeze(params, opt, data):
        params[2].requires_grad_(False)

    def thaw(params, opt, data):
        params[2].requires_grad_(True)
    # Frozen: traced again, and once more when zero_grad() has dropped its .grad for good;
    # thawed: a step without its .grad yet, then the first steady-state program again.
    _assert_matches_eager(sgd, [(freeze, 2), (thaw, 1)], steps_between=3)


def test_a_new_array_behind_a_parameter_is_read():
    def new_data(params, opt, data):
        params[0].data = gj.tensor(np.full((5, 3), 0.1))  # same shape: no retrace
    _assert_matches_eager(sgd, [(new_data, False)])


def test_non_contiguous_and_read_only_arrays_are_copied_in_and_written_back():
    def fortran(params, opt, data):
        w = np.asfortranarray(params[0].detach().numpy().copy())
        params[0].data = gj.from_numpy(w)  # updated in place: through a copy, written back
        x = np.asfortranarray(data[0].numpy())
        x.flags.writeable = False
        return gj.from_numpy(x), data[1]
    _assert_matches_eager(sgd, [(fortran, False)])


# ---- Python values, modules ---------------------------------------------------------------------

class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x) * (2.0 if self.training else 0.5)  # Python branch on the flag


def test_the_training_flag_of_a_module_retraces():
    gj.manual_seed(0)
    model = _Scaled()
    f = gj.compile(lambda x: model(x))
    x = gj.randn(4, 3)
    with gj.no_grad():
        train = f(x).numpy().copy()
        model.eval()
        evaluation = f(x).numpy().copy()
        assert "module model.lin: training True -> False" in f.explain() or \
            "training True -> False" in f.explain()
        model.train()
        again = f(x).numpy().copy()
        expected = model(x).numpy()
    np.testing.assert_allclose(train, expected, rtol=1e-6)
    np.testing.assert_allclose(evaluation, expected / 4, rtol=1e-6)
    np.testing.assert_allclose(again, expected, rtol=1e-6)
    assert f.cache_size == 2 and _traces(f) == 2


def test_python_scalar_and_object_arguments_take_the_shortcut_and_are_guarded():
    params = _params()

    @gj.compile
    def f(x, scale, ps):
        return (_loss(ps, x, gj.zeros(6, 2, dtype=gj.float64)) * scale).detach()

    x = _data()[0]
    with gj.no_grad():
        a = f(x, 2.0, params).item()
        # A list argument is flattened into the key: no shortcut, same program.
        assert f._last_call is None and f(x, 2.0, params).item() == a
        g = gj.compile(lambda x, scale, mod: mod(x) * scale)
        mod = nn.Linear(3, 2)
        b = g(x.to(gj.float32), 2.0, mod).numpy().copy()
        assert g._last_call is not None
        np.testing.assert_allclose(g(x.to(gj.float32), 2.0, mod).numpy(), b)
        np.testing.assert_allclose(g(x.to(gj.float32), 3.0, mod).numpy(), b * 1.5, rtol=1e-6)
        np.testing.assert_allclose(g(x.to(gj.float32), 2, mod).numpy(), b, rtol=1e-6)
        other = nn.Linear(3, 2)
        np.testing.assert_allclose(g(x.to(gj.float32), 2.0, other).numpy(),
                                   other(x.to(gj.float32)).numpy() * 2, rtol=1e-6)
    assert _traces(g) == 4  # 2.0, 3.0, 2 (an int is another key), another module


def test_the_shortcut_finds_tensor_arguments_after_non_tensor_ones():
    h = gj.compile(lambda scale, x, flag, y: (x * scale - y) if flag else (y - x))
    x, y = gj.tensor([1.0, 2.0]), gj.tensor([0.5, 0.25])
    for _ in range(3):
        np.testing.assert_allclose(h(3.0, x, True, y).numpy(), [2.5, 5.75])
    assert h._last_call is not None
    y2 = gj.tensor([1.0, 1.0])
    np.testing.assert_allclose(h(3.0, x, True, y2).numpy(), [2.0, 5.0])
    np.testing.assert_allclose(h(3.0, x, False, y2).numpy(), [0.0, -1.0])


# ---- the trusted program entry -------------------------------------------------------------------

_GRAPH = """graph upd(%x: f32[3,4] {arg}, %w: f32[4,3] {param}, %lr: f64[] {hyper}) {
  %0 = permute(%x, dims=[1, 0]) : f32[4,3]
  %1 = cast(%lr, dtype=f32) : f32[]
  %2 = mul(%0, %1) : f32[4,3]
  %3 = sub(%w, %2) : f32[4,3]
  %4 = sum(%3, dims=[0, 1], keepdim=false) : f32[]
  return %4, %2
  update %w <- %3
}"""


@pytest.mark.parametrize("inplace", [False, True])
def test_run_trusted_gives_the_numbers_of_the_checked_call(inplace, rng):
    program = compile_graph(parse_graph(_GRAPH), inplace=inplace)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    lr = np.array(0.1)
    checked_w = w.copy()
    outputs, updates = program([x, checked_w, lr])
    outputs = [o.copy() for o in outputs]
    updates = [u.copy() for u in updates]
    args = [program.flat_input(i, a) for i, a in enumerate([x, w.copy(), lr])]
    assert not any(copied for _, copied in args)
    flat = [f for f, _ in args]
    results = program.run_trusted(flat)
    n_out = len(program.output_shapes)
    for o, r, shape in zip(outputs, results, program.output_shapes):
        np.testing.assert_array_equal(o, r.reshape(shape))
    ((where, k),) = program.update_plan
    assert where == ("input" if inplace else "result")
    got = flat[k] if where == "input" else results[k]
    np.testing.assert_array_equal(updates[0], got.reshape(4, 3))
    assert k == 1 if inplace else k == n_out
    if inplace:  # the checked call wrote the same update into its own input
        np.testing.assert_array_equal(checked_w, updates[0])


def test_flat_input_checks_and_copies_only_when_needed(rng):
    program = compile_graph(parse_graph(_GRAPH))
    x = rng.normal(size=(3, 4)).astype(np.float32)
    flat, copied = program.flat_input(0, x)
    assert not copied and np.shares_memory(flat, x) and flat.shape == (12,)
    flat, copied = program.flat_input(0, np.asfortranarray(x))
    assert copied and flat.flags.c_contiguous and (flat.reshape(3, 4) == x).all()
    x.flags.writeable = False
    flat, copied = program.flat_input(0, x)
    assert copied and flat.flags.writeable
    with pytest.raises(gj.DTypeError, match="input %x expects f32\\[3,4\\]"):
        program.flat_input(0, x.astype(np.float64))
    with pytest.raises(gj.ShapeError, match="input %x expects"):
        program.flat_input(0, x.T)
    with pytest.raises(gj.ShapeError, match="takes 3 inputs"):
        program([x])


def test_result_arrays_held_by_the_caller_are_not_written_again(rng):
    program = compile_graph(parse_graph(_GRAPH))
    args = [rng.normal(size=(3, 4)).astype(np.float32),
            rng.normal(size=(4, 3)).astype(np.float32), np.array(0.1)]
    outputs, updates = program(args)
    first = outputs + updates  # every result held
    kept = [a.copy() for a in first]
    args[0] = args[0] * 2
    outputs, updates = program(args)
    for a, b, k in zip(first, outputs + updates, kept):
        assert not np.shares_memory(a, b)
        np.testing.assert_array_equal(a, k)
    del first, outputs, updates, a, b
    ids = {id(program(args)[0][1].base) for _ in range(3)}
    assert len(ids) == 1  # let go of at once: the same buffer every call
