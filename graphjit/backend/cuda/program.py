"""``CudaProgram``: the host side of a compiled CUDA program (device arrays in and out).

It has the CPU program's interface (``program(inputs)``, ``flat_input``, ``run_trusted``,
``output_shapes``, ``update_plan``: see core/program.py), so the jit runtime drives both
alike; every array it takes and returns is a flat device array, except the host
scalars ([Host scalars] in graphjit/ir/host.py): hyperparameters and 0-d CPU tensors come in
as 1-element NumPy arrays and stay on the host (kernels take them by value), and host
values it returns (a new step count) are NumPy arrays. The graph's constants are copied to
the device once; any other host array given is copied over; a tensor argument on the CPU
is an error.
"""
from __future__ import annotations

import numpy as np

from ...errors import GraphjitError
from ..core.program import Program
from . import runtime


# NOTE: [Fresh outputs]
# A CUDA program allocates its results at every call (``_buffers``), so an output whose
# buffer no other result shares (not a second output, not a value saved for the backward,
# not an input's buffer) belongs to the caller as it is: ``fresh_outputs[i]`` says so, and
# the jit runtime wraps it without the copy it makes of the CPU program's pooled results.
# For a 64 MB elementwise result that copy would double the step's memory traffic.


class CudaProgram(Program):
    def __init__(self, graph, name, generated, path, driver, compile_seconds):
        super().__init__(graph, name, generated, path, compile_seconds)
        self.device = "cuda:0"
        self._driver = driver
        cuda = runtime.cuda()
        host = {generated.params[j] for j in generated.host_params}
        self._on_host = [v in host for v in self._args]
        self._const_at = [(j, cuda.to_device(np.ascontiguousarray(
                              np.asarray(graph.constants[v], dtype=v.dtype.np)).reshape(-1)))
                          for j, v in enumerate(generated.params) if v.role == "const"]
        self.fresh_outputs = list(generated.fresh_outputs)  # see [Fresh outputs]
        self._temp_views = generated.temp_views
        self._errors = generated.errors
        self._check_at_end = generated.check_at_end
        self._err = None

    def _buffers(self) -> list:
        cuda = runtime.cuda()
        if self._workspace is None:
            slots = [cuda.device_array(max(n, 1), dt) for n, dt in self._slot_types]
            self._workspace = [slots[s][:n] for s, n in self._temp_views]
            self._err = cuda.to_device(np.zeros(1, np.int32))
        results = [cuda.device_array(n, dt) for n, dt in self._result_types]
        return results + self._workspace + [self._err]

    def flat_input(self, i: int, arr):
        """Input ``i`` checked against its graph type: ``(flat array, whether it is a copy)``,
        a device array, or for a host input ([Host scalars]) a view of the NumPy array."""
        dtype, shape = self._arg_types[i]
        v = self._args[i]
        on_cpu = type(arr) is np.ndarray
        if on_cpu and shape and not self._on_host[i]:
            raise GraphjitError(f"program {self.name} runs on cuda:0, but input %{v.name} "
                                f"({arr.dtype}{list(arr.shape)}) is on the CPU; move it with "
                                ".to('cuda')")
        if arr.dtype != dtype or tuple(arr.shape) != shape:
            raise self._input_error(i, arr)
        if self._on_host[i]:  # the tensor's own array; copied back if given on the GPU
            return (arr.reshape(1), False) if on_cpu else (arr.copy_to_host().reshape(1), True)
        if on_cpu:  # 0-d on the CPU where the trace had a device tensor: copied over
            return runtime.cuda().to_device(arr.reshape(1)), True
        return arr.reshape(arr.size), False

    def __call__(self, inputs):
        inputs = list(inputs)
        self._check_count(inputs)
        args = [self.flat_input(i, a)[0] for i, a in enumerate(inputs)]
        return self._finish(args, self.run_trusted(args))

    def run_trusted(self, args):
        """Launch the program on ``args`` (flat device arrays; host arrays are copied over):
        its flat results, in the driver's order."""
        cuda = runtime.cuda()
        args = [cuda.to_device(np.ascontiguousarray(a).reshape(-1))
                if type(a) is np.ndarray and not host else a
                for a, host in zip(args, self._on_host)]
        for j, const in self._const_at:
            args.insert(j, const)
        with self._lock:
            try:
                results = self._driver(*args, *self._buffers())
                if self._check_at_end:
                    runtime.check_flag(self._err)
            except runtime.FlaggedError as e:  # an index out of range (see [CUDA kernels])
                raise IndexError(self._errors[e.code - 1]) from None
        return list(results)
