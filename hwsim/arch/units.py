"""Compute units: one registry entry per kind (schema + builder), one frozen dataclass per kind.

A unit turns GEMM shapes into cycle counts and operand-read counts; the cost model calls
`compute_cycles`, `array_accesses` and `bit_passes` (and the hooks with defaults below:
`supports`, `action_counts`, `action_energies_pj`, `array_operand_bits`, `output_passes`) and
knows nothing else about the unit. Adding a kind ("shift_add", "bit_fusion", "bit_serial", ...)
means writing its dataclass with those methods and calling `register_unit_kind` once; nothing
else changes (see hwsim/arch/xnor.py for a kind that overrides the hooks).

GEMM view of one conv group (arrays over layers, int64): ``sr`` = output pixels x batch, ``sc`` =
filters per group, ``t`` = kernel_h x kernel_w x in_channels per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hwsim.arch.schema import Field, non_negative_number, one_of, positive_int
from hwsim.errors import ConfigError

DATAFLOWS = ("os", "ws", "is")


@dataclass(frozen=True)
class ArrayAccesses:
    """Element counts moved between the on-chip buffers and the array for one GEMM (per layer).

    ``ofmap_writes``/``psum_reads`` are partial or final outputs written to / read back from the
    ofmap buffer; ``psum_tile_elems`` is how many partial sums must stay resident at once.
    """

    ifmap_reads: np.ndarray
    filter_reads: np.ndarray
    ofmap_writes: np.ndarray
    psum_reads: np.ndarray
    psum_tile_elems: np.ndarray
    outputs_are_partial: bool


@dataclass(frozen=True)
class ComputeUnit:
    """Fields common to every unit kind. Energies in pJ per MAC action at the unit's widths.

    Kinds that do not price MACs (e.g. xnor_popcount) leave `mac_energy_pj` at 0 and name their
    own actions in `action_energies_pj`.
    """

    kind: str
    act_bits: int
    weight_bits: int
    acc_bits: int
    mac_energy_pj: float = 0.0

    @property
    def pe_count(self) -> int:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def bit_passes(self, act_bits: np.ndarray, weight_bits: np.ndarray) -> np.ndarray:
        """Runs needed per layer: operands wider than the datapath are bit-sliced into passes."""
        a = -(-np.asarray(act_bits, dtype=np.int64) // self.act_bits)
        w = -(-np.asarray(weight_bits, dtype=np.int64) // self.weight_bits)
        return a * w

    def supports(self, act_bits: np.ndarray, weight_bits: np.ndarray) -> np.ndarray:
        """Per layer, True where the unit can run these operand widths (default: any width)."""
        return np.ones(np.shape(act_bits), dtype=bool)

    def support_text(self) -> str:
        """What `supports` accepts, for error messages."""
        return "any act_bits and weight_bits"

    def action_counts(self, sr: np.ndarray, sc: np.ndarray, t: np.ndarray, groups: np.ndarray,
                      passes: np.ndarray) -> dict[str, np.ndarray]:
        """Compute actions per layer (int64), keyed like `action_energies_pj`: one MAC per
        multiply-accumulate per bit pass."""
        return {"mac": groups * sr * sc * t * passes}

    def action_energies_pj(self) -> dict[str, float]:
        """pJ per compute action, same keys as `action_counts`."""
        return {"mac": self.mac_energy_pj}

    def array_operand_bits(self, act_bits: np.ndarray,
                           weight_bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bits per ifmap / filter element read by the array in one pass (default: full width)."""
        return act_bits, weight_bits

    def output_passes(self, passes: np.ndarray) -> np.ndarray:
        """How many times each output (or partial sum) is written out of the array: once per
        pass by default (bit-sliced passes are summed in the buffer)."""
        return passes


def _ceil_div(a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
    return -(-a // b)


@dataclass(frozen=True)
class SystolicArray(ComputeUnit):
    """A `rows` x `cols` integer MAC array with a SCALE-Sim dataflow ("os", "ws" or "is")."""

    rows: int = 1
    cols: int = 1
    dataflow: str = "os"

    @property
    def pe_count(self) -> int:
        return self.rows * self.cols

    def compute_cycles(self, sr: np.ndarray, sc: np.ndarray, t: np.ndarray) -> np.ndarray:
        """SCALE-Sim v3 compute cycles of one GEMM per layer (ALGORITHMS.md §7), int64."""
        r, c = self.rows, self.cols
        if self.dataflow == "os":
            return _ceil_div(sr, r) * _ceil_div(sc, c) * (t + r + c - 2) - 1
        if self.dataflow == "ws":
            return _ceil_div(t, r) * _ceil_div(sc, c) * (sr + 2 * r + c - 2) - 1
        return _ceil_div(t, r) * _ceil_div(sr, c) * (sc + 2 * r + c - 2) - 1

    def array_accesses(self, sr: np.ndarray, sc: np.ndarray, t: np.ndarray) -> ArrayAccesses:
        """Operand elements read from / written to the buffers by one GEMM, per layer.

        os: each of the ceil(sr/rows) x ceil(sc/cols) folds streams `t` ifmap values per used row
        and `t` weights per used column; finished outputs are written once.
        ws: weights are loaded once; each (t, filter) fold streams all `sr` ifmap rows; every
        t-fold writes partial sums which the next fold reads back.
        is: the transpose of ws with ifmap stationary and filters streamed.
        """
        r, c = self.rows, self.cols
        if self.dataflow == "os":
            return ArrayAccesses(
                ifmap_reads=sr * t * _ceil_div(sc, c), filter_reads=sc * t * _ceil_div(sr, r),
                ofmap_writes=sr * sc, psum_reads=np.zeros_like(sr),
                psum_tile_elems=np.zeros_like(sr), outputs_are_partial=False)
        t_folds = _ceil_div(t, r)
        if self.dataflow == "ws":
            ifmap, filt = sr * t * _ceil_div(sc, c), t * sc
            tile = sr * np.minimum(sc, c)
        else:
            ifmap, filt = t * sr, sc * t * _ceil_div(sr, c)
            tile = sc * np.minimum(sr, c)
        return ArrayAccesses(
            ifmap_reads=ifmap, filter_reads=filt, ofmap_writes=sr * sc * t_folds,
            psum_reads=sr * sc * (t_folds - 1), psum_tile_elems=tile, outputs_are_partial=True)


COMMON_UNIT_FIELDS: tuple[Field, ...] = (
    positive_int("act_bits"),
    positive_int("weight_bits"),
    positive_int("acc_bits"),
    non_negative_number("mac_energy_pj"),
)

@dataclass(frozen=True)
class UnitKind:
    """Registry entry: the unit's config fields (besides the common ones) and its builder.

    `common_fields` defaults to `COMMON_UNIT_FIELDS`; `check`, if given, receives the accepted
    values of one unit section and returns ``(field, problem)`` pairs for cross-field rules.
    """

    kind: str
    fields: tuple[Field, ...]
    build: Callable[[dict[str, Any]], ComputeUnit]
    description: str
    common_fields: tuple[Field, ...] = COMMON_UNIT_FIELDS
    check: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None


UNIT_KINDS: dict[str, UnitKind] = {}


def register_unit_kind(entry: UnitKind) -> None:
    """Add a compute-unit kind; its `kind` is the value of ``compute.kind`` in configs."""
    if entry.kind in UNIT_KINDS:
        raise ConfigError(f"compute unit kind {entry.kind!r} is already registered")
    UNIT_KINDS[entry.kind] = entry


def unit_kind(kind: str) -> UnitKind:
    """Look up a registered kind; a failed lookup lists the known kinds."""
    try:
        return UNIT_KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown compute unit kind {kind!r}; known kinds: "
                          f"{sorted(UNIT_KINDS)}") from None


register_unit_kind(UnitKind(
    kind="systolic",
    fields=(positive_int("rows"), positive_int("cols"), one_of("dataflow", DATAFLOWS)),
    build=lambda v: SystolicArray(**v),
    description="rows x cols integer MAC array, SCALE-Sim dataflows os/ws/is",
))
