"""The registry of integer-program ops: one ``OpDef`` per op holds everything about it.

An entry says what a node of the op carries (every attr and array, required or optional), the
op's own checks, how it executes (fast kernels and the int64 reference, which must agree
exactly), the layer shape the cost model prices for it, and whether it accumulates or
requantizes. The verifier (``hwsim.ir.check``), the executor and the cost bridge
(``hwsim.workloads.program_workload``) read only this table; the built-in ops register
themselves from ``hwsim.ops``. A new op is one ``register_op`` call in a module of its own.

Requantizing ops carry ``attrs["requant"]`` (``hwsim.ir.specs.RequantSpec``) and its constant
arrays: ``rq_multiplier`` + ``rq_shift`` (dyadic, int64, one per output channel or one per input
for add/concat) or ``rq_scale_f32`` (float32). Accumulating ops carry ``attrs["accumulator"]``
(``AccumulatorConfig``) and report an overflow count when they run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsim.errors import ProgramError

if TYPE_CHECKING:
    import numpy as np

    from hwsim.ir.program import IntProgram, Node

# Free-text provenance any node may carry (where it came from, why a mode was chosen).
NOTE_ATTRS = ("note",)

Run = Callable[["Node", list], tuple]  # (node, input codes) -> (output codes, overflows | None)


@dataclass(frozen=True)
class OpDef:
    """Everything about one op.

    Attributes:
        name: the op name nodes use.
        arity: number of inputs (None: one or more).
        attrs / arrays: what every node of the op must carry.
        optional_attrs / optional_arrays: what it may carry besides; anything else is an error.
        doc: the op's semantics, in one paragraph.
        requantizes: carries ``attrs["requant"]`` and its constant arrays.
        accumulates: carries ``attrs["accumulator"]`` and returns an overflow count.
        check: ``check(node) -> [problem, ...]`` for rules beyond presence (shapes, dtypes).
        run / run_reference: ``(node, input codes) -> (output codes, overflow count or None)``;
            the fast path and the slow int64 definition, equal on every input.
        workload: ``workload(program, node, batch) -> LayerShape`` for ops a compute unit runs
            (conv, linear, matmul and the like), or a list of LayerShapes for a node holding
            several layers (a float island's transposed convolutions; possibly none); None for
            ops the cost model does not price (pooling, residual adds, reshapes and vector ops;
            see ``not_costed``).
        not_costed: why an op without ``workload`` is not priced, or, beside a ``workload``,
            which part of the op's work is not priced (shown in reports).
    """

    name: str
    arity: int | None
    attrs: tuple[str, ...]
    arrays: tuple[str, ...]
    doc: str
    run: Run
    run_reference: Run
    optional_attrs: tuple[str, ...] = ()
    optional_arrays: tuple[str, ...] = ()
    requantizes: bool = False
    accumulates: bool = False
    check: Callable[["Node"], list[str]] | None = None
    workload: Callable[["IntProgram", "Node", int], Any] | None = None
    not_costed: str = ""

    def __post_init__(self) -> None:
        if self.workload is None and not self.not_costed:
            raise ProgramError(f"op {self.name!r}: give a workload shape or say why it is not "
                               "costed (not_costed)")
        if self.accumulates and "accumulator" not in self.attrs:
            raise ProgramError(f"op {self.name!r} accumulates: 'accumulator' must be a "
                               "required attr")
        if self.requantizes and "requant" not in self.attrs:
            raise ProgramError(f"op {self.name!r} requantizes: 'requant' must be a required attr")

    @property
    def all_attrs(self) -> tuple[str, ...]:
        return self.attrs + self.optional_attrs + NOTE_ATTRS

    @property
    def all_arrays(self) -> tuple[str, ...]:
        extra = ("rq_multiplier", "rq_shift", "rq_scale_f32") if self.requantizes else ()
        return self.arrays + self.optional_arrays + extra


OPS: dict[str, OpDef] = {}


def register_op(op: OpDef) -> OpDef:
    """Add an op to the table; its name must be new. Returns ``op``."""
    if not isinstance(op, OpDef):
        raise ProgramError(f"register_op expects an OpDef; got {type(op).__name__}")
    if op.name in OPS:
        raise ProgramError(f"op {op.name!r} is already registered")
    OPS[op.name] = op
    return op


def unregister_op(name: str) -> None:
    """Remove op ``name`` (for tests that register a toy op)."""
    if OPS.pop(name, None) is None:
        raise ProgramError(f"op {name!r} is not registered")


def op_def(name: str) -> OpDef:
    """The entry of op ``name``; a failed lookup lists the known ops."""
    try:
        return OPS[name]
    except KeyError:
        raise ProgramError(f"unknown op {name!r}; known ops: {', '.join(sorted(OPS))}") from None
