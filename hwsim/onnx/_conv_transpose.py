"""ConvTranspose in quantized ONNX models: a float island.

ONNX Runtime's quantizer leaves ConvTranspose in float: QDQ models run DequantizeLinear of the
input, of the int8 weights and of the int32 bias, then a float32 ConvTranspose, then
QuantizeLinear (the CPU provider does not fuse them); QOperator models keep float weights and
bias. Either way the node becomes part of a float island (`hwsim.onnx._float_island`), run
in ONNX Runtime's float order (`hwsim.kernels.conv_transpose_f32`).

The import checks the attributes up front (one error naming the node), then applies what
ONNX Runtime's graph optimizer does to the node (its WeightBiasQuantization transformer, on at
every optimization level from "basic"): a ConvTranspose whose input is DequantizeLinear
(per tensor) and whose output reaches a QuantizeLinear alone (through Relu / Clip only) gets
  - float weights W: replaced by DequantizeLinear(QuantizeLinear(W)), int8 per tensor with
    min = min(W, 0), max = max(W, 0), s_w = f32(f32(max - min) / 255),
    zp_w = round_half_even(clamp(f32(-128 - f32(min / s_w)), -128, 127)) (s_w = 1 if
    max = min), codes as QuantizeLinear computes them;
  - a float bias B (a 1-D constant): replaced by DequantizeLinear(round_half_even(f32(B /
    s_b))) in int32 with s_b = f32(s_x · s_w) (per channel for per-channel weights on axis 0);
  it does nothing if the bias is not a constant, nor when the weights are already
  DequantizeLinear outputs and there is no float bias (QDQ models from `quantize_static`).
Last it records whether ONNX Runtime pre-packs the weights, which changes the SGEMM's
blocking: it does for weights that are still a float constant, not for a DequantizeLinear
output.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels.conv_transpose_f32 import (ConvTransposeF32Error, onnx_geometry,
                                              ort_packs_weights)
from hwsim.kernels.mlas_float import quantize_linear_f32
from hwsim.onnx import _float_island
from hwsim.onnx._model import attributes
from hwsim.onnx._values import Dequantized, DequantizedConst, Quant

_F32 = np.float32
_PASS_THROUGH = ("Relu", "Clip")  # ops WeightBiasQuantization looks through towards the Q

PACKED_ATTR = "ort_packed_weights"


def _weight_shape(imp, node, w) -> tuple[int, ...]:
    if isinstance(w, DequantizedConst):
        return tuple(w.codes.shape)
    if isinstance(w, np.ndarray):
        return tuple(w.shape)
    raise imp.model.fail(node, f"the weight must be a constant or DequantizeLinear of a "
                         f"constant; got {imp.describe(w)}")


def _tagged(node, packed: bool):
    """A copy of `node` with the pre-packing decision as an attribute."""
    from onnx import NodeProto, helper

    out = NodeProto()
    out.CopyFrom(node)
    kept = [a for a in out.attribute if a.name != PACKED_ATTR]
    del out.attribute[:]
    out.attribute.extend(kept)
    out.attribute.append(helper.make_attribute(PACKED_ATTR, int(packed)))
    return out


def _consumers(imp) -> dict[str, list]:
    users = imp.__dict__.get("_conv_transpose_users")
    if users is None:
        users = {}
        for n in imp.model.graph.node:
            for name in set(n.input):
                users.setdefault(name, []).append(n)
        imp.__dict__["_conv_transpose_users"] = users
    return users


def _reaches_quantize(imp, node) -> bool:
    """Does node's output go to a QuantizeLinear alone (through single-consumer Relu / Clip)?"""
    users, current = _consumers(imp), node
    while len(current.output) == 1:
        after = users.get(current.output[0], [])
        if len(after) != 1:
            return False
        if after[0].op_type == "QuantizeLinear":
            return True
        if after[0].op_type not in _PASS_THROUGH:
            return False
        current = after[0]
    return False


def quantized_weight(w: np.ndarray) -> DequantizedConst:
    """ONNX Runtime's int8 per-tensor quantization of float weights (module docstring)."""
    lo, hi = min(_F32(w.min()), _F32(0)), max(_F32(w.max()), _F32(0))
    scale = _F32(1) if hi == lo else _F32(_F32(hi - lo) / _F32(255))
    initial = _F32(_F32(-128) - _F32(lo / scale))
    zp = int(np.rint(min(max(initial, _F32(-128)), _F32(127))))
    codes = quantize_linear_f32(w, scale, zp, -128, 127).astype(np.int8)
    quant = Quant(np.array([scale], _F32), np.array([zp], np.int64), np.dtype(np.int8))
    return DequantizedConst(codes, quant, 1)


def quantized_bias(imp, node, b: np.ndarray, x_scale, w_scale: np.ndarray) -> DequantizedConst:
    """ONNX Runtime's int32 quantization of a float bias with scale f32(s_x · s_w)."""
    scale = (_F32(x_scale) * w_scale.astype(_F32).reshape(-1)).astype(_F32)
    with np.errstate(all="ignore"):
        q = np.rint((b.astype(_F32) / scale).astype(_F32))
    if not np.all(np.abs(q) < 2.0 ** 31):
        raise imp.model.fail(node, "ONNX Runtime's int32 quantization of the bias overflows "
                             "(bias / (input scale x weight scale) beyond int32)")
    quant = Quant(scale, np.zeros(scale.shape, np.int64), np.dtype(np.int32))
    return DequantizedConst(q.astype(np.int32), quant, 0)


def ort_weight_bias_quantization(imp, node, ins) -> list:
    """ins after ONNX Runtime's WeightBiasQuantization of `node` (module docstring)."""
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    if not (isinstance(x, Dequantized) and x.quant.per_tensor) \
            or not _reaches_quantize(imp, node):
        return ins
    dq_weights = isinstance(w, DequantizedConst)
    if not dq_weights and not (isinstance(w, np.ndarray) and w.dtype == np.float32):
        return ins
    if b is not None and not (isinstance(b, np.ndarray) and b.ndim == 1
                              and b.dtype == np.float32):
        return ins
    if dq_weights:
        if b is None:
            return ins
        w_scale = w.quant.scale.reshape(-1)
        if w_scale.size != 1 and (w_scale.size != b.size or w.axis % w.codes.ndim != 0):
            return ins
    else:
        w = quantized_weight(w)
        w_scale = w.quant.scale
    b = None if b is None else quantized_bias(imp, node, b, x.quant.scale_f32, w_scale)
    return [x, w, b] + list(ins[3:])


def conv_transpose(imp, node, ins):
    """ConvTranspose(x, W[, B]) -> a float-island expression."""
    attrs = attributes(node)
    shape = _weight_shape(imp, node, ins[1])
    try:
        geometry = onnx_geometry(attrs, shape)
    except ConvTransposeF32Error as exc:
        raise imp.model.fail(node, f"ConvTranspose: {exc}") from None
    ins = ort_weight_bias_quantization(imp, node, ins)
    packed = isinstance(ins[1], np.ndarray) and ort_packs_weights(shape, geometry.group)
    return [_float_island.extend(imp, _tagged(node, packed), ins)]


HANDLERS = {("", "ConvTranspose"): (conv_transpose, 2, 3)}
