"""QOperator front end: ONNX Runtime's QLinear* ops (and ops on quantized tensors) -> nodes.

Each handler takes (importer, onnx node, input values) and returns the values of the node's
outputs (see `_values`). `HANDLERS` maps (domain, op type) to (handler, fewest inputs, most
inputs); the importer pads omitted optional inputs with None. QLinearAdd, QLinearMul and the
other float32 contrib ops are in `_qlinear_ops`."""

from __future__ import annotations

import math

import numpy as np

from hwsim.kernels import ort_output_scale
from hwsim.onnx import ort_semantics as ort
from hwsim.onnx._model import attributes
from hwsim.onnx._values import Dequantized, FloatOp, QTensor


def qlinear_conv(imp, node, ins):
    x, sx, zx, w, sw, zw, sy, zy, bias = ins
    if attributes(node).get("channels_last", 0):
        raise imp.model.fail(node, "channels_last=1 is not supported (hwsim tensors are NCHW)")
    return [imp.builder.conv(
        node, node.output[0], imp.activation(node, x, "x"), imp.quant(node, sx, zx, "x"),
        imp.constant(node, w, "w"), imp.quant(node, sw, zw, "w"),
        None if bias is None else imp.constant(node, bias, "B"), imp.quant(node, sy, zy, "y"),
        attributes(node))]


def qlinear_matmul(imp, node, ins):
    a, sa, za, b, sb, zb, sy, zy = ins
    aq, bq, yq = imp.quant(node, sa, za, "a"), imp.quant(node, sb, zb, "b"), imp.quant(node, sy, zy, "y")
    w = imp.constant(node, b, "b")
    if w.ndim != 2:
        raise imp.model.fail(node, f"input 'b' must be a 2-D constant (K, N); got shape {w.shape}")
    scale = ort_output_scale(aq.scale_f32, bq.scale.reshape(-1), yq.scale_f32)
    return [imp.builder.linear(node, node.output[0], imp.activation(node, a, "a"), aq,
                               np.ascontiguousarray(w.T), bq, None, yq, scale)]


def qgemm(imp, node, ins):
    a, sa, za, b, sb, zb, c, sy, zy = ins
    if sy is None:
        raise imp.model.fail(node, "QGemm without y_scale outputs float; hwsim imports only "
                             "quantized outputs")
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise imp.model.fail(node, "transA=1 is not supported")
    aq, bq, yq = imp.quant(node, sa, za, "A"), imp.quant(node, sb, zb, "B"), imp.quant(node, sy, zy, "y")
    w = imp.constant(node, b, "B")
    if w.ndim != 2:
        raise imp.model.fail(node, f"input 'B' must be a 2-D constant; got shape {w.shape}")
    w = w if attrs.get("transB", 0) else np.ascontiguousarray(w.T)  # -> (out, in)
    bias = None if c is None else imp.constant(node, c, "C").reshape(-1)
    scale = ort.gemm_output_scale(attrs.get("alpha", 1.0), aq.scale_f32, bq.scale.reshape(-1),
                                  yq.scale_f32)
    return [imp.builder.linear(node, node.output[0], imp.activation(node, a, "A"), aq, w, bq,
                               bias, yq, scale)]


def qlinear_global_average_pool(imp, node, ins):
    x, sx, zx, sy, zy = ins
    if attributes(node).get("channels_last", 0):
        raise imp.model.fail(node, "channels_last=1 is not supported (hwsim tensors are NCHW)")
    return [imp.builder.global_avgpool(node, node.output[0], imp.activation(node, x, "X"),
                                       imp.quant(node, sx, zx, "x"), imp.quant(node, sy, zy, "y"))]


# --- ops that move codes without changing them: on codes they emit a node; on a dequantized
# tensor (QDQ form) they wait for their QuantizeLinear like any float op. `emit_*` are shared
# with the QDQ front end, which names the node after the QuantizeLinear's output.

def max_pool(imp, node, ins):
    if isinstance(ins[0], Dequantized):
        return [FloatOp(node, tuple(ins))]
    return [emit_max_pool(imp, node, imp.activation(node, ins[0], "X"), node.output[0])]


def flatten(imp, node, ins):
    if isinstance(ins[0], Dequantized):
        return [FloatOp(node, tuple(ins))]
    return [emit_flatten(imp, node, imp.activation(node, ins[0], "input"), node.output[0])]


def reshape(imp, node, ins):
    if isinstance(ins[0], Dequantized):
        return [FloatOp(node, tuple(ins))]
    return [emit_reshape(imp, node, imp.activation(node, ins[0], "data"), ins[1], node.output[0])]


def emit_max_pool(imp, node, x: QTensor, out_name: str) -> QTensor:
    if len(node.output) > 1 and node.output[1]:
        raise imp.model.fail(node, "the Indices output of MaxPool is not supported")
    return imp.builder.maxpool(node, out_name, x, attributes(node))


def emit_flatten(imp, node, x: QTensor, out_name: str) -> QTensor:
    axis = int(attributes(node).get("axis", 1))
    if axis % len(x.shape) != 1:
        raise imp.model.fail(node, f"only axis=1 (keep the batch) is supported; got axis={axis}")
    return imp.builder.flatten(node, out_name, x)


def emit_reshape(imp, node, x: QTensor, shape_spec, out_name: str) -> QTensor:
    target = reshape_target(imp, node, x.shape, imp.constant(node, shape_spec, "shape"))
    if target != (x.shape[0], math.prod(x.shape[1:])):
        raise imp.model.fail(node, f"only reshapes to (N, -1) (a flatten) are supported; "
                             f"{x.shape} -> {target}")
    return imp.builder.flatten(node, out_name, x)


def reshape_target(imp, node, shape: tuple[int, ...], spec: np.ndarray) -> tuple[int, ...]:
    """ONNX Reshape's output shape (0 copies a dimension, -1 is inferred)."""
    dims = [int(d) for d in np.asarray(spec).reshape(-1)]
    if attributes(node).get("allowzero", 0) and 0 in dims:
        raise imp.model.fail(node, "allowzero=1 with a 0 in the shape is not supported")
    dims = [shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1:
        raise imp.model.fail(node, f"at most one -1 is allowed in the shape; got {dims}")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(shape) // max(known, 1)
    if math.prod(dims) != math.prod(shape):
        raise imp.model.fail(node, f"cannot reshape {shape} to {dims}")
    return tuple(dims)


def identity(imp, node, ins):
    return [ins[0]]


HANDLERS = {
    ("", "QLinearConv"): (qlinear_conv, 8, 9),
    ("com.microsoft", "QLinearConv"): (qlinear_conv, 8, 9),
    ("", "QLinearMatMul"): (qlinear_matmul, 8, 8),
    ("com.microsoft", "QGemm"): (qgemm, 6, 9),
    ("com.microsoft", "QLinearGlobalAveragePool"): (qlinear_global_average_pool, 5, 5),
    ("", "MaxPool"): (max_pool, 1, 1),
    ("", "Flatten"): (flatten, 1, 1),
    ("", "Reshape"): (reshape, 2, 2),
    ("", "Identity"): (identity, 1, 1),
}
