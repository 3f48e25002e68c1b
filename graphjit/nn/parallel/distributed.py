"""``DistributedDataParallel``: one model replica per rank, gradients averaged after backward.

# NOTE: [Gradient buckets]
As PyTorch's DDP: the parameters that require grad are grouped, in reverse order of
``parameters()`` (roughly the order backward produces their gradients), into buckets of at
least ``bucket_cap_mb`` megabytes (the first one 1 MiB, so communication starts early),
one dtype and device per bucket. A bucket is all-reduced (summed) as one flat array, then
divided by the world size and written back into each ``.grad``: one MPI call per bucket.
Buckets start in order, each once its gradients are all accumulated and those before it
have started, so every rank starts the same collectives in the same order. A parameter
with no gradient on some rank (unused this step) contributes zeros, and every rank ends
with the averaged gradient in its ``.grad``.

Eager ``loss.backward()``: post-accumulate-grad hooks ([Backward hooks] in autograd_engine.py)
count a bucket's gradients; the full bucket is copied into its flat buffer and its
``MPI_Iallreduce`` starts while backward goes on with the earlier layers; each later hook
tests the pending requests, which lets MPI progress them (MPI progresses a nonblocking
collective only inside MPI calls: with no progress thread, the overlap is whatever those
tests and the final wait allow). A callback queued for the end of backward waits for
every bucket and writes the averages back.

Inside a compiled function (``loss.backward()`` in a ``@graphjit.compile``'d training
step) the same callback runs at trace time and adds, per bucket, a ``cat`` of the
gradients, one ``all_reduce`` node, and its slices divided by the world size written back
to each ``.grad``: the reduction is part of the program between the backward and the optimizer
update, whose fused loops read the averaged gradients ([Compiled collectives] in
backend/cpu/collective.py). The program runs its buckets' all-reduces one after another
where they stand, after the whole backward (no overlap). ``require_backward_grad_sync``
(``no_sync()``) is a module attribute, so toggling it traces again ([Python values in a
compiled function] in jit/guards.py).
"""
from __future__ import annotations

import contextlib

import numpy as np

from ... import _tracing, autograd_engine, devices
from ...autograd_tape import no_grad
from ...errors import TraceError
from ...tensor import Tensor
from ..module import Module

# PyTorch's defaults: torch.distributed's _DEFAULT_FIRST_BUCKET_BYTES, DDP's bucket_cap_mb.
FIRST_BUCKET_BYTES = 1024 * 1024
BUCKET_CAP_MB = 25


def assign_buckets(params, cap_bytes: int, first_cap_bytes: int) -> list:
    """``params`` grouped into buckets ([Gradient buckets]): lists of parameters."""
    buckets, open_buckets = [], {}  # (dtype, device) -> [params, bytes]
    for p in reversed(list(params)):
        key = (p.dtype.name, str(p.device))
        entry = open_buckets.setdefault(key, [[], 0])
        entry[0].append(p)
        entry[1] += p.numel() * p.dtype.itemsize
        if entry[1] >= (first_cap_bytes if not buckets else cap_bytes):
            buckets.append(entry[0])
            del open_buckets[key]
    buckets += [entry[0] for entry in open_buckets.values()]
    return buckets


class _Reducer:
    """The gradient all-reduce of one DDP module ([Gradient buckets])."""

    def __init__(self, ddp, params, group, cap_bytes, first_cap_bytes):
        self.ddp = ddp
        self.group = group
        self.buckets = assign_buckets(params, cap_bytes, first_cap_bytes)
        self.bucket_of = {id(p): b for b, bucket in enumerate(self.buckets) for p in bucket}
        self.flat = [None] * len(self.buckets)
        # How many buckets the last eager backward started before it had finished (the
        # rest at its end): what could overlap the backward ([Gradient buckets]).
        self.started_during_backward = 0
        self._reset()
        self.handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in params]

    def _reset(self):
        self.missing = [len(bucket) for bucket in self.buckets]
        self.started = []      # Work per started bucket, in bucket order
        self.active = False    # a backward pass is being reduced
        self.pass_token = None  # which one (autograd_engine.backward_pass())

    def _on_grad(self, p) -> None:
        if not self.ddp.require_backward_grad_sync:
            return
        if not self.active or self.pass_token is not autograd_engine.backward_pass():
            # (A backward that raised left its state behind: start afresh.)
            self._reset()
            self.active, self.pass_token = True, autograd_engine.backward_pass()
            autograd_engine.queue_callback(self._finish)
        if _tracing.active() is not None:
            return  # the whole reduction is traced at the end ([Gradient buckets])
        self.missing[self.bucket_of[id(p)]] -= 1
        n = len(self.started)
        while n < len(self.buckets) and self.missing[n] == 0:
            self._start(n)
            n += 1
        for work in self.started:  # lets MPI progress the pending ones
            work.is_completed()

    def _start(self, b) -> None:
        bucket = self.buckets[b]
        flat = self.flat[b]
        if flat is None:
            total = sum(p.numel() for p in bucket)
            flat = self.flat[b] = np.empty(total, bucket[0].dtype.np)
        offset = 0
        for p in bucket:
            n = p.numel()
            if p.grad is None:
                flat[offset:offset + n] = 0
            else:
                flat[offset:offset + n] = devices.to_host(p.grad._data).reshape(-1)
            offset += n
        from ...distributed import Work
        request = self.group.all_reduce_start(flat, "sum")
        self.started.append(Work(self.group, request, f"DistributedDataParallel's all_reduce "
                                 f"of gradient bucket {b} ({flat.dtype}[{flat.size}])"))

    def _finish(self) -> None:
        try:
            if _tracing.active() is not None:
                self._finish_traced()
                return
            self.started_during_backward = len(self.started)
            while len(self.started) < len(self.buckets):
                self._start(len(self.started))
            for b, work in enumerate(self.started):
                work.wait()
                flat = self.flat[b]
                np.divide(flat, self.group.size, out=flat)
                offset = 0
                for p in self.buckets[b]:
                    n = p.numel()
                    _write_grad(p, flat[offset:offset + n].reshape(p.shape))
                    offset += n
        finally:
            self._reset()

    def _finish_traced(self) -> None:
        from ...distributed import reduced
        from ...ops import api
        for bucket in self.buckets:
            if bucket[0].device.type != "cpu":
                raise TraceError("DistributedDataParallel inside a compiled function reduces "
                                 "gradients on the CPU only; on CUDA, run the training step "
                                 "eagerly (compile the model's forward instead)",
                                 op="DistributedDataParallel")
            with no_grad():
                grads = [(api.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                         for p in bucket]
                flat = grads[0] if len(grads) == 1 else api.cat(grads)
                total = reduced(flat, "sum", self.group)
                offset = 0
                for p in bucket:
                    n = p.numel()
                    # Divided per slice, so that the division fuses into the loops that
                    # read the gradient (the optimizer's), not a pass of its own.
                    piece = api.div(total[offset:offset + n].reshape(p.shape), self.group.size)
                    if p.grad is None:
                        p.grad = piece
                    else:
                        p.grad.copy_(piece)
                    offset += n

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _write_grad(p, value: np.ndarray) -> None:
    g = p.grad
    if g is None or not devices.writeable(g._data) or g._requires_grad:
        p.grad = Tensor._wrap(devices.to_device(value.copy(), p.device))
        return
    devices.copyto(g._data, value)
    g._version.bump()


class DistributedDataParallel(Module):
    """Data parallelism over the ranks of a process group (``torch.nn.parallel.
    DistributedDataParallel``): each rank runs ``module`` on its shard of the batch, and
    after ``loss.backward()`` every parameter's ``.grad`` holds the average over ranks of
    their gradients, so an optimizer step keeps the replicas identical.

    At construction rank 0's parameters and buffers are broadcast to every rank. With
    ``broadcast_buffers`` (default) every forward broadcasts rank 0's buffers first (batch
    norm statistics), as PyTorch does. Gradients are reduced in buckets of
    ``bucket_cap_mb`` ([Gradient buckets]), eagerly or inside a compiled training step.
    ``no_sync()``: a context in which backward only accumulates locally (gradient
    accumulation); the first backward after it averages the accumulated gradients.
    ``module`` is the wrapped model, so ``state_dict()`` keys carry the ``module.`` prefix,
    as PyTorch's. ``device_ids``, ``output_device``, ``dim``, ``find_unused_parameters``
    (unused parameters always contribute zeros), ``check_reduction``,
    ``gradient_as_bucket_view`` and ``static_graph`` are accepted for PyTorch's
    signature and change nothing.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=True, process_group=None, bucket_cap_mb=None,
                 find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        from ... import distributed as dist
        if _tracing.active() is not None:
            raise TraceError("construct DistributedDataParallel outside the compiled function",
                             op="DistributedDataParallel")
        group = dist._group(process_group, "DistributedDataParallel")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.require_backward_grad_sync = True
        object.__setattr__(self, "process_group", group)
        params = [p for p in module.parameters() if p.requires_grad]
        with no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t, 0, group)
        cap = int((BUCKET_CAP_MB if bucket_cap_mb is None else bucket_cap_mb) * 1024 * 1024)
        object.__setattr__(self, "reducer", _Reducer(self, params, group, cap,
                                                     min(FIRST_BUCKET_BYTES, cap)))

    def forward(self, *inputs, **kwargs):
        if self.broadcast_buffers and self.process_group.size > 1:
            from ... import distributed as dist
            with no_grad():
                for b in self.module.buffers():
                    dist.broadcast(b, 0, self.process_group)
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside: backward accumulates gradients locally, with no communication."""
        before = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = before
