"""Float (or QDQ) ONNX models as cost-model workloads: one LayerShape per Conv / ConvTranspose /
Gemm / MatMul that multiplies by weights, with shapes from ONNX shape inference."""

from __future__ import annotations

import math

from hwsim.onnx._builder import conv_geometry
from hwsim.onnx._deps import require
from hwsim.onnx._model import ModelSource, OnnxModel, attributes, load_model, static_dims
from hwsim.onnx.errors import OnnxImportError
from hwsim.workloads import LayerShape, conv_transpose_layer, linear_layer

_DENSE = ("Gemm", "MatMul")
#: Ops that do MACs the cost model has no layer shape for: refused, never silently dropped.
_UNPRICED = {
    "DeformConv": "deformable convolution",
    "LSTM": "recurrent layer", "GRU": "recurrent layer", "RNN": "recurrent layer",
    "ConvInteger": "integer convolution (a quantized model: use load_onnx_program)",
    "MatMulInteger": "integer matmul (a quantized model: use load_onnx_program)",
    "QLinearConv": "QOperator convolution (a quantized model: use load_onnx_program)",
    "QLinearMatMul": "QOperator matmul (a quantized model: use load_onnx_program)",
}


def load_onnx_workload(source: ModelSource, *, batch: int = 1, act_bits: int = 8,
                       weight_bits: int = 8) -> list[LayerShape]:
    """The layers of an ONNX model that do MACs on weights, as `LayerShape`s in graph order.

    source: a path, bytes or onnx.ModelProto; float models, and QDQ models (whose weights are
        DequantizeLinear of constants).
    batch: the value of a symbolic batch dimension (a static one is kept). Every other
        dimension must be static: shapes come from `onnx.shape_inference`.
    act_bits, weight_bits: the operand widths recorded on every layer.

    Emitted: 2-D Conv (kind "conv", groups, pads after auto_pad, dilation), 2-D ConvTranspose
    (priced as a captured transposed conv: the GEMM of its scatter form, real products only,
    `hwsim.workloads.conv_transpose_layer`) and Gemm / MatMul whose second operand is a weight
    (kind "linear": in = K, out = N, batch = the product of the first operand's other
    dimensions). A MatMul of two activations multiplies no weights and is not a layer here.
    Ops that do MACs on weights but have no layer shape here (DeformConv, LSTM / GRU / RNN,
    and the integer / QOperator ops of quantized models) raise
    `OnnxImportError` naming the node ("cannot be priced"): dropping them would under-report the
    cost. Other ops do no MACs on weights. Names are the ONNX node names.
    """
    onnx = require("onnx", "load_onnx_workload")
    model = load_model(source)
    shapes = _inferred_shapes(onnx, model, batch)
    weights = _weight_tensors(model)
    layers = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _UNPRICED:
            raise model.fail(node, f"cannot be priced: the cost model has no layer shape for a "
                                   f"{_UNPRICED[node.op_type]}, and leaving it out would "
                                   f"under-report the cost (supported: Conv, ConvTranspose, "
                                   f"Gemm, MatMul)")
        if node.op_type == "Conv":
            layers.append(_conv_layer(model, node, shapes, batch, act_bits, weight_bits))
        elif node.op_type == "ConvTranspose":
            layers.append(_conv_transpose_layer(model, node, shapes, act_bits, weight_bits))
        elif node.op_type in _DENSE and node.input[1] in weights:
            layers.append(_linear_layer(model, node, shapes, act_bits, weight_bits))
    if not layers:
        raise OnnxImportError(f"{model.label}: no Conv, ConvTranspose, Gemm or MatMul with "
                              "weights to cost")
    return layers


def _inferred_shapes(onnx, model: OnnxModel, batch: int) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor after fixing the input's symbolic batch dimension."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    x = model.graph_input()
    dims = static_dims(model, x, batch)
    for value in proto.graph.input:
        if value.name == x.name:
            for d, size in zip(value.type.tensor_type.shape.dim, dims):
                d.ClearField("dim_param")
                d.dim_value = size
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise OnnxImportError(f"{model.label}: ONNX shape inference failed ({exc})") from None
    shapes = {name: tuple(int(v) for v in arr.shape) for name, arr in model.constants.items()}
    for value in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output):
        t = value.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[value.name] = tuple(int(d.dim_value) for d in t.shape.dim)
    return shapes


def _weight_tensors(model: OnnxModel) -> set[str]:
    """Constants, DequantizeLinear outputs of constants (QDQ weights), and ConstantOfShape
    outputs of constant shapes (how onnx's "light" test models carry their weights)."""
    names = set(model.constants)
    for node in model.graph.node:
        if node.op_type in ("DequantizeLinear", "ConstantOfShape") and node.input[0] in model.constants:
            names.add(node.output[0])
    return names


def _shape(model: OnnxModel, node, name: str, shapes: dict, rank: int | None = None):
    shape = shapes.get(name)
    if shape is None:
        raise model.fail(node, f"shape inference found no static shape for {name!r}")
    if rank is not None and len(shape) != rank:
        raise model.fail(node, f"{name!r} must be {rank}-D here; got shape {shape}")
    return shape


def _conv_layer(model, node, shapes, batch, act_bits, weight_bits) -> LayerShape:
    x = _shape(model, node, node.input[0], shapes)
    if len(x) != 4:
        raise model.fail(node, f"only 2-D convolutions are costed; input shape {x}")
    w = _shape(model, node, node.input[1], shapes, 4)
    stride, pads, dilation, groups, _ = conv_geometry(model, node, attributes(node), x, w)
    return LayerShape(
        name=node.name or node.output[0], kind="conv", in_h=x[2], in_w=x[3], in_channels=x[1],
        out_channels=w[0], kernel_h=w[2], kernel_w=w[3], stride_h=stride[0], stride_w=stride[1],
        pad_top=pads[0], pad_left=pads[1], pad_bottom=pads[2], pad_right=pads[3],
        dilation_h=dilation[0], dilation_w=dilation[1], groups=groups, batch=x[0],
        act_bits=act_bits, weight_bits=weight_bits)


def _conv_transpose_layer(model, node, shapes, act_bits, weight_bits) -> LayerShape:
    """ONNX weights are (C, K/group, R, S): K = group * w[1] output channels."""
    x = _shape(model, node, node.input[0], shapes)
    if len(x) != 4:
        raise model.fail(node, f"only 2-D transposed convolutions are costed; input shape {x}")
    w = _shape(model, node, node.input[1], shapes, 4)
    groups = int(attributes(node).get("group", 1))
    if groups < 1 or x[1] % groups or w[0] != x[1]:
        raise model.fail(node, f"group {groups}: input channels {x[1]} and weight shape {w} "
                               "do not match")
    return conv_transpose_layer(node.name or node.output[0], batch=x[0], in_h=x[2], in_w=x[3],
                                in_channels=x[1], out_channels=w[1] * groups, kernel=w[2:],
                                groups=groups, act_bits=act_bits, weight_bits=weight_bits)


def _linear_layer(model, node, shapes, act_bits, weight_bits) -> LayerShape:
    a = _shape(model, node, node.input[0], shapes)
    b = _shape(model, node, node.input[1], shapes, 2)
    attrs = attributes(node) if node.op_type == "Gemm" else {}
    if attrs.get("transA", 0):
        a = a[::-1]
    k, n = (b[1], b[0]) if attrs.get("transB", 0) else b
    if a[-1] != k:
        raise model.fail(node, f"operand shapes {a} and {b} do not multiply")
    rows = math.prod(a[:-1])
    return linear_layer(node.name or node.output[0], k, n, batch=rows, act_bits=act_bits,
                        weight_bits=weight_bits)

