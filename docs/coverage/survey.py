"""Survey which PyTorch names a set of PyTorch programs uses; writes pytorch_api_used.txt.

Run with real PyTorch (a separate environment; graphjit never needs it), on checkouts of
the programs to survey:

    /tmp/torchenv/bin/python docs/coverage/survey.py --label examples EXAMPLES_DIR[/SUBDIR ...] \
        --label tutorials TUTORIALS_DIR/... > docs/coverage/pytorch_api_used.txt

Each Python file is parsed (never run). A name counts when the file reaches it through
``torch``: ``torch.X`` and ``nn.X`` / ``F.X`` / ``optim.X`` / ``DataLoader`` ... through
the file's own imports, and ``x.method(...)`` or ``x.attr`` where ``method`` / ``attr`` is a
``torch.Tensor`` member (so a NumPy ``arr.mean()`` counts as ``Tensor.mean``: an
over-count on purpose, since graphjit needs the Tensor method either way). Names that
are also common methods of Python's str/list/dict/set (``split``, ``index``, ``copy``,
``add``, ...) count only when the receiver is a name the file bound to a torch call, to
keep ``line.split()`` out. Every name is checked to exist in the installed torch.
"""
import ast
import collections
import os
import sys

import torch

# Tensor members that are also everyday methods of Python's built-in types.
AMBIGUOUS = {"split", "index", "count", "copy", "format", "join", "strip", "replace",
             "append", "extend", "items", "keys", "values", "get", "update", "pop",
             "insert", "remove", "sort", "reverse", "add", "clear", "data", "type",
             "name", "names", "real", "imag", "is_set_to", "apply_", "map_", "fill",
             "zero", "resize", "dim_order", "module_load", "share_memory_", "H", "mT",
             "mH", "values", "indices", "storage", "device", "grad_fn", "put", "take"}
# Tensor members counted as attribute reads, not calls.
PROPERTIES = {"shape", "grad", "requires_grad", "dtype", "T", "ndim", "is_leaf", "device",
              "data", "grad_fn"}


def tensor_members():
    return {n for n in dir(torch.Tensor) if not n.startswith("_")}


KINDS = ["torch", "Tensor", "nn", "F", "nn.init", "nn.utils", "optim", "lr_scheduler",
         "utils.data", "autograd", "device", "other"]


def kind_of(qualname):
    """'torch.nn.functional.relu' -> ('F', 'relu')-style classification."""
    parts = qualname.split(".")
    if qualname in ("torch.nn.DataParallel",) or qualname.startswith(
            ("torch.nn.parallel.", "torch.utils.data.distributed.")):
        return "other"
    if qualname.startswith("torch.nn.functional."):
        return "F"
    if qualname.startswith("torch.nn.init."):
        return "nn.init"
    if qualname.startswith("torch.nn.utils"):
        return "nn.utils"
    if qualname.startswith("torch.nn.") and len(parts) == 3:
        return "nn"
    if qualname.startswith("torch.optim.lr_scheduler."):
        return "lr_scheduler"
    if qualname.startswith("torch.optim.") and len(parts) == 3:
        return "optim"
    if qualname.startswith("torch.utils.data."):
        return "utils.data"
    if qualname.startswith("torch.autograd."):
        return "autograd"
    if qualname.startswith("Tensor."):
        return "Tensor"
    if parts[1] in ("cuda", "backends", "accelerator", "mps"):
        return "device"
    if len(parts) == 2:
        return "torch"
    return "other"


def resolve(qualname):
    """The torch object for a dotted name, or None."""
    if qualname.startswith("Tensor."):
        return getattr(torch.Tensor, qualname[7:], None)
    obj = torch
    for part in qualname.split(".")[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            import importlib
            try:
                obj = importlib.import_module(qualname[:qualname.index(part) + len(part)])
            except Exception:  # noqa: BLE001
                return None
    return obj


# Internal classes that appear only in the examples' torch.load allowlists
# (torch.serialization.safe_globals): MultiheadAttention's output projection.
INTERNAL = {"torch.nn.NonDynamicallyQuantizableLinear"}


def public(name):
    """torch.nn.modules.linear.Linear -> torch.nn.Linear (the name users write)."""
    if name.startswith("torch.nn.modules."):
        return "torch.nn." + name.split(".")[-1]
    return name


class Visitor(ast.NodeVisitor):
    def __init__(self, members):
        self.members = members
        self.aliases = {}          # local name -> torch dotted name
        self.tensor_names = set()  # local names bound to the result of a torch call
        self.found = set()

    # imports
    def visit_Import(self, node):
        for a in node.names:
            if a.name == "torch" or a.name.startswith("torch."):
                if a.asname:
                    self.aliases[a.asname] = a.name
                else:
                    self.aliases["torch"] = "torch"

    def visit_ImportFrom(self, node):
        if node.module and (node.module == "torch" or node.module.startswith("torch.")):
            for a in node.names:
                self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def dotted(self, node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id]] + parts[::-1])
        return None

    def visit_Assign(self, node):
        if isinstance(node.value, ast.Call) and self.dotted(node.value.func):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.tensor_names.add(t.id)
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in self.aliases and "." in self.aliases[node.id]:
            if not isinstance(resolve(self.aliases[node.id]), type(torch)):
                self.found.add(self.aliases[node.id])

    def visit_Attribute(self, node):
        name = self.dotted(node)
        if name is not None:
            # the longest prefix that is a real torch name
            parts = name.split(".")
            for i in range(len(parts), 1, -1):
                q = ".".join(parts[:i])
                if resolve(q) is not None and not isinstance(resolve(q), type(torch)):
                    self.found.add(q)
                    break
            return
        attr = node.attr
        if attr in self.members:
            receiver = node.value
            plain = not (attr in AMBIGUOUS) or (
                isinstance(receiver, ast.Name) and receiver.id in self.tensor_names)
            if plain and (attr in PROPERTIES or callable(getattr(torch.Tensor, attr, None))):
                self.found.add(f"Tensor.{attr}")
        self.generic_visit(node)


def survey(paths):
    members = tensor_members()
    uses = collections.defaultdict(set)
    for label, root in paths:
        files = [root] if root.endswith(".py") else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".py"))
        for path in files:
            try:
                tree = ast.parse(open(path, encoding="utf-8").read())
            except SyntaxError:
                continue
            v = Visitor(members)
            v.visit(tree)
            where = f"{label}/{os.path.relpath(path, root if not root.endswith('.py') else os.path.dirname(root))}" \
                if not root.endswith(".py") else f"{label}/{os.path.basename(path)}"
            for name in v.found:
                if resolve(name) is not None and public(name) not in INTERNAL:
                    uses[public(name)].add(where)
    return uses


def read_names(path, label):
    """Names listed by hand, one source file per line: ``FILE@COMMIT name name ...``."""
    uses = collections.defaultdict(set)
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            where, *names = line.split()
            for name in names:
                assert resolve(name) is not None, f"{name} ({where}) is no torch name"
                uses[name].add(f"{label}/{where.split('@')[0]}")
    return uses


def main(argv):
    """Arguments: ``--label NAME`` then folders or files to parse, ``--names FILE`` for a
    hand-made list (see read_names); any number of each."""
    paths, label, uses = [], "src", collections.defaultdict(set)
    i = 0
    while i < len(argv):
        if argv[i] == "--label":
            label = argv[i + 1]
            i += 2
            continue
        if argv[i] == "--names":
            for name, where in read_names(argv[i + 1], label).items():
                uses[name] |= where
            i += 2
            continue
        paths.append((label, argv[i]))
        i += 1
    for name, where in survey(paths).items():
        uses[name] |= where
    print("# PyTorch names used by PyTorch's own examples and tutorials: kind, name, where.")
    print("# Made by docs/coverage/survey.py (see README.md here); checked against graphjit by")
    print("# docs/coverage/coverage.py. Kind 'other' (distributed, multiprocessing, onnx, amp,")
    print("# accelerators, ...) is listed but outside the coverage figure.")
    for name in sorted(uses, key=lambda n: (KINDS.index(kind_of(n)), n.lower())):
        print(f"{kind_of(name):<12} {name:<45} {' '.join(sorted(uses[name]))}")


if __name__ == "__main__":
    main(sys.argv[1:])
