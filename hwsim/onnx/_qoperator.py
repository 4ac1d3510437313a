"""QOperator front end: ONNX Runtime's QLinear* ops (and ops on quantized tensors) -> nodes.

Each handler takes (importer, onnx node, input values) and returns the values of the node's
outputs (see `_values`). `HANDLERS` maps (domain, op type) to (handler, fewest inputs, most
inputs); the importer pads omitted optional inputs with None. QLinearAdd, QLinearMul and the
other float32 contrib ops are in `_qlinear_ops`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.kernels import ort_output_scale
from hwsim.kernels.float_island import reshape_target as island_reshape_target
from hwsim.kernels.float_island_errors import FloatIslandError
from hwsim.kernels.float_island_ops import (slice_ranges, split_piece, squeeze_shape,
                                            transpose_perm, unsqueeze_shape)
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


def transpose(imp, node, ins):
    if isinstance(ins[0], Dequantized):
        return [FloatOp(node, tuple(ins))]
    return [emit_transpose(imp, node, imp.activation(node, ins[0], "data"), node.output[0])]


def squeeze(imp, node, ins):
    if isinstance(ins[0], Dequantized):
        return [FloatOp(node, tuple(ins))]
    return [emit_squeeze(imp, node, imp.activation(node, ins[0], "data"), ins[1],
                         node.output[0])]


def split(imp, node, ins):
    """Split: one value per output (on a dequantized tensor, a `FloatOutput` each)."""
    if isinstance(ins[0], Dequantized):
        return [FloatOutput(node, tuple(ins), i) for i in range(len(node.output))]
    x = imp.activation(node, ins[0], "input")
    graph = imp.model.graph
    read = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    return [emit_split(imp, node, x, ins[1], i, name) if name in read else None
            for i, name in enumerate(node.output)]  # unread pieces: no node


def slice_(imp, node, ins):
    if isinstance(ins[0], Dequantized):
        return [FloatOp(node, tuple(ins))]
    return [emit_slice(imp, node, imp.activation(node, ins[0], "data"), ins[1:], node.output[0])]


@dataclass(frozen=True)
class FloatOutput(FloatOp):
    """Output `index` of a multi-output float op (Split) over dequantized tensors."""

    index: int = 0


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
    """Reshape on codes: a flatten for (N, -1), else a `reshape` node keeping the batch."""
    target = reshape_target(imp, node, x.shape, imp.constant(node, shape_spec, "shape"))
    if target == (x.shape[0], math.prod(x.shape[1:])):
        return imp.builder.flatten(node, out_name, x)
    return _emit_reshaped(imp, node, x, target, out_name)


def _emit_reshaped(imp, node, x: QTensor, target: tuple[int, ...], out_name: str) -> QTensor:
    if not target or target[0] != x.shape[0]:
        raise imp.model.fail(node, f"only reshapes that keep the batch dimension first are "
                             f"supported; {x.shape} -> {target}")
    if target == tuple(x.shape):
        return x
    return imp.builder._emit(node, out_name, "reshape", (x.node,), target, x.quant,
                             {"shape": [-1, *target[1:]]}, {})


def emit_squeeze(imp, node, x: QTensor, axes, out_name: str) -> QTensor:
    """Squeeze / Unsqueeze on codes: a `reshape` node."""
    given = attributes(node).get("axes") if axes is None else imp.constant(node, axes, "axes")
    given = None if given is None else [int(a) for a in np.asarray(given).reshape(-1)]
    fn = squeeze_shape if node.op_type == "Squeeze" else unsqueeze_shape
    try:
        target = fn(tuple(x.shape), given)
    except FloatIslandError as exc:
        raise imp.model.fail(node, str(exc)) from None
    return _emit_reshaped(imp, node, x, target, out_name)


def emit_transpose(imp, node, x: QTensor, out_name: str) -> QTensor:
    try:
        perm = transpose_perm(len(x.shape), attributes(node))
    except FloatIslandError as exc:
        raise imp.model.fail(node, str(exc)) from None
    if perm[0] != 0:
        raise imp.model.fail(node, f"only transposes that keep the batch dimension first are "
                             f"supported; perm {list(perm)}")
    if perm == tuple(range(len(perm))):
        return x
    shape = tuple(x.shape[p] for p in perm)
    return imp.builder._emit(node, out_name, "transpose", (x.node,), shape, x.quant,
                             {"perm": list(perm)}, {})


def emit_split(imp, node, x: QTensor, split_spec, index: int, out_name: str) -> QTensor:
    """Output `index` of a Split on codes: a `slice` node."""
    attrs = dict(attributes(node), output_index=index, outputs_count=len(node.output))
    sizes = None if split_spec is None else imp.constant(node, split_spec, "split")
    try:
        axis, start, stop = split_piece(tuple(x.shape), [None, sizes], attrs)
    except FloatIslandError as exc:
        raise imp.model.fail(node, str(exc)) from None
    if axis == 0:
        raise imp.model.fail(node, "a Split along the batch axis 0 is not supported")
    shape = tuple(stop - start if i == axis else d for i, d in enumerate(x.shape))
    return imp.builder._emit(node, out_name, "slice", (x.node,), shape, x.quant,
                             {"axis": axis, "start": start, "stop": stop}, {})


def emit_slice(imp, node, x: QTensor, bounds, out_name: str) -> QTensor:
    """Slice on codes: one `slice` node per sliced axis (steps >= 1, not the batch axis)."""
    consts = [None if v is None else imp.constant(node, v, what)
              for v, what in zip(bounds, ("starts", "ends", "axes", "steps"))]
    try:
        ranges = slice_ranges(tuple(x.shape), [None, *consts], attributes(node))
    except FloatIslandError as exc:
        raise imp.model.fail(node, str(exc)) from None
    ranges = [r for r in ranges if r[1:] != (0, x.shape[r[0]], 1)]  # whole axes: nothing to do
    for ax, b, e, st in ranges:
        if ax == 0 or st < 1 or b >= e:
            raise imp.model.fail(node, f"only non-empty slices with steps >= 1 off the batch "
                                 f"axis are supported on codes; axis {ax}, {b}:{e}:{st}")
    for i, (ax, b, e, st) in enumerate(ranges):
        shape = tuple(len(range(b, e, st)) if j == ax else d for j, d in enumerate(x.shape))
        name = out_name if i == len(ranges) - 1 else f"{out_name}/axis{ax}"
        x = imp.builder._emit(node, name, "slice", (x.node,), shape, x.quant,
                              {"axis": ax, "start": b, "stop": e, "step": st}, {})
    return x


def reshape_target(imp, node, shape: tuple[int, ...], spec: np.ndarray) -> tuple[int, ...]:
    """ONNX Reshape's output shape (0 copies a dimension unless allowzero, -1 is inferred)."""
    try:
        return island_reshape_target(tuple(shape), spec,
                                     bool(attributes(node).get("allowzero", 0)))
    except FloatIslandError as exc:
        raise imp.model.fail(node, str(exc)) from None


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
    ("", "Transpose"): (transpose, 1, 1),
    ("", "Squeeze"): (squeeze, 1, 2),
    ("", "Unsqueeze"): (squeeze, 1, 2),
    ("", "Split"): (split, 1, 2),
    ("", "Slice"): (slice_, 1, 5),
}
