"""Uniform integer weights ("int" family) -> conv2d / linear nodes (hwsim.ops.dense)."""
from __future__ import annotations

import numpy as np

from hwsim.ir import Node
from hwsim.lower.context import LoweringContext
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def lower_uniform(ctx: LoweringContext, rec) -> Node:
    wp = ctx.qm.weight_params(rec.name)
    w_codes = ctx.qm.weight_codes(rec.name)
    k_out = w_codes.shape[0]
    zp_w = np.broadcast_to(np.asarray(wp.zero_point, dtype=np.int64), (k_out,)).copy()
    s_w = np.broadcast_to(np.asarray(wp.scale, dtype=np.float64), (k_out,))
    return ctx.integer_weight_layer(rec, rec.op, {"weight": w_codes, "weight_zero_point": zp_w},
                                    s_w, weight_bits=int(wp.fmt.bits))


register_weight_lowering(WeightLowering("int", lower_uniform, engine_modes=True))
