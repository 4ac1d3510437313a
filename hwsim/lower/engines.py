"""Engine modes: conv/linear nodes computed exactly as a real integer engine computes them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from hwsim.engines.table import ENGINE_TABLE, ENGINES
from hwsim.errors import ProgramError
from hwsim.ir import Node
from hwsim.ir.specs import AccumulatorConfig, AccumulatorMode, RequantMode
from hwsim.kernels import ort_output_scale
from hwsim.lower.context import LoweringContext
from hwsim.lower.registry import WEIGHTED_RECORD_OPS, WEIGHT_LOWERINGS


def engine_choice(qm: Any, engine: str | None,
                  layer_engines: Mapping[str, str] | None) -> dict[str, str]:
    """Layer name -> engine for the conv/linear layers whose family takes engine modes."""
    chosen = dict(layer_engines or {})
    for name, eng in [("engine", engine), *((f"layer_engines[{n!r}]", e) for n, e in chosen.items())]:
        if eng is not None and eng not in ENGINE_TABLE:
            raise ProgramError(f"lower: {name} must be one of {ENGINES}; got {eng!r}")
    able = [r.name for r in qm.graph if r.op in WEIGHTED_RECORD_OPS
            and getattr(WEIGHT_LOWERINGS.get(qm.weight_family(r.name)), "engine_modes", False)]
    unknown = sorted(set(chosen) - set(able))
    if unknown:
        raise ProgramError(f"lower: layer_engines names {unknown}, which are not integer conv2d / "
                           f"linear layers; e.g. {able[:3]}")
    if engine is not None:
        chosen = {**{n: engine for n in able}, **chosen}
    return chosen


def with_engine(ctx: LoweringContext, rec, node: Node, engine_name: str,
                int16_pairs: bool | None) -> Node:
    """The node computed as `engine_name` computes it (see `hwsim.lower.lower`)."""
    engine = ENGINE_TABLE[engine_name]
    x_q = ctx.tq(rec.inputs[0])
    w = node.arrays["weight"]
    in_channels = int(ctx.qm.graph[rec.inputs[0]].out_shape[1])
    depthwise = (rec.op == "conv2d" and w.shape[1] == 1
                 and int(rec.attrs["groups"]) == in_channels)
    u8 = (x_q.qmin, x_q.qmax) == (0, 255)
    where = f"layer {rec.name!r} on engine {engine_name!r}"
    if engine.is_pytorch:
        if not u8 or w.dtype != np.int8:
            raise ProgramError(f"{where}: PyTorch's quantized engines take uint8 activations and "
                               f"int8 weights; got codes [{x_q.qmin}, {x_q.qmax}] and {w.dtype}")
        if rec.op == "conv2d":
            top, left, bottom, right = rec.attrs["padding"]
            if (top, left) != (bottom, right):
                raise ProgramError(f"{where}: asymmetric padding {rec.attrs['padding']}; PyTorch's "
                                   "quantized conv pads symmetrically")
        if engine_name == "onednn" and np.any(node.arrays["weight_zero_point"] != 0):
            raise ProgramError(f"{where}: onednn needs weight zero points 0 (symmetric weights)")
    if int16_pairs is None and not engine.is_pytorch:
        from hwsim.onnx.ort_cpu import ort_saturates_int16_pairs as saturates  # measures ORT
    elif int16_pairs is None:
        from hwsim.engines.cpu import cpu_saturates_int16_pairs as saturates
    cpu_pairs = saturates() if int16_pairs is None else bool(int16_pairs)
    attrs = dict(node.attrs, engine=engine_name)
    arrays = dict(node.arrays)
    if not engine.is_pytorch:  # ONNX Runtime: float32 requantization, its accumulator
        s_w = node.arrays["weight_scale"]
        arrays = {k: v for k, v in arrays.items() if not k.startswith("rq_")}
        arrays["rq_scale_f32"] = np.asarray(
            ort_output_scale(x_q.scale, s_w, node.out.scale), dtype=np.float32).reshape(-1)
        attrs["requant"] = dict(node.attrs["requant"], mode=RequantMode.FLOAT32.value)
        pairs = u8 and w.dtype == np.int8 and not depthwise and cpu_pairs  # ORT: dw is exact
        mode = AccumulatorMode.INT16_PAIRS if pairs else AccumulatorMode.WRAP
        attrs["accumulator"] = AccumulatorConfig(32, mode).to_attrs()
    else:  # the engine model decides per kernel which pairs saturate on such a CPU
        attrs["engine_int16_pairs"] = cpu_pairs
        bias = node.arrays.get("bias")
        if bias is not None:  # the float bias the fake-quant model adds
            scale = x_q.scale * node.arrays["weight_scale"]
            arrays["bias_f32"] = (bias.astype(np.float64) * scale).astype(np.float32)
    return replace(node, attrs=attrs, arrays=arrays)
