"""Bit-accurate execution of an integer program.

Each op's semantics lives in its registry entry (``hwsim.ir.ops``, built-in ops in
``hwsim.ops``): the fast path (BLAS where a bound proves it exact, numba elsewhere) or the slow
int64 definition (``backend="reference"``). Both give identical codes and overflow counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir import IntProgram, Node, check_program
from hwsim.ir.ops import op_def

BACKENDS = ("fast", "reference")


@dataclass
class ExecutionResult:
    """Outputs of one execution.

    `output`: codes of the program's output node. `tensors`: every node's output codes, by node
    name (only when run with record=True). `overflow_counts`: per accumulating node, the number of
    output elements whose accumulation overflowed the accumulator (wrap or saturate).
    """

    output: np.ndarray
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    overflow_counts: dict[str, int] = field(default_factory=dict)

    @property
    def total_overflows(self) -> int:
        return int(sum(self.overflow_counts.values()))


def _runner(op: str, backend: str):
    spec = op_def(op)
    return spec.run if backend == "fast" else spec.run_reference


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ProgramError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")


def execute(program: IntProgram, input_codes: np.ndarray, *, record: bool = False,
            backend: str = "fast", check: bool = True) -> ExecutionResult:
    """Run `program` on integer input codes of shape (N, ...) matching the input node's shape
    (any batch size N >= 1; a batch of 0 raises ProgramError). Returns the output codes, and
    all intermediate codes if `record`."""
    _check_backend(backend)
    if check:
        check_program(program)
    inp = program.input
    x = _checked_input(program, inp, input_codes)
    values: dict[str, np.ndarray] = {inp.name: x}
    consumers_left = {n: program.graph.out_degree(n) for n in program.graph.nodes}
    result = ExecutionResult(output=x)
    for node in program.nodes():
        if node.op == "input":
            continue
        args = [values[src] for src in node.inputs]
        out, overflows = _runner(node.op, backend)(node, args)
        values[node.name] = out.astype(node.out.dtype, copy=False)
        if overflows is not None:
            result.overflow_counts[node.name] = int(overflows)
        if not record:  # free tensors nobody reads any more
            for src in node.inputs:
                consumers_left[src] -= 1
                if consumers_left[src] == 0 and src != program.output_name:
                    values.pop(src, None)
    result.output = values[program.output_name]
    if record:
        result.tensors = values
    return result


def execute_node(node: Node, inputs: list[np.ndarray], *, backend: str = "fast"
                 ) -> tuple[np.ndarray, int | None]:
    """Run one node on given input codes (e.g. another model's codes, to check a layer in
    isolation). Returns (output codes in the node's dtype, overflow count or None)."""
    _check_backend(backend)
    out, overflows = _runner(node.op, backend)(node, list(inputs))
    return np.asarray(out).astype(node.out.dtype, copy=False), overflows


def _checked_input(program: IntProgram, inp: Node, codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    where = f"program {program.name!r}, input {inp.name!r}"
    if not np.issubdtype(codes.dtype, np.integer):
        raise ProgramError(f"{where}: expected integer codes, got dtype {codes.dtype}")
    if codes.ndim != len(inp.out_shape) or codes.shape[1:] != tuple(inp.out_shape[1:]):
        raise ProgramError(f"{where}: expected shape (N, {', '.join(map(str, inp.out_shape[1:]))}), "
                           f"got {codes.shape}")
    if codes.shape[0] == 0:
        raise ProgramError(f"{where}: a batch of 0 inputs (shape {codes.shape}); execute needs "
                           "at least one input (N >= 1)")
    if codes.size and (codes.min() < inp.out.qmin or codes.max() > inp.out.qmax):
        raise ProgramError(f"{where}: codes must lie in [{inp.out.qmin}, {inp.out.qmax}], got "
                           f"[{codes.min()}, {codes.max()}]")
    return codes.astype(inp.out.dtype, copy=False)
