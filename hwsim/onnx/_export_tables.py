"""Activation tables as plain ONNX integer ops: the node's own table, gathered by code.

An `activation_lut` node maps every 8-bit input code c to table[c - base] (base: the first code
of `input_range` for arithmetic "exact", the output's qmin for arithmetic "onnxruntime"; see
hwsim.ops.lut). The export writes

    Cast(codes -> int32) [-> Add(128) for int8 codes] -> Gather(table_256, indices, axis 0)

with `table_256` the node's table spread over all 256 codes of the input type (codes outside
the node's input range, which hwsim refuses at run time, repeat the nearest edge entry), stored
in the output code type. ONNX Runtime's Gather copies entries, so its codes are hwsim's by
construction, whatever the function (hardswish, hardsigmoid, SiLU, tanh, or a sigmoid table
ONNX Runtime's QLinearSigmoid would round otherwise).
"""
from __future__ import annotations

import numpy as np

from hwsim.ir import Node


def table_base(node: Node) -> int:
    """The input code of the node's table entry 0."""
    if node.attrs.get("arithmetic", "onnxruntime") == "exact":
        return int(node.attrs["input_range"][0])
    return int(node.out.qmin)


def full_table(node: Node, x_dtype: np.dtype) -> np.ndarray:
    """(256,) output codes (node.out.dtype) for input codes iinfo(x_dtype).min .. max."""
    info = np.iinfo(x_dtype)
    table = np.asarray(node.arrays["table"], dtype=np.int64)
    codes = np.arange(int(info.min), int(info.max) + 1, dtype=np.int64)
    idx = np.clip(codes - table_base(node), 0, table.size - 1)
    return table[idx].astype(node.out.dtype)


def emit_gather_table(g, node: Node) -> None:
    """Append Cast [-> Add] -> Gather writing the node's codes to graph builder `g`."""
    x = node.inputs[0]
    x_dtype = g.program.node(x).out.dtype
    tp = g.onnx.TensorProto
    idx = g.op("Cast", [x], f"{node.name}.index", node, to=tp.INT32)
    offset = -int(np.iinfo(x_dtype).min)
    if offset:
        idx = g.op("Add", [idx, g.const(f"{node.name}.index_offset", np.int32(offset))],
                   f"{node.name}.index_from_0", node)
    table = g.const(f"{node.name}.table", full_table(node, x_dtype))
    g.op("Gather", [table, idx], node.name, node, axis=0)
