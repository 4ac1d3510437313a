"""Element-wise products and broadcast sums of quantized tensors, in ONNX Runtime's float32
order (QLinearMul, QLinearAdd; hwsim.kernels.eltwise); the product also integer-only (dyadic
requantization, as quant's ``mul`` records lower). Operands broadcast as numpy (and ONNX)
do; one of them may be a constant (array ``constant``, at operand position
``constant_operand`` 0 or 1) instead of a program input."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import RequantMode, RequantSpec

_NOT_COSTED = "an element-wise op of the vector/requantization stage, not a compute unit's GEMM"


def _operands(node: Node, args: list) -> list:
    args = list(args)
    if "constant" in node.arrays:
        args.insert(int(node.attrs["constant_operand"]), node.arrays["constant"])
    return args


def _mul(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a, b = _operands(node, args)
    za, zb = node.attrs["input_zero_points"]
    rq = RequantSpec.from_attrs(node.attrs)
    lo, hi = rq.clamp
    if rq.mode is RequantMode.DYADIC:
        fn = k.mul_requantize_dyadic_reference if reference else k.mul_requantize_dyadic
        return fn(a, za, b, zb, int(node.arrays["rq_multiplier"][0]),
                  int(node.arrays["rq_shift"][0]), node.out.zero_point, lo, hi), None
    fn = k.qlinear_mul_reference if reference else k.qlinear_mul
    return fn(a, za, b, zb, node.arrays["rq_scale_f32"][0], node.out.zero_point, lo, hi), None


def _add(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a, b = _operands(node, args)
    za, zb = node.attrs["input_zero_points"]
    ra, rb = node.arrays["rq_scale_f32"]
    lo, hi = RequantSpec.from_attrs(node.attrs).clamp
    fn = k.qlinear_add_reference if reference else k.qlinear_add
    return fn(a, za, ra, b, zb, rb, node.out.zero_point, lo, hi), None


def _check(ratios: int, dyadic: bool):
    def check(node: Node) -> list[str]:
        a, errs = node.attrs, []
        n_const = int("constant" in node.arrays)
        if len(node.inputs) + n_const != 2:
            errs.append(f"needs two operands (program inputs plus a constant); got "
                        f"{len(node.inputs)} input(s) and {n_const} constant")
        if n_const and a.get("constant_operand") not in (0, 1):
            errs.append(f"constant_operand must be 0 or 1; got {a.get('constant_operand')!r}")
        if not n_const and "constant_operand" in a:
            errs.append("constant_operand is given without a constant array")
        if n_const and node.arrays["constant"].dtype.kind not in "iu":
            errs.append("the constant must hold integer codes; got "
                        f"{node.arrays['constant'].dtype}")
        zps = a["input_zero_points"]
        if not isinstance(zps, (list, tuple)) or len(zps) != 2:
            errs.append(f"input_zero_points must be [zp_a, zp_b]; got {zps!r}")
        mode = RequantSpec.from_attrs(a).mode
        if mode is RequantMode.DYADIC and dyadic:
            for key in ("rq_multiplier", "rq_shift"):
                if key not in node.arrays or np.asarray(node.arrays[key]).shape != (1,):
                    errs.append(f"{key} must hold one integer (M = s_a s_b / s_y)")
        elif mode is not RequantMode.FLOAT32:
            errs.append("requant mode must be 'float32' (ONNX Runtime's order)"
                        + (" or 'dyadic'" if dyadic else ""))
        elif np.asarray(node.arrays.get("rq_scale_f32", np.zeros(0))).shape != (ratios,):
            errs.append(f"rq_scale_f32 must hold {ratios} float32 ratio(s)")
        return errs
    return check


for _name, _fn, _ratios, _dyadic, _doc in (
    ("mul", _mul, 1, True,
     "Element-wise product with broadcasting. requant float32: ONNX Runtime's QLinearMul, "
     "v = f32(f32(f32((a - zp_a)(b - zp_b)) · r) + zp_y), r = rq_scale_f32[0] = "
     "f32(f32(s_a s_b) / s_y); round half even, saturate. requant dyadic: y = clamp(floor(((a - "
     "zp_a)(b - zp_b) m + 2^(shift-1)) / 2^shift) + zp_y), m 2^-shift ~ s_a s_b / s_y (round "
     "half up; the product exact in int64)."),
    ("add_broadcast", _add, 2, False,
     "ONNX Runtime's QLinearAdd with broadcasting: fused multiply-adds of the raw codes with "
     "r_a, r_b = rq_scale_f32 and the zero points folded into one constant, operands exchanged "
     "when a is the one broadcast along the innermost dimension (hwsim.kernels.eltwise)."),
):
    register_op(OpDef(_name, None, ("requant", "input_zero_points"), (), _doc,
                      lambda node, args, fn=_fn: fn(node, args, False),
                      lambda node, args, fn=_fn: fn(node, args, True),
                      optional_attrs=("constant_operand", "input_scales"),
                      optional_arrays=("constant",), requantizes=True,
                      check=_check(_ratios, _dyadic),
                      not_costed=_NOT_COSTED))
