"""APoT weights ("apot" family) -> apot_conv2d / apot_linear nodes (hwsim.ops.apot).

The weight codes are the signed integer levels ±L; alpha / L_max (the family's code scale) is
the per-channel weight scale folded into requantization, M = s_x · alpha / (L_max · s_y). The
layer's accumulator settings are the shift-add datapath's adder.
"""
from __future__ import annotations

import numpy as np

from hwsim.ir import Node
from hwsim.lower.context import LoweringContext
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def lower_apot(ctx: LoweringContext, rec) -> Node:
    params = ctx.qm.weight_params(rec.name)
    levels = ctx.qm.weight_codes(rec.name)
    s_w = np.broadcast_to(np.asarray(ctx.qm.weight_entry(rec.name).code_scale(params),
                                     dtype=np.float64), (levels.shape[0],))
    fmt = params.fmt
    op = "apot_conv2d" if rec.op == "conv2d" else "apot_linear"
    return ctx.integer_weight_layer(rec, op, {"weight": levels}, s_w,
                                    weight_bits=int(fmt.storage_bits), terms=int(fmt.terms),
                                    weight_format=fmt.describe())


register_weight_lowering(WeightLowering("apot", lower_apot))
