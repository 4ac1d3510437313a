"""Integer-program nodes for ONNX Runtime's float32 QLinear ops (QLinearSigmoid,
QLinearLeakyRelu, QLinearConcat, QLinearMul, QLinearAdd with broadcasting or a constant,
QLinearSoftmax, QLinearAveragePool), shared by the QOperator and QDQ front ends.

Each function checks its operands, computes the node's constants with the kernels that define
the semantics (tables, ratios) and adds one node named after the ONNX tensor it produces.
An operand of a binary op is ``(value, quant)`` with value a `QTensor` (codes of a program node)
or a numpy array of constant codes.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels import activation_table, exp_table, mul_ratio
from hwsim.onnx import ort_semantics as ort
from hwsim.onnx._builder import ProgramBuilder, conv_geometry
from hwsim.onnx._values import CODE_DTYPES, QTensor, Quant


def _same_type(b: ProgramBuilder, onnx_node, quants: list[Quant], yq: Quant) -> None:
    for q in quants:
        if q.dtype != yq.dtype:
            raise b.model.fail(onnx_node, f"inputs and output must have the same 8-bit type "
                               f"(ONNX Runtime's kernels take one type T); got {q.dtype} and "
                               f"{yq.dtype}")
    if not yq.per_tensor or yq.dtype not in CODE_DTYPES:
        raise b.model.fail(onnx_node, f"the output must be quantized per tensor to uint8 or "
                           f"int8; got {yq.scale.size} scales, type {yq.dtype}")


def _float(v) -> float:
    return float(np.float32(v))


def activation_lut(b: ProgramBuilder, onnx_node, out_name: str, x: QTensor, xq: Quant,
                   yq: Quant, fn: str, alpha: float | None = None) -> QTensor:
    """fn 'sigmoid' (QLinearSigmoid) or 'leaky_relu' (QLinearLeakyRelu, float32 alpha)."""
    b._activation_quant(onnx_node, x, xq, "the input")
    _same_type(b, onnx_node, [xq], yq)
    lo, hi = yq.range
    table = activation_table(fn, x_scale=xq.scale_f32, x_zero_point=xq.zp,
                             y_scale=yq.scale_f32, y_zero_point=yq.zp, qmin=lo, qmax=hi,
                             alpha=0.0 if alpha is None else np.float32(alpha))
    attrs = {"fn": fn, "input_scale": _float(xq.scale_f32), "input_zero_point": xq.zp}
    if fn == "leaky_relu":
        attrs["alpha"] = _float(alpha)
    return b._emit(onnx_node, out_name, "activation_lut", (x.node,), x.shape, yq.tensor_quant(),
                   attrs, {"table": table.astype(yq.dtype)})


def concat_lut(b: ProgramBuilder, onnx_node, out_name: str, xs: list[QTensor],
               xqs: list[Quant], yq: Quant, axis: int) -> QTensor:
    """QLinearConcat of activations xs along ``axis`` (not the batch axis)."""
    for i, (x, q) in enumerate(zip(xs, xqs)):
        b._activation_quant(onnx_node, x, q, f"input {i}")
    _same_type(b, onnx_node, xqs, yq)
    rank = len(xs[0].shape)
    if not -rank <= axis < rank or axis % rank == 0:
        raise b.model.fail(onnx_node, f"axis {axis} must name a non-batch axis of the rank-{rank} "
                           "inputs")
    axis %= rank
    rest = {x.shape[:axis] + x.shape[axis + 1:] for x in xs}
    if any(len(x.shape) != rank for x in xs) or len(rest) != 1:
        raise b.model.fail(onnx_node, f"inputs must agree on every axis but {axis}; got "
                           f"{[x.shape for x in xs]}")
    lo, hi = yq.range
    tables = np.stack([activation_table("identity", x_scale=q.scale_f32, x_zero_point=q.zp,
                                        y_scale=yq.scale_f32, y_zero_point=yq.zp, qmin=lo,
                                        qmax=hi) for q in xqs]).astype(yq.dtype)
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    attrs = {"axis": axis, "input_scales": [_float(q.scale_f32) for q in xqs],
             "input_zero_points": [q.zp for q in xqs], "note": "onnxruntime QLinearConcat"}
    return b._emit(onnx_node, out_name, "concat_lut", tuple(x.node for x in xs), tuple(shape),
                   yq.tensor_quant(), attrs, {"tables": tables})


def _binary(b: ProgramBuilder, onnx_node, operands, yq: Quant) -> tuple:
    """(program inputs, constant arrays + attrs, output shape) of a binary op's operands."""
    quants = [q for _, q in operands]
    for i, (v, q) in enumerate(operands):
        if isinstance(v, QTensor):
            b._activation_quant(onnx_node, v, q, f"input {'AB'[i]}")
        elif not q.per_tensor or v.dtype != q.dtype:
            raise b.model.fail(onnx_node, f"constant input {'AB'[i]} must be {q.dtype} codes "
                               f"quantized per tensor; got {v.dtype} with {q.scale.size} scales")
    _same_type(b, onnx_node, quants, yq)
    acts = [v for v, _ in operands if isinstance(v, QTensor)]
    consts = [(i, v) for i, (v, _) in enumerate(operands) if not isinstance(v, QTensor)]
    if not acts:
        raise b.model.fail(onnx_node, "both operands are constants (fold them before import)")
    shapes = [v.shape if isinstance(v, QTensor) else tuple(v.shape) for v, _ in operands]
    try:
        out = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise b.model.fail(onnx_node, f"operand shapes {shapes[0]} and {shapes[1]} do not "
                           "broadcast") from None
    if any(len(s) == len(out) and s[0] != out[0] for s in shapes):
        raise b.model.fail(onnx_node, f"operands {shapes[0]} and {shapes[1]} must agree on the "
                           "batch dimension (a constant may not broadcast it)")
    attrs, arrays = {}, {}
    if consts:
        i, v = consts[0]
        attrs["constant_operand"] = i
        arrays["constant"] = np.ascontiguousarray(v).copy()
    attrs["input_zero_points"] = [q.zp for q in quants]
    attrs["input_scales"] = [_float(q.scale_f32) for q in quants]
    return tuple(a.node for a in acts), attrs, arrays, out


def mul(b: ProgramBuilder, onnx_node, out_name: str, operands, yq: Quant) -> QTensor:
    """QLinearMul of operands [(A, quant), (B, quant)]."""
    inputs, attrs, arrays, shape = _binary(b, onnx_node, operands, yq)
    (_, aq), (_, bq) = operands
    attrs.update(requant=b._requant(onnx_node, yq), note="onnxruntime QLinearMul")
    arrays["rq_scale_f32"] = np.array([mul_ratio(aq.scale_f32, bq.scale_f32, yq.scale_f32)],
                                      dtype=np.float32)
    return b._emit(onnx_node, out_name, "mul", inputs, shape, yq.tensor_quant(), attrs, arrays)


def add(b: ProgramBuilder, onnx_node, out_name: str, operands, yq: Quant) -> QTensor:
    """QLinearAdd of operands [(A, quant), (B, quant)]: the plain `add` op for two activations
    of one shape, `add_broadcast` otherwise."""
    (a, aq), (c, cq) = operands
    if isinstance(a, QTensor) and isinstance(c, QTensor) and a.shape == c.shape:
        return b.add(onnx_node, out_name, a, aq, c, cq, yq)
    inputs, attrs, arrays, shape = _binary(b, onnx_node, operands, yq)
    attrs.update(requant=b._requant(onnx_node, yq), note="onnxruntime QLinearAdd")
    arrays["rq_scale_f32"] = ort.add_ratios(aq.scale_f32, cq.scale_f32, yq.scale_f32)
    return b._emit(onnx_node, out_name, "add_broadcast", inputs, shape, yq.tensor_quant(), attrs,
                   arrays)


def softmax(b: ProgramBuilder, onnx_node, out_name: str, x: QTensor, xq: Quant, yq: Quant,
            axis: int, opset: int) -> QTensor:
    """QLinearSoftmax along ``axis`` with the semantics of ``opset`` (< 13: the dims from axis
    flattened)."""
    b._activation_quant(onnx_node, x, xq, "the input")
    _same_type(b, onnx_node, [xq], yq)
    rank = len(x.shape)
    if not -rank <= axis < rank or axis % rank == 0:
        raise b.model.fail(onnx_node, f"axis {axis} must name a non-batch axis of the rank-{rank} "
                           "input")
    axis %= rank
    reduce_len = int(np.prod(x.shape[axis:])) if opset < 13 else int(x.shape[axis])
    attrs = {"axis": axis, "opset": int(opset), "input_scale": _float(xq.scale_f32),
             "note": "onnxruntime QLinearSoftmax"}
    return b._emit(onnx_node, out_name, "softmax_table", (x.node,), x.shape, yq.tensor_quant(),
                   attrs, {"exp_table": exp_table(xq.scale_f32, reduce_len)})


def average_pool(b: ProgramBuilder, onnx_node, out_name: str, x: QTensor, xq: Quant, yq: Quant,
                 attrs: dict) -> QTensor:
    """QLinearAveragePool (2-D). A kernel over the whole unpadded input becomes ONNX Runtime's
    global pooling (exact integer sum, op avgpool2d), as ORT itself falls back to it."""
    b._activation_quant(onnx_node, x, xq, "the input")
    _same_type(b, onnx_node, [xq], yq)
    if len(x.shape) != 4:
        raise b.model.fail(onnx_node, f"only 2-D average pooling is supported; got input "
                           f"{x.shape}")
    if attrs.get("ceil_mode", 0):
        raise b.model.fail(onnx_node, "ceil_mode=1 is not supported")
    if any(d != 1 for d in attrs.get("dilations", (1, 1))):
        raise b.model.fail(onnx_node, f"dilations {attrs['dilations']} are not supported")
    kernel = tuple(int(k) for k in attrs.get("kernel_shape", ()))
    if len(kernel) != 2:
        raise b.model.fail(onnx_node, f"kernel_shape must have 2 entries; got {kernel}")
    stride, pads, _, _, (oh, ow) = conv_geometry(b.model, onnx_node, dict(attrs, group=1),
                                                 x.shape, (1, 1) + kernel)
    if kernel == tuple(x.shape[2:]) and not any(pads):
        return b.global_avgpool(onnx_node, out_name, x, xq, yq)
    node_attrs = {"kernel": list(kernel), "stride": list(stride), "padding": list(pads),
                  "count_include_pad": bool(attrs.get("count_include_pad", 0)),
                  "input_scale": _float(xq.scale_f32), "input_zero_point": xq.zp,
                  "note": "onnxruntime QLinearAveragePool"}
    return b._emit(onnx_node, out_name, "avgpool2d_f32", (x.node,),
                   (x.shape[0], x.shape[1], oh, ow), yq.tensor_quant(), node_attrs, {})
