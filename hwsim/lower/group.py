"""Group-wise weights ("group" family) -> group_linear / group_conv2d nodes (hwsim.ops.group).

Block (k, g) with scale ``s_{k,g}`` gets the real multiplier ``M_{k,g} = s_x s_{k,g} / s_y``;
the channel's float bias ``b_k / s_y`` joins them in the requantization stage (the family keeps
a float bias: its blocks have no common code step), all on one shift per channel, exactly as a
multipoint layer's rows (``hwsim.lower.multipoint.summed_rows_parts``, the blocks as its
rows).  Requantization is dyadic only; a conv must have groups = 1.
"""
from __future__ import annotations

import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir import Node
from hwsim.lower.context import LoweringContext
from hwsim.lower.multipoint import layer_node, summed_rows_parts
from hwsim.lower.registry import WeightLowering, register_weight_lowering


def lower_group(ctx: LoweringContext, rec) -> Node:
    if rec.op == "conv2d" and int(rec.attrs["groups"]) != 1:
        raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): group-wise weights on a "
                           f"grouped or depthwise conv (groups={rec.attrs['groups']}) are not "
                           "supported; give the layer an int format (QuantConfig.layer_weight, "
                           "or --depthwise-int8)")
    params = ctx.qm.weight_params(rec.name)
    k, groups = params.scale.shape
    # block (k, g) is row g*K + k of the multipoint requantization
    out, attrs, arrays = summed_rows_parts(ctx, rec, "group-wise weights", "groups",
                                           params.scale.T.reshape(-1),
                                           np.tile(np.arange(k), groups), k)
    arrays["rq_multiplier"] = np.ascontiguousarray(arrays["rq_multiplier"].reshape(groups, k).T)
    arrays["weight"] = np.ascontiguousarray(ctx.qm.weight_codes(rec.name), dtype=np.int8)
    arrays["weight_scale"] = params.scale.astype(np.float64)
    if not params.fmt.symmetric:
        arrays["weight_zero_point"] = params.zero_point.astype(np.int64)
    fmt = params.fmt
    attrs.update({"weight_bits": int(fmt.bits), "group_size": int(fmt.group_size),
                  "weight_format": fmt.describe()})
    return layer_node(ctx, rec, ("group_conv2d", "group_linear"), out, attrs, arrays)


register_weight_lowering(WeightLowering("group", lower_group))
