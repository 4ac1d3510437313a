"""Nearest-neighbour resize of codes (ONNX Resize, mode "nearest"): a gather along H and W, the
quantization unchanged. The node carries the source row / column of every output position
(arrays ``rows``, ``cols``, computed as ONNX Runtime does: hwsim.kernels.resize); the reference
recomputes them from the attrs. ``resize_linear``: torch's bilinear interpolation of codes in
integer arithmetic, its taps and weights carried the same way."""
from __future__ import annotations

import numpy as np

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


# --- resize_linear ----------------------------------------------------------------------------

def _linear(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a, out = node.attrs, node.out
    if reference:
        return k.resize_linear_reference(
            args[0], out.zero_point, tuple(node.out_shape[2:]), tuple(a["scales"]),
            a["coordinate_transformation_mode"], int(a["frac_bits"]), out.qmin, out.qmax), None
    arr = node.arrays
    return k.resize_linear(args[0], out.zero_point, arr["rows"], arr["row_weights"], arr["cols"],
                           arr["col_weights"], int(a["frac_bits"]), out.qmin, out.qmax), None


def _linear_check(node: Node) -> list[str]:
    from hwsim.kernels.resize import LINEAR_MODES

    a, errs = node.attrs, []
    if len(node.out_shape) != 4:
        return [f"resize_linear works on (N, C, H, W); got output shape {node.out_shape}"]
    if a["coordinate_transformation_mode"] not in LINEAR_MODES:
        errs.append(f"coordinate_transformation_mode must be one of {LINEAR_MODES}; got "
                    f"{a['coordinate_transformation_mode']!r}")
    bits = a["frac_bits"]
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 20:
        errs.append(f"frac_bits must be an int in [1, 20]; got {bits!r}")
        return errs
    if not isinstance(a["scales"], (list, tuple)) or len(a["scales"]) != 2:
        errs.append(f"scales must be [s_h, s_w]; got {a['scales']!r}")
    for key, n in (("rows", node.out_shape[2]), ("cols", node.out_shape[3])):
        idx, w = node.arrays[key], node.arrays[key[:3] + "_weights"]
        if idx.shape != (n, 2) or w.shape != (n, 2) or idx.dtype.kind not in "iu" \
                or w.dtype.kind not in "iu":
            errs.append(f"{key} and {key[:3]}_weights must hold ({n}, 2) integers; got "
                        f"{idx.dtype} {idx.shape} and {w.dtype} {w.shape}")
        elif np.any(w < 0) or np.any(w.astype(np.int64).sum(axis=1) != 1 << bits):
            errs.append(f"{key[:3]}_weights must be >= 0 and sum to 2^frac_bits per position")
    return errs


register_op(OpDef(
    "resize_linear", 1, ("scales", "coordinate_transformation_mode", "frac_bits"),
    ("rows", "row_weights", "cols", "col_weights"),
    "Bilinear resize of codes (torch's mode 'bilinear'): y = clamp(round_half_even(sum_ab "
    "w_a w_b (x[r_a, c_b] - zp) / 2^(2 frac_bits)) + zp), two taps and integer weights per "
    "output row and column from the coordinate transformation (hwsim.kernels.resize); the codes "
    "keep their scale and zero point.",
    lambda node, args: _linear(node, args, False),
    lambda node, args: _linear(node, args, True), check=_linear_check,
    not_costed="an interpolation on the vector unit (4 multiply-adds per output), which the "
               "accelerator models do not describe yet"))
