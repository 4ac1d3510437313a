"""QDQ front end: QuantizeLinear / DequantizeLinear, and the float ops between them.

A float op whose operands are dequantized codes becomes a `FloatOp`; the QuantizeLinear that
consumes it folds DQ -> op -> Q into one integer node with the semantics ONNX Runtime gives the
fused op (QLinearConv, QGemm, QLinearMatMul, QLinearAdd, QLinearGlobalAveragePool, and the
float32 QLinear ops of `_qlinear_ops`; MaxPool, Flatten, Reshape, Transpose, Split, Slice,
Squeeze and Unsqueeze run on the codes when the Q and DQ parameters agree).
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels import ort_output_scale
from hwsim.onnx import _qlinear_ops, _qoperator, _resize
from hwsim.onnx import ort_semantics as ort
from hwsim.onnx._model import attributes
from hwsim.onnx._values import Dequantized, DequantizedConst, FloatInput, FloatOp, QTensor, Quant

FOLDABLE = ("Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "MaxPool", "Flatten",
            "Reshape", "Transpose", "Split", "Slice", "Squeeze", "Unsqueeze", "Resize") + tuple(
                op for op in _qlinear_ops.FOLDS if op != "Add")


def quantize_linear(imp, node, ins):
    x, scale, zero_point = ins
    q = imp.quant(node, scale, zero_point, "y")
    if isinstance(x, FloatInput):
        return [imp.builder.input(node, node.output[0], x, q)]
    if isinstance(x, FloatOp):
        return [fold(imp, x, node, q)]
    if isinstance(x, Dequantized):
        if q.same_as(x.quant):
            return [x.source]  # DQ -> Q with the same parameters: the codes themselves
        raise imp.model.fail(node, "re-quantizing a dequantized tensor to other parameters "
                             "(DequantizeLinear -> QuantizeLinear) is not supported")
    raise imp.model.fail(node, f"expected the model input or a float op over dequantized "
                         f"tensors; got {imp.describe(x)}")


def dequantize_linear(imp, node, ins):
    x, scale, zero_point = ins
    codes_dtype = x.dtype if isinstance(x, (QTensor, np.ndarray)) else np.uint8
    q = imp.quant(node, scale, zero_point, "x", default_dtype=codes_dtype)
    if isinstance(x, QTensor):
        if q.dtype != x.dtype:
            raise imp.model.fail(node, f"zero point type {q.dtype} differs from the codes' "
                                 f"type {x.dtype}")
        return [Dequantized(x, q)]
    if isinstance(x, np.ndarray):
        return [DequantizedConst(x, q, _axis(node) % max(x.ndim, 1))]
    raise imp.model.fail(node, f"expected integer codes or a constant; got {imp.describe(x)}")


def _axis(node) -> int:
    return int(attributes(node).get("axis", 1))


def float_op(imp, node, ins):
    """A float op over dequantized operands: kept until its QuantizeLinear folds it."""
    for v in ins:
        if not isinstance(v, (Dequantized, DequantizedConst, np.ndarray, type(None))):
            raise imp.model.fail(node, f"a float {node.op_type} is importable only between "
                                 f"DequantizeLinear and QuantizeLinear; an operand is "
                                 f"{imp.describe(v)}")
    return [FloatOp(node, tuple(ins))]


# --------------------------------------------------------------------------------------------
# Folding DQ -> op -> Q

def fold(imp, fop: FloatOp, q_node, yq: Quant) -> QTensor:
    node, ins, out = fop.node, fop.inputs, q_node.output[0]
    b = imp.builder
    if node.op_type == "Conv":
        x, xq = _dequantized(imp, node, ins[0], "X")
        w = _const(imp, node, ins[1], "W", out_axis=0)
        bias = _bias(imp, node, ins[2])
        return b.conv(node, out, x, xq, w.codes, w.quant, bias, yq, attributes(node))
    if node.op_type in ("Gemm", "MatMul"):
        return _fold_dense(imp, node, ins, out, yq)
    if node.op_type in _qlinear_ops.FOLDS:  # Add: plain, broadcast or with a constant
        return _qlinear_ops.fold(imp, fop, q_node, yq)
    if node.op_type == "GlobalAveragePool":
        x, xq = _dequantized(imp, node, ins[0], "X")
        return b.global_avgpool(node, out, x, xq, yq)
    # MaxPool / shape ops / Resize: the codes pass through when Q undoes DQ exactly.
    x, xq = _dequantized(imp, node, ins[0], "X")
    if not yq.same_as(xq):
        raise imp.model.fail(node, f"{node.op_type} between DequantizeLinear and QuantizeLinear "
                             "with different parameters is not supported (it would need a "
                             "float requantization)")
    if node.op_type == "MaxPool":
        return _qoperator.emit_max_pool(imp, node, x, out)
    if node.op_type == "Flatten":
        return _qoperator.emit_flatten(imp, node, x, out)
    if node.op_type == "Resize":
        return _resize.emit_resize(imp, node, x, list(ins[1:]), out)
    if node.op_type == "Transpose":
        return _qoperator.emit_transpose(imp, node, x, out)
    if node.op_type in ("Squeeze", "Unsqueeze"):
        return _qoperator.emit_squeeze(imp, node, x, ins[1], out)
    if node.op_type == "Slice":
        return _qoperator.emit_slice(imp, node, x, list(ins[1:]), out)
    if node.op_type == "Split":
        return _qoperator.emit_split(imp, node, x, ins[1], getattr(fop, "index", 0), out)
    return _qoperator.emit_reshape(imp, node, x, ins[1], out)


def _fold_dense(imp, node, ins, out: str, yq: Quant) -> QTensor:
    x, xq = _dequantized(imp, node, ins[0], "A")
    trans_b = node.op_type == "Gemm" and bool(attributes(node).get("transB", 0))
    w = _const(imp, node, ins[1], "B", out_axis=0 if trans_b else 1)
    if w.codes.ndim != 2:
        raise imp.model.fail(node, f"the weight must be a 2-D constant; got {w.codes.shape}")
    alpha, bias = 1.0, None
    if node.op_type == "Gemm":
        attrs = attributes(node)
        if attrs.get("transA", 0):
            raise imp.model.fail(node, "transA=1 is not supported")
        if ins[2] is not None and float(attrs.get("beta", 1.0)) != 1.0:
            raise imp.model.fail(node, "a bias with beta != 1 is not supported")
        alpha = float(attrs.get("alpha", 1.0))
        codes = w.codes if trans_b else w.codes.T
        bias = _bias(imp, node, ins[2])
    else:
        codes = w.codes.T
    scale = (ort.gemm_output_scale(alpha, xq.scale_f32, w.quant.scale.reshape(-1), yq.scale_f32)
             if node.op_type == "Gemm"
             else ort_output_scale(xq.scale_f32, w.quant.scale.reshape(-1), yq.scale_f32))
    return imp.builder.linear(node, out, x, xq, np.ascontiguousarray(codes), w.quant, bias, yq,
                              scale)


def _dequantized(imp, node, v, name: str) -> tuple[QTensor, Quant]:
    if not isinstance(v, Dequantized):
        raise imp.model.fail(node, f"input {name} must be a dequantized activation "
                             f"(DequantizeLinear of codes); got {imp.describe(v)}")
    return v.source, v.quant


def _const(imp, node, v, name: str, out_axis: int) -> DequantizedConst:
    """A dequantized constant weight, per tensor or per channel along `out_axis` (the axis of
    the output channels)."""
    if not isinstance(v, DequantizedConst):
        raise imp.model.fail(node, f"input {name} must be DequantizeLinear of constant codes; "
                             f"got {imp.describe(v)}")
    if not v.quant.per_tensor and v.axis != out_axis:
        raise imp.model.fail(node, f"input {name} is quantized per channel along axis {v.axis}; "
                             f"hwsim supports per-channel weights along the output axis "
                             f"{out_axis}")
    return v


def _bias(imp, node, v):
    """The int32 bias codes (ORT's fused kernels add them as they are), or None."""
    if v is None:
        return None
    if isinstance(v, DequantizedConst) and v.codes.dtype == np.int32:
        return v.codes
    raise imp.model.fail(node, f"the bias must be DequantizeLinear of int32 codes (as "
                         f"quantize_static writes it); got {imp.describe(v)}")


HANDLERS = {  # (domain, op type) -> (handler, fewest inputs, most inputs)
    ("", "QuantizeLinear"): (quantize_linear, 2, 3),
    ("", "DequantizeLinear"): (dequantize_linear, 2, 3),
    ("", "Conv"): (float_op, 2, 3),
    ("", "Gemm"): (float_op, 2, 3),
    ("", "MatMul"): (float_op, 2, 2),
    ("", "Add"): (float_op, 2, 2),
    ("", "GlobalAveragePool"): (float_op, 1, 1),
    ("", "Mul"): (float_op, 2, 2),
    ("", "Sigmoid"): (float_op, 1, 1),
    ("", "LeakyRelu"): (float_op, 1, 1),
    ("", "Softmax"): (float_op, 1, 1),
    ("", "AveragePool"): (float_op, 1, 1),
    ("", "Concat"): (float_op, 1, None),
}
