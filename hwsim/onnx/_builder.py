"""Integer-program nodes with ONNX Runtime's semantics, shared by the QOperator and QDQ front
ends: each method checks its operands, computes the output shape and ORT's requantization
constants (`ort_semantics`), decides the accumulator mode (`ort_cpu.pairs_decision`) and adds
one node named after the ONNX tensor it produces, with the ONNX node name as its source."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hwsim.ir import IntProgram, Node, TensorQuant
from hwsim.ir.specs import RequantMode, RequantSpec
from hwsim.kernels import ort_output_scale
from hwsim.onnx import ort_semantics as ort
from hwsim.onnx._model import OnnxModel
from hwsim.onnx._values import CODE_DTYPES, FloatInput, QTensor, Quant
from hwsim.onnx.ort_cpu import pairs_decision

ACCUMULATOR_BITS = 32  # ONNX Runtime accumulates in int32


class ProgramBuilder:
    def __init__(self, model: OnnxModel, name: str, int16_pairs: bool | None) -> None:
        self.model = model
        self.program = IntProgram(name)
        self.int16_pairs = int16_pairs

    def _emit(self, onnx_node, out_name: str, op: str, inputs: tuple[str, ...],
              shape: tuple[int, ...], out: TensorQuant, attrs: dict, arrays: dict) -> QTensor:
        node = Node(out_name, op, inputs, tuple(int(d) for d in shape), out, attrs, arrays,
                    source=onnx_node.name or out_name)
        self.program.add(node)
        return QTensor(out_name, out, node.out_shape, out.dtype)

    # ----------------------------------------------------------------------------------------
    def input(self, onnx_node, out_name: str, x: FloatInput, q: Quant) -> QTensor:
        if self.program.input_name is not None:
            raise self.model.fail(onnx_node, f"the model input is quantized a second time (first: "
                                  f"{self.program.input_name!r}); an integer program has one input")
        if not q.per_tensor:
            raise self.model.fail(onnx_node, "the input quantization must be per tensor; got "
                                  f"{q.scale.size} scales")
        attrs = {"onnx_input": x.name, "quantize": "onnxruntime QuantizeLinear: "
                 "saturate(round_half_even(f32(x) / scale) + zero_point)"}
        return self._emit(onnx_node, out_name, "input", (), x.shape, q.tensor_quant(), attrs, {})

    def _activation_quant(self, onnx_node, x: QTensor, q: Quant, what: str) -> None:
        if not q.per_tensor:
            raise self.model.fail(onnx_node, f"{what} must be quantized per tensor; got "
                                  f"{q.scale.size} scales")
        if q.dtype != x.dtype:
            raise self.model.fail(onnx_node, f"{what} zero point has type {q.dtype} but its "
                                  f"codes are {x.dtype}")

    def _accumulator(self, x: QTensor, w: np.ndarray, depthwise: bool) -> tuple[dict, str]:
        mode, reason = pairs_decision(x.dtype, w.dtype, depthwise, self.int16_pairs)
        return {"bits": ACCUMULATOR_BITS, "mode": mode}, reason

    def _dense_arrays(self, onnx_node, w: np.ndarray, wq: Quant, bias, k: int) -> dict:
        if w.dtype not in CODE_DTYPES or wq.dtype != w.dtype:
            raise self.model.fail(onnx_node, f"weights must be uint8 or int8 codes with a zero "
                                  f"point of the same type; got {w.dtype} and {wq.dtype}")
        if wq.scale.size not in (1, k) or wq.zero_point.size not in (1, k):
            raise self.model.fail(onnx_node, f"weight scale / zero point must be scalars or have "
                                  f"{k} entries (one per output channel); got "
                                  f"{wq.scale.size} / {wq.zero_point.size}")
        arrays = {"weight": np.ascontiguousarray(w).copy(),
                  "weight_zero_point": np.broadcast_to(wq.zero_point.astype(np.int64).reshape(-1),
                                                       (k,)).copy(),
                  "weight_scale": np.broadcast_to(wq.scale.astype(np.float64).reshape(-1),
                                                  (k,)).copy()}
        if bias is not None:
            b = np.asarray(bias)
            if b.dtype != np.int32 or b.size != k:
                raise self.model.fail(onnx_node, f"bias must be int32 with {k} entries; got "
                                      f"{b.dtype} of shape {b.shape}")
            arrays["bias"] = b.reshape(k).astype(np.int64)
        return arrays

    def _requant(self, onnx_node, yq: Quant) -> dict:
        """ORT's float32 requantization onto the output's full code range."""
        if not yq.per_tensor or yq.dtype not in CODE_DTYPES:
            raise self.model.fail(onnx_node, f"the output must be quantized per tensor to uint8 "
                                  f"or int8; got {yq.scale.size} scales, type {yq.dtype}")
        return RequantSpec(RequantMode.FLOAT32, tuple(yq.range)).to_attrs()

    # ----------------------------------------------------------------------------------------
    def conv(self, onnx_node, out_name: str, x: QTensor, xq: Quant, w: np.ndarray, wq: Quant,
             bias, yq: Quant, attrs: dict) -> QTensor:
        self._activation_quant(onnx_node, x, xq, "the input")
        if len(x.shape) != 4 or w.ndim != 4:
            raise self.model.fail(onnx_node, f"only 2-D convolutions are supported (input and "
                                  f"weight 4-D); got input {x.shape}, weight {w.shape}")
        k, cg, r, s = w.shape
        stride, pads, dilation, groups, (oh, ow) = conv_geometry(self.model, onnx_node, attrs,
                                                                  x.shape, w.shape)
        if groups < 1 or k % groups or x.shape[1] != groups * cg:
            raise self.model.fail(onnx_node, f"group={groups} does not fit input channels "
                                  f"{x.shape[1]} and weight {w.shape}")
        arrays = self._dense_arrays(onnx_node, w, wq, bias, k)
        arrays["rq_scale_f32"] = np.asarray(ort_output_scale(xq.scale_f32, wq.scale.reshape(-1),
                                                             yq.scale_f32),
                                            dtype=np.float32).reshape(-1)
        depthwise = groups > 1 and groups == k and cg == 1
        acc, reason = self._accumulator(x, w, depthwise)
        node_attrs = {
            "stride": list(stride), "padding": list(pads), "dilation": list(dilation),
            "groups": groups, "accumulator": acc, "accumulator_reason": reason,
            "requant": self._requant(onnx_node, yq), "input_zero_point": xq.zp,
            "input_scale": float(xq.scale_f32), "output_scale": float(yq.scale_f32),
            "weight_bits": 8, "input_bits": 8, "engine": "ort"}
        return self._emit(onnx_node, out_name, "conv2d", (x.node,), (x.shape[0], k, oh, ow),
                          yq.tensor_quant(), node_attrs, arrays)

    def linear(self, onnx_node, out_name: str, x: QTensor, xq: Quant, w: np.ndarray,
               wq: Quant, bias, yq: Quant, scale_f32: np.ndarray) -> QTensor:
        """w: codes (out, in); scale_f32: ORT's requantization scale, scalar or (out,)."""
        self._activation_quant(onnx_node, x, xq, "the input")
        if len(x.shape) != 2 or w.ndim != 2 or w.shape[1] != x.shape[1]:
            raise self.model.fail(onnx_node, f"only (N, in) x (in, out) products are supported; "
                                  f"got input {x.shape}, weight (out, in) = {w.shape}")
        k = w.shape[0]
        arrays = self._dense_arrays(onnx_node, w, wq, bias, k)
        arrays["rq_scale_f32"] = np.asarray(scale_f32, dtype=np.float32).reshape(-1)
        acc, reason = self._accumulator(x, w, False)
        node_attrs = {"accumulator": acc, "accumulator_reason": reason,
                      "requant": self._requant(onnx_node, yq), "input_zero_point": xq.zp,
                      "input_scale": float(xq.scale_f32), "output_scale": float(yq.scale_f32),
                      "weight_bits": 8, "input_bits": 8, "engine": "ort"}
        return self._emit(onnx_node, out_name, "linear", (x.node,), (x.shape[0], k),
                          yq.tensor_quant(), node_attrs, arrays)

    def add(self, onnx_node, out_name: str, a: QTensor, aq: Quant, b: QTensor, bq: Quant,
            yq: Quant) -> QTensor:
        self._activation_quant(onnx_node, a, aq, "input A")
        self._activation_quant(onnx_node, b, bq, "input B")
        if a.shape != b.shape:
            raise self.model.fail(onnx_node, f"only adds of equal shapes are supported (no "
                                  f"broadcasting); got {a.shape} and {b.shape}")
        attrs = {"input_zero_points": [aq.zp, bq.zp], "requant": self._requant(onnx_node, yq),
                 "note": "onnxruntime QLinearAdd"}
        arrays = {"rq_scale_f32": ort.add_ratios(aq.scale_f32, bq.scale_f32, yq.scale_f32)}
        return self._emit(onnx_node, out_name, "add", (a.node, b.node), a.shape,
                          yq.tensor_quant(), attrs, arrays)

    def global_avgpool(self, onnx_node, out_name: str, x: QTensor, xq: Quant,
                       yq: Quant) -> QTensor:
        self._activation_quant(onnx_node, x, xq, "the input")
        if len(x.shape) != 4:
            raise self.model.fail(onnx_node, f"the input must be (N, C, H, W); got {x.shape}")
        n, c, h, w = x.shape
        attrs = {"global": True, "kernel": [h, w], "stride": [1, 1], "padding": [0, 0, 0, 0],
                 "input_zero_point": xq.zp, "requant": self._requant(onnx_node, yq),
                 "note": "onnxruntime QLinearGlobalAveragePool"}
        arrays = {"rq_scale_f32": np.array([ort.global_avgpool_scale(xq.scale_f32, yq.scale_f32,
                                                                     h * w)], dtype=np.float32)}
        return self._emit(onnx_node, out_name, "avgpool2d", (x.node,), (n, c, 1, 1),
                          yq.tensor_quant(), attrs, arrays)

    def maxpool(self, onnx_node, out_name: str, x: QTensor, attrs: dict) -> QTensor:
        if len(x.shape) != 4:
            raise self.model.fail(onnx_node, f"only 2-D max pooling is supported; got input "
                                  f"{x.shape}")
        if attrs.get("ceil_mode", 0) or attrs.get("storage_order", 0):
            raise self.model.fail(onnx_node, "ceil_mode=1 and storage_order=1 are not supported")
        kernel = tuple(attrs.get("kernel_shape", ()))
        if len(kernel) != 2:
            raise self.model.fail(onnx_node, f"kernel_shape must have 2 entries; got {kernel}")
        geo = dict(attrs, group=1)
        stride, pads, dilation, _, (oh, ow) = conv_geometry(self.model, onnx_node, geo, x.shape,
                                                            (1, 1) + kernel)
        node_attrs = {"kernel": list(kernel), "stride": list(stride), "padding": list(pads),
                      "dilation": list(dilation), "ceil_mode": False}
        return self._emit(onnx_node, out_name, "maxpool2d", (x.node,),
                          (x.shape[0], x.shape[1], oh, ow), x.quant, node_attrs, {})

    def flatten(self, onnx_node, out_name: str, x: QTensor) -> QTensor:
        shape = (x.shape[0], math.prod(x.shape[1:]))
        return self._emit(onnx_node, out_name, "flatten", (x.node,), shape, x.quant,
                          {"start_dim": 1}, {})


def conv_geometry(model: OnnxModel, onnx_node, attrs: dict[str, Any], x_shape, w_shape):
    """ONNX Conv/Pool attributes -> (stride, pads (top, left, bottom, right), dilation, group,
    (OH, OW)), resolving auto_pad."""
    r, s = int(w_shape[2]), int(w_shape[3])
    h, w = int(x_shape[2]), int(x_shape[3])
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != (r, s):
        raise model.fail(onnx_node, f"kernel_shape {attrs['kernel_shape']} does not match the "
                         f"weight's {(r, s)}")
    stride = tuple(int(v) for v in attrs.get("strides", (1, 1)))
    dilation = tuple(int(v) for v in attrs.get("dilations", (1, 1)))
    pads = tuple(int(v) for v in attrs.get("pads", (0, 0, 0, 0)))
    if len(stride) != 2 or len(dilation) != 2 or len(pads) != 4:
        raise model.fail(onnx_node, f"strides, dilations and pads must describe 2 spatial axes; "
                         f"got {stride}, {dilation}, {pads}")
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        quad = [0, 0, 0, 0]
        for axis, (size, k) in enumerate(((h, r), (w, s))):
            out = -(-size // stride[axis])
            total = max(0, (out - 1) * stride[axis] + (k - 1) * dilation[axis] + 1 - size)
            small, big = total // 2, total - total // 2
            quad[axis], quad[axis + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        pads = tuple(quad)
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad != "NOTSET":
        raise model.fail(onnx_node, f"auto_pad={auto_pad!r} is not one of NOTSET, SAME_UPPER, "
                         "SAME_LOWER, VALID")
    oh = (h + pads[0] + pads[2] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise model.fail(onnx_node, f"the kernel {(r, s)} does not fit the padded input "
                         f"{(h, w)} + pads {pads}")
    return stride, pads, dilation, int(attrs.get("group", 1)), (oh, ow)
