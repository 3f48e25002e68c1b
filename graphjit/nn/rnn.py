"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their one-step ``...Cell`` versions.

PyTorch's parameters, names, shapes, gate order and equations, so a PyTorch state dict
loads and gives the same numbers. The time loop is a Python loop over graphjit ops:
eagerly it runs op by op, and ``graphjit.compile`` unrolls it.

# NOTE: [RNN input projections]
# Each step computes its input projection ``x[t] @ W_ih^T`` from a slice ``x[t]`` of one
# time-major tensor (the input, its transpose for ``batch_first``, or the stacked output of
# the layer below), not from a precomputed projection of the whole sequence. Compiled, the
# ``batch`` pass (passes/batch.py) sees the steps' products share ``W_ih^T`` and read
# consecutive row blocks of one value, and makes them one GEMM; it also sums the weight
# gradients of ``W_ih`` and ``W_hh`` over the steps inside one GEMM each. Eagerly the
# products stay one per step, as PyTorch's own reference (non-cuDNN) loop does per step.
"""
from __future__ import annotations

import math
import numbers
import warnings

from .. import creation
from ..errors import DTypeError, ShapeError
from ..ops import api
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- one step of each cell --------------------------------------------------------------------
# ``x_proj`` is the step's input projection ``x_t W_ih^T + b_ih``, [batch, gates * hidden].

def _rnn_step(x_proj, h, w_hh, b_hh, relu):
    # h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)
    pre = api.add(x_proj, F.linear(h, w_hh, b_hh))
    return api.relu(pre) if relu else api.tanh(pre)


def _lstm_step(x_proj, h, c, w_hh, b_hh, w_hr=None):
    # gates i, f, g, o (PyTorch's order); c' = f c + i g; h' = o tanh(c') (then W_hr)
    gates = api.add(x_proj, F.linear(h, w_hh, b_hh))
    i, f, g, o = api.chunk(gates, 4, -1)
    c = api.add(api.mul(api.sigmoid(f), c), api.mul(api.sigmoid(i), api.tanh(g)))
    h = api.mul(api.sigmoid(o), api.tanh(c))
    return (h if w_hr is None else F.linear(h, w_hr)), c


def _gru_step(x_proj, h, w_hh, b_hh):
    # r, z from both projections; n = tanh(x_n + r (h W_hn^T + b_hn)); h' = (1 - z) n + z h,
    # computed as PyTorch does: n + z (h - n)
    x_r, x_z, x_n = api.chunk(x_proj, 3, -1)
    h_r, h_z, h_n = api.chunk(F.linear(h, w_hh, b_hh), 3, -1)
    r = api.sigmoid(api.add(x_r, h_r))
    z = api.sigmoid(api.add(x_z, h_z))
    n = api.tanh(api.add(x_n, api.mul(r, h_n)))
    return api.add(n, api.mul(z, api.sub(h, n)))


def _step(mode, x_proj, state, w_hh, b_hh, w_hr=None):
    """The next state: ``h`` for RNN and GRU, ``(h, c)`` for LSTM."""
    if mode == "LSTM":
        return _lstm_step(x_proj, state[0], state[1], w_hh, b_hh, w_hr)
    if mode == "GRU":
        return _gru_step(x_proj, state, w_hh, b_hh)
    return _rnn_step(x_proj, state, w_hh, b_hh, mode == "RNN_RELU")


def _check_dtype(who, what, t, weight):
    if t.dtype is not weight.dtype:
        raise DTypeError(f"{what} must have the parameters' dtype {weight.dtype.name}, got "
                         f"{t.dtype.name} of shape {tuple(t.shape)}", op=who)


def _zeros(batch_shape, size, like):
    # Made on like's device (an api.full constant is made on the host: a CUDA step would then
    # save a host array for its backward).
    return creation.zeros(*batch_shape, size, dtype=like.dtype, device=like.device)


# ---- multi-layer, multi-step modules ------------------------------------------------------------

class RNNBase(Module):
    """What ``RNN``, ``LSTM`` and ``GRU`` share: PyTorch's ``torch.nn.RNNBase``.

    Parameters per layer ``k`` and direction (suffix ``_reverse`` for the backward one), in
    PyTorch's order: ``weight_ih_l{k}`` [gates * hidden, layer input], ``weight_hh_l{k}``
    [gates * hidden, hidden (proj_size if set)], ``bias_ih_l{k}``, ``bias_hh_l{k}`` [gates *
    hidden] (``bias=True``), ``weight_hr_l{k}`` [proj_size, hidden] (LSTM with
    ``proj_size``). All drawn from U(-1/sqrt(hidden), 1/sqrt(hidden)), as PyTorch.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        who = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError(f"{who}: dropout should be a number in range [0, 1] representing "
                             f"the probability of an element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{who}: dropout option adds dropout after all but last recurrent "
                          f"layer, so non-zero dropout expects num_layers greater than 1, but "
                          f"got dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers), ("proj_size", proj_size)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{who}: {name} should be of type int, got "
                                f"{type(value).__name__}")
        if hidden_size <= 0 or num_layers <= 0 or input_size < 0:
            raise ValueError(f"{who}: hidden_size ({hidden_size}) and num_layers ({num_layers}) "
                             f"must be greater than zero, input_size ({input_size}) not negative")
        if proj_size < 0:
            raise ValueError(f"{who}: proj_size should be a positive integer or zero to disable "
                             f"projections, got {proj_size}")
        if proj_size and mode != "LSTM":
            raise ValueError(f"{who}: proj_size argument is only supported for LSTM, not RNN or "
                             "GRU")
        if proj_size >= hidden_size:
            raise ValueError(f"{who}: proj_size ({proj_size}) has to be smaller than hidden_size "
                             f"({hidden_size})")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        self._flat_weights_names = []
        self._all_weights = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for direction in range(directions):
                suffix = "_reverse" if direction else ""
                shapes = [("weight_ih", (gate_size, layer_input)),
                          ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                names = []
                for kind, shape in shapes:
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(creation.empty(*shape, dtype=dtype)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    @property
    def _who(self) -> str:
        return type(self).__name__

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op (PyTorch packs weights for cuDNN here; graphjit has nothing to pack)."""

    @property
    def all_weights(self):
        """The parameters, one list per layer and direction (``torch.nn.RNNBase``'s)."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _layer_weights(self, layer: int, direction: int):
        suffix = "_reverse" if direction else ""

        def get(kind):
            return getattr(self, f"{kind}_l{layer}{suffix}", None)
        return get("weight_ih"), get("bias_ih"), get("weight_hh"), get("bias_hh"), \
            get("weight_hr")

    # ---- shapes --------------------------------------------------------------------------------

    def _time_major(self, input):
        """``(x [T, B, input_size], batched)`` from the input of any accepted layout."""
        who, shape = self._who, tuple(input.shape)
        if len(shape) not in (2, 3):
            raise ShapeError(f"expected input of 2 dims (unbatched [L, {self.input_size}]) or 3 "
                             f"dims ({'[N, L, H_in]' if self.batch_first else '[L, N, H_in]'}), "
                             f"got shape {shape}", op=who)
        if shape[-1] != self.input_size:
            raise ShapeError(f"input of shape {shape} must have input_size {self.input_size} "
                             "in its last dim", op=who)
        _check_dtype(who, "input", input, self.weight_ih_l0)
        batched = len(shape) == 3
        if not batched:
            x = api.unsqueeze(input, 1)
        else:
            x = api.transpose(input, 0, 1) if self.batch_first else input
        if x.shape[0] == 0:
            raise ShapeError(f"input of shape {shape} has no time steps", op=who)
        return x, batched

    def _state_shape(self, batch, batched, size) -> tuple:
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return (layers, batch, size) if batched else (layers, size)

    def _check_state(self, what, t, batch, batched, size):
        expected = self._state_shape(batch, batched, size)
        if tuple(t.shape) != expected:
            form = "3-D" if batched else "2-D (the input is unbatched)"
            raise ShapeError(f"expected {what} of shape {expected} ({form}), got "
                             f"{tuple(t.shape)}", op=self._who)
        _check_dtype(self._who, what, t, self.weight_ih_l0)
        return t if batched else api.unsqueeze(t, 1)

    def _initial_states(self, hx, batch, batched, like):
        """One initial state per layer and direction: ``h`` [B, H], or ``(h, c)`` for LSTM."""
        out_size = self.proj_size or self.hidden_size
        count = self.num_layers * (2 if self.bidirectional else 1)
        if self.mode == "LSTM":
            if hx is None:
                return [(_zeros((batch,), out_size, like), _zeros((batch,), self.hidden_size, like))
                        for _ in range(count)]
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ShapeError("LSTM's initial state must be a tuple (h_0, c_0)", op=self._who)
            h0 = self._check_state("h_0", hx[0], batch, batched, out_size)
            c0 = self._check_state("c_0", hx[1], batch, batched, self.hidden_size)
            return [(api.getitem(h0, i), api.getitem(c0, i)) for i in range(count)]
        if hx is None:
            return [_zeros((batch,), self.hidden_size, like) for _ in range(count)]
        h0 = self._check_state("hx", hx, batch, batched, self.hidden_size)
        return [api.getitem(h0, i) for i in range(count)]

    # ---- the loop ------------------------------------------------------------------------------

    def _direction(self, x, state, layer, direction):
        """Run one direction of one layer over x [T, B, in]: (outputs [T, B, out], state)."""
        w_ih, b_ih, w_hh, b_hh, w_hr = self._layer_weights(layer, direction)
        steps = x.shape[0]
        outs = [None] * steps
        for t in (reversed(range(steps)) if direction else range(steps)):
            # x[t]: a row block of x, see [RNN input projections]
            state = _step(self.mode, F.linear(api.getitem(x, t), w_ih, b_ih), state, w_hh, b_hh,
                          w_hr)
            outs[t] = state[0] if self.mode == "LSTM" else state
        return api.stack(outs, 0), state

    def forward(self, input, hx=None):
        """``(output, h_n)`` (``(output, (h_n, c_n))`` for LSTM). input [L, N, H_in]
        ([N, L, H_in] with ``batch_first``, [L, H_in] unbatched); output the last layer's
        states for every step, both directions concatenated [..., D * H_out]; h_n (and c_n)
        the final state of every layer and direction [D * num_layers, N, H_out], in PyTorch's
        order (layer 0 forward, layer 0 reverse, layer 1 forward, ...)."""
        x, batched = self._time_major(input)
        states = self._initial_states(hx, x.shape[1], batched, x)
        directions = 2 if self.bidirectional else 1
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(directions):
                out, state = self._direction(x, states[layer * directions + d], layer, d)
                outs.append(out)
                finals.append(state)
            x = outs[0] if directions == 1 else api.cat(outs, 2)
            if self.training and self.dropout and layer < self.num_layers - 1:
                x = F._dropout(x, self.dropout, f"{self._who} (dropout between layers)")
        if not batched:
            x = api.squeeze(x, 1)
        elif self.batch_first:
            x = api.transpose(x, 0, 1)

        def stacked(values):
            h = api.stack(values, 0)
            return h if batched else api.squeeze(h, 1)
        if self.mode == "LSTM":
            return x, (stacked([s[0] for s in finals]), stacked([s[1] for s in finals]))
        return x, stacked(finals)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh)``, act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}; select from 'tanh' "
                             "or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


class LSTM(RNNBase):
    """Long short-term memory, PyTorch's equations and gate order (i, f, g, o):
    ``c_t = f c_(t-1) + i g``, ``h_t = o tanh(c_t)``, projected by ``weight_hr`` to
    ``proj_size`` when set. ``forward(input, (h_0, c_0))`` returns ``output, (h_n, c_n)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit, PyTorch's equations and gate order (r, z, n):
    ``n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn))``, ``h_t = (1 - z) n + z h_(t-1)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


# ---- cells ------------------------------------------------------------------------------------

class RNNCellBase(Module):
    """One step: ``weight_ih`` [gates * hidden, input_size], ``weight_hh`` [gates * hidden,
    hidden], ``bias_ih`` / ``bias_hh`` [gates * hidden], from U(-1/sqrt(hidden),
    1/sqrt(hidden)). Input [N, input_size] or unbatched [input_size]; the state defaults to
    zeros."""

    _mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None):
        super().__init__()
        if hidden_size <= 0 or input_size < 0:
            raise ValueError(f"{type(self).__name__}: hidden_size ({hidden_size}) must be greater "
                             f"than zero and input_size ({input_size}) not negative")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = num_chunks * hidden_size
        self.weight_ih = Parameter(creation.empty(gates, input_size, dtype=dtype))
        self.weight_hh = Parameter(creation.empty(gates, hidden_size, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(creation.empty(gates, dtype=dtype))
            self.bias_hh = Parameter(creation.empty(gates, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _check(self, input, states):
        """``(input as [N, input_size], states as [N, hidden], batched)``."""
        who, shape = type(self).__name__, tuple(input.shape)
        if len(shape) not in (1, 2) or shape[-1] != self.input_size:
            raise ShapeError(f"expected input [N, {self.input_size}] or [{self.input_size}], "
                             f"got shape {shape}", op=who)
        _check_dtype(who, "input", input, self.weight_ih)
        batched = len(shape) == 2
        expected = shape[:-1] + (self.hidden_size,)
        out = []
        for name, h in states:
            if h is None:
                h = _zeros(shape[:-1], self.hidden_size, input)
            elif tuple(h.shape) != expected:
                raise ShapeError(f"expected {name} of shape {expected} for input of shape "
                                 f"{shape}, got {tuple(h.shape)}", op=who)
            else:
                _check_dtype(who, name, h, self.weight_ih)
            out.append(h if batched else api.unsqueeze(h, 0))
        return (input if batched else api.unsqueeze(input, 0)), out, batched

    def _run(self, input, states):
        x, states, batched = self._check(input, states)
        x_proj = F.linear(x, self.weight_ih, self.bias_ih)
        state = states[0] if len(states) == 1 else tuple(states)
        out = _step(self._mode, x_proj, state, self.weight_hh, self.bias_hh)
        if batched:
            return out
        return tuple(api.squeeze(s, 0) for s in out) if isinstance(out, tuple) else \
            api.squeeze(out, 0)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}; select from "
                             "'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)

    def forward(self, input, hx=None):
        return self._run(input, [("hx", hx)])


class LSTMCell(RNNCellBase):
    """One LSTM step; ``forward(input, (h, c))`` returns ``(h', c')``."""

    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ShapeError("LSTMCell's state must be a tuple (h, c)", op="LSTMCell")
        h, c = (None, None) if hx is None else hx
        return self._run(input, [("h", h), ("c", c)])


class GRUCell(RNNCellBase):
    """One GRU step (gates r, z, n as ``GRU``)."""

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        return self._run(input, [("hx", hx)])
