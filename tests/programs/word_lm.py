"""Word-level language model with an LSTM, in the shape of pytorch/examples
word_language_model (data.py's Dictionary/Corpus, model.py's RNNModel, main.py's batchify,
get_batch, repackage_hidden, truncated BPTT, clip_grad_norm_, the hand-written SGD update
``p.data.add_(p.grad, alpha=-lr)``, evaluate() with exp(loss) as perplexity), shrunk: a
tiny corpus, 2-layer LSTM of 8 units, bptt 4.

The example wraps the embedding and the output in nn.Dropout; ``dropout=True`` puts in
nn.Dropout(p=0.0), which must change nothing. Its data.py builds ids with
``torch.tensor(ids).type(torch.int64)``; graphjit lacks ``Tensor.type``, so this writes
``torch.tensor(ids, dtype=torch.int64)`` (test_programs.test_tutorial_idiom has the other).
"""
import math

import numpy as np

from .common import Double, init_from_numpy, result

TEXT = """the cat sat on the mat <eos>
the dog sat on the log <eos>
a cat saw a dog <eos>
the dog saw the cat on a mat <eos>
a dog sat on a log <eos>
the cat saw the mat <eos>
a cat sat on the dog <eos>
"""
EPOCHS = 2


class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


def run(torch, epochs=EPOCHS, compiled=None, dropout=False):
    nn, F = torch.nn, torch.nn.functional

    def tokenize(dictionary, text):
        idss = []
        for line in text.splitlines():
            words = line.split()
            for word in words:
                dictionary.add_word(word)
            ids = [dictionary.word2idx[w] for w in words]
            idss.append(torch.tensor(ids, dtype=torch.int64))
        return torch.cat(idss)

    class RNNModel(nn.Module):
        def __init__(self, ntoken, ninp, nhid, nlayers):
            super().__init__()
            self.ntoken = ntoken
            self.drop = nn.Dropout(0.0) if dropout else nn.Identity()
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers)
            self.decoder = nn.Linear(nhid, ntoken)
            self.init_weights()
            self.nhid = nhid
            self.nlayers = nlayers

        def init_weights(self):
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -initrange, initrange)

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            decoded = self.decoder(output)
            decoded = decoded.view(-1, self.ntoken)
            return F.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))

    def batchify(data, bsz):
        nbatch = data.size(0) // bsz
        data = data.narrow(0, 0, nbatch * bsz)
        data = data.view(bsz, -1).t().contiguous()
        return data

    def repackage_hidden(h):
        if isinstance(h, torch.Tensor):
            return h.detach()
        else:
            return tuple(repackage_hidden(v) for v in h)

    bptt = 4

    def get_batch(source, i):
        seq_len = min(bptt, len(source) - 1 - i)
        data = source[i:i + seq_len]
        target = source[i + 1:i + 1 + seq_len].view(-1)
        return data, target

    with Double(torch):
        dictionary = Dictionary()
        ids = tokenize(dictionary, TEXT)
        train_data = batchify(ids[:34], 2)             # 17 rows: 4 batches of bptt 4
        val_data = batchify(ids[34:], 2)
        ntokens = len(dictionary)
        model = RNNModel(ntokens, 6, 8, 2)
        init_from_numpy(torch, model, seed=6)
        criterion = nn.NLLLoss()
        lr = 5.0
        clip = 0.25
        if compiled == "model":
            model = torch.compile(model)

        def train_step(data, targets, hidden):
            model.zero_grad()
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            return loss, hidden

        if compiled == "step":
            train_step = torch.compile(train_step)

        def evaluate(data_source):
            model.eval()
            total_loss = 0.
            hidden = model.init_hidden(2)
            with torch.no_grad():
                for i in range(0, data_source.size(0) - 1, bptt):
                    data, targets = get_batch(data_source, i)
                    output, hidden = model(data, hidden)
                    hidden = repackage_hidden(hidden)
                    total_loss += len(data) * criterion(output, targets).item()
            return total_loss / (len(data_source) - 1)

        losses, val_losses = [], []
        for epoch in range(1, epochs + 1):
            model.train()
            hidden = model.init_hidden(2)
            for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
                data, targets = get_batch(train_data, i)
                hidden = repackage_hidden(hidden)
                loss, hidden = train_step(data, targets, hidden)
                losses.append(loss.item())
            val_losses.append(evaluate(val_data))
        return result(losses, {"model": model}, val_loss=val_losses,
                      val_ppl=[math.exp(v) for v in val_losses])
