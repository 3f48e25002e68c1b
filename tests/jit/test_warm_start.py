"""What a warm start (every kernel and driver in the disk cache) does not do: import
networkx (only the tests' convexity re-check uses it), load Numba's lowering registries
(``_load_runtime`` in backend/source.py), or collect garbage mid-compile ([No GC while
compiling] in graphjit/_gc.py), and it leaves the collector as it found it."""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import graphjit as gj

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""\
    import json, sys
    import numpy as np
    import graphjit as gj
    from graphjit import nn, optim

    gj.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = optim.Adam(model.parameters(), lr=1e-2)

    @gj.compile
    def step(x, y):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    rng = np.random.default_rng(0)
    x = gj.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    y = gj.tensor(rng.standard_normal((4, 1)).astype(np.float32))
    losses = [step(x, y).item() for _ in range(3)]
    print(json.dumps({"losses": losses, "modules": sorted(sys.modules)}))
""")


def _run(cache):
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=str(cache),
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_warm_start_loads_machine_code_only(tmp_path):
    cold = _run(tmp_path / "cache")
    warm = _run(tmp_path / "cache")
    assert warm["losses"] == cold["losses"]  # the same machine code, the same numbers
    assert cold["losses"][2] < cold["losses"][0]
    # A cold compile needs Numba's registries (it compiles); a warm one loads code only.
    registries = ["numba.typed.typeddict", "numba.np.polynomial.polynomial_core"]
    assert all(m in cold["modules"] for m in registries)
    assert not [m for m in registries if m in warm["modules"]], warm["modules"]
    assert "networkx" not in warm["modules"] and "networkx" not in cold["modules"]


def test_compiling_pauses_the_collector_and_restores_it(monkeypatch):
    from graphjit.jit import lowering
    seen = []
    f = gj.compile(lambda a: (a * 2).sum())
    real_lower = lowering.lower

    def lower(*args, **kwargs):
        seen.append(gc.isenabled())
        return real_lower(*args, **kwargs)

    a = gj.tensor(np.arange(3, dtype=np.float32))
    try:
        monkeypatch.setattr(lowering, "lower", lower)
        assert gc.isenabled()
        assert f(a).item() == 6.0
        assert seen == [False] and gc.isenabled()
        gc.disable()  # a user who turned it off keeps it off
        assert f(gj.tensor(np.arange(4, dtype=np.float32))).item() == 12.0
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()
