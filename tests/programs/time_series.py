"""Time-series prediction with LSTMCell, in the shape of pytorch/examples
time_sequence_prediction (generate_sine_wave.py's shifted sine waves; train.py's Sequence of
two nn.LSTMCell and a Linear, stepping over ``input.split(1, dim=1)`` and predicting
``future`` steps ahead, ``.double()``, MSELoss, ``optimizer.step(closure)``), shrunk: 6 waves
of 6 steps, 8 hidden units.

The example uses optim.LBFGS(lr=0.8): ``optimizer="lbfgs"``; the default is Adam through
the same closure.
"""
import numpy as np

from .common import init_from_numpy, result

STEPS = 4
HIDDEN = 8


def make_data():
    T, L, N = 4, 6, 6
    rng = np.random.RandomState(2)
    x = np.empty((N, L), "int64")
    x[:] = np.array(range(L)) + rng.randint(-4 * T, 4 * T, N).reshape(N, 1)
    return np.sin(x / 1.0 / T).astype("float64")


def run(torch, steps=STEPS, compiled=None, optimizer="adam"):
    nn, optim = torch.nn, torch.optim

    class Sequence(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm1 = nn.LSTMCell(1, HIDDEN)
            self.lstm2 = nn.LSTMCell(HIDDEN, HIDDEN)
            self.linear = nn.Linear(HIDDEN, 1)

        def forward(self, input, future=0):
            outputs = []
            h_t = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)
            c_t = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)
            h_t2 = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)
            c_t2 = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)

            for input_t in input.split(1, dim=1):
                h_t, c_t = self.lstm1(input_t, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            for i in range(future):  # if we should predict the future
                h_t, c_t = self.lstm1(output, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            outputs = torch.cat(outputs, dim=1)
            return outputs

    data = make_data()
    input = torch.from_numpy(data[2:, :-1])
    target = torch.from_numpy(data[2:, 1:])
    test_input = torch.from_numpy(data[:2, :-1])
    test_target = torch.from_numpy(data[:2, 1:])
    seq = Sequence()
    seq.double()
    init_from_numpy(torch, seq, seed=7)
    criterion = nn.MSELoss()
    if optimizer == "lbfgs":
        opt = optim.LBFGS(seq.parameters(), lr=0.8)
    else:
        opt = optim.Adam(seq.parameters(), lr=0.05)
    if compiled == "model":
        seq = torch.compile(seq)

    def closure():
        opt.zero_grad()
        out = seq(input)
        loss = criterion(out, target)
        loss.backward()
        return loss

    def train_step():
        return opt.step(closure)

    if compiled == "step":
        train_step = torch.compile(train_step)

    losses = []
    for i in range(steps):
        losses.append(train_step().item())
    with torch.no_grad():
        future = 2
        pred = seq(test_input, future=future)
        loss = criterion(pred[:, :-future], test_target)
        y = pred.detach().numpy()
    return result(losses, {"seq": seq}, test_loss=loss.item(),
                  future=y[:, -future:].ravel())
