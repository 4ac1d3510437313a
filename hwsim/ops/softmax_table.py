"""Softmax of 8-bit codes as ONNX Runtime's QLinearSoftmax computes it: a float32 exp table, a
float32 row sum and a float64 ratio (hwsim.kernels.softmax_table). The node carries the table
(array ``exp_table``) for rows of its static length; the reference rebuilds it from the attrs."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ops.lut import VECTOR_UNIT


def _softmax(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a, out = node.attrs, node.out
    if reference:
        return k.qlinear_softmax_reference(
            args[0], axis=int(a["axis"]), opset=int(a["opset"]), x_scale=a["input_scale"],
            y_scale=np.float32(out.scale), y_zero_point=out.zero_point, qmin=out.qmin,
            qmax=out.qmax), None
    return k.qlinear_softmax(
        args[0], axis=int(a["axis"]), opset=int(a["opset"]), table=node.arrays["exp_table"],
        y_inv_floor=k.inverse_scale_floor(np.float32(out.scale)),
        y_zero_point=out.zero_point, signed=out.qmin < 0), None


def _check(node: Node) -> list[str]:
    a, errs = node.attrs, []
    rank = len(node.out_shape)
    axis = a["axis"]
    if isinstance(axis, bool) or not isinstance(axis, int) or not -rank <= axis < rank:
        return [f"axis must be an int in [{-rank}, {rank}); got {axis!r}"]
    if axis % rank == 0:
        errs.append("the softmax axis must not be the batch axis 0 (its rows would change "
                    "length with the batch)")
    if (node.out.qmin, node.out.qmax) not in ((0, 255), (-128, 127)):
        errs.append(f"codes must be uint8 or int8; got [{node.out.qmin}, {node.out.qmax}]")
    table = node.arrays["exp_table"]
    if table.shape != (256,) or table.dtype != np.float32:
        errs.append(f"exp_table must be float32 (256,); got {table.dtype} {table.shape}")
    if not isinstance(a["opset"], int) or a["opset"] < 1:
        errs.append(f"opset must be a positive int; got {a['opset']!r}")
    return errs


register_op(OpDef(
    "softmax_table", 1, ("axis", "opset", "input_scale"), ("exp_table",),
    "ONNX Runtime's QLinearSoftmax along axis (opset < 13: all dims from axis, flattened): "
    "e = exp_table[c - max + 255], sum in float32 left to right, "
    "y = round(e · floor(1/s_y) / sum) + zp_y in float64, saturated.",
    lambda node, args: _softmax(node, args, False),
    lambda node, args: _softmax(node, args, True),
    check=_check, not_costed=VECTOR_UNIT))
