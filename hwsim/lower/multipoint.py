"""Multipoint weights ("multipoint" family) -> multipoint_conv2d / multipoint_linear nodes
(hwsim.ops.multipoint).

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  The layer's points become the rows of one b-bit weight
(``MultipointParams.as_rows``: rows 0..K-1 the first points, then the extra points); row p with
scale ``a_p`` gets the real multiplier ``M_p = s_x a_p / s_y`` and the channel's float bias
``b_k / s_y`` joins them in the requantization stage (the family keeps a float bias: its
points have no common code step), all stored on one shift per channel
(``hwsim.kernels.multipoint.multipoint_multipliers``).  Requantization is dyadic only.
"""
from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError, ProgramError
from hwsim.ir import Node
from hwsim.ir.specs import RequantMode
from hwsim.kernels.multipoint import multipoint_multipliers
from hwsim.lower.context import LoweringContext, conv_attrs
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def lower_multipoint(ctx: LoweringContext, rec) -> Node:
    where = f"layer {rec.name!r} ({rec.module_path})"
    if ctx.requant is not RequantMode.DYADIC:
        raise ProgramError(f"{where}: multipoint weights requantize dyadically (each channel "
                           f"sums its rows in integers); requant {ctx.requant.value!r} is not "
                           "supported, use requant='dyadic'")
    params = ctx.qm.weight_params(rec.name)
    rows = params.as_rows()
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    k = params.shape[0]
    bias = None if rec.bias is None else (
        np.asarray(rec.bias, dtype=np.float32).astype(np.float64) / out.scale)
    try:
        rq = multipoint_multipliers(x_q.scale * rows.scales / out.scale, rows.channel, k, bias)
    except KernelError as exc:  # a multiplier or bias beyond the integer constants' range
        raise ProgramError(f"{where}: {exc}") from None
    arrays = {"weight_rows": np.ascontiguousarray(rows.codes, dtype=np.int8),
              "row_channel": rows.channel.astype(np.int64), "rq_multiplier": rq.m,
              "rq_shift": rq.shift, "row_scale": rows.scales.astype(np.float64)}
    if bias is not None:
        arrays["requant_bias"] = rq.bias
    fmt = params.fmt
    attrs = {"accumulator": ctx.accumulator.to_attrs(), "input_zero_point": x_q.zero_point,
             "requant": ctx.requant_attrs(rec, out), "input_scale": x_q.scale,
             "output_scale": out.scale, "input_bits": x_q.bits, "weight_bits": int(fmt.bits),
             "max_points": int(fmt.max_points), "weight_format": fmt.describe()}
    if rec.op == "conv2d":
        attrs.update(conv_attrs(rec))
        return ctx.node(rec, "multipoint_conv2d", out, attrs, arrays)
    return ctx.node(rec, "multipoint_linear", out, attrs, arrays)


register_weight_lowering(WeightLowering("multipoint", lower_multipoint))
