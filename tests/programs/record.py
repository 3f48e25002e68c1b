"""Record the reference trajectories in data/ by running every program with real PyTorch.

Needs PyTorch, which graphjit and its tests never depend on: run it from a separate
environment (see README.md here for the exact commands), from the repository root:

    /tmp/torchenv/bin/python tests/programs/record.py [NAME ...]

Each program runs eagerly in float64 on the CPU with one thread, and its result (the loss
at every step, the other numbers it reports, a checksum of every state-dict entry at the
end) is written to data/NAME.json with the PyTorch and NumPy versions that made it.
"""
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))        # tests/, so `programs` is a package


def main(names):
    import numpy as np
    import torch

    from programs import RECORDINGS, load_program

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name in names or RECORDINGS:
        module_name, kwargs = RECORDINGS[name]
        out = load_program(module_name).run(torch, **kwargs)
        out["recorded_with"] = {"torch": torch.__version__, "numpy": np.__version__,
                                "python": platform.python_version(),
                                "program": module_name, "kwargs": kwargs}
        path = os.path.join(HERE, "data", f"{name}.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"{name}: {len(out['loss'])} steps, loss {out['loss'][0]:.6g} -> "
              f"{out['loss'][-1]:.6g} -> {os.path.relpath(path)}")


if __name__ == "__main__":
    main(sys.argv[1:])
