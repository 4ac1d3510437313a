"""Table ops on codes: activations through a lookup table and a concat that requantizes each
input through a table (QLinearConcat). Each node carries its tables, which is what hardware
would load; the reference recomputes every output from the attrs instead of reading them.

An ``activation_lut`` node's ``arithmetic`` says how its table is defined:

- "onnxruntime" (the default, ONNX imports): ONNX Runtime's QLinearSigmoid / QLinearLeakyRelu,
  a 256-entry table over 8-bit codes built in float32 (``hwsim.kernels.lut``); input and output
  codes share one type.
- "exact" (quant's ``pointwise`` records: sigmoid, hardsigmoid, hardswish, silu, tanh): the
  exactly rounded function, one entry per input code in ``input_range`` (at most 16-bit codes;
  the output's range may differ), ``hwsim.kernels.lut_exact``."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node

LUT_FNS = ("sigmoid", "leaky_relu")  # arithmetic "onnxruntime"
ARITHMETICS = ("onnxruntime", "exact")
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

def _exact(node: Node) -> bool:
    return node.attrs.get("arithmetic", "onnxruntime") == "exact"


def _activation(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a = node.attrs
    if _exact(node):
        if reference:
            lo, hi = _range(node)
            return k.exact_activation_lut_reference(
                args[0], a["fn"], x_scale=float(a["input_scale"]),
                x_zero_point=int(a["input_zero_point"]), y_scale=float(node.out.scale),
                y_zero_point=node.out.zero_point, qmin=lo, qmax=hi), None
        return k.lookup(args[0], node.arrays["table"], *a["input_range"]), None
    if reference:
        return k.activation_lut_reference(
            args[0], a["fn"], alpha=float(a.get("alpha", 0.0)),
            **_params(node, a["input_scale"], a["input_zero_point"])), None
    return k.lookup(args[0], node.arrays["table"], *_range(node)), None


def _exact_table_errors(node: Node) -> list[str]:
    from hwsim.kernels.lut_exact import EXACT_FNS, MAX_TABLE_SIZE

    a, errs = node.attrs, []
    if a["fn"] not in EXACT_FNS:
        errs.append(f"fn must be one of {EXACT_FNS} with arithmetic 'exact'; got {a['fn']!r}")
    if "alpha" in a:
        errs.append("alpha applies to fn 'leaky_relu' (arithmetic 'onnxruntime') only")
    rng = a.get("input_range")
    if (not isinstance(rng, (list, tuple)) or len(rng) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng)
            or not 1 < rng[1] - rng[0] + 1 <= MAX_TABLE_SIZE):
        return errs + [f"input_range must be [qmin, qmax] of the input codes, spanning 2 .. "
                       f"{MAX_TABLE_SIZE} codes; got {rng!r}"]
    table, (lo, hi) = node.arrays["table"], _range(node)
    size = rng[1] - rng[0] + 1
    if table.shape != (size,) or table.dtype.kind not in "iu":
        errs.append(f"the table must hold integer codes of shape ({size},); got {table.dtype} "
                    f"{table.shape}")
    elif table.size and (table.min() < lo or table.max() > hi):
        errs.append(f"table codes must lie in [{lo}, {hi}]")
    return errs


def _activation_check(node: Node) -> list[str]:
    a = node.attrs
    arithmetic = a.get("arithmetic", "onnxruntime")
    if arithmetic not in ARITHMETICS:
        return [f"arithmetic must be one of {ARITHMETICS}; got {arithmetic!r}"]
    if arithmetic == "exact":
        return _exact_table_errors(node)
    errs = []
    if "input_range" in a:
        errs.append("input_range is for arithmetic 'exact' (the input codes are the output's "
                    "8-bit type here)")
    if a["fn"] not in LUT_FNS:
        errs.append(f"fn must be one of {LUT_FNS}; got {a['fn']!r}")
    if (a["fn"] == "leaky_relu") != ("alpha" in a):
        errs.append("alpha is required for fn 'leaky_relu' and only for it")
    return errs + _table_errors(node.arrays["table"], None, node)


register_op(OpDef(
    "activation_lut", 1, ("fn", "input_scale", "input_zero_point"), ("table",),
    "y = table[x - qmin_x]. arithmetic 'onnxruntime' (default): ONNX Runtime's QLinearSigmoid / "
    "QLinearLeakyRelu on 8-bit codes, the table holding Q_y(fn(f32(s_x · (c - zp_x)))) in "
    "float32 (hwsim.kernels.lut). arithmetic 'exact' (fn sigmoid, hardsigmoid, hardswish, silu, "
    "tanh; input codes in input_range): clamp(round_half_even(fn((c - zp_x) s_x) / s_y) + zp_y) "
    "computed exactly (hwsim.kernels.lut_exact).",
    lambda node, args: _activation(node, args, False),
    lambda node, args: _activation(node, args, True),
    optional_attrs=("alpha", "arithmetic", "input_range"), check=_activation_check,
    not_costed=VECTOR_UNIT))


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
