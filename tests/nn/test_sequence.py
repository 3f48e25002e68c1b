"""RNN, LSTM, GRU and their cells against NumPy loops over the time steps written here with
the gate equations of PyTorch's documentation; gradients by graphjit.testing.gradcheck;
parameter names and shapes against PyTorch's documented layout. (Eager only: the compiled
versions are in test_compiled_layers.py.)"""
import math

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
from graphjit.testing import gradcheck
from nn_reference import close, f64, npy, params, sigmoid


# ---- NumPy references ---------------------------------------------------------------------------

def ref_cell(mode, p, x, h, c=None, sfx=""):
    """One step from the documented equations. p: parameters by name ``weight_ih{sfx}`` ..."""
    w_ih, w_hh = p["weight_ih" + sfx], p["weight_hh" + sfx]
    b_ih = p.get("bias_ih" + sfx, 0.0)
    b_hh = p.get("bias_hh" + sfx, 0.0)
    if mode == "LSTM":
        gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        if "weight_hr" + sfx in p:
            h = h @ p["weight_hr" + sfx].T
        return h, c
    if mode == "GRU":
        x_r, x_z, x_n = np.split(x @ w_ih.T + b_ih, 3, axis=-1)
        h_r, h_z, h_n = np.split(h @ w_hh.T + b_hh, 3, axis=-1)
        r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
        n = np.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return np.maximum(pre, 0) if mode == "RNN_RELU" else np.tanh(pre)


def ref_layers(mode, p, x, h0, c0, num_layers, directions):
    """x [T, B, I]; h0, c0 [D * layers, B, *]: (output [T, B, D * H_out], h_n, c_n)."""
    steps = x.shape[0]
    h_n, c_n = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            k = layer * directions + d
            h = h0[k]
            c = None if c0 is None else c0[k]
            out = [None] * steps
            for t in (reversed(range(steps)) if d else range(steps)):
                if mode == "LSTM":
                    h, c = ref_cell(mode, p, x[t], h, c, sfx)
                else:
                    h = ref_cell(mode, p, x[t], h, None, sfx)
                out[t] = h
            outs.append(np.stack(out))
            h_n.append(h)
            c_n.append(c)
        x = np.concatenate(outs, axis=-1)
    return x, np.stack(h_n), (None if c0 is None else np.stack(c_n))


def run_config(mode, rng, num_layers=1, bidirectional=False, batch_first=False, bias=True,
               proj_size=0, with_state=True, batched=True, nonlinearity="tanh"):
    gj.manual_seed(int(rng.integers(1 << 30)))
    T, B, I, H = 4, 3, 2, 3
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
                  bidirectional=bidirectional, dtype=gj.float64)
    if mode == "LSTM":
        m = nn.LSTM(I, H, proj_size=proj_size, **kwargs)
    elif mode == "GRU":
        m = nn.GRU(I, H, **kwargs)
    else:
        m = nn.RNN(I, H, nonlinearity=nonlinearity, **kwargs)
        mode = "RNN_RELU" if nonlinearity == "relu" else "RNN_TANH"
    D = 2 if bidirectional else 1
    H_out = proj_size or H
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * num_layers, B, H_out))
    c0 = rng.standard_normal((D * num_layers, B, H)) if mode == "LSTM" else None
    ref_h0 = h0 if with_state else np.zeros_like(h0)
    ref_c0 = None if c0 is None else (c0 if with_state else np.zeros_like(c0))
    ref_out, ref_h, ref_c = ref_layers(mode, params(m), x, ref_h0, ref_c0, num_layers, D)
    if batched:
        gx = x.transpose(1, 0, 2) if batch_first else x
        state = (f64(h0), f64(c0)) if mode == "LSTM" else f64(h0)
        out, hn = m(f64(gx), state if with_state else None)
        if batch_first:
            ref_out = ref_out.transpose(1, 0, 2)
    else:  # the first sequence of the batch, unbatched
        state = (f64(h0[:, 0]), f64(c0[:, 0])) if mode == "LSTM" else f64(h0[:, 0])
        out, hn = m(f64(x[:, 0]), state if with_state else None)
        ref_out, ref_h = ref_out[:, 0], ref_h[:, 0]
        ref_c = None if ref_c is None else ref_c[:, 0]
    close(out, ref_out)
    if mode == "LSTM":
        close(hn[0], ref_h)
        close(hn[1], ref_c)
    else:
        close(hn, ref_h)
    return m


CONFIGS = [
    dict(),
    dict(with_state=False),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(bias=False, batch_first=True),
    dict(batched=False, num_layers=2, bidirectional=True),
    dict(batched=False, with_state=False),
]


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in
                                                                      c.items()) or "default")
def test_values_against_numpy_loops(mode, config, rng):
    run_config(mode, rng, **config)


def test_rnn_relu_and_lstm_projection(rng):
    run_config("RNN", rng, nonlinearity="relu", num_layers=2, bidirectional=True)
    run_config("LSTM", rng, proj_size=2, num_layers=2, bidirectional=True)
    run_config("LSTM", rng, proj_size=1, batched=False, with_state=False)


# ---- names, shapes, initialisation --------------------------------------------------------------

def _names(layers, directions, bias=True, proj=False):
    out = []
    for layer in range(layers):
        for sfx in ["", "_reverse"][:directions]:
            names = [f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}"]
            if bias:
                names += [f"bias_ih_l{layer}{sfx}", f"bias_hh_l{layer}{sfx}"]
            if proj:
                names.append(f"weight_hr_l{layer}{sfx}")
            out += names
    return out


def test_state_dict_keys_are_pytorchs():
    # Written out from PyTorch's documentation of RNN/LSTM/GRU (Variables section).
    assert list(nn.LSTM(4, 6).state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert list(nn.GRU(4, 6, num_layers=2, bidirectional=True).state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
        "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
        "bias_hh_l0_reverse",
        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
        "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse",
        "bias_hh_l1_reverse"]
    assert list(nn.LSTM(4, 6, proj_size=2, bidirectional=True).state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0",
        "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
        "bias_hh_l0_reverse", "weight_hr_l0_reverse"]
    assert list(nn.RNN(4, 6, num_layers=3, bias=False).state_dict()) == _names(3, 1, bias=False)
    for cell in (nn.RNNCell(4, 6), nn.LSTMCell(4, 6), nn.GRUCell(4, 6)):
        assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert list(nn.GRUCell(4, 6, bias=False).state_dict()) == ["weight_ih", "weight_hh"]


@pytest.mark.parametrize("cls, gates", [(nn.RNN, 1), (nn.LSTM, 4), (nn.GRU, 3)])
def test_parameter_shapes_and_init(cls, gates):
    I, H = 5, 16
    m = cls(I, H, num_layers=2, bidirectional=True)
    sd = m.state_dict()
    assert tuple(sd["weight_ih_l0"].shape) == (gates * H, I)
    assert tuple(sd["weight_ih_l1_reverse"].shape) == (gates * H, 2 * H)  # both directions in
    assert tuple(sd["weight_hh_l1"].shape) == (gates * H, H)
    assert tuple(sd["bias_hh_l0_reverse"].shape) == (gates * H,)
    bound = 1 / math.sqrt(H)
    every = np.concatenate([npy(v).ravel() for v in sd.values()])
    assert np.abs(every).max() <= bound and np.abs(every).max() > 0.9 * bound  # U(-b, b)
    assert abs(every.mean()) < 0.05 * bound * 10
    assert [len(w) for w in m.all_weights] == [4, 4, 4, 4]
    p = nn.LSTM(I, H, proj_size=3, num_layers=2).state_dict()
    assert tuple(p["weight_hh_l0"].shape) == (4 * H, 3)
    assert tuple(p["weight_hr_l0"].shape) == (3, H)
    assert tuple(p["weight_ih_l1"].shape) == (4 * H, 3)


def test_pytorch_state_dict_loads_and_gives_its_numbers(rng):
    # A state dict as PyTorch would save it (names and shapes), loaded into a fresh model.
    src = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=gj.float64)
    saved = {k: npy(v) + rng.standard_normal(v.shape) * 0.1 for k, v in src.state_dict().items()}
    dst = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=gj.float64)
    dst.load_state_dict({k: f64(v) for k, v in saved.items()})
    x = rng.standard_normal((5, 2, 3))
    z = np.zeros((4, 2, 4))
    ref, h, c = ref_layers("LSTM", saved, x, z, z, 2, 2)
    out, (hn, cn) = dst(f64(x))
    close(out, ref)
    close(hn, h)
    close(cn, c)


# ---- cells ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, mode", [(nn.RNNCell, "RNN_TANH"), (nn.LSTMCell, "LSTM"),
                                       (nn.GRUCell, "GRU")])
def test_cells_against_numpy(cls, mode, rng):
    cell = cls(3, 4, dtype=gj.float64)
    p = params(cell)
    x, h, c = (rng.standard_normal(s) for s in ((2, 3), (2, 4), (2, 4)))
    if mode == "LSTM":
        ref_h, ref_c = ref_cell(mode, p, x, h, c)
        out_h, out_c = cell(f64(x), (f64(h), f64(c)))
        close(out_c, ref_c)
        h0_h, _ = cell(f64(x[0]))  # unbatched, zero state
        close(h0_h, ref_cell(mode, p, x[0], np.zeros(4), np.zeros(4))[0])
    else:
        ref_h = ref_cell(mode, p, x, h)
        out_h = cell(f64(x), f64(h))
        close(cell(f64(x[0])), ref_cell(mode, p, x[0], np.zeros(4)))
    close(out_h, ref_h)
    relu = nn.RNNCell(3, 4, nonlinearity="relu", bias=False, dtype=gj.float64)
    close(relu(f64(x), f64(h)), ref_cell("RNN_RELU", params(relu), x, h))


# ---- gradients -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, layers", [(nn.LSTM, 1), (nn.GRU, 1), (nn.RNN, 2)])
def test_gradcheck_input_state_and_parameters(cls, layers, rng):
    gj.manual_seed(1)
    m = cls(1, 2, num_layers=layers, bidirectional=True, dtype=gj.float64)
    x = f64(rng.standard_normal((2, 1, 1)), requires_grad=True)
    h0 = f64(rng.standard_normal((2 * layers, 1, 2)), requires_grad=True)
    c0 = f64(rng.standard_normal((2 * layers, 1, 2)), requires_grad=True)
    state = (h0, c0) if cls is nn.LSTM else h0

    def fn(x, h0, c0, *weights):
        out, hn = m(x, state)
        return (out, hn[1]) if cls is nn.LSTM else (out, hn)
    # The parameters are passed too, so gradcheck perturbs them in place and checks them.
    assert gradcheck(fn, (x, h0, c0) + tuple(m.parameters()))


def test_gradcheck_lstm_projection_and_cells(rng):
    m = nn.LSTM(2, 3, proj_size=2, batch_first=True, dtype=gj.float64)
    x = f64(rng.standard_normal((1, 3, 2)), requires_grad=True)
    assert gradcheck(lambda x, *w: m(x)[0], (x,) + tuple(m.parameters()))
    for cls in (nn.LSTMCell, nn.GRUCell, nn.RNNCell):
        cell = cls(2, 2, dtype=gj.float64)
        x = f64(rng.standard_normal((2, 2)), requires_grad=True)
        h = f64(rng.standard_normal((2, 2)), requires_grad=True)
        c = f64(rng.standard_normal((2, 2)), requires_grad=True)
        state = (h, c) if cls is nn.LSTMCell else h

        def fn(x, h, c, *w, cell=cell, state=state):
            out = cell(x, state)
            return out[1] if isinstance(out, tuple) else out
        assert gradcheck(fn, (x, h, c) + tuple(cell.parameters()))


# ---- dropout between layers ----------------------------------------------------------------------

def test_dropout_between_layers_only_in_training(rng):
    gj.manual_seed(0)
    m = nn.GRU(2, 3, num_layers=2, dropout=0.5, dtype=gj.float64)
    x = f64(rng.standard_normal((4, 2, 2)))
    z = np.zeros((2, 2, 3))
    ref, _, _ = ref_layers("GRU", params(m), npy(x), z, None, 2, 1)
    m.eval()
    close(m(x)[0], ref)
    m.train()
    a, b = npy(m(x)[0]), npy(m(x)[0])
    assert not np.allclose(a, ref) and not np.allclose(a, b)  # fresh masks each call
    gj.manual_seed(5)
    a = npy(m(x)[0])
    gj.manual_seed(5)
    close(m(x)[0], a)  # drawn from graphjit's generator
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(2, 3, dropout=0.2)


# ---- errors --------------------------------------------------------------------------------------

def test_bad_shapes_and_options_name_the_module():
    m = nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(gj.ShapeError, match=r"LSTM.*\(5, 2, 7\).*input_size 3"):
        m(gj.zeros(5, 2, 7))
    with pytest.raises(gj.ShapeError, match=r"LSTM.*\(5,\)"):
        m(gj.zeros(5))
    with pytest.raises(gj.ShapeError, match=r"LSTM.*h_0 of shape \(2, 2, 4\).*\(2, 3, 4\)"):
        m(gj.zeros(5, 2, 3), (gj.zeros(2, 3, 4), gj.zeros(2, 2, 4)))
    with pytest.raises(gj.ShapeError, match=r"LSTM.*c_0 .*\(2, 4\).*2-D"):
        m(gj.zeros(5, 3), (gj.zeros(2, 4), gj.zeros(2, 1, 4)))
    with pytest.raises(gj.ShapeError, match="tuple"):
        m(gj.zeros(5, 2, 3), gj.zeros(2, 2, 4))
    with pytest.raises(gj.ShapeError, match=r"GRU.*hx of shape \(1, 2, 4\)"):
        nn.GRU(3, 4)(gj.zeros(5, 2, 3), gj.zeros(2, 2, 4))
    with pytest.raises(gj.DTypeError, match=r"RNN.*float32.*float64"):
        nn.RNN(3, 4)(gj.zeros(5, 2, 3, dtype=gj.float64))
    with pytest.raises(gj.ShapeError, match=r"RNN.*no time steps"):
        nn.RNN(3, 4)(gj.zeros(0, 2, 3))
    with pytest.raises(gj.ShapeError, match=r"GRUCell.*\[N, 3\].*\(2, 5\)"):
        nn.GRUCell(3, 4)(gj.zeros(2, 5))
    with pytest.raises(gj.ShapeError, match=r"LSTMCell.*h of shape \(2, 4\).*\(3, 4\)"):
        nn.LSTMCell(3, 4)(gj.zeros(2, 3), (gj.zeros(3, 4), gj.zeros(2, 4)))
    with pytest.raises(ValueError, match="RNN: unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="GRU: proj_size argument is only supported for LSTM"):
        nn.RNNBase("GRU", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size .4. has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)
    with pytest.raises(TypeError, match="hidden_size should be of type int"):
        nn.GRU(3, 4.0)


def test_repr():
    assert repr(nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)) == \
        "LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)"
    assert repr(nn.GRU(3, 4, dropout=0.25, num_layers=2, bias=False)) == \
        "GRU(3, 4, num_layers=2, bias=False, dropout=0.25)"
    assert repr(nn.RNNCell(3, 4, nonlinearity="relu")) == "RNNCell(3, 4, nonlinearity=relu)"
    assert repr(nn.LSTM(3, 4, proj_size=2)) == "LSTM(3, 4, proj_size=2)"


def test_zero_initial_state_is_made_on_the_inputs_device(rng):
    # (Numba's CUDA simulator unless a GPU is there.) A host-made zero state used to reach
    # the backward of h @ W_hh^T on a CUDA step and fail there.
    m = nn.RNN(2, 2)
    x = gj.tensor(rng.standard_normal((1, 1, 2)).astype(np.float32))
    grads = []
    for dev in ("cpu", "cuda"):
        m.to(dev)
        for p in m.parameters():
            p.grad = None
        out, h = m(x.to(dev))
        (out.sum() + h.sum()).backward()
        grads.append([p.grad.cpu().numpy() for p in m.parameters()])
    for a, c in zip(*grads):
        np.testing.assert_allclose(c, a, rtol=1e-6, atol=1e-7)
