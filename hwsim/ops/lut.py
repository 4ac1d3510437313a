"""Table ops on 8-bit codes: activations through a 256-entry lookup table (ONNX Runtime's
QLinearSigmoid / QLinearLeakyRelu) and a concat that requantizes each input through a table
(QLinearConcat). Each node carries its tables, which is what hardware would load; the reference
recomputes every output from the attrs in scalar float32 instead of reading them."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node

LUT_FNS = ("sigmoid", "leaky_relu")
VECTOR_UNIT = ("a table lookup of the vector unit, which the accelerator models do not describe "
               "yet (as vector_op)")
_ELEMENTWISE = "an element-wise op of the vector/requantization stage, not a compute unit's GEMM"


def _range(node: Node) -> tuple[int, int]:
    return node.out.qmin, node.out.qmax


def _table_errors(table, rows: int | None, node: Node) -> list[str]:
    lo, hi = _range(node)
    shape = (256,) if rows is None else (rows, 256)
    errs = []
    if hi - lo != 255:
        errs.append(f"codes must be 8-bit (qmax - qmin = 255); got [{lo}, {hi}]")
    if table.shape != shape or table.dtype.kind not in "iu":
        errs.append(f"the table must hold integer codes of shape {shape}; got {table.dtype} "
                    f"{table.shape}")
    elif table.size and (table.min() < lo or table.max() > hi):
        errs.append(f"table codes must lie in [{lo}, {hi}]")
    return errs


def _params(node: Node, scale, zero_point) -> dict:
    lo, hi = _range(node)
    return dict(x_scale=np.float32(scale), x_zero_point=int(zero_point),
                y_scale=np.float32(node.out.scale), y_zero_point=node.out.zero_point,
                qmin=lo, qmax=hi)


# --- activation_lut ---------------------------------------------------------------------------

def _activation(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a = node.attrs
    if reference:
        return k.activation_lut_reference(
            args[0], a["fn"], alpha=float(a.get("alpha", 0.0)),
            **_params(node, a["input_scale"], a["input_zero_point"])), None
    return k.lookup(args[0], node.arrays["table"], *_range(node)), None


def _activation_check(node: Node) -> list[str]:
    a = node.attrs
    errs = []
    if a["fn"] not in LUT_FNS:
        errs.append(f"fn must be one of {LUT_FNS}; got {a['fn']!r}")
    if (a["fn"] == "leaky_relu") != ("alpha" in a):
        errs.append("alpha is required for fn 'leaky_relu' and only for it")
    return errs + _table_errors(node.arrays["table"], None, node)


register_op(OpDef(
    "activation_lut", 1, ("fn", "input_scale", "input_zero_point"), ("table",),
    "y = table[x - qmin]: ONNX Runtime's QLinearSigmoid / QLinearLeakyRelu. The table holds "
    "Q_y(fn(f32(s_x · (c - zp_x)))) for the 256 codes c, in float32 (hwsim.kernels.lut).",
    lambda node, args: _activation(node, args, False),
    lambda node, args: _activation(node, args, True),
    optional_attrs=("alpha",), check=_activation_check, not_costed=VECTOR_UNIT))


# --- concat_lut -------------------------------------------------------------------------------

def _same_quant(node: Node, i: int) -> bool:
    a = node.attrs
    return (np.float32(a["input_scales"][i]) == np.float32(node.out.scale)
            and int(a["input_zero_points"][i]) == node.out.zero_point)


def _concat(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a = node.attrs
    parts = []
    for i, x in enumerate(args):
        if _same_quant(node, i):  # ONNX Runtime copies the codes
            parts.append(np.asarray(x).astype(np.int64))
        elif reference:
            parts.append(k.activation_lut_reference(
                x, "identity", **_params(node, a["input_scales"][i], a["input_zero_points"][i])))
        else:
            parts.append(k.lookup(x, node.arrays["tables"][i], *_range(node)))
    return np.concatenate(parts, axis=int(a["axis"])), None


def _concat_check(node: Node) -> list[str]:
    a, n = node.attrs, len(node.inputs)
    errs = [f"{key} must list one entry per input ({n}); got {a[key]!r}"
            for key in ("input_scales", "input_zero_points")
            if not isinstance(a[key], (list, tuple)) or len(a[key]) != n]
    return errs + _table_errors(node.arrays["tables"], n, node)


register_op(OpDef(
    "concat_lut", None, ("axis", "input_scales", "input_zero_points"), ("tables",),
    "ONNX Runtime's QLinearConcat: input i is copied when its scale and zero point equal the "
    "output's, else mapped through tables[i] = Q_y(f32(s_i · (c - zp_i))); then concatenated "
    "along axis.",
    lambda node, args: _concat(node, args, False),
    lambda node, args: _concat(node, args, True),
    check=_concat_check, not_costed=_ELEMENTWISE))
