"""int8 ONNX models (QOperator or QDQ form) -> hwsim integer program with ONNX Runtime's
semantics, so that `hwsim.execute` reproduces ONNX Runtime's outputs bit for bit.

The walk follows the graph's (topological) node order and keeps, per ONNX tensor, what it is
(`_values`): codes of a program node, a dequantized view of codes, a float op waiting for its
QuantizeLinear, a constant. Only the nodes the model output depends on are imported.
"""

from __future__ import annotations

import numpy as np

from hwsim.ir import IntProgram, check_program
from hwsim.onnx import (_conv_transpose, _float_island, _qdq, _qlinear_ops, _qoperator,
                        _resize)
from hwsim.onnx._builder import ProgramBuilder
from hwsim.onnx._model import ModelSource, OnnxModel, load_model, node_label, static_dims
from hwsim.onnx._values import (CODE_DTYPES, Dequantized, DequantizedConst, FloatInput,
                                FloatOp, QTensor, Quant)
from hwsim.onnx.errors import OnnxImportError

_HANDLERS = _float_island.with_float_islands({**_qoperator.HANDLERS, **_qdq.HANDLERS,
                                               **_qlinear_ops.HANDLERS, **_resize.HANDLERS,
                                               **_conv_transpose.HANDLERS})

SUPPORTED = (
    "QOperator: QuantizeLinear (of the model input), QLinearConv, QLinearMatMul, "
    "com.microsoft QGemm, QLinearAdd, QLinearMul, QLinearGlobalAveragePool, "
    "QLinearAveragePool, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax and QLinearConcat, "
    "MaxPool, Resize (nearest; linear on codes of a QLinearConv chain), Flatten, Reshape, "
    "Transpose, Split, Slice, Squeeze and "
    "Unsqueeze (keeping the batch dimension first), Identity, DequantizeLinear (of the model "
    "output); "
    "QDQ: DequantizeLinear -> " + " | ".join(_qdq.FOLDABLE) + " -> QuantizeLinear; "
    "float islands (float ops between DequantizeLinear and QuantizeLinear, run in float32): "
    + ", ".join(_float_island.SUPPORTED_OPS))


def load_onnx_program(source: ModelSource, *, int16_pairs: bool | None = None,
                      name: str | None = None,
                      input_shape: tuple[int, ...] | None = None) -> IntProgram:
    """Import an int8 ONNX model into an integer program that ONNX Runtime's CPU kernels would
    compute bit for bit.

    source: a path to a .onnx file, its bytes, or an onnx.ModelProto, in QOperator form (as
        `onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QOperator)`
        writes it) or QDQ form (QuantizeLinear/DequantizeLinear around float ops).
    int16_pairs: whether u8 x s8 convs/matmuls saturate adjacent product pairs to int16 (CPUs
        without VNNI). None: measure this machine's ONNX Runtime (`ort_saturates_int16_pairs`);
        True/False: model another machine. The decision is recorded per node in
        attrs["accumulator"] (mode "int16_pairs" or "wrap") and attrs["accumulator_reason"].
    name: the program's name (default: the file name).
    input_shape: the shape (N, ...) of the float inputs the model will run on; it resolves
        symbolic dimensions of the model input other than the batch (e.g. a symbolic height
        and width), which are otherwise an error. Static dimensions are kept as declared.

    The program's input node (named after the input QuantizeLinear's output tensor) takes the
    uint8/int8 codes of the model input: get them with `quantize_input(program, x_float)`,
    which applies that QuantizeLinear as ONNX Runtime does. Every program node is named after
    the ONNX tensor whose codes it computes, and keeps the ONNX node name in `Node.source`; the
    output node is the one the model's final DequantizeLinear reads. The batch dimension of
    the input may be symbolic (the program records 1; `execute` accepts any batch).

    Float ops ONNX Runtime runs in float32 between DequantizeLinear and QuantizeLinear (float
    islands: HardSigmoid, HardSwish, squeeze-excite gates, ...) become one `float_island` node
    per QuantizeLinear, named after its output (`hwsim.onnx._float_island`).

    Raises OnnxImportError naming the file and the node for unreadable models and unsupported
    ops or attributes.
    """
    model = load_model(source)
    given = None if input_shape is None else tuple(int(d) for d in input_shape)
    return _Importer(model, name or model.name, int16_pairs, given).run()


class _Importer:
    def __init__(self, model: OnnxModel, name: str, int16_pairs: bool | None,
                 input_shape: tuple[int, ...] | None = None) -> None:
        self.model = model
        self.input_shape = input_shape
        self.builder = ProgramBuilder(model, name, int16_pairs)
        self.values: dict[str, object] = dict(model.constants)

    def run(self) -> IntProgram:
        graph = self.model.graph
        if len(graph.output) != 1:
            raise OnnxImportError(f"{self.model.label}: an integer program has one output; the "
                                  f"model has {len(graph.output)}: {[o.name for o in graph.output]}")
        x = self.model.graph_input()
        self.values[x.name] = FloatInput(x.name, static_dims(self.model, x, batch=1,
                                                             given=self.input_shape))
        output = graph.output[0].name
        for node in _needed_nodes(graph, output):
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                continue  # read with the initializers
            entry = _HANDLERS.get((_domain(node), node.op_type))
            if entry is None:
                raise OnnxImportError(
                    f"{self.model.label}: node {node_label(node)}: op type "
                    f"{_domain(node) + ':' if _domain(node) else ''}{node.op_type} cannot be "
                    f"imported. Supported: {SUPPORTED}")
            handler, fewest, most = entry  # most None: variadic
            if len(node.input) < fewest or (most is not None and len(node.input) > most):
                raise self.model.fail(node, f"expected {fewest} to {most or 'any number of'} "
                                      f"inputs, got {len(node.input)}")
            ins = [self.value(node, name) for name in node.input]
            ins += [None] * ((most or len(ins)) - len(ins))  # omitted optional inputs
            for name, value in zip(node.output, handler(self, node, ins)):
                self.values[name] = value
        program = self.builder.program
        program.output_name = self._output_node(output)
        check_program(program)
        return program

    def _output_node(self, output: str) -> str:
        v = self.values.get(output)
        if isinstance(v, Dequantized):
            if v.quant.tensor_quant() != v.source.quant:
                raise OnnxImportError(f"{self.model.label}: the output DequantizeLinear uses "
                                      "other parameters than the codes it reads were made with")
            return v.source.node
        if isinstance(v, QTensor):
            return v.node
        raise OnnxImportError(f"{self.model.label}: the model output {output!r} is "
                              f"{self.describe(v)}; hwsim needs it to be integer codes or "
                              "DequantizeLinear of codes")

    # --- helpers for the handlers ------------------------------------------------------------
    def value(self, node, name: str):
        if name == "":
            return None  # an omitted optional input
        if name not in self.values:
            raise self.model.fail(node, f"input {name!r} is produced by no earlier node (the "
                                  "graph must be topologically sorted)")
        return self.values[name]

    def activation(self, node, v, what: str) -> QTensor:
        if isinstance(v, QTensor):
            return v
        raise self.model.fail(node, f"input {what!r} must be integer codes; got {self.describe(v)}")

    def constant(self, node, v, what: str) -> np.ndarray:
        if isinstance(v, np.ndarray):
            return v
        raise self.model.fail(node, f"input {what!r} must be a constant (initializer); got "
                              f"{self.describe(v)}")

    def quant(self, node, scale, zero_point, what: str, default_dtype=np.uint8) -> Quant:
        """Quant from a node's scale / zero point inputs (both constants). An omitted zero point
        is 0 of `default_dtype` (ONNX: uint8 for QuantizeLinear, the codes' type otherwise)."""
        s = self.constant(node, scale, f"{what}_scale")
        if s.dtype != np.float32 or s.ndim > 1 or s.size == 0 or not np.all(np.isfinite(s)) \
                or np.any(s <= 0):
            raise self.model.fail(node, f"{what}_scale must be finite positive float32, a scalar "
                                  f"or 1-D; got {s.dtype} {s.reshape(-1)[:4]}")
        if zero_point is None:
            zp = np.zeros(s.shape, dtype=default_dtype)
        else:
            zp = self.constant(node, zero_point, f"{what}_zero_point")
            if zp.dtype not in CODE_DTYPES + (np.dtype(np.int32),) or zp.size != s.size:
                raise self.model.fail(node, f"{what}_zero_point must be uint8/int8 (int32 for a "
                                      f"bias) with as many entries as the scale ({s.size}); "
                                      f"got {zp.dtype} with {zp.size}")
        return Quant(s.astype(np.float32), zp.astype(np.int64), zp.dtype)

    def describe(self, v) -> str:
        if isinstance(v, QTensor):
            return f"the codes of {v.node!r}"
        if isinstance(v, Dequantized):
            return f"the dequantized codes of {v.source.node!r}"
        if isinstance(v, DequantizedConst):
            return f"a dequantized constant of type {v.codes.dtype}, shape {v.codes.shape}"
        if isinstance(v, FloatOp):
            return f"the float output of node {node_label(v.node)} (not quantized right after)"
        if isinstance(v, FloatInput):
            return f"the float model input {v.name!r} (not quantized)"
        if isinstance(v, _float_island.FloatExpr):
            return v.describe()
        if isinstance(v, np.ndarray):
            return f"a constant of type {v.dtype}, shape {v.shape}"
        return "nothing (an omitted input)" if v is None else type(v).__name__


def _domain(node) -> str:
    return "" if node.domain == "ai.onnx" else node.domain


def _needed_nodes(graph, output: str) -> list:
    """The nodes `output` depends on, in graph order."""
    producer = {name: i for i, n in enumerate(graph.node) for name in n.output}
    needed, stack = set(), [output]
    while stack:
        i = producer.get(stack.pop())
        if i is None or i in needed:
            continue
        needed.add(i)
        stack.extend(graph.node[i].input)
    return [graph.node[i] for i in sorted(needed)]
