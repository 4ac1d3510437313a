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
from hwsim.ir import Node, TensorQuant
from hwsim.ir.specs import RequantMode
from hwsim.kernels.multipoint import multipoint_multipliers
from hwsim.lower.context import LoweringContext, conv_attrs
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def summed_rows_parts(ctx: LoweringContext, rec, what: str, parts: str,
                      row_scale: np.ndarray, row_channel: np.ndarray,
                      channels: int) -> tuple[TensorQuant, dict, dict]:
    """What every layer whose weight rows are summed per output channel in the requantization
    stage shares (multipoint rows, group-wise blocks): the output's quantization, the attrs of
    the accumulator, input and requantization, and the arrays ``rq_multiplier`` (R,) per row
    (``M_p = s_x row_scale_p / s_y``), ``rq_shift`` (K,) and ``requant_bias`` (K,) of the float
    bias (``multipoint_multipliers``).  Dyadic only: ``what`` ("multipoint weights") and
    ``parts`` ("rows") name the layer in the error."""
    where = f"layer {rec.name!r} ({rec.module_path})"
    if ctx.requant is not RequantMode.DYADIC:
        raise ProgramError(f"{where}: {what} requantize dyadically (each channel sums its "
                           f"{parts} in integers); requant {ctx.requant.value!r} is not "
                           "supported, use requant='dyadic'")
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    bias = None if rec.bias is None else (
        np.asarray(rec.bias, dtype=np.float32).astype(np.float64) / out.scale)
    try:
        rq = multipoint_multipliers(x_q.scale * row_scale / out.scale, row_channel, channels,
                                    bias)
    except KernelError as exc:  # a multiplier or bias beyond the integer constants' range
        raise ProgramError(f"{where}: {exc}") from None
    arrays = {"rq_multiplier": rq.m, "rq_shift": rq.shift}
    if bias is not None:
        arrays["requant_bias"] = rq.bias
    attrs = {"accumulator": ctx.accumulator.to_attrs(), "input_zero_point": x_q.zero_point,
             "requant": ctx.requant_attrs(rec, out), "input_scale": x_q.scale,
             "output_scale": out.scale, "input_bits": x_q.bits}
    return out, attrs, arrays


def layer_node(ctx: LoweringContext, rec, ops: tuple[str, str], out: TensorQuant, attrs: dict,
               arrays: dict) -> Node:
    """A node of ``ops[0]`` for a conv2d record (with its geometry), ``ops[1]`` for a linear."""
    if rec.op == "conv2d":
        return ctx.node(rec, ops[0], out, {**attrs, **conv_attrs(rec)}, arrays)
    return ctx.node(rec, ops[1], out, attrs, arrays)


def lower_multipoint(ctx: LoweringContext, rec) -> Node:
    params = ctx.qm.weight_params(rec.name)
    rows = params.as_rows()
    out, attrs, arrays = summed_rows_parts(ctx, rec, "multipoint weights", "rows", rows.scales,
                                           rows.channel, params.shape[0])
    arrays.update({"weight_rows": np.ascontiguousarray(rows.codes, dtype=np.int8),
                   "row_channel": rows.channel.astype(np.int64),
                   "row_scale": rows.scales.astype(np.float64)})
    fmt = params.fmt
    attrs.update({"weight_bits": int(fmt.bits), "max_points": int(fmt.max_points),
                  "weight_format": fmt.describe()})
    return layer_node(ctx, rec, ("multipoint_conv2d", "multipoint_linear"), out, attrs, arrays)


register_weight_lowering(WeightLowering("multipoint", lower_multipoint))
