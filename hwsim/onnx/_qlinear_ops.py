"""Front ends of ONNX Runtime's float32 QLinear ops: the QOperator contrib ops
(com.microsoft QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearMul, QLinearAdd,
QLinearConcat, QLinearAveragePool) and their QDQ forms DequantizeLinear -> Sigmoid / LeakyRelu /
Softmax / Mul / Add / Concat / AveragePool -> QuantizeLinear, which ONNX Runtime fuses into
the same kernels (its QDQ selectors: unary, binary and variadic ops).

`HANDLERS` has the importer's shape ((domain, op) -> (handler, fewest inputs, most inputs;
None: variadic)); `FOLDS` maps a float op type to the function folding DQ -> op -> Q.
"""

from __future__ import annotations

import numpy as np

from hwsim.onnx import _qlinear_nodes as nodes
from hwsim.onnx._model import attributes
from hwsim.onnx._values import Dequantized, DequantizedConst, QTensor

LEAKY_RELU_ALPHA = 0.01  # the ONNX default


# --- QOperator --------------------------------------------------------------------------------

def _unary(imp, node, ins):
    x, sx, zx, sy, zy = ins
    x = imp.activation(node, x, "X")
    return x, imp.quant(node, sx, zx, "X", x.dtype), imp.quant(node, sy, zy, "Y", x.dtype)


def qlinear_sigmoid(imp, node, ins):
    x, xq, yq = _unary(imp, node, ins)
    return [nodes.activation_lut(imp.builder, node, node.output[0], x, xq, yq, "sigmoid")]


def qlinear_leaky_relu(imp, node, ins):
    x, xq, yq = _unary(imp, node, ins)
    alpha = attributes(node).get("alpha", LEAKY_RELU_ALPHA)
    return [nodes.activation_lut(imp.builder, node, node.output[0], x, xq, yq, "leaky_relu",
                                 alpha)]


def qlinear_softmax(imp, node, ins):
    x, xq, yq = _unary(imp, node, ins)
    attrs = attributes(node)
    if "opset" not in attrs:
        raise imp.model.fail(node, "the 'opset' attribute is required (ONNX Runtime's "
                             "QLinearSoftmax takes its axis semantics from it)")
    opset = int(attrs["opset"])
    axis = int(attrs.get("axis", 1 if opset < 13 else -1))
    return [nodes.softmax(imp.builder, node, node.output[0], x, xq, yq, axis, opset)]


def qlinear_average_pool(imp, node, ins):
    x, xq, yq = _unary(imp, node, ins)
    attrs = attributes(node)
    if attrs.get("channels_last", 0):
        raise imp.model.fail(node, "channels_last=1 is not supported (hwsim tensors are NCHW)")
    return [nodes.average_pool(imp.builder, node, node.output[0], x, xq, yq, attrs)]


def _operand(imp, node, v, scale, zero_point, name: str, dtype):
    """(codes, Quant) of a binary op's operand: a program tensor or a constant initializer."""
    if isinstance(v, np.ndarray):
        if v.dtype != np.dtype(dtype):
            raise imp.model.fail(node, f"constant input {name!r} must hold {np.dtype(dtype)} "
                                 f"codes like the other operand; got {v.dtype}")
        return v, imp.quant(node, scale, zero_point, name, v.dtype)
    t = imp.activation(node, v, name)
    return t, imp.quant(node, scale, zero_point, name, t.dtype)


def _binary_operands(imp, node, ins):
    a, sa, za, b, sb, zb, sc, zc = ins
    act = next((v for v in (a, b) if isinstance(v, QTensor)), None)
    if act is None:
        raise imp.model.fail(node, f"input 'A' or 'B' must be integer codes; got "
                             f"{imp.describe(a)} and {imp.describe(b)}")
    operands = [_operand(imp, node, a, sa, za, "A", act.dtype),
                _operand(imp, node, b, sb, zb, "B", act.dtype)]
    return operands, imp.quant(node, sc, zc, "C", act.dtype)


def qlinear_mul(imp, node, ins):
    operands, yq = _binary_operands(imp, node, ins)
    return [nodes.mul(imp.builder, node, node.output[0], operands, yq)]


def qlinear_add(imp, node, ins):
    operands, yq = _binary_operands(imp, node, ins)
    return [nodes.add(imp.builder, node, node.output[0], operands, yq)]


def qlinear_concat(imp, node, ins):
    sy, zy, rest = ins[0], ins[1], ins[2:]
    if len(rest) % 3 or not rest:
        raise imp.model.fail(node, f"expected Y_scale, Y_zero_point and then (X, X_scale, "
                             f"X_zero_point) triples; got {len(ins)} inputs")
    xs, xqs = [], []
    for i in range(0, len(rest), 3):
        x = imp.activation(node, rest[i], f"X{i // 3}")
        xs.append(x)
        xqs.append(imp.quant(node, rest[i + 1], rest[i + 2], f"X{i // 3}", x.dtype))
    yq = imp.quant(node, sy, zy, "Y", xs[0].dtype)
    axis = int(attributes(node).get("axis", 1))
    return [nodes.concat_lut(imp.builder, node, node.output[0], xs, xqs, yq, axis)]


HANDLERS = {
    ("com.microsoft", "QLinearSigmoid"): (qlinear_sigmoid, 4, 5),
    ("com.microsoft", "QLinearLeakyRelu"): (qlinear_leaky_relu, 4, 5),
    ("com.microsoft", "QLinearSoftmax"): (qlinear_softmax, 4, 5),
    ("com.microsoft", "QLinearAveragePool"): (qlinear_average_pool, 4, 5),
    ("com.microsoft", "QLinearMul"): (qlinear_mul, 7, 8),
    ("com.microsoft", "QLinearAdd"): (qlinear_add, 7, 8),
    ("com.microsoft", "QLinearConcat"): (qlinear_concat, 5, None),
}


# --- QDQ: DequantizeLinear -> op -> QuantizeLinear ----------------------------------------

def _dequantized(imp, node, v, name: str):
    if not isinstance(v, Dequantized):
        raise imp.model.fail(node, f"input {name} must be a dequantized activation "
                             f"(DequantizeLinear of codes); got {imp.describe(v)}")
    return v.source, v.quant


def _qdq_operand(imp, node, v, name: str):
    if isinstance(v, DequantizedConst):
        if not v.quant.per_tensor:
            raise imp.model.fail(node, f"constant input {name} must be quantized per tensor")
        return v.codes, v.quant
    return _dequantized(imp, node, v, name)


def _default_opset(imp) -> int:
    for o in imp.model.proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 13


def fold(imp, fop, q_node, yq):
    """The integer node of DQ -> fop.node -> Q (q_node quantizes to yq)."""
    node, ins, out, b = fop.node, fop.inputs, q_node.output[0], imp.builder
    op = node.op_type
    if op in ("Mul", "Add"):
        operands = [_qdq_operand(imp, node, v, name) for v, name in zip(ins, "AB")]
        emit = nodes.mul if op == "Mul" else nodes.add
        return emit(b, node, out, operands, yq)
    if op == "Concat":
        pairs = [_dequantized(imp, node, v, f"{i}") for i, v in enumerate(ins)]
        return nodes.concat_lut(b, node, out, [p[0] for p in pairs], [p[1] for p in pairs], yq,
                                int(attributes(node).get("axis", 1)))
    x, xq = _dequantized(imp, node, ins[0], "X")
    attrs = attributes(node)
    if op == "Sigmoid":
        return nodes.activation_lut(b, node, out, x, xq, yq, "sigmoid")
    if op == "LeakyRelu":
        return nodes.activation_lut(b, node, out, x, xq, yq, "leaky_relu",
                                    attrs.get("alpha", LEAKY_RELU_ALPHA))
    if op == "Softmax":
        opset = _default_opset(imp)
        return nodes.softmax(b, node, out, x, xq, yq,
                             int(attrs.get("axis", 1 if opset < 13 else -1)), opset)
    return nodes.average_pool(b, node, out, x, xq, yq, attrs)  # AveragePool


FOLDS = ("Sigmoid", "LeakyRelu", "Softmax", "Mul", "Add", "Concat", "AveragePool")
