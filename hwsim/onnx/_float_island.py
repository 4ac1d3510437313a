"""QDQ float islands: float ops that ONNX Runtime's quantizer left unquantized between
DequantizeLinear and QuantizeLinear (HardSigmoid, HardSwish, squeeze-excite gates,
BatchNormalization, ...), imported as one ``float_island`` node per QuantizeLinear.

A float op over dequantized tensors, float constants or other float ops becomes a `FloatExpr`
(the ONNX nodes computing one float tensor from dequantized codes and constants). The
QuantizeLinear that reads it emits a ``float_island`` node holding those nodes; an island
feeding several QuantizeLinear nodes is held by each of them (it is recomputed, identically).

A single op that ONNX Runtime fuses with its DequantizeLinear and QuantizeLinear into a QLinear
kernel (QLinearAdd, QLinearMul, QLinearSigmoid, ...) is not an island: the QDQ front end folds
it as before. ONNX Runtime fuses only when every operand is a DequantizeLinear output and the
op's output goes to that QuantizeLinear alone (its QDQ node-unit selectors); otherwise the op
runs in float, and so does the island. Shape ops (Reshape, Flatten, Transpose, Split, Slice,
Squeeze, Unsqueeze) and MaxPool whose QuantizeLinear uses other parameters than their
DequantizeLinear run in float too; a Split feeds each QuantizeLinear one output
(`_qoperator.FloatOutput`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels.float_island import FLOAT_OPS, float_island
from hwsim.onnx import _qdq
from hwsim.onnx._model import attributes, node_label
from hwsim.onnx._values import (CODE_DTYPES, Dequantized, DequantizedConst, FloatOp, QTensor,
                                Quant)
from hwsim.ops.float_island import FLOAT_ISLAND_UNIT

SUPPORTED_OPS = tuple(sorted(FLOAT_OPS))
# float-op handlers of the other front ends: their ops can also sit inside an island (or are
# refused there with the island's error)
_WRAPPED = ("Conv", "Gemm", "MatMul", "Add", "Mul", "GlobalAveragePool", "Sigmoid",
            "LeakyRelu", "Softmax", "AveragePool", "Concat", "MaxPool", "Flatten", "Reshape",
            "Resize", "Transpose", "Split", "Slice", "Squeeze", "Unsqueeze")
_SHAPE_OPS = ("Flatten", "Reshape", "Transpose", "Split", "Slice", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class FloatExpr:
    """The float tensor `output`, computed by the ONNX `nodes` (topological order) from
    dequantized codes (`inputs`: (tensor name, Dequantized) pairs) and `constants` ((tensor
    name, numpy value) pairs)."""

    nodes: tuple
    inputs: tuple
    constants: tuple
    output: str

    def describe(self) -> str:
        return (f"the float output of node {node_label(self.nodes[-1])} (a float island "
                "that no QuantizeLinear reads)")


def _domain(node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def _unsupported(imp, node):
    return imp.model.fail(
        node, f"a float {node.op_type} inside a float island (float ops between "
        f"DequantizeLinear and QuantizeLinear) is not supported; float islands support "
        f"{', '.join(SUPPORTED_OPS)}")


def extend(imp, node, ins, index: int = 0) -> FloatExpr:
    """The FloatExpr of output `index` of `node` over its input values `ins`."""
    if _domain(node) or node.op_type not in FLOAT_OPS:
        raise _unsupported(imp, node)
    outputs = [o for o in node.output if o]
    if node.op_type == "Split":
        if len(outputs) != len(node.output):
            raise imp.model.fail(node, f"a float Split must name every output; got "
                                 f"{list(node.output)}")
    elif len(outputs) != 1 or node.output[0] == "":
        raise imp.model.fail(node, f"a float {node.op_type} in a float island must have one "
                             f"output; got {list(node.output)}")
    _check_attributes(imp, node)
    spec = FLOAT_OPS[node.op_type]
    nodes: dict[str, object] = {}
    inputs: dict[str, Dequantized] = {}
    consts: dict[str, np.ndarray] = {}
    computed = False

    def merge(e: FloatExpr) -> None:
        for n in e.nodes:
            nodes.setdefault(n.output[0], n)
        inputs.update(e.inputs)
        consts.update(e.constants)

    for i, (name, v) in enumerate(zip(node.input, ins)):
        if name == "" or v is None:
            continue
        if i in spec.constant_inputs:
            consts[name] = _constant(imp, node, name, v, allow_int=True)
        elif isinstance(v, Dequantized):
            if not v.quant.per_tensor:
                raise imp.model.fail(node, f"input {name!r} is dequantized per channel; float "
                                     "islands take per-tensor activations")
            inputs[name], computed = v, True
        elif isinstance(v, FloatOp):
            merge(extend(imp, v.node, list(v.inputs), getattr(v, "index", 0)))
            computed = True
        elif isinstance(v, FloatExpr):
            merge(v)
            computed = True
        elif isinstance(v, (DequantizedConst, np.ndarray)):
            consts[name] = _constant(imp, node, name, v, allow_int=False)
        else:
            raise imp.model.fail(node, f"input {name!r} is {imp.describe(v)}; a float op in a "
                                 "float island reads DequantizeLinear outputs, float constants "
                                 "or other float ops")
    if not computed:
        raise imp.model.fail(node, "every operand is a constant (fold the constants before "
                             "importing)")
    nodes.setdefault(node.output[0], node)
    return FloatExpr(tuple(nodes.values()), tuple(inputs.items()), tuple(consts.items()),
                     node.output[index])


def _constant(imp, node, name: str, v, allow_int: bool) -> np.ndarray:
    if isinstance(v, DequantizedConst):  # ONNX Runtime folds DequantizeLinear of a constant
        return _dequantize_const(v)
    if not isinstance(v, np.ndarray):
        raise imp.model.fail(node, f"input {name!r} must be a constant; got {imp.describe(v)}")
    if v.dtype == np.float32 or (allow_int and v.dtype in (np.int64, np.int32)):
        return v
    raise imp.model.fail(node, f"constant {name!r} has type {v.dtype}; float islands compute "
                         "in float32")


def _dequantize_const(v: DequantizedConst) -> np.ndarray:
    """DequantizeLinear of constant codes (per tensor, or per channel along v.axis)."""
    shape = [1] * max(v.codes.ndim, 1)
    scale, zp = v.quant.scale.astype(np.float32), v.quant.zero_point.astype(np.int64)
    if scale.size > 1:
        shape[v.axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    diff = (v.codes.astype(np.int64) - zp).astype(np.float32)
    return (diff * scale).astype(np.float32).reshape(v.codes.shape)


def _check_attributes(imp, node) -> None:
    attrs = attributes(node)
    if node.op_type == "BatchNormalization":
        if attrs.get("training_mode", 0):
            raise imp.model.fail(node, "training_mode=1 is not supported (inference only)")
        if attrs.get("spatial", 1) != 1:
            raise imp.model.fail(node, "spatial=0 is not supported")
    for key, value in attrs.items():
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(x, (int, float, str)) for x in items):
            raise imp.model.fail(node, f"attribute {key!r} holds a {type(items[0]).__name__}; "
                                 "float islands take numbers and strings")


# --------------------------------------------------------------------------------------------
# QuantizeLinear: fold DQ -> op -> Q as ORT fuses it, or emit an island

def _consumers(imp) -> dict[str, int]:
    counts = imp.__dict__.get("_float_island_consumers")
    if counts is None:
        counts = {}
        graph = imp.model.graph
        for n in graph.node:
            for name in n.input:
                counts[name] = counts.get(name, 0) + 1
        for o in graph.output:
            counts[o.name] = counts.get(o.name, 0) + 1
        imp.__dict__["_float_island_consumers"] = counts
    return counts


def _ort_fuses(imp, fop: FloatOp, yq: Quant) -> bool:
    """Does ONNX Runtime fuse DequantizeLinear -> fop -> QuantizeLinear into one QLinear kernel
    (or drop the Q/DQ pair around a reshape)?"""
    node = fop.node
    if _consumers(imp).get(node.output[getattr(fop, "index", 0)], 0) != 1:
        return False
    operands = list(fop.inputs[:len(node.input)])
    if node.op_type in _SHAPE_OPS:  # the shape / axes / split sizes are not quantized
        operands = operands[:1]
    if not all(isinstance(v, (Dequantized, DequantizedConst)) or v is None for v in operands):
        return False
    if node.op_type in _SHAPE_OPS + ("MaxPool",):  # ORT drops the Q/DQ pair if they agree
        return isinstance(operands[0], Dequantized) and yq.same_as(operands[0].quant)
    return True


def quantize_linear(imp, node, ins):
    x = ins[0]
    if isinstance(x, FloatOp) and x.node.op_type in FLOAT_OPS and not _domain(x.node):
        yq = imp.quant(node, ins[1], ins[2], "y")
        if not _ort_fuses(imp, x, yq):
            x = extend(imp, x.node, list(x.inputs), getattr(x, "index", 0))
    if isinstance(x, FloatExpr):
        return [emit(imp, node, x, imp.quant(node, ins[1], ins[2], "y"))]
    return _qdq.quantize_linear(imp, node, ins)


def _static_batch(imp) -> int:
    dims = imp.model.graph_input().type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
        return int(dims[0].dim_value)
    return 0


def _serialize(imp, node) -> list[dict]:
    """The island node(s) of an ONNX node: one per output of a Split (attrs "output_index",
    "outputs_count": `float_island_ops`), else one."""
    name, attrs = node.name or node.output[0], attributes(node)
    if node.op_type != "Split":
        return [{"name": name, "op": node.op_type, "inputs": list(node.input),
                 "outputs": [node.output[0]], "attrs": attrs}]
    return [{"name": f"{name}:{i}", "op": "Split", "inputs": list(node.input), "outputs": [out],
             "attrs": dict(attrs, output_index=i, outputs_count=len(node.output))}
            for i, out in enumerate(node.output)]


def _pack(consts) -> tuple[list[dict], np.ndarray]:
    described, parts, offset = [], [], 0
    for name, value in consts:
        v = np.asarray(value)
        entry = {"name": name, "dtype": str(v.dtype), "shape": [int(d) for d in v.shape]}
        if v.dtype == np.float32:
            entry["offset"] = offset
            parts.append(v.reshape(-1))
            offset += v.size
        else:
            entry["values"] = [int(x) for x in v.reshape(-1)]
        described.append(entry)
    flat = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return described, flat


def emit(imp, q_node, expr: FloatExpr, yq: Quant) -> QTensor:
    """The float_island node of `expr` quantized by `q_node` (parameters yq)."""
    if not yq.per_tensor or yq.dtype not in CODE_DTYPES:
        raise imp.model.fail(q_node, f"a float island's QuantizeLinear must quantize per tensor "
                             f"to uint8 or int8; got {yq.scale.size} scales, type {yq.dtype}")
    sources = [d.source for _, d in expr.inputs]
    specs = [{"tensor": name, "scale": float(d.quant.scale_f32), "zero_point": d.quant.zp}
             for name, d in expr.inputs]
    described, flat = _pack(expr.constants)
    nodes = [s for n in expr.nodes for s in _serialize(imp, n)]
    attrs = {"nodes": nodes, "inputs": specs, "output": expr.output, "constants": described,
             "ort_batch": _static_batch(imp), "onnx_ops": [n["op"] for n in nodes],
             "note": f"{FLOAT_ISLAND_UNIT}: ONNX Runtime runs these ops in float32"}
    lo, hi = yq.range
    try:  # the output shape, and every node checked on its operands' shapes
        zeros = [np.full(s.shape, spec["zero_point"], dtype=np.int64)
                 for s, spec in zip(sources, specs)]
        batch_nodes = [dict(n, attrs=dict(n["attrs"], ort_batch=0)) if n["op"] == "ReduceMean"
                       else n for n in nodes]
        with np.errstate(all="ignore"):
            probe = float_island(zeros, nodes=batch_nodes, inputs=specs,
                                 constants=dict(expr.constants), output=expr.output,
                                 y_scale=yq.scale_f32, y_zero_point=yq.zp, qmin=lo, qmax=hi)
    except KernelError as exc:
        raise imp.model.fail(q_node, f"its float island cannot be computed: {exc}") from None
    return imp.builder._emit(q_node, q_node.output[0], "float_island",
                             tuple(s.node for s in sources), probe.shape, yq.tensor_quant(),
                             attrs, {"constants": flat})


def _island_op(imp, node, ins):
    """One FloatExpr per output (a Split has several)."""
    count = len(node.output) if node.op_type == "Split" else 1
    return [extend(imp, node, ins, i) for i in range(count)]


def _wrap(original):
    def handler(imp, node, ins):
        if any(isinstance(v, (FloatOp, FloatExpr)) for v in ins):
            return _island_op(imp, node, ins)
        return original(imp, node, ins)
    return handler


def _lrn_op(imp, node, ins):
    """LRN joins an island (hwsim.kernels.lrn_f32); an integer beta is refused here, at import
    (ONNX Runtime's integer-exponent pow is another Eigen path, not reproduced)."""
    beta = float(attributes(node).get("beta", 0.75))
    if beta.is_integer():
        raise imp.model.fail(node, f"LRN with an integer beta ({beta:g}) is not imported: "
                             "ONNX Runtime's integer-exponent pow is not reproduced bit for bit")
    return _island_op(imp, node, ins)


def with_float_islands(handlers: dict) -> dict:
    """The importer's handler table (domain, op) -> (handler, fewest, most) with float islands:
    QuantizeLinear may quantize an island, the float ops of the other front ends accept float
    operands (inside an island), and the island-only ops are added."""
    table = dict(handlers)
    for op in _WRAPPED:
        if ("", op) in table:
            fn, fewest, most = table[("", op)]
            table[("", op)] = (_wrap(fn), fewest, most)
    for op, spec in FLOAT_OPS.items():
        most = spec.most if spec.most < 2 ** 16 else None  # None: variadic (Sum)
        table.setdefault(("", op), (_island_op, spec.fewest, most))
    table[("", "LRN")] = (_lrn_op, 1, 1)
    _, fewest, most = table[("", "QuantizeLinear")]
    table[("", "QuantizeLinear")] = (quantize_linear, fewest, most)
    return table
