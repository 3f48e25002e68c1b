"""Short labels of a program's kernel nodes, for the dump's kernel list and the profile's
table (graphjit/dump.py, graphjit/profile.py): ``matmul``, ``fused[add, relu]``,
``gemm[a.T @ b; add, relu]``.
"""
from __future__ import annotations

from .fused import body_graph
from .gemm import product_type, windows_type


def kernel_label(node) -> str:
    """``matmul``, ``fused[add, relu]`` for a fused node, ``gemm[a.T @ b; add, relu]`` for a
    product with its transposes and epilogue, ``gemm[a @ windows(x).T]`` for a product over
    a convolution's windows ([Window GEMM nodes] in gemm.py)."""
    if node.op.name in ("gemm", "window_gemm"):
        windows = node.op.name == "window_gemm"
        a = "a.T" if node.attrs["trans_a"] else "a"
        b = ("windows(x)" if windows else "b") + (".T" if node.attrs["trans_b"] else "")
        steps = ""
        if node.attrs["epilogue"]:
            b_type = node.inputs[1].type
            if windows:
                b_type = windows_type(b_type, *(node.attrs[k] for k in (
                    "kernel", "dilation", "stride", "padding", "pad_value")))
            p = product_type(node.inputs[0].type, b_type, node.attrs["trans_a"],
                             node.attrs["trans_b"])
            body = body_graph(node.attrs["epilogue"], [p] + [v.type for v in node.inputs[2:]])
            steps = "; " + ", ".join(s.op.name for s in body.nodes if s.op.name != "full")
        return f"gemm[{a} @ {b}{steps}]"
    if node.op.name != "fused":
        return node.op.name
    body = body_graph(node.attrs["body"], [v.type for v in node.inputs])
    return "fused[" + ", ".join(s.op.name for s in body.nodes) + "]"
