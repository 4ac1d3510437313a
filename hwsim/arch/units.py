"""Compute units: one registry entry per kind (schema + builder), one frozen dataclass per kind.

A unit turns GEMM shapes and operand descriptions into cycle counts and operand-read counts; the
cost model calls `compute_cycles`, `array_accesses` and `bit_passes` (and the hooks with defaults
below: `supports`, `action_counts`, `action_energies_pj`, `array_operand_bits`, `output_passes`)
and knows nothing else about the unit. Adding a kind ("bit_fusion", "bit_serial", ...) means
writing its dataclass with those methods and calling `register_unit_kind` once; nothing else
changes (see hwsim/arch/xnor.py and hwsim/arch/shift_add.py for kinds that override the hooks).

Hook arguments, arrays over layers: the GEMM view of one conv group (a `Gemm`: ``sr`` = output
pixels x batch, ``sc`` = filters per group, ``t`` = kernel taps x input channels per group, with
``taps`` and ``channels`` apart for units whose folding treats them differently, and ``groups``)
and ``ops`` (an `Operands`: each layer's act_bits, weight_bits and the number-format families of
its weights and activations). Geometry comes first, ``ops`` last. Every hook answers at the
layer's operand widths: a unit on which precision changes the cost (Bit Fusion, bit-serial)
prices it there, and `peak_macs_per_cycle` states its parallelism at those widths so utilization
is honest.

A kind declares the weight / activation format families it runs in the class attributes
`weight_formats` / `act_formats` (``None``: any family); `supports` checks them (and any width
limits of the kind), so `Accelerator.layer_units` can refuse a layer its unit cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

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
class Gemm:
    """One conv group's GEMM per layer: ``sr`` output pixels x batch, ``sc`` filters, ``t =
    taps * channels`` reduction length, ``taps`` = kernel_h * kernel_w, ``channels`` = input
    channels per group, and the layer's ``groups`` (each group runs as its own GEMM, back to
    back). int64 arrays; float64 in the cost model's overflow-check pass."""

    sr: np.ndarray
    sc: np.ndarray
    t: np.ndarray
    taps: np.ndarray
    channels: np.ndarray
    groups: np.ndarray

    @classmethod
    def of(cls, sr: Any, sc: Any, t: Any, taps: Any = 1, channels: Any = None,
           groups: Any = 1) -> "Gemm":
        """Arrays broadcast to one length; `channels` defaults to ``t // taps``."""
        sr, sc, t, taps, groups = (np.atleast_1d(np.asarray(v, dtype=np.int64))
                                   for v in (sr, sc, t, taps, groups))
        channels = t // taps if channels is None else np.atleast_1d(
            np.asarray(channels, dtype=np.int64))
        n = np.broadcast_shapes(sr.shape, sc.shape, t.shape, taps.shape, channels.shape,
                                groups.shape)
        return cls(*(np.broadcast_to(a, n).copy() for a in (sr, sc, t, taps, channels, groups)))

    def take(self, rows: Sequence[int] | np.ndarray) -> "Gemm":
        """Rows `rows` of every column."""
        idx = np.asarray(rows, dtype=np.int64)
        return Gemm(self.sr[idx], self.sc[idx], self.t[idx], self.taps[idx],
                    self.channels[idx], self.groups[idx])

    @property
    def macs(self) -> np.ndarray:
        """Multiply-accumulates of the whole layer (all groups)."""
        return self.groups * self.sr * self.sc * self.t


@dataclass(frozen=True)
class Operands:
    """Per layer: operand widths (int64) and number-format families (numpy str arrays).

    Format families are the names registered in ``quant.formats`` ("int", "binary", "apot",
    ...); the core only compares them as strings. Build one with `Operands.of` (broadcasts
    scalars) or take it from a table (``hwsim.cost.LayerTable.operands``).
    """

    act_bits: np.ndarray
    weight_bits: np.ndarray
    weight_format: np.ndarray
    act_format: np.ndarray

    @classmethod
    def of(cls, act_bits: Any, weight_bits: Any, weight_format: str | Sequence[str] = "int",
           act_format: str | Sequence[str] = "int") -> "Operands":
        """Columns broadcast to one common length (at least 1)."""
        act = np.atleast_1d(np.asarray(act_bits, dtype=np.int64))
        wgt = np.atleast_1d(np.asarray(weight_bits, dtype=np.int64))
        wf = np.atleast_1d(np.asarray(weight_format, dtype=str))
        af = np.atleast_1d(np.asarray(act_format, dtype=str))
        n = np.broadcast_shapes(act.shape, wgt.shape, wf.shape, af.shape)
        return cls(*(np.broadcast_to(a, n).copy() for a in (act, wgt, wf, af)))

    def __len__(self) -> int:
        return len(self.act_bits)

    def take(self, rows: Sequence[int] | np.ndarray) -> "Operands":
        """Rows `rows` of every column."""
        idx = np.asarray(rows, dtype=np.int64)
        return Operands(self.act_bits[idx], self.weight_bits[idx], self.weight_format[idx],
                        self.act_format[idx])


def _families_mask(formats: np.ndarray, allowed: tuple[str, ...] | None) -> np.ndarray:
    if allowed is None:
        return np.ones(np.shape(formats), dtype=bool)
    return np.isin(formats, np.asarray(allowed, dtype=str))


def _families_text(what: str, allowed: tuple[str, ...] | None) -> str:
    return f"any {what} format" if allowed is None else f"{what} formats {list(allowed)}"


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

    #: weight / activation format families the kind runs (None: any); see `supports`.
    weight_formats: ClassVar[tuple[str, ...] | None] = None
    act_formats: ClassVar[tuple[str, ...] | None] = None

    @property
    def pe_count(self) -> int:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def peak_macs_per_cycle(self, ops: Operands) -> np.ndarray:
        """Multiply-accumulates the unit can finish per cycle at each layer's operand widths
        (float64): the denominator of utilization. Default: one per PE, whatever the widths; a
        unit whose parallelism depends on precision (a fused array at 2 bits runs 16 products
        per 8-bit unit) overrides it."""
        return np.full(np.shape(ops.act_bits), float(self.pe_count))

    def bit_passes(self, ops: Operands) -> np.ndarray:
        """Runs needed per layer: operands wider than the datapath are bit-sliced into passes."""
        a = -(-np.asarray(ops.act_bits, dtype=np.int64) // self.act_bits)
        w = -(-np.asarray(ops.weight_bits, dtype=np.int64) // self.weight_bits)
        return a * w

    def formats_supported(self, ops: Operands) -> np.ndarray:
        """Per layer, True where the weight and activation format families are ones the kind
        declares (`weight_formats`, `act_formats`)."""
        return (_families_mask(ops.weight_format, self.weight_formats)
                & _families_mask(ops.act_format, self.act_formats))

    def formats_text(self) -> str:
        """The declared format families, for error messages."""
        return (f"{_families_text('weight', self.weight_formats)} and "
                f"{_families_text('activation', self.act_formats)}")

    def supports(self, ops: Operands) -> np.ndarray:
        """Per layer, True where the unit can run the layer: by default, its declared format
        families at any widths (wider operands are bit-sliced into passes)."""
        return self.formats_supported(ops)

    def support_text(self) -> str:
        """What `supports` accepts, for error messages."""
        return f"{self.formats_text()}, any act_bits and weight_bits"

    def action_counts(self, g: Gemm, passes: np.ndarray, ops: Operands) -> dict[str, np.ndarray]:
        """Compute actions per layer (int64), keyed like `action_energies_pj`: one MAC per
        multiply-accumulate per bit pass."""
        return {"mac": g.macs * passes}

    def action_energies_pj(self) -> dict[str, float]:
        """pJ per compute action, same keys as `action_counts`."""
        return {"mac": self.mac_energy_pj}

    def energy_source(self) -> str:
        """Where the per-action energies come from (provenance): the config's fields by
        default; a kind with built-in tables names the table and its paper."""
        return "energies from the config's *_energy_pj fields"

    def array_operand_bits(self, ops: Operands) -> tuple[np.ndarray, np.ndarray]:
        """Bits per ifmap / filter element read by the array in one pass (default: the layer's
        full widths, i.e. the stored code widths)."""
        return ops.act_bits, ops.weight_bits

    def output_passes(self, passes: np.ndarray) -> np.ndarray:
        """How many times each output (or partial sum) is written out of the array: once per
        pass by default (bit-sliced passes are summed in the buffer)."""
        return passes


def _ceil_div(a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
    return -(-a // b)


@dataclass(frozen=True)
class SystolicArray(ComputeUnit):
    """A `rows` x `cols` integer MAC array with a SCALE-Sim dataflow ("os", "ws" or "is").

    Runs every format family: weights reach the array decoded to integers and are priced at the
    layer's `weight_bits` (bit-sliced into passes when wider than the datapath).
    """

    rows: int = 1
    cols: int = 1
    dataflow: str = "os"

    @property
    def pe_count(self) -> int:
        return self.rows * self.cols

    def compute_cycles(self, g: Gemm, ops: Operands) -> np.ndarray:
        """Compute cycles of one GEMM (one group, one pass) per layer, int64: SCALE-Sim's fold
        model (Samajdar et al., "A Systematic Methodology for Characterizing Scalability of DNN
        Accelerators using SCALE-Sim", ISPASS 2020, Sec. IV) with the per-fold cycle counts of
        SCALE-Sim v3's compute modules. Independent of the operand widths: a narrower layer runs
        in the same cycles (wider ones in more bit passes, counted by the cost model)."""
        r, c = self.rows, self.cols
        sr, sc, t = g.sr, g.sc, g.t
        if self.dataflow == "os":
            return _ceil_div(sr, r) * _ceil_div(sc, c) * (t + r + c - 2) - 1
        if self.dataflow == "ws":
            return _ceil_div(t, r) * _ceil_div(sc, c) * (sr + 2 * r + c - 2) - 1
        return _ceil_div(t, r) * _ceil_div(sr, c) * (sc + 2 * r + c - 2) - 1

    def array_accesses(self, g: Gemm, ops: Operands) -> ArrayAccesses:
        """Operand elements read from / written to the buffers by one GEMM, per layer.

        os: each of the ceil(sr/rows) x ceil(sc/cols) folds streams `t` ifmap values per used row
        and `t` weights per used column; finished outputs are written once.
        ws: weights are loaded once; each (t, filter) fold streams all `sr` ifmap rows; every
        t-fold writes partial sums which the next fold reads back.
        is: the transpose of ws with ifmap stationary and filters streamed.
        """
        r, c = self.rows, self.cols
        sr, sc, t = g.sr, g.sc, g.t
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


def unregister_unit_kind(kind: str) -> None:
    """Remove kind `kind` (for tests that register a toy unit)."""
    if UNIT_KINDS.pop(kind, None) is None:
        raise ConfigError(f"compute unit kind {kind!r} is not registered")


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
