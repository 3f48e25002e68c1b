"""A driver takes its buffers as one array of their objects' addresses ([Driver arguments]
in graphjit/backend/cpu/native.py) and picks the looped form when it compiles sooner
([Looped drivers] in looped.py)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from numba import njit

from graphjit import dtypes
from graphjit.backend.cpu import compile_graph, generate, looped
from graphjit.backend.cpu.looped import Call, Fill
from graphjit.backend.cpu.native import (DATA_OFFSET, load_address, load_address_in_python,
                                         object_addresses)
from graphjit.ir import parse_graph


@njit
def _data_pointers(at):
    out = np.empty(at.shape[0], np.intp)
    for j in range(at.shape[0]):
        out[j] = load_address(at[j] + DATA_OFFSET)
    return out


def test_load_address_reads_each_arrays_data_pointer():
    base = np.arange(24.0)
    arrays = [base, base[5:], base.reshape(4, 6).T, np.zeros(3, np.float32),
              np.ones((2, 2), np.int64)[1:], np.array([True, False]), np.empty(0)]
    wanted = [a.__array_interface__["data"][0] for a in arrays]
    at = object_addresses(arrays)
    assert list(_data_pointers(at)) == wanted
    assert [load_address_in_python(a + DATA_OFFSET) for a in at] == wanted


def _many_inputs_graph(n):
    """n float32 inputs, n float64 ones and two int64 ones; a result per input, and an input
    returned as is."""
    params = ([f"%a{i}: f32[3] {{arg}}" for i in range(n)] + [f"%b{i}: f64[2, 2] {{arg}}"
                                                              for i in range(n)]
              + ["%m: i64[4] {arg}", "%k: i64[4] {arg}"])
    lines, outs = [], []
    for i in range(n):
        lines.append(f"  %{2 * i} = mul(%a{i}, %a{(i + 1) % n}) : f32[3]")
        lines.append(f"  %{2 * i + 1} = exp(%b{i}) : f64[2,2]")
        outs += [f"%{2 * i}", f"%{2 * i + 1}"]
    lines.append(f"  %{2 * n} = add(%m, %k) : i64[4]")
    outs += [f"%{2 * n}", "%k"]
    return parse_graph(f"graph many({', '.join(params)}) {{\n" + "\n".join(lines)
                       + f"\n  return {', '.join(outs)}\n}}")


@pytest.mark.parametrize("forced", [False, True], ids=["as chosen", "looped"])
def test_a_driver_of_many_buffers_takes_two_arguments(forced, monkeypatch, rng):
    if forced:
        monkeypatch.setattr(looped, "LOOPED_DRIVER_MIN_CALLS", 1)
        monkeypatch.setattr(looped, "CALLS_PER_FORM", 0)
    n = 12
    graph = _many_inputs_graph(n)
    source = generate(graph).module_source
    assert re.search(r"^def run_many\(at, kernels\):$", source, re.M)
    a = [rng.standard_normal(3).astype(np.float32) for _ in range(n)]
    b = [rng.standard_normal((2, 2)) for _ in range(n)]
    m, k = rng.integers(-9, 9, 4), rng.integers(-9, 9, 4)
    program = compile_graph(graph)
    for _ in range(2):  # (the second call reuses the result buffers)
        outputs, _ = program(a + b + [m, k])
        for i in range(n):
            np.testing.assert_array_equal(outputs[2 * i], a[i] * a[(i + 1) % n])
            np.testing.assert_allclose(outputs[2 * i + 1], np.exp(b[i]), rtol=1e-15)
        np.testing.assert_array_equal(outputs[2 * n], m + k)
        # An input returned as is comes back as a copy.
        np.testing.assert_array_equal(outputs[-1], k)
        assert not np.shares_memory(outputs[-1], k)


def _calls(forms, calls):
    """``calls`` kernel calls of ``forms`` forms (float32 calls of 1, 2, ... arguments)."""
    kinds = [((None, 0, 3, dtypes.float32),) * (j + 1) for j in range(forms)]
    return [Call(0, kinds[c % forms], "k", "") for c in range(calls)]


@pytest.mark.parametrize("forms, calls, wanted", [
    (1, 7, False),   # too few calls to gain from the loop
    (1, 8, True),
    (6, 8, False),   # fewer than 1.5 calls a form: the straight-line driver compiles sooner
    (6, 9, True),
    (2, 12, True),
])
def test_the_looped_driver_is_chosen_by_calls_per_form(forms, calls, wanted):
    assert looped.wants_loop(_calls(forms, calls)) == wanted


def test_a_fill_is_a_form_of_its_own():
    f64 = dtypes.float64
    steps = _calls(1, 8)
    assert looped.wants_loop(steps)
    fills = [Fill((None, 0), 3, f64, str(float(j)), "") for j in range(5)]
    assert not looped.wants_loop(steps + fills)  # 8 calls, 6 forms
