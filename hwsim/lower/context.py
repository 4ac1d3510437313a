"""What every lowering function gets: the QuantizedModel, the program-wide requantization and
accumulator settings, and helpers that derive a node's constants from the model's scales.

- dyadic: M = s_in * s_w / s_out stored as m * 2^-shift (m a 31-bit integer), round half up;
- float32: ONNX Runtime's order, scale = f32(f32(s_in * s_w) / s_out), round half to even.

A fused activation clamp [lo, hi] (ReLU, ReLU6) becomes the integer clamp
[max(qmin, zp + round(lo / s)), min(qmax, zp + round(hi / s))], computed in float32 like the
fake-quant forward, so that clamping codes equals quantizing clamped reals.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir import Node, TensorQuant
from hwsim.ir.specs import AccumulatorConfig, RequantMode, RequantSpec
from hwsim.kernels import dyadic_multiplier, ort_output_scale


class LoweringContext:
    """Settings and helpers of one `lower` call (see the module docstring)."""

    def __init__(self, qm: Any, requant: RequantMode, accumulator: AccumulatorConfig) -> None:
        self.qm, self.requant, self.accumulator = qm, requant, accumulator

    def tq(self, name: str) -> TensorQuant:
        """How the output codes of record `name` read (its per-tensor activation params)."""
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
            lo = max(lo, code_of(activation[0], out))
            hi = min(hi, code_of(activation[1], out))
        if lo > hi:
            raise ProgramError(f"layer {rec.name!r}: activation range {activation} is empty on "
                               f"the output grid (scale {out.scale}, zero point {out.zero_point})")
        return [int(lo), int(hi)]

    def requant_attrs(self, rec, out: TensorQuant, activation: tuple | None = None) -> dict:
        """``attrs["requant"]`` of a requantizing node of record `rec`."""
        return RequantSpec(self.requant, tuple(self.clamp(rec, out, activation))).to_attrs()

    def requant_arrays(self, real: np.ndarray, f32_parts: tuple | None) -> dict[str, np.ndarray]:
        """Constants for multiplier(s) `real`; `f32_parts` = (s_in, s_w, s_out) for ORT order."""
        if self.requant is RequantMode.DYADIC:
            m, shift = dyadic_multiplier(np.asarray(real, dtype=np.float64))
            return {"rq_multiplier": np.asarray(m, dtype=np.int64).reshape(-1),
                    "rq_shift": np.asarray(shift, dtype=np.int64).reshape(-1)}
        if f32_parts is None:
            scale = np.asarray(real, dtype=np.float32)
        else:
            scale = np.asarray(ort_output_scale(*f32_parts), dtype=np.float32)
        return {"rq_scale_f32": scale.reshape(-1)}

    def integer_weight_layer(self, rec, op: str, arrays: dict[str, np.ndarray],
                             weight_scale: np.ndarray, **attrs: Any) -> Node:
        """A node of `op` for conv2d / linear record `rec` whose integer weight codes (in
        `arrays`) step by `weight_scale` (K,) real units per output channel: the bias codes, the
        requantization constants for M = s_x s_w / s_y, the accumulator, the input's zero
        point, scales and width, and the conv geometry; `attrs` add the family's own."""
        x_q, out = self.tq(rec.inputs[0]), self.tq(rec.name)
        s_w = np.asarray(weight_scale, dtype=np.float64)
        arrays = {**arrays, "weight_scale": s_w}
        bias = self.qm.bias_codes(rec.name)
        if bias is not None:
            arrays["bias"] = np.asarray(bias, dtype=np.int64)
        arrays.update(self.requant_arrays(x_q.scale * s_w / out.scale, (x_q.scale, s_w, out.scale)))
        node_attrs: dict[str, Any] = {
            "accumulator": self.accumulator.to_attrs(), "input_zero_point": x_q.zero_point,
            "requant": self.requant_attrs(rec, out), "input_scale": x_q.scale,
            "output_scale": out.scale, "input_bits": x_q.bits, **attrs}
        if rec.op == "conv2d":
            node_attrs.update(conv_attrs(rec))
        return self.node(rec, op, out, node_attrs, arrays)

    def node(self, rec, op: str, out: TensorQuant, attrs: dict,
             arrays: dict[str, np.ndarray] | None = None) -> Node:
        """A node named and shaped like record `rec`."""
        return Node(rec.name, op, tuple(rec.inputs), tuple(rec.out_shape), out, attrs,
                    arrays or {}, source=rec.module_path)


def code_of(value: float, tq: TensorQuant) -> int:
    """The code of real `value` on `tq`'s grid (infinities: the code range's ends)."""
    if math.isinf(value):
        return tq.qmax if value > 0 else tq.qmin
    return int(np.rint(np.float32(value) / np.float32(tq.scale))) + tq.zero_point


def conv_attrs(rec) -> dict[str, Any]:
    """stride, padding (top, left, bottom, right), dilation and groups of a conv2d record."""
    a = rec.attrs
    return dict(stride=list(a["stride"]), padding=list(a["padding"]),
                dilation=list(a["dilation"]), groups=int(a["groups"]))
