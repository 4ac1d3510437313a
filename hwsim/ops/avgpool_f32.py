"""Average pooling in float32 as ONNX Runtime's QLinearAveragePool computes it: dequantize,
sum each clipped window in float32, divide, requantize (hwsim.kernels.avgpool_f32). Global
pooling is exact integer arithmetic instead (op ``avgpool2d``)."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ops._common import _ints

_NOT_COSTED = "pooling runs beside the compute units; the cost model prices GEMMs"


def _pool(node: Node, args: list, reference: bool) -> tuple:
    from hwsim import kernels as k

    a, out = node.attrs, node.out
    fn = k.average_pool2d_f32_reference if reference else k.average_pool2d_f32
    return fn(args[0], x_scale=np.float32(a["input_scale"]),
              x_zero_point=int(a["input_zero_point"]), y_scale=np.float32(out.scale),
              y_zero_point=out.zero_point, kernel=tuple(a["kernel"]), stride=tuple(a["stride"]),
              padding=tuple(a["padding"]), count_include_pad=bool(a["count_include_pad"]),
              qmin=out.qmin, qmax=out.qmax), None


def _check(node: Node) -> list[str]:
    a = node.attrs
    return [f"{name} must be {n} ints >= {lo}; got {a[name]!r}"
            for name, n, lo in (("kernel", 2, 1), ("stride", 2, 1), ("padding", 4, 0))
            if not _ints(a[name], n, lo)]


register_op(OpDef(
    "avgpool2d_f32", 1,
    ("kernel", "stride", "padding", "count_include_pad", "input_scale", "input_zero_point"), (),
    "ONNX Runtime's QLinearAveragePool: x = f32(s_x (c - zp_x)); window sums in float32 (rows "
    "outer, columns inner, clipped to the input); / count; y = round(avg / s_y + zp_y).",
    lambda node, args: _pool(node, args, False),
    lambda node, args: _pool(node, args, True),
    check=_check, not_costed=_NOT_COSTED))
