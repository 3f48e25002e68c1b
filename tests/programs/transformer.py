"""A hand-written transformer block, in the style of minGPT/nanoGPT (pytorch/examples
distributed/minGPT-ddp): token and position nn.Embedding, CausalSelfAttention written out
(one Linear for q, k, v, ``split``, ``view``/``transpose``, ``q @ k.transpose(-2, -1)``
scaled by 1/sqrt(d), a ``torch.tril`` mask in a registered buffer applied with
``masked_fill(..., float('-inf'))``, softmax, ``contiguous().view``), pre-LayerNorm
residual blocks with a GELU MLP, a language-model head and ``F.cross_entropy`` over
``view(-1, vocab)``; AdamW with decay and no-decay parameter groups, a LambdaLR warmup,
``clip_grad_norm_``. Characters of a short text, 2 blocks, width 16.
"""
import math

import numpy as np

from .common import Double, init_from_numpy, result

STEPS = 6
TEXT = "to be or not to be, that is the question: whether tis nobler in the mind to suffer"


def run(torch, steps=STEPS, compiled=None):
    nn, F = torch.nn, torch.nn.functional
    block_size, n_embd, n_head, n_layer = 8, 16, 2, 2

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            self.n_head = n_head
            self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                                 .view(1, 1, block_size, block_size))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd)
            self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                     nn.Linear(4 * n_embd, n_embd))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

    class GPT(nn.Module):
        def __init__(self, vocab_size):
            super().__init__()
            self.wte = nn.Embedding(vocab_size, n_embd)
            self.wpe = nn.Embedding(block_size, n_embd)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

        def forward(self, idx, targets=None):
            b, t = idx.size()
            pos = torch.arange(0, t, dtype=torch.long).unsqueeze(0)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            x = self.ln_f(x)
            logits = self.lm_head(x)
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss

    with Double(torch):
        chars = sorted(set(TEXT))
        stoi = {ch: i for i, ch in enumerate(chars)}
        data = torch.tensor([stoi[c] for c in TEXT], dtype=torch.long)
        model = GPT(len(chars))
        init_from_numpy(torch, model, seed=11, scale=2.0)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=3e-3, betas=(0.9, 0.95))
        warmup = 3
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: min(1.0, (it + 1) / warmup))
        if compiled == "model":
            model = torch.compile(model)

        def train_step(x, y):
            logits, loss = model(x, y)
            model.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            return loss

        if compiled == "step":
            train_step = torch.compile(train_step)

        starts = np.arange(0, len(TEXT) - block_size - 1, 7)
        losses = []
        for it in range(steps):
            ix = starts[(np.arange(4) + 4 * it) % len(starts)]
            x = torch.stack([data[i:i + block_size] for i in ix])
            y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
            losses.append(train_step(x, y).item())
            scheduler.step()

        model.eval()
        with torch.no_grad():
            idx = data[:3].view(1, -1)
            for _ in range(4):      # greedy generation
                logits, _ = model(idx[:, -3:])     # a fixed window: one shape
                idx = torch.cat((idx, logits[:, -1, :].argmax(dim=-1, keepdim=True)), dim=1)
        return result(losses, {"model": model}, generated=idx[0].tolist())
