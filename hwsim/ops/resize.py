"""Nearest-neighbour resize of codes (ONNX Resize, mode "nearest"): a gather along H and W, the
quantization unchanged. The node carries the source row / column of every output position
(arrays ``rows``, ``cols``, computed as ONNX Runtime does: hwsim.kernels.resize); the reference
recomputes them from the attrs."""
from __future__ import annotations

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node

_MOVES = "moves codes; no arithmetic to price"


def _resize(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    if reference:
        a = node.attrs
        return k.resize_nearest_reference(
            args[0], tuple(node.out_shape[2:]), tuple(a["scales"]),
            a["coordinate_transformation_mode"], a["nearest_mode"]), None
    return k.gather_hw(args[0], node.arrays["rows"], node.arrays["cols"]), None


def _check(node: Node) -> list[str]:
    a, errs = node.attrs, []
    if len(node.out_shape) != 4:
        errs.append(f"resize_nearest works on (N, C, H, W); got output shape {node.out_shape}")
        return errs
    for key, n in (("rows", node.out_shape[2]), ("cols", node.out_shape[3])):
        arr = node.arrays[key]
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            errs.append(f"{key} must hold {n} integer indices; got {arr.dtype} {arr.shape}")
    if not isinstance(a["scales"], (list, tuple)) or len(a["scales"]) != 2:
        errs.append(f"scales must be [s_h, s_w]; got {a['scales']!r}")
    return errs


register_op(OpDef(
    "resize_nearest", 1, ("scales", "coordinate_transformation_mode", "nearest_mode"),
    ("rows", "cols"),
    "ONNX Resize (mode nearest) on codes: y[n, c, i, j] = x[n, c, rows[i], cols[j]], the source "
    "indices from the coordinate transformation and nearest mode (hwsim.kernels.resize).",
    lambda node, args: _resize(node, args, False),
    lambda node, args: _resize(node, args, True), check=_check, not_costed=_MOVES))
