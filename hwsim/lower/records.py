"""Lowerings of the captured records without weights: input, add, pooling, concat, clamp,
matmul, vector ops, table activations (pointwise), element-wise products (mul), nearest
resize and the ops that only move codes."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from hwsim.errors import KernelError, ProgramError
from hwsim.ir import Node
from hwsim.ir.specs import RequantMode
from hwsim.kernels import (LINEAR_FRAC_BITS, dyadic_multiplier, dyadic_multiplier_pair,
                           exact_activation_table, linear_taps, mul_ratio, nearest_indices)
from hwsim.kernels.pool import pool_counts
from hwsim.lower.context import LoweringContext
from hwsim.lower.registry import register_record_lowering


def _lower_input(ctx: LoweringContext, rec) -> Node:
    return ctx.node(rec, "input", ctx.tq(rec.name), {})


def _lower_add(ctx: LoweringContext, rec) -> Node:
    a, b = (ctx.tq(s) for s in rec.inputs)
    out = ctx.tq(rec.name)
    attrs = {"input_zero_points": [a.zero_point, b.zero_point],
             "requant": ctx.requant_attrs(rec, out)}
    if ctx.requant is RequantMode.DYADIC:
        m_a, m_b, shift = dyadic_multiplier_pair(a.scale / out.scale, b.scale / out.scale)
        arrays = {"rq_multiplier": np.array([m_a, m_b], dtype=np.int64),
                  "rq_shift": np.array([shift], dtype=np.int64)}
    else:
        arrays = {"rq_scale_f32": np.array([np.float32(a.scale) / np.float32(out.scale),
                                            np.float32(b.scale) / np.float32(out.scale)],
                                           dtype=np.float32)}
    return ctx.node(rec, "add", out, attrs, arrays)


def _same_quant(ctx: LoweringContext, rec, op: str, attrs: dict) -> Node:
    return ctx.node(rec, op, ctx.tq(rec.inputs[0]), attrs)


def _lower_maxpool(ctx: LoweringContext, rec) -> Node:
    a = rec.attrs
    return _same_quant(ctx, rec, "maxpool2d", {
        "kernel": list(a["kernel"]), "stride": list(a["stride"]), "padding": list(a["padding"]),
        "dilation": list(a.get("dilation", (1, 1))), "ceil_mode": bool(a.get("ceil_mode", False))})


def _lower_flatten(ctx: LoweringContext, rec) -> Node:
    return _same_quant(ctx, rec, "flatten", {"start_dim": int(rec.attrs.get("start_dim", 1))})


def _lower_avgpool(ctx: LoweringContext, rec) -> Node:
    """Window sums requantized by s_x / (count s_y): one multiplier when every window has the
    same divisor, else one per output position (torch avg_pool2d's divisors: count_include_pad
    False with padding, ceil_mode windows clipped at the edge)."""
    a = rec.attrs
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    in_shape = ctx.qm.graph.records[rec.inputs[0]].out_shape
    if a.get("global"):
        counts = np.array([int(in_shape[2] * in_shape[3])], dtype=np.int64)
        attrs = {"global": True, "kernel": [int(in_shape[2]), int(in_shape[3])], "stride": [1, 1],
                 "padding": [0, 0, 0, 0]}
    else:
        include, ceil = bool(a.get("count_include_pad", True)), bool(a.get("ceil_mode", False))
        try:
            grid = pool_counts(tuple(in_shape[2:]), tuple(a["kernel"]), tuple(a["stride"]),
                               tuple(a["padding"]), include, ceil)
        except KernelError as exc:
            raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): {exc}") from None
        if tuple(grid.shape) != tuple(rec.out_shape[2:]) or not grid.all():
            raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): avg pool windows "
                               f"{grid.shape} (divisors {np.unique(grid).tolist()}) do not match "
                               f"the captured output {tuple(rec.out_shape[2:])}")
        uniform = bool((grid == grid.flat[0]).all())
        counts = grid.reshape(-1)[:1] if uniform else grid.reshape(-1)
        attrs = {"global": False, "kernel": list(a["kernel"]), "stride": list(a["stride"]),
                 "padding": list(a["padding"])}
        if not uniform or ceil:
            attrs.update(count_include_pad=include, ceil_mode=ceil)
    attrs.update(input_zero_point=x_q.zero_point, requant=ctx.requant_attrs(rec, out))
    real = x_q.scale / (counts.astype(np.float64) * out.scale)
    if ctx.requant is RequantMode.DYADIC:
        arrays = ctx.requant_arrays(real, None)
    else:  # ONNX Runtime's QLinear(Global)AveragePool: f32(s_x / f32(s_y * count))
        f32 = np.float32
        arrays = {"rq_scale_f32": (f32(x_q.scale) / (f32(out.scale) * counts.astype(f32))
                                   ).astype(f32)}
    return ctx.node(rec, "avgpool2d", out, attrs, arrays)


def _lower_rescale(ctx: LoweringContext, rec, op: str, activation: tuple | None = None) -> Node:
    ins = [ctx.tq(s) for s in rec.inputs]
    out = ctx.tq(rec.name)
    arrays = ctx.requant_arrays(np.array([q.scale / out.scale for q in ins]), None)
    attrs: dict[str, Any] = {"requant": ctx.requant_attrs(rec, out, activation)}
    if op == "concat":
        attrs.update(axis=int(rec.attrs.get("axis", 1)),
                     input_zero_points=[q.zero_point for q in ins])
    else:
        attrs["input_zero_point"] = ins[0].zero_point
    return ctx.node(rec, op, out, attrs, arrays)


def _lower_clamp(ctx: LoweringContext, rec) -> Node:
    bounds = (float(rec.attrs.get("min", -math.inf)), float(rec.attrs.get("max", math.inf)))
    return _lower_rescale(ctx, rec, "clamp", activation=bounds)


def _lower_matmul(ctx: LoweringContext, rec) -> Node:
    a, b = (ctx.tq(src) for src in rec.inputs)
    out = ctx.tq(rec.name)
    real = np.array([a.scale * b.scale / out.scale])
    arrays = ctx.requant_arrays(real, (a.scale, np.array([b.scale]), out.scale))
    attrs = {"accumulator": ctx.accumulator.to_attrs(),
             "input_zero_points": [a.zero_point, b.zero_point],
             "requant": ctx.requant_attrs(rec, out), "input_scales": [a.scale, b.scale]}
    return ctx.node(rec, "matmul", out, attrs, arrays)


_VECTOR_PARAMS = {"layernorm": lambda rec: {"eps": float(rec.attrs["eps"])},
                  "gelu": lambda rec: {"approximate": str(rec.attrs.get("approximate", "none"))},
                  "softmax": lambda rec: {"dim": int(rec.attrs["dim"])}}


def _lower_vector(ctx: LoweringContext, rec) -> Node:
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    arrays = {}
    if rec.op == "layernorm":
        arrays = {"gamma": np.asarray(rec.weight, dtype=np.float32),
                  "beta": np.asarray(rec.bias, dtype=np.float32)}
    attrs = {"fn": rec.op, "params": _VECTOR_PARAMS[rec.op](rec),
             "input_zero_point": x_q.zero_point, "input_scale": x_q.scale,
             "output_clamp": ctx.clamp(rec, out)}
    return ctx.node(rec, "vector_op", out, attrs, arrays)


def _lower_pointwise(ctx: LoweringContext, rec) -> Node:
    """A table lookup over the input codes: the exactly rounded function (as quant's fake-quant
    model computes it; hwsim.kernels.lut_exact)."""
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    fn = str(rec.attrs["fn"])
    try:
        table = exact_activation_table(fn, x_scale=x_q.scale, x_zero_point=x_q.zero_point,
                                       x_range=(x_q.qmin, x_q.qmax), y_scale=out.scale,
                                       y_zero_point=out.zero_point, y_range=(out.qmin, out.qmax))
    except KernelError as exc:
        raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): {exc}") from None
    attrs = {"fn": fn, "arithmetic": "exact", "input_scale": x_q.scale,
             "input_zero_point": x_q.zero_point, "input_range": [x_q.qmin, x_q.qmax]}
    return ctx.node(rec, "activation_lut", out, attrs, {"table": table.astype(out.dtype)})


def _lower_mul(ctx: LoweringContext, rec) -> Node:
    """(a - zp_a)(b - zp_b), broadcast, requantized with M = s_a s_b / s_y (dyadic) or as ONNX
    Runtime's QLinearMul (float32). QLinearMul is defined on 8-bit codes (a wider product can
    leave int32 in its float32 arithmetic): a product of wider codes is requantized dyadic in a
    float32 program too, and its node says so."""
    a, b = (ctx.tq(s) for s in rec.inputs)
    out = ctx.tq(rec.name)
    attrs = {"input_zero_points": [a.zero_point, b.zero_point],
             "requant": ctx.requant_attrs(rec, out)}
    eight_bit = all(q.qmax - q.qmin <= 255 for q in (a, b, out))
    if ctx.requant is RequantMode.DYADIC or not eight_bit:
        if ctx.requant is not RequantMode.DYADIC:
            attrs["requant"] = {**attrs["requant"], "mode": RequantMode.DYADIC.value}
            attrs["note"] = ("float32 requantization of a product is ONNX Runtime's QLinearMul, "
                             "defined on 8-bit codes; these are wider: dyadic")
        m, shift = dyadic_multiplier(np.float64(a.scale * b.scale / out.scale))
        arrays = {"rq_multiplier": np.array([m], dtype=np.int64),
                  "rq_shift": np.array([shift], dtype=np.int64)}
    else:
        arrays = {"rq_scale_f32": np.array([mul_ratio(a.scale, b.scale, out.scale)],
                                           dtype=np.float32)}
    return ctx.node(rec, "mul", out, attrs, arrays)


def _lower_resize(ctx: LoweringContext, rec) -> Node:
    """Nearest resize: the gather torch performs, which must be ONNX Resize's at the record's
    scales and modes (so the node's reference, which recomputes the indices, agrees)."""
    a = rec.attrs
    (h, w), (oh, ow) = ctx.qm.graph[rec.inputs[0]].out_shape[2:], rec.out_shape[2:]
    if a["mode"] == "bilinear":
        return _lower_resize_linear(ctx, rec, (h, w), (oh, ow))
    mode, nearest = a["coordinate_transformation_mode"], a["nearest_mode"]
    arrays = {}
    for key, n_in, n_out, scale in (("rows", h, oh, a["scales"][0]),
                                    ("cols", w, ow, a["scales"][1])):
        torch_idx = np.asarray(a[key], dtype=np.int64)
        onnx_idx = nearest_indices(int(n_in), int(n_out), np.float32(scale), mode, nearest)
        if not np.array_equal(torch_idx, onnx_idx):
            raise ProgramError(
                f"layer {rec.name!r} ({rec.module_path}): torch's nearest interpolation reads "
                f"source {key} {torch_idx.tolist()[:8]}..., ONNX Resize's formula "
                f"({mode}, {nearest}, scale {float(scale):g}) gives {onnx_idx.tolist()[:8]}...; "
                "this resize has no integer lowering")
        arrays[key] = torch_idx
    attrs = {"scales": [float(v) for v in a["scales"]],
             "coordinate_transformation_mode": mode, "nearest_mode": nearest}
    return ctx.node(rec, "resize_nearest", ctx.tq(rec.inputs[0]), attrs, arrays)


def _lower_resize_linear(ctx: LoweringContext, rec, in_hw: tuple, out_hw: tuple) -> Node:
    """Bilinear resize: two taps and integer weights per output row / column
    (hwsim.kernels.resize.linear_taps); the codes keep the input's quantization."""
    a = rec.attrs
    mode = a["coordinate_transformation_mode"]
    arrays = {}
    for key, n_in, n_out, scale in (("rows", in_hw[0], out_hw[0], a["scales"][0]),
                                    ("cols", in_hw[1], out_hw[1], a["scales"][1])):
        arrays[key], arrays[key[:3] + "_weights"] = linear_taps(int(n_in), int(n_out), scale, mode,
                                                                LINEAR_FRAC_BITS)
    attrs = {"scales": [float(v) for v in a["scales"]], "coordinate_transformation_mode": mode,
             "frac_bits": LINEAR_FRAC_BITS}
    return ctx.node(rec, "resize_linear", ctx.tq(rec.inputs[0]), attrs, arrays)


def _lower_move(ctx: LoweringContext, rec) -> Node:
    attrs = ({"shape": [int(d) for d in rec.attrs["shape"]]} if rec.op == "reshape"
             else {"perm": [int(d) for d in rec.attrs["perm"]]})
    return _same_quant(ctx, rec, rec.op, attrs)


for _op, _fn in (("input", _lower_input), ("add", _lower_add), ("maxpool2d", _lower_maxpool),
                 ("flatten", _lower_flatten), ("avgpool2d", _lower_avgpool),
                 ("concat", lambda ctx, rec: _lower_rescale(ctx, rec, "concat")),
                 ("clamp", _lower_clamp), ("matmul", _lower_matmul),
                 ("layernorm", _lower_vector), ("gelu", _lower_vector),
                 ("softmax", _lower_vector), ("reshape", _lower_move),
                 ("transpose", _lower_move), ("pointwise", _lower_pointwise),
                 ("mul", _lower_mul), ("resize", _lower_resize)):
    register_record_lowering(_op, _fn)


def _lower_conv_transpose(ctx: LoweringContext, rec) -> Node:
    """conv_transpose2d with uniform integer ("int" family) weights -> conv_transpose2d node
    (hwsim.ops.conv_transpose); weights stay output-channel major, per-channel along axis 0."""
    family = ctx.qm.weight_family(rec.name)
    if family != "int":
        raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): conv_transpose2d is lowered "
                           f"only with uniform integer ('int') weights, not {family!r}")
    wp = ctx.qm.weight_params(rec.name)
    w_codes = ctx.qm.weight_codes(rec.name)
    k_out = w_codes.shape[0]
    zp_w = np.broadcast_to(np.asarray(wp.zero_point, dtype=np.int64), (k_out,)).copy()
    s_w = np.broadcast_to(np.asarray(wp.scale, dtype=np.float64), (k_out,))
    a = rec.attrs
    geometry = dict(stride=list(a["stride"]), padding=list(a["padding"]),
                    output_padding=list(a["output_padding"]), dilation=list(a["dilation"]),
                    groups=int(a["groups"]))
    return ctx.integer_weight_layer(rec, "conv_transpose2d",
                                    {"weight": w_codes, "weight_zero_point": zp_w}, s_w,
                                    weight_bits=int(wp.fmt.bits), **geometry)


register_record_lowering("conv_transpose2d", _lower_conv_transpose)


def _lower_slice(ctx: LoweringContext, rec) -> Node:
    """One output of a split (or a slice): the entries start:stop along axis; codes unchanged."""
    a = rec.attrs
    return _same_quant(ctx, rec, "slice", {"axis": int(a["axis"]), "start": int(a["start"]),
                                           "stop": int(a["stop"])})


def _lower_lrn(ctx: LoweringContext, rec) -> Node:
    """Local response norm: a float64 vector-unit op on the dequantized codes (hwsim.ops.lrn),
    requantized onto the record's output grid (the fake-quant model runs torch's float32 op)."""
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    a = rec.attrs
    attrs = {"size": int(a["size"]), "alpha": float(a["alpha"]), "beta": float(a["beta"]),
             "k": float(a["k"]), "input_zero_point": x_q.zero_point, "input_scale": x_q.scale,
             "output_clamp": ctx.clamp(rec, out)}
    return ctx.node(rec, "lrn", out, attrs)


register_record_lowering("slice", _lower_slice)
register_record_lowering("lrn", _lower_lrn)


def _lower_sub(ctx: LoweringContext, rec) -> Node:
    """a - b: the residual add's multipliers M_a = s_a / s_y, M_b = s_b / s_y on a common shift,
    the second term subtracted (hwsim.ops.sub); integer-only, so dyadic requantization only."""
    if ctx.requant is not RequantMode.DYADIC:
        raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): sub (a - b) is lowered only "
                           "with requant='dyadic'; no float32 (ONNX Runtime) order is defined")
    a, b = (ctx.tq(s) for s in rec.inputs)
    out = ctx.tq(rec.name)
    try:
        m_a, m_b, shift = dyadic_multiplier_pair(a.scale / out.scale, b.scale / out.scale)
    except KernelError as exc:
        raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): {exc}") from None
    attrs = {"input_zero_points": [a.zero_point, b.zero_point],
             "requant": ctx.requant_attrs(rec, out)}
    arrays = {"rq_multiplier": np.array([m_a, m_b], dtype=np.int64),
              "rq_shift": np.array([shift], dtype=np.int64)}
    return ctx.node(rec, "sub", out, attrs, arrays)


def _lower_constant(ctx: LoweringContext, rec) -> Node:
    """The record's float constant (1, ...) as codes on its own output grid (the fake-quant
    model's rounding: clamp(rint(c / s) + zp) in float64)."""
    out = ctx.tq(rec.name)
    codes = np.asarray(ctx.qm.act_params(rec.name).quantize(
        np.asarray(rec.weight, dtype=np.float32)), dtype=np.int64)
    return ctx.node(rec, "constant", out, {}, {"codes": codes.astype(out.dtype)})


register_record_lowering("sub", _lower_sub)
register_record_lowering("constant", _lower_constant)
