"""Least-squares binary weights ("binary" family) -> binary_conv2d / binary_linear nodes
(hwsim.ops.binary)."""
from __future__ import annotations

from typing import Any

import numpy as np

from hwsim.ir import Node
from hwsim.lower.context import LoweringContext, conv_attrs
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def lower_binary(ctx: LoweringContext, rec) -> Node:
    qm = ctx.qm
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    wp = qm.weight_params(rec.name)
    planes = np.ascontiguousarray(qm.weight_codes(rec.name), dtype=np.int8)  # (k_w, K, ...)
    k_w, k_out = planes.shape[:2]
    arrays: dict[str, np.ndarray] = {
        "weight_planes": planes,
        "weight_scales": np.ascontiguousarray(np.broadcast_to(wp.v, (k_out, k_w)), dtype=np.float64)}
    binarizer = qm.binary_input(rec.name)
    if binarizer is not None and binarizer.scaling == "running":
        arrays["input_scales"] = np.asarray(qm.binary_input_scales(rec.name), dtype=np.float64)
    if rec.bias is not None:  # float32 values, exact in float64
        arrays["bias_f64"] = np.asarray(rec.bias, dtype=np.float32).astype(np.float64)
    attrs: dict[str, Any] = {
        "input_zero_point": x_q.zero_point, "input_scale": x_q.scale,
        "input_binarizer": None if binarizer is None else binarizer.to_attrs(),
        "output_clamp": ctx.clamp(rec, out), "output_scale": out.scale,
        "weight_format": wp.fmt.describe(), "weight_bits": int(k_w),
        "input_bits": x_q.bits if binarizer is None else binarizer.k,
    }
    if rec.op == "conv2d":
        attrs.update(conv_attrs(rec))
        return ctx.node(rec, "binary_conv2d", out, attrs, arrays)
    return ctx.node(rec, "binary_linear", out, attrs, arrays)


register_weight_lowering(WeightLowering("binary", lower_binary))
