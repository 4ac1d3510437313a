"""APoT weights ("apot" family) -> apot_conv2d / apot_linear nodes (hwsim.ops.apot).

The weight codes are the signed integer levels ±L; alpha / L_max (the family's code scale) is
the per-channel weight scale folded into requantization, M = s_x · alpha / (L_max · s_y). The
layer's accumulator settings are the shift-add datapath's adder.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hwsim.ir import Node
from hwsim.lower.context import LoweringContext, conv_attrs
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def lower_apot(ctx: LoweringContext, rec) -> Node:
    qm = ctx.qm
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    params = qm.weight_params(rec.name)
    levels = qm.weight_codes(rec.name)
    k_out = levels.shape[0]
    s_w = np.broadcast_to(np.asarray(qm.weight_entry(rec.name).code_scale(params),
                                     dtype=np.float64), (k_out,)).copy()
    arrays: dict[str, np.ndarray] = {"weight": levels, "weight_scale": s_w}
    bias = qm.bias_codes(rec.name)
    if bias is not None:
        arrays["bias"] = np.asarray(bias, dtype=np.int64)
    arrays.update(ctx.requant_arrays(x_q.scale * s_w / out.scale, (x_q.scale, s_w, out.scale)))
    fmt = params.fmt
    attrs: dict[str, Any] = {
        "accumulator": ctx.accumulator.to_attrs(), "input_zero_point": x_q.zero_point,
        "requant": ctx.requant_attrs(rec, out), "input_scale": x_q.scale,
        "output_scale": out.scale, "weight_bits": int(fmt.storage_bits),
        "terms": int(fmt.terms), "input_bits": x_q.bits, "weight_format": fmt.describe(),
    }
    if rec.op == "conv2d":
        attrs.update(conv_attrs(rec))
        return ctx.node(rec, "apot_conv2d", out, attrs, arrays)
    return ctx.node(rec, "apot_linear", out, attrs, arrays)


register_weight_lowering(WeightLowering("apot", lower_apot))
