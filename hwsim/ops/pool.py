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
                  padding=tuple(a["padding"]), count_include_pad=True)
    return requantize(node, sums.values, axis=1, reference=reference), None


register_op(OpDef(
    "maxpool2d", 1, ("kernel", "stride", "padding", "dilation", "ceil_mode"), (),
    "Max over windows of codes (exact; output quantization = input quantization).",
    lambda node, args: _maxpool2d(node, args, False),
    lambda node, args: _maxpool2d(node, args, True), not_costed=_NOT_COSTED))
register_op(OpDef(
    "avgpool2d", 1, ("kernel", "stride", "padding", "global", "input_zero_point", "requant"), (),
    "Window sum of (x - zp_x) requantized with M = s_x / (count s_y).",
    lambda node, args: _avgpool2d(node, args, False),
    lambda node, args: _avgpool2d(node, args, True), requantizes=True, not_costed=_NOT_COSTED))
