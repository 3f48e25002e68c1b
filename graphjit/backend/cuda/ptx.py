"""Compile a CUDA program's kernels for a real GPU without one: PTX through NVVM, then
machine code through ``ptxas``, with the registers, shared memory and spills each uses.

Numba's simulator runs a kernel's Python as Python, so a kernel it runs may still fail
Numba's CUDA type inference or NVVM on a GPU (an atomic on a type the hardware lacks, a
shared array of a dtype NVVM refuses, an integer mixing that types differently), or need
more shared memory or registers than a block of the GPU's launch size gets. This module
takes the kernels ``codegen.generate`` wrote, with the argument types of their launches
(``GeneratedCudaModule.kernel_signatures``), and compiles each one as the GPU driver
would, for a compute capability (default 9.0, Hopper):

    from graphjit.backend.cuda import generate, ptx
    for report in ptx.check(generate(graph), cc=(9, 0)):
        print(report)          # kernel_5c1e...py (float32, float32): 18 registers, ...

It needs the real ``numba.cuda`` (``NUMBA_ENABLE_CUDASIM`` unset or 0: the launch sizes
written into the kernels are then the GPU's, see [Launch sizes] in runtime.py), NVVM and
NVRTC (the CUDA toolkit, or the ``graphjit[cuda12]`` extra's wheels) and, for the
resource counts, ``ptxas``; no GPU or driver. tests/cuda/test_ptx.py runs it over every
kernel the op table and the training tests generate.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ..source import import_module, write_module

# The limits every compute capability since 7.0 has: registers per thread, and the static
# shared memory a block may declare (more needs the dynamic opt-in, which Numba's
# ``cuda.shared.array`` does not use).
MAX_REGISTERS = 255
MAX_STATIC_SHARED = 48 * 1024


@dataclass
class KernelReport:
    """What compiling one kernel for one argument signature gave."""
    file_name: str
    signature: tuple            # per argument: (NumPy dtype, is an array) (see codegen)
    error: str | None = None    # why Numba / NVVM / ptxas refused it
    registers: int | None = None
    shared_bytes: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    stack_bytes: int | None = None
    ptxas_output: str = ""
    problems: list = field(default_factory=list)  # limits it exceeds (see ``check``)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.problems

    def __str__(self) -> str:
        types = ", ".join(describe(self.signature))
        head = f"{self.file_name} ({types})"
        if self.error is not None:
            return f"{head}: FAILED: {self.error}"
        if self.registers is None:
            return f"{head}: PTX ok (no ptxas here for resource counts)"
        text = (f"{head}: {self.registers} registers, {self.shared_bytes} bytes shared, "
                f"{self.stack_bytes} bytes stack, spills {self.spill_stores} stores / "
                f"{self.spill_loads} loads")
        return text + "".join(f"; PROBLEM: {p}" for p in self.problems)


def normalize(signature) -> tuple:
    """``signature`` as ``((np.dtype, is_array), ...)``; a bare dtype means an array."""
    return tuple((np.dtype(a[0]), bool(a[1])) if isinstance(a, (tuple, list))
                 else (np.dtype(a), True) for a in signature)


def describe(signature) -> list:
    """``["float32[]", "float64", ...]``: arrays with ``[]``, by-value scalars without."""
    return [f"{d.name}[]" if is_array else d.name for d, is_array in normalize(signature)]


def numba_signature(signature) -> tuple:
    """Numba's argument types: a flat C-contiguous device array or a scalar each."""
    from numba import from_dtype, types
    return tuple(types.Array(from_dtype(d), 1, "C") if is_array else from_dtype(d)
                 for d, is_array in normalize(signature))


def _need_real_target():
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
        raise RuntimeError("compiling kernels for a GPU needs the real numba.cuda target: "
                           "unset NUMBA_ENABLE_CUDASIM (it is on: Numba's simulator)")


def compile_ptx(kernel_text: str, signature, cc=(9, 0)) -> str:
    """The PTX of a kernel module's ``k`` for arguments of ``signature``."""
    _need_real_target()
    from numba import cuda
    module = import_module(write_module(kernel_text, "kernel", "cuda"))
    ptx, _ = cuda.compile_ptx(module.k.py_func, numba_signature(signature), cc=tuple(cc))
    return ptx


def find_ptxas() -> str | None:
    """A ``ptxas`` to assemble with: the ``nvidia-cuda-nvcc`` wheel's, else one on PATH."""
    try:
        import nvidia.cuda_nvcc as wheel  # the graphjit[cuda12] extra's toolkit wheel
        candidate = os.path.join(list(wheel.__path__)[0], "bin", "ptxas")
        if os.access(candidate, os.X_OK):
            return candidate
    except ImportError:
        pass
    return shutil.which("ptxas")


_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def assemble(ptx: str, cc=(9, 0), ptxas: str | None = None) -> dict:
    """``ptxas -v`` on ``ptx``: its resource counts (raises RuntimeError with ptxas's
    message if it refuses the PTX)."""
    ptxas = ptxas or find_ptxas()
    if ptxas is None:
        raise RuntimeError("no ptxas found (install graphjit[cuda12] or a CUDA toolkit)")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        done = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", src,
                               "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True)
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise RuntimeError(f"ptxas failed: {text}")
    used, stack = _USED.search(text), _STACK.search(text)
    smem = _SMEM.search(text)
    return {"registers": int(used.group(1)) if used else 0,
            "shared_bytes": int(smem.group(1)) if smem else 0,
            "stack_bytes": int(stack.group(1)) if stack else 0,
            "spill_stores": int(stack.group(2)) if stack else 0,
            "spill_loads": int(stack.group(3)) if stack else 0,
            "ptxas_output": text}


def check_kernel(kernel_text: str, signature, cc=(9, 0), ptxas: str | None = None) -> KernelReport:
    """Compile one kernel for one signature and check it against the hardware's limits."""
    from ..source import module_file_name
    report = KernelReport(module_file_name(kernel_text, "kernel"), normalize(signature))
    try:
        ptx = compile_ptx(kernel_text, report.signature, cc)
    except Exception as e:  # noqa: BLE001 - any refusal is the finding
        report.error = f"{type(e).__name__}: {e}".strip()
        return report
    if ptxas is None:
        return report
    try:
        for key, value in assemble(ptx, cc, ptxas).items():
            setattr(report, key, value)
    except RuntimeError as e:
        report.error = str(e)
        return report
    if report.registers > MAX_REGISTERS:
        report.problems.append(f"{report.registers} registers > {MAX_REGISTERS}")
    if report.shared_bytes > MAX_STATIC_SHARED:
        report.problems.append(f"{report.shared_bytes} bytes of shared memory > "
                               f"{MAX_STATIC_SHARED}")
    return report


def check(generated, cc=(9, 0), seen: set | None = None) -> list:
    """A ``KernelReport`` per kernel and launch signature of a ``GeneratedCudaModule``
    (those whose ``(text, signature)`` is already in ``seen`` are skipped, and ``seen``
    grows: pass one set to check many programs)."""
    seen = set() if seen is None else seen
    ptxas = find_ptxas()
    reports = []
    for text, signatures in zip(generated.kernel_sources, generated.kernel_signatures):
        for signature in signatures:
            key = (text, tuple(describe(signature)))
            if key in seen:
                continue
            seen.add(key)
            reports.append(check_kernel(text, signature, cc, ptxas))
    return reports


def parse(text: str) -> tuple:
    """``"float32[],float64"`` -> a signature (the inverse of ``describe``)."""
    return tuple((np.dtype(t.strip().removesuffix("[]")), t.strip().endswith("[]"))
                 for t in text.split(","))


def main(argv=None) -> int:
    """``python -m graphjit.backend.cuda.ptx KERNEL.py TYPE,...``: check one kernel file
    (TYPE: ``float32[]`` a flat array, ``float32`` a scalar)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(main.__doc__)
        return 2
    with open(argv[0]) as f:
        text = f.read()
    report = check_kernel(text, parse(argv[1]), ptxas=find_ptxas())
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
