"""Kernel bundles ([Kernel bundles] in graphjit/backend/cpu/kernel_bundle.py): a new process
loads a program's kernels from one file, its driver from another ([Bundled drivers]) and
Numba's runtime from a third (graphjit/backend/nrt_cache.py), and runs them as the process
that compiled them did: same numbers, parallel kernels with their thread pool started,
kernel errors with their messages. Each run is a fresh process on a compile cache of the
test's own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    import graphjit as gj
    import graphjit.nn as nn
    import graphjit.nn.functional as F
    from graphjit.backend import nrt_cache
    from graphjit.backend.cpu import kernel_bundle, native
    gj.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 48), nn.Tanh(), nn.Linear(48, 4))
    opt = gj.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(1)

    @gj.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    @gj.compile
    def pick(x, i):
        return (x[i] * 2.0).sum()

    losses = [float(step(gj.tensor(rng.standard_normal((64, 24)).astype(np.float32)),
                         gj.tensor(rng.integers(0, 4, 64)))) for _ in range(3)]
    # A compiled forward (its backward a program of its own), backward and step outside.
    net = nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 1))
    net_opt = gj.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    forward = gj.compile(net)
    for _ in range(3):
        net_opt.zero_grad()
        out = forward(gj.tensor(rng.standard_normal((8, 24)).astype(np.float32)))
        loss = (out * out).mean()
        loss.backward()
        net_opt.step()
        losses.append(float(loss))

    x = gj.tensor(np.arange(10.0, dtype=np.float32))
    picked = float(pick(x, gj.tensor(np.array([1, 3, 9]))))
    try:
        pick(x, gj.tensor(np.array([1, 3, 12])))
        error = None
    except IndexError as e:
        error = str(e)
    print(json.dumps({"losses": losses, "picked": picked, "error": error,
                      "bundled": len(native.BUNDLED), "drivers": len(kernel_bundle.DRIVERS),
                      "runtime": nrt_cache.started_from,
                      "modules": sum(m.startswith("_graphjit_gen_") for m in sys.modules),
                      "params": [p.detach().numpy().tolist() for p in model.parameters()]}))
""")


@pytest.mark.parametrize("parallel", ["", "64"], ids=["serial", "parallel"])
def test_a_restart_loads_the_kernels_from_their_bundle(tmp_path, parallel):
    script = tmp_path / "bundle.py"
    script.write_text(_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # GRAPHJIT_PARALLEL_MIN=64: most loops parallel (prange), whose code needs Numba's
    # thread pool started before it runs (the bundle's reload hooks).
    # The lowering cache on (tests/conftest.py turns it off): the restart finds each
    # program's generated modules there, and loads the programs from their bundles alone
    # ([Programs from their bundles] in codegen.py), natively; the serial one starts
    # tiered, as by default, which takes the loaded program at once.
    env.update(GRAPHJIT_CACHE_DIR=str(tmp_path / "cache"), GRAPHJIT_TIERED="0",
               GRAPHJIT_PARALLEL_MIN=parallel, GRAPHJIT_KERNEL_BUNDLES="1",
               GRAPHJIT_LOWERING_CACHE="1")
    runs = []
    for tiered in ("0", "0" if parallel else "1"):
        env["GRAPHJIT_TIERED"] = tiered
        out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert os.listdir(tmp_path / "cache" / "bundles")
    assert first["bundled"] == 0 and second["bundled"] > 0
    # Two programs and the steady-state step's: their drivers called through their wrappers.
    assert first["drivers"] == 0 and second["drivers"] >= 3
    assert first["runtime"] == "compiled" and second["runtime"] == "disk"
    # Not one generated module imported by the restart.
    assert first["modules"] > 0 and second["modules"] == 0
    assert second["losses"] == first["losses"]
    assert second["params"] == first["params"]
    assert second["picked"] == first["picked"] == 26.0
    assert first["error"] and second["error"] == first["error"]
    assert "12" in first["error"] or "out of" in first["error"]


def test_a_garbled_bundle_is_not_run_and_the_kernels_load_one_by_one(tmp_path):
    script = tmp_path / "bundle.py"
    script.write_text(_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(GRAPHJIT_CACHE_DIR=str(tmp_path / "cache"), GRAPHJIT_TIERED="0",
               GRAPHJIT_KERNEL_BUNDLES="1")

    def run():
        out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])
    first = run()
    files = [tmp_path / "cache" / sub / name for sub in ("bundles", "runtime")
             for name in os.listdir(tmp_path / "cache" / sub)]
    for path in files:  # kernels', drivers' and the runtime's
        # Flip bytes in the middle, where the object code is: a pickle that may still
        # load, with machine code that must not run.
        blob = bytearray(path.read_bytes())
        for i in range(len(blob) // 2, len(blob) // 2 + 64):
            blob[i] ^= 0x5A
        path.write_bytes(bytes(blob))
    second = run()
    assert second["bundled"] == 0 and second["drivers"] == 0 and second["runtime"] == "compiled"
    assert second["losses"] == first["losses"] and second["params"] == first["params"]
    assert second["error"] == first["error"]
    # The garbled file was replaced by a whole one, which the next process uses.
    third = run()
    assert third["bundled"] > 0 and third["drivers"] > 0 and third["runtime"] == "disk"
    assert third["losses"] == first["losses"]
