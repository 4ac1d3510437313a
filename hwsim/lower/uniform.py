"""Uniform integer weights ("int" family) -> conv2d / linear nodes (hwsim.ops.dense)."""
from __future__ import annotations

from typing import Any

import numpy as np

from hwsim.ir import Node
from hwsim.lower.context import LoweringContext, conv_attrs
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def lower_uniform(ctx: LoweringContext, rec) -> Node:
    qm = ctx.qm
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    wp = qm.weight_params(rec.name)
    w_codes = qm.weight_codes(rec.name)
    k_out = w_codes.shape[0]
    s_w = np.broadcast_to(np.asarray(wp.scale, dtype=np.float64), (k_out,))
    zp_w = np.broadcast_to(np.asarray(wp.zero_point, dtype=np.int64), (k_out,)).copy()
    arrays: dict[str, np.ndarray] = {"weight": w_codes, "weight_zero_point": zp_w,
                                     "weight_scale": s_w.astype(np.float64)}
    bias = qm.bias_codes(rec.name)
    if bias is not None:
        arrays["bias"] = np.asarray(bias, dtype=np.int64)
    arrays.update(ctx.requant_arrays(x_q.scale * s_w / out.scale, (x_q.scale, s_w, out.scale)))
    attrs: dict[str, Any] = {
        "accumulator": ctx.accumulator.to_attrs(), "input_zero_point": x_q.zero_point,
        "requant": ctx.requant_attrs(rec, out), "input_scale": x_q.scale,
        "output_scale": out.scale, "weight_bits": int(wp.fmt.bits), "input_bits": x_q.bits,
    }
    if rec.op == "conv2d":
        attrs.update(conv_attrs(rec))
    return ctx.node(rec, rec.op, out, attrs, arrays)


register_weight_lowering(WeightLowering("int", lower_uniform, engine_modes=True))
