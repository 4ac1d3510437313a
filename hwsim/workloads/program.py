"""An integer program as the cost model sees it: one layer shape per node a compute unit runs.

Each op's registry entry gives the shape (``OpDef.workload``), with the widths and number
format the node really has; nothing defaults (a 4-bit program is costed at 4 bits). Ops the
cost model does not price say why in their entry (``OpDef.not_costed``).
"""
from __future__ import annotations

from hwsim.errors import WorkloadError
from hwsim.ir import IntProgram
from hwsim.ir.ops import op_def
from hwsim.workloads.layer import LayerShape


def program_workload(program: IntProgram, batch: int = 1) -> list[LayerShape]:
    """Cost-model layer shapes of `program`'s priced nodes, in program order, for `batch`
    samples. Raises WorkloadError if no node is priced."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise WorkloadError(f"batch must be a positive integer, got {batch!r}")
    layers = []
    for node in program.nodes():
        shape = op_def(node.op).workload
        if shape is not None:
            priced = shape(program, node, batch)
            layers.extend(priced if isinstance(priced, list) else [priced])
    if not layers:
        raise WorkloadError(f"program {program.name!r} has no node a compute unit runs "
                            "(conv, linear, matmul, ...) to cost")
    return layers


def uncosted_ops(program: IntProgram) -> dict[str, str]:
    """Op -> why it is not priced, for the ops of `program` whose work the cost model leaves
    out, wholly or in part (a float island's float ops, beside the transposed convolutions it
    prices)."""
    return {node.op: op_def(node.op).not_costed for node in program.nodes()
            if op_def(node.op).not_costed and node.op != "input"}
