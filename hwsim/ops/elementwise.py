"""Requantizing ops without weights: residual add, standalone clamp, concat."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import RequantMode, RequantSpec
from hwsim.ops._common import requantize

_NOT_COSTED = "an element-wise op of the vector/requantization stage, not a compute unit's GEMM"


def _add(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    rq = RequantSpec.from_attrs(node.attrs)
    lo, hi = rq.clamp
    zp_a, zp_b = node.attrs["input_zero_points"]
    zp = node.out.zero_point
    if rq.mode is RequantMode.DYADIC:
        m = node.arrays["rq_multiplier"]
        shift = int(node.arrays["rq_shift"].reshape(-1)[0])
        fn = k.add_requantize_dyadic_reference if reference else k.add_requantize_dyadic
        out = fn(args[0], zp_a, int(m[0]), args[1], zp_b, int(m[1]), shift, zp, lo, hi)
    else:
        s = node.arrays["rq_scale_f32"]
        fn = k.add_requantize_float32_reference if reference else k.add_requantize_float32
        out = fn(args[0], zp_a, s[0], args[1], zp_b, s[1], zp, lo, hi)
    return out, None


def _concat(node: Node, args: list, reference: bool) -> tuple:
    zps = node.attrs["input_zero_points"]
    parts = [requantize(node, x.astype(np.int64) - int(zp), axis=1, index=i, reference=reference)
             for i, (x, zp) in enumerate(zip(args, zps))]
    return np.concatenate(parts, axis=int(node.attrs["axis"])), None


def _clamp(node: Node, args: list, reference: bool) -> tuple:
    acc = args[0].astype(np.int64) - int(node.attrs["input_zero_point"])
    return requantize(node, acc, axis=1, reference=reference), None


for _name, _arity, _attrs, _fn, _doc in (
    ("add", 2, ("requant", "input_zero_points"), _add,
     "y = clamp(round((a - zp_a) M_a + (b - zp_b) M_b) + zp_y): residual add with rescaling."),
    ("concat", None, ("axis", "requant", "input_zero_points"), _concat,
     "Each input requantized to the output scale with M_i = s_i / s_y, then concatenated."),
    ("clamp", 1, ("requant", "input_zero_point"), _clamp,
     "Requantize (x - zp_x) with M = s_x / s_y, clamped to the activation range."),
):
    register_op(OpDef(_name, _arity, _attrs, (), _doc,
                      lambda node, args, fn=_fn: fn(node, args, False),
                      lambda node, args, fn=_fn: fn(node, args, True),
                      requantizes=True, not_costed=_NOT_COSTED))
