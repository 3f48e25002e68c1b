"""Which of the PyTorch names in pytorch_api_used.txt graphjit has.

Each name is resolved as a script run by ``graphjit run`` would reach it: through the torch
aliases of graphjit/run.py (``torch.nn.functional.relu`` -> ``graphjit.nn.functional.relu``)
and, for ``Tensor.X``, on ``graphjit.Tensor``. Kind ``other`` (distributed training,
multiprocessing, ONNX, AMP, ...) is listed in the file but left out of the figure.

    python docs/coverage/coverage.py            # the figure, then the missing names by kind
    python docs/coverage/coverage.py --figure   # only the sentence the README carries

tests/test_run.py checks that the README carries the sentence this prints.
"""
from __future__ import annotations

import collections
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LIST = os.path.join(HERE, "pytorch_api_used.txt")
OUTSIDE = ("other",)


def load(path=LIST):
    """[(kind, name, [where, ...])] from the survey file."""
    rows = []
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            kind, name, *where = line.split()
            rows.append((kind, name, where))
    return rows


def has(name) -> bool:
    """Whether a script under ``graphjit run`` finds ``name`` (a torch dotted name or
    ``Tensor.X``)."""
    import graphjit
    from graphjit.run import torch_alias
    if name.startswith("Tensor."):
        return hasattr(graphjit.Tensor, name[len("Tensor."):])
    obj = torch_alias()
    try:
        for part in name.split(".")[1:]:
            obj = getattr(obj, part)
    except (AttributeError, ImportError):
        return False
    return True


def report(rows=None):
    """(have, total, per kind {kind: (have, total)}, missing {kind: [names]})."""
    rows = load() if rows is None else rows
    per_kind = collections.defaultdict(lambda: [0, 0])
    missing = collections.defaultdict(list)
    for kind, name, _ in rows:
        if kind in OUTSIDE:
            continue
        ok = has(name)
        per_kind[kind][0] += ok
        per_kind[kind][1] += 1
        if not ok:
            missing[kind].append(name)
    have = sum(h for h, _ in per_kind.values())
    total = sum(t for _, t in per_kind.values())
    return have, total, {k: tuple(v) for k, v in per_kind.items()}, dict(missing)


def figure_sentence(have, total) -> str:
    return (f"graphjit has {have} of the {total} PyTorch names ({100 * have / total:.0f}%) "
            f"that PyTorch's own examples and tutorials use")


def main(argv) -> int:
    have, total, per_kind, missing = report()
    print(figure_sentence(have, total))
    if "--figure" in argv:
        return 0
    for kind, (h, t) in per_kind.items():
        print(f"  {kind:<12} {h:>3} of {t:<3}"
              + (f"  missing: {' '.join(missing[kind])}" if kind in missing else ""))
    outside = [name for kind, name, _ in load() if kind in OUTSIDE]
    print(f"  not counted ({', '.join(OUTSIDE)}): {' '.join(outside)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
