"""Difference of two quantized tensors of one shape, and constant operands (quant's ``sub``
and ``constant`` records: a detection head's box decoding, ``anchors - d`` and ``C * x``)."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import RequantMode, RequantSpec

_NOT_COSTED = "an element-wise op of the vector/requantization stage, not a compute unit's GEMM"
_CONSTANT = "constant codes held in memory; no arithmetic to price"


def _sub(node: Node, args: list, reference: bool) -> tuple:
    from hwsim.kernels.sub import sub_requantize_dyadic, sub_requantize_dyadic_reference

    lo, hi = RequantSpec.from_attrs(node.attrs).clamp
    zp_a, zp_b = node.attrs["input_zero_points"]
    m = node.arrays["rq_multiplier"]
    shift = int(node.arrays["rq_shift"].reshape(-1)[0])
    fn = sub_requantize_dyadic_reference if reference else sub_requantize_dyadic
    return fn(np.asarray(args[0]), zp_a, int(m[0]), np.asarray(args[1]), zp_b, int(m[1]), shift,
              node.out.zero_point, lo, hi), None


def _sub_check(node: Node) -> list[str]:
    errs = []
    if RequantSpec.from_attrs(node.attrs).mode is not RequantMode.DYADIC:
        errs.append("requant mode must be 'dyadic' (integer-only); a float32 order is not defined")
    if np.asarray(node.arrays.get("rq_multiplier", np.zeros(0))).shape != (2,):
        errs.append("rq_multiplier must hold two integers [m_a, m_b]")
    if np.asarray(node.arrays.get("rq_shift", np.zeros(0))).shape != (1,):
        errs.append("rq_shift must hold one integer")
    zps = node.attrs.get("input_zero_points")
    if not isinstance(zps, (list, tuple)) or len(zps) != 2:
        errs.append(f"input_zero_points must be [zp_a, zp_b]; got {zps!r}")
    return errs


def _constant(node: Node, args: list) -> tuple:
    codes = node.arrays["codes"]
    batch = int(np.shape(args[0])[0])
    return np.ascontiguousarray(np.broadcast_to(codes, (batch, *codes.shape[1:]))), None


def _constant_check(node: Node) -> list[str]:
    codes = np.asarray(node.arrays.get("codes", np.zeros(0)))
    errs = []
    if codes.dtype.kind not in "iu":
        errs.append(f"codes must be integers; got {codes.dtype}")
    if codes.ndim != len(node.out_shape) or codes.ndim < 1 or codes.shape[0] != 1 or tuple(
            codes.shape[1:]) != tuple(node.out_shape[1:]):
        errs.append(f"codes must have shape (1, {', '.join(map(str, node.out_shape[1:]))}); got "
                    f"{codes.shape}")
    elif codes.size and (int(codes.min()) < node.out.qmin or int(codes.max()) > node.out.qmax):
        errs.append(f"codes must lie in [{node.out.qmin}, {node.out.qmax}]")
    return errs


register_op(OpDef(
    "sub", 2, ("requant", "input_zero_points"), ("rq_multiplier", "rq_shift"),
    "y = clamp(floor(((a - zp_a) m_a - (b - zp_b) m_b + 2^(shift-1)) / 2^shift) + zp_y): the "
    "difference of two tensors of one shape, m_a, m_b = rq_multiplier on the common shift "
    "rq_shift (M_a = s_a / s_y, M_b = s_b / s_y), rounding half up; integer-only.",
    lambda node, args: _sub(node, args, False), lambda node, args: _sub(node, args, True),
    requantizes=True, check=_sub_check, not_costed=_NOT_COSTED))

register_op(OpDef(
    "constant", 1, (), ("codes",),
    "A constant tensor of codes (1, ...) (quantized on the node's output grid), repeated over "
    "the batch of its one input, which it reads for nothing else (the program input).",
    _constant, _constant, check=_constant_check, not_costed=_CONSTANT))
