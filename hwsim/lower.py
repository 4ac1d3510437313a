"""QuantizedModel (quant) -> integer program (hwsim).

Reads only the QuantizedModel's numpy API (graph records, integer codes, scales, zero points), so
this module does not import torch itself. Requantization constants are derived here, once:

- dyadic: M = s_in * s_w / s_out stored as m * 2^-shift (m a 31-bit integer), round half up;
- float32: ONNX Runtime's order, scale = f32(f32(s_in * s_w) / s_out), round half to even.

A fused activation clamp [lo, hi] (ReLU, ReLU6) becomes the integer clamp
[max(qmin, zp + round(lo / s)), min(qmax, zp + round(hi / s))], computed in float32 like the
fake-quant forward, so that clamping codes equals quantizing clamped reals.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir import IntProgram, Node, TensorQuant, check_program
from hwsim.ir.ops import ACCUMULATOR_MODES, REQUANT_MODES
from hwsim.kernels import dyadic_multiplier, dyadic_multiplier_pair, ort_output_scale

ENGINES = ("ort", "qnnpack", "onednn", "fbgemm")
PYTORCH_ENGINES = ("qnnpack", "onednn", "fbgemm")


def lower(qm: Any, *, requant: str = "dyadic", accumulator_bits: int = 32,
          accumulator_mode: str = "wrap", name: str = "program", engine: str | None = None,
          layer_engines: Mapping[str, str] | None = None,
          int16_pairs: bool | None = None) -> IntProgram:
    """Build the integer program of a `quant.QuantizedModel`.

    `requant`: "dyadic" (integer-only) or "float32" (ONNX Runtime's float order).
    `accumulator_bits`/`accumulator_mode`: the accumulator of every conv/linear ("wrap" or
    "saturate" at every step).
    `engine` (every conv/linear) or `layer_engines` (per layer name, taking precedence): compute
    those layers exactly as a real integer engine does (ENGINES): "ort" (ONNX Runtime's
    QLinearConv/QLinearMatMul: float32 requantization and, for u8 x s8 non-depthwise layers on a
    CPU without VNNI, int16 pair saturation), or PyTorch's "qnnpack", "onednn", "fbgemm"
    (`hwsim.engines.pytorch`; uint8 activations, int8 weights, float bias). `int16_pairs`
    overrides the CPU decision for the engines that saturate pairs (None: this machine's).
    """
    if requant not in REQUANT_MODES:
        raise ProgramError(f"requant must be one of {REQUANT_MODES}, got {requant!r}")
    if accumulator_mode not in ACCUMULATOR_MODES:
        raise ProgramError(f"accumulator_mode must be one of {ACCUMULATOR_MODES}, "
                           f"got {accumulator_mode!r}")
    if not (isinstance(accumulator_bits, int) and 8 <= accumulator_bits <= 64):
        raise ProgramError(f"accumulator_bits must be an int in [8, 64], got {accumulator_bits!r}")
    engines = _engine_choice(qm, engine, layer_engines)
    ctx = _Lowering(qm, requant, {"bits": accumulator_bits, "mode": accumulator_mode})
    program = IntProgram(name)
    graph = qm.graph
    for rec in graph.records.values():
        handler = _LOWER.get(rec.op)
        if handler is None:
            raise ProgramError(f"layer {rec.name!r} ({rec.module_path}): op {rec.op!r} has no "
                               f"integer lowering; supported: {', '.join(sorted(_LOWER))}")
        node = handler(ctx, rec)
        if rec.name in engines:
            node = _with_engine(ctx, rec, node, engines[rec.name], int16_pairs)
        program.add(node)
    program.output_name = graph.output_name
    check_program(program)
    return program


class _Lowering:
    def __init__(self, qm: Any, requant: str, accumulator: dict) -> None:
        self.qm, self.requant, self.accumulator = qm, requant, accumulator

    def tq(self, name: str) -> TensorQuant:
        p = self.qm.act_params(name)
        return TensorQuant(float(np.asarray(p.scale).reshape(())),
                           int(np.asarray(p.zero_point).reshape(())), int(p.fmt.qmin),
                           int(p.fmt.qmax))

    def clamp(self, rec, out: TensorQuant, activation: tuple | None = None) -> list[int]:
        """The code range of the output: the format's, narrowed by the record's fused activation
        (or by `activation`, for a standalone clamp)."""
        lo, hi = out.qmin, out.qmax
        activation = activation or getattr(rec, "activation", None)
        if activation is not None:
            lo = max(lo, _code_of(activation[0], out))
            hi = min(hi, _code_of(activation[1], out))
        if lo > hi:
            raise ProgramError(f"layer {rec.name!r}: activation range {activation} is empty on "
                               f"the output grid (scale {out.scale}, zero point {out.zero_point})")
        return [int(lo), int(hi)]

    def requant_arrays(self, real: np.ndarray, f32_parts: tuple | None) -> dict[str, np.ndarray]:
        """Constants for multiplier(s) `real`; `f32_parts` = (s_in, s_w, s_out) for ORT order."""
        if self.requant == "dyadic":
            m, shift = dyadic_multiplier(np.asarray(real, dtype=np.float64))
            return {"rq_multiplier": np.asarray(m, dtype=np.int64).reshape(-1),
                    "rq_shift": np.asarray(shift, dtype=np.int64).reshape(-1)}
        if f32_parts is None:
            scale = np.asarray(real, dtype=np.float32)
        else:
            scale = np.asarray(ort_output_scale(*f32_parts), dtype=np.float32)
        return {"rq_scale_f32": scale.reshape(-1)}


def _code_of(value: float, tq: TensorQuant) -> int:
    if math.isinf(value):
        return tq.qmax if value > 0 else tq.qmin
    return int(np.rint(np.float32(value) / np.float32(tq.scale))) + tq.zero_point


def _engine_choice(qm: Any, engine: str | None,
                   layer_engines: Mapping[str, str] | None) -> dict[str, str]:
    """Layer name -> engine for the integer conv/linear layers that take one."""
    chosen = dict(layer_engines or {})
    for name, eng in [("engine", engine), *((f"layer_engines[{n!r}]", e) for n, e in chosen.items())]:
        if eng is not None and eng not in ENGINES:
            raise ProgramError(f"lower: {name} must be one of {ENGINES}; got {eng!r}")
    dense = [r.name for r in qm.graph if r.op in ("conv2d", "linear") and not qm.is_binary(r.name)]
    unknown = sorted(set(chosen) - set(dense))
    if unknown:
        raise ProgramError(f"lower: layer_engines names {unknown}, which are not integer conv2d / "
                           f"linear layers; e.g. {dense[:3]}")
    if engine is not None:
        chosen = {**{n: engine for n in dense}, **chosen}
    return chosen


def _with_engine(ctx: _Lowering, rec, node: Node, engine: str, int16_pairs: bool | None) -> Node:
    """The node computed as `engine` computes it (see `lower`)."""
    x_q = ctx.tq(rec.inputs[0])
    w = node.arrays["weight"]
    depthwise = (rec.op == "conv2d" and w.shape[1] == 1
                 and int(rec.attrs["groups"]) == _in_channels(rec, ctx))
    u8 = (x_q.qmin, x_q.qmax) == (0, 255)
    where = f"layer {rec.name!r} on engine {engine!r}"
    if engine in PYTORCH_ENGINES:
        if not u8 or w.dtype != np.int8:
            raise ProgramError(f"{where}: PyTorch's quantized engines take uint8 activations and "
                               f"int8 weights; got codes [{x_q.qmin}, {x_q.qmax}] and {w.dtype}")
        if rec.op == "conv2d":
            top, left, bottom, right = rec.attrs["padding"]
            if (top, left) != (bottom, right):
                raise ProgramError(f"{where}: asymmetric padding {rec.attrs['padding']}; PyTorch's "
                                   "quantized conv pads symmetrically")
        if engine == "onednn" and np.any(node.arrays["weight_zero_point"] != 0):
            raise ProgramError(f"{where}: onednn needs weight zero points 0 (symmetric weights)")
    if int16_pairs is None and engine == "ort":
        from hwsim.onnx.ort_cpu import ort_saturates_int16_pairs as saturates  # measures ORT
    elif int16_pairs is None:
        from hwsim.engines.cpu import cpu_saturates_int16_pairs as saturates
    cpu_pairs = saturates() if int16_pairs is None else bool(int16_pairs)
    attrs = dict(node.attrs, engine=engine)
    arrays = dict(node.arrays)
    if engine == "ort":
        s_w = node.arrays["weight_scale"]
        arrays = {k: v for k, v in arrays.items() if not k.startswith("rq_")}
        arrays["rq_scale_f32"] = np.asarray(
            ort_output_scale(x_q.scale, s_w, node.out.scale), dtype=np.float32).reshape(-1)
        attrs["requant"] = dict(node.attrs["requant"], mode="float32")
        pairs = u8 and w.dtype == np.int8 and not depthwise and cpu_pairs  # ORT: dw is exact
        attrs["accumulator"] = {"bits": 32, "mode": "int16_pairs" if pairs else "wrap"}
    else:  # the engine model decides per kernel which pairs saturate on such a CPU
        attrs["engine_int16_pairs"] = cpu_pairs
        bias = node.arrays.get("bias")
        if bias is not None:  # the float bias the fake-quant model adds
            scale = x_q.scale * node.arrays["weight_scale"]
            arrays["bias_f32"] = (bias.astype(np.float64) * scale).astype(np.float32)
    return replace(node, attrs=attrs, arrays=arrays)


def _in_channels(rec, ctx: _Lowering) -> int:
    """Input channels of conv record ``rec``."""
    return int(ctx.qm.graph[rec.inputs[0]].out_shape[1])


def _lower_input(ctx: _Lowering, rec) -> Node:
    return Node(rec.name, "input", (), tuple(rec.out_shape), ctx.tq(rec.name), source=rec.module_path)


def _lower_dense(ctx: _Lowering, rec) -> Node:
    qm = ctx.qm
    if qm.is_binary(rec.name):
        return _lower_binary(ctx, rec)
    src = rec.inputs[0]
    x_q, out = ctx.tq(src), ctx.tq(rec.name)
    wp = qm.weight_params(rec.name)
    w_codes = qm.weight_codes(rec.name)
    k_out = w_codes.shape[0]
    s_w = np.broadcast_to(np.asarray(wp.scale, dtype=np.float64), (k_out,))
    zp_w = np.broadcast_to(np.asarray(wp.zero_point, dtype=np.int64), (k_out,)).copy()
    arrays: dict[str, np.ndarray] = {"weight": w_codes, "weight_zero_point": zp_w}
    bias = qm.bias_codes(rec.name)
    if bias is not None:
        arrays["bias"] = np.asarray(bias, dtype=np.int64)
    real = x_q.scale * s_w / out.scale
    arrays.update(ctx.requant_arrays(real, (x_q.scale, s_w, out.scale)))
    attrs: dict[str, Any] = {
        "accumulator": dict(ctx.accumulator), "input_zero_point": x_q.zero_point,
        "requant": {"mode": ctx.requant, "clamp": ctx.clamp(rec, out)},
        "input_scale": x_q.scale, "output_scale": out.scale,
        "weight_bits": int(wp.fmt.bits), "input_bits": x_q.bits,
    }
    if rec.op == "conv2d":
        a = rec.attrs
        attrs.update(stride=list(a["stride"]), padding=list(a["padding"]),
                     dilation=list(a["dilation"]), groups=int(a["groups"]))
    arrays["weight_scale"] = s_w.astype(np.float64)
    return Node(rec.name, rec.op, tuple(rec.inputs), tuple(rec.out_shape), out, attrs, arrays,
                source=rec.module_path)


def _lower_binary(ctx: _Lowering, rec) -> Node:
    """A layer with sign-plane weights -> binary_conv2d / binary_linear (see hwsim.ir.ops)."""
    qm = ctx.qm
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    wp = qm.weight_params(rec.name)
    planes = np.ascontiguousarray(wp.b, dtype=np.int8)  # (k_w, K, ...)
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
    op = "binary_linear"
    if rec.op == "conv2d":
        a = rec.attrs
        attrs.update(stride=list(a["stride"]), padding=list(a["padding"]),
                     dilation=list(a["dilation"]), groups=int(a["groups"]))
        op = "binary_conv2d"
    return Node(rec.name, op, tuple(rec.inputs), tuple(rec.out_shape), out, attrs, arrays,
                source=rec.module_path)


def _lower_add(ctx: _Lowering, rec) -> Node:
    a, b = (ctx.tq(s) for s in rec.inputs)
    out = ctx.tq(rec.name)
    attrs = {"input_zero_points": [a.zero_point, b.zero_point],
             "requant": {"mode": ctx.requant, "clamp": ctx.clamp(rec, out)}}
    if ctx.requant == "dyadic":
        m_a, m_b, shift = dyadic_multiplier_pair(a.scale / out.scale, b.scale / out.scale)
        arrays = {"rq_multiplier": np.array([m_a, m_b], dtype=np.int64),
                  "rq_shift": np.array([shift], dtype=np.int64)}
    else:
        arrays = {"rq_scale_f32": np.array([np.float32(a.scale) / np.float32(out.scale),
                                            np.float32(b.scale) / np.float32(out.scale)],
                                           dtype=np.float32)}
    return Node(rec.name, "add", tuple(rec.inputs), tuple(rec.out_shape), out, attrs, arrays,
                source=rec.module_path)


def _same_quant(ctx: _Lowering, rec, op: str, attrs: dict) -> Node:
    return Node(rec.name, op, tuple(rec.inputs), tuple(rec.out_shape), ctx.tq(rec.inputs[0]),
                attrs, source=rec.module_path)


def _lower_maxpool(ctx: _Lowering, rec) -> Node:
    a = rec.attrs
    return _same_quant(ctx, rec, "maxpool2d", {
        "kernel": list(a["kernel"]), "stride": list(a["stride"]), "padding": list(a["padding"]),
        "dilation": list(a.get("dilation", (1, 1))), "ceil_mode": bool(a.get("ceil_mode", False))})


def _lower_flatten(ctx: _Lowering, rec) -> Node:
    return _same_quant(ctx, rec, "flatten", {"start_dim": int(rec.attrs.get("start_dim", 1))})


def _lower_avgpool(ctx: _Lowering, rec) -> Node:
    a = rec.attrs
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    in_shape = ctx.qm.graph.records[rec.inputs[0]].out_shape
    if a.get("global"):
        count = int(in_shape[2] * in_shape[3])
        attrs = {"global": True, "kernel": [int(in_shape[2]), int(in_shape[3])], "stride": [1, 1],
                 "padding": [0, 0, 0, 0]}
    else:
        if any(a["padding"]) and not a.get("count_include_pad", True):
            raise ProgramError(f"layer {rec.name!r}: avg pool with padding and "
                               "count_include_pad=False has no integer lowering yet")
        if a.get("ceil_mode"):
            raise ProgramError(f"layer {rec.name!r}: avg pool with ceil_mode=True has no integer "
                               "lowering yet")
        count = int(a["kernel"][0] * a["kernel"][1])
        attrs = {"global": False, "kernel": list(a["kernel"]), "stride": list(a["stride"]),
                 "padding": list(a["padding"])}
    attrs.update(input_zero_point=x_q.zero_point,
                 requant={"mode": ctx.requant, "clamp": ctx.clamp(rec, out)})
    real = np.array([x_q.scale / (count * out.scale)])
    if ctx.requant == "dyadic":
        arrays = ctx.requant_arrays(real, None)
    else:  # ONNX Runtime's QLinear(Global)AveragePool: f32(s_x / f32(s_y * count))
        f32 = np.float32
        arrays = {"rq_scale_f32": np.array([f32(x_q.scale) / f32(f32(out.scale) * f32(count))],
                                           dtype=np.float32)}
    return Node(rec.name, "avgpool2d", tuple(rec.inputs), tuple(rec.out_shape), out, attrs, arrays,
                source=rec.module_path)


def _lower_rescale(ctx: _Lowering, rec, op: str, activation: tuple | None = None) -> Node:
    ins = [ctx.tq(s) for s in rec.inputs]
    out = ctx.tq(rec.name)
    real = np.array([q.scale / out.scale for q in ins])
    arrays = ctx.requant_arrays(real, None)
    attrs: dict[str, Any] = {"requant": {"mode": ctx.requant,
                                         "clamp": ctx.clamp(rec, out, activation)}}
    if op == "concat":
        attrs.update(axis=int(rec.attrs.get("axis", 1)),
                     input_zero_points=[q.zero_point for q in ins])
    else:
        attrs["input_zero_point"] = ins[0].zero_point
    return Node(rec.name, op, tuple(rec.inputs), tuple(rec.out_shape), out, attrs, arrays,
                source=rec.module_path)


def _lower_clamp(ctx: _Lowering, rec) -> Node:
    bounds = (float(rec.attrs.get("min", -math.inf)), float(rec.attrs.get("max", math.inf)))
    return _lower_rescale(ctx, rec, "clamp", activation=bounds)


def _lower_matmul(ctx: _Lowering, rec) -> Node:
    a, b = (ctx.tq(src) for src in rec.inputs)
    out = ctx.tq(rec.name)
    real = np.array([a.scale * b.scale / out.scale])
    arrays = ctx.requant_arrays(real, (a.scale, np.array([b.scale]), out.scale))
    attrs = {"accumulator": dict(ctx.accumulator),
             "input_zero_points": [a.zero_point, b.zero_point],
             "requant": {"mode": ctx.requant, "clamp": ctx.clamp(rec, out)},
             "input_scales": [a.scale, b.scale]}
    return Node(rec.name, "matmul", tuple(rec.inputs), tuple(rec.out_shape), out, attrs, arrays,
                source=rec.module_path)


def _lower_vector(ctx: _Lowering, rec) -> Node:
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    params = {"layernorm": lambda: {"eps": float(rec.attrs["eps"])},
              "gelu": lambda: {"approximate": str(rec.attrs.get("approximate", "none"))},
              "softmax": lambda: {"dim": int(rec.attrs["dim"])}}[rec.op]()
    arrays = {}
    if rec.op == "layernorm":
        arrays = {"gamma": np.asarray(rec.weight, dtype=np.float32),
                  "beta": np.asarray(rec.bias, dtype=np.float32)}
    attrs = {"fn": rec.op, "params": params, "input_zero_point": x_q.zero_point,
             "input_scale": x_q.scale, "output_clamp": ctx.clamp(rec, out)}
    return Node(rec.name, "vector_op", tuple(rec.inputs), tuple(rec.out_shape), out, attrs,
                arrays, source=rec.module_path)


def _lower_move(ctx: _Lowering, rec) -> Node:
    attrs = ({"shape": [int(d) for d in rec.attrs["shape"]]} if rec.op == "reshape"
             else {"perm": [int(d) for d in rec.attrs["perm"]]})
    return _same_quant(ctx, rec, rec.op, attrs)


_LOWER = {
    "input": _lower_input, "conv2d": _lower_dense, "linear": _lower_dense, "add": _lower_add,
    "maxpool2d": _lower_maxpool, "flatten": _lower_flatten, "avgpool2d": _lower_avgpool,
    "concat": lambda ctx, rec: _lower_rescale(ctx, rec, "concat"), "clamp": _lower_clamp,
    "matmul": _lower_matmul, "layernorm": _lower_vector, "gelu": _lower_vector,
    "softmax": _lower_vector, "reshape": _lower_move, "transpose": _lower_move,
}
