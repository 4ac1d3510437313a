"""Pooling: max over windows of codes (exact), average as an exact window sum requantized."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ops._common import requantize

_NOT_COSTED = "pooling runs beside the compute units; the cost model prices GEMMs"


def _maxpool2d(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a = node.attrs
    x = args[0]
    fn = k.max_pool2d_reference if reference else k.max_pool2d
    out = fn(x, kernel=tuple(a["kernel"]), stride=tuple(a["stride"]),
             padding=tuple(a["padding"]), dilation=tuple(a["dilation"]),
             ceil_mode=bool(a["ceil_mode"]), pad_value=int(np.iinfo(x.dtype).min))
    return out, None


def _avgpool2d(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a = node.attrs
    zp = int(a["input_zero_point"])
    x = args[0]
    if a["global"] and not reference:
        sums = k.global_sum_pool(x, zp)
    elif a["global"]:
        sums = k.sum_pool2d_reference(x, zp, kernel=tuple(x.shape[2:]))
    else:
        fn = k.sum_pool2d_reference if reference else k.sum_pool2d
        sums = fn(x, zp, kernel=tuple(a["kernel"]), stride=tuple(a["stride"]),
                  padding=tuple(a["padding"]),
                  count_include_pad=bool(a.get("count_include_pad", True)),
                  ceil_mode=bool(a.get("ceil_mode", False)))
    values = sums.values
    if _per_position(node):  # one multiplier per output position: s_x / (count[p] s_y)
        n, c, oh, ow = values.shape
        flat = requantize(node, values.reshape(n, c, oh * ow), axis=2, reference=reference)
        return flat.reshape(n, c, oh, ow), None
    return requantize(node, values, axis=1, reference=reference), None


def _per_position(node: Node) -> bool:
    key = "rq_multiplier" if "rq_multiplier" in node.arrays else "rq_scale_f32"
    return node.arrays[key].size > 1


def _check_avgpool(node: Node) -> list[str]:
    """Requantization constants: one, or one per output position (OH·OW, row major)."""
    positions = int(node.out_shape[2]) * int(node.out_shape[3]) if len(node.out_shape) == 4 \
        else 1
    errs = [f"{key} must hold 1 or {positions} (one per output position) constants, got "
            f"{node.arrays[key].size}" for key in ("rq_multiplier", "rq_shift", "rq_scale_f32")
            if key in node.arrays and node.arrays[key].size not in (1, positions)]
    for key in ("count_include_pad", "ceil_mode"):
        if key in node.attrs and not isinstance(node.attrs[key], bool):
            errs.append(f"{key} must be a bool, got {node.attrs[key]!r}")
    return errs


register_op(OpDef(
    "maxpool2d", 1, ("kernel", "stride", "padding", "dilation", "ceil_mode"), (),
    "Max over windows of codes (exact; output quantization = input quantization).",
    lambda node, args: _maxpool2d(node, args, False),
    lambda node, args: _maxpool2d(node, args, True), not_costed=_NOT_COSTED))
register_op(OpDef(
    "avgpool2d", 1, ("kernel", "stride", "padding", "global", "input_zero_point", "requant"), (),
    "Window sum of (x - zp_x) requantized with M = s_x / (count s_y): one multiplier, or one "
    "per output position where the divisor varies (count_include_pad False with padding, "
    "ceil_mode windows clipped at the edge; torch avg_pool2d's divisors).",
    lambda node, args: _avgpool2d(node, args, False),
    lambda node, args: _avgpool2d(node, args, True), optional_attrs=("count_include_pad",
                                                                      "ceil_mode"),
    requantizes=True, check=_check_avgpool, not_costed=_NOT_COSTED))
