"""The loop-nest model's inputs (`ConvDims`, `NestLevel`, `Precisions`, `LoopNest`) and results
(`Transfer`, `OperandLevelCost`, `LevelCost`, `NestCost`), with their validation.

The counting model is stated in hwsim/mapping/loopnest.py; sizes in elements, bits, pJ, cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

DIMS = ("B", "K", "C", "OY", "OX", "FY", "FX")
OPERANDS = ("ifmap", "filter", "ofmap")
ARRAY_DIMS = ("cols", "rows")
_DI = {d: i for i, d in enumerate(DIMS)}
_B, _K, _C, _OY, _OX, _FY, _FX = range(7)
#: Dims an operand depends on (ifmap: all but K; ofmap: B, K, OY, OX; filter: K, C, FY, FX).
_REL = {
    "ifmap": (True, False, True, True, True, True, True),
    "filter": (False, True, True, False, False, True, True),
    "ofmap": (True, True, False, True, True, False, False),
}
#: Fully relevant dims (ZigZag's "r" loops; the ifmap's OY/OX/FY/FX are only partially relevant).
_FULLREL = {
    "ifmap": (True, False, True, False, False, False, False),
    "filter": _REL["filter"],
    "ofmap": _REL["ofmap"],
}
_DIRS = ("read_down", "write_from_below", "read_up", "write_fill")
_IS_READ = {"read_down": True, "read_up": True, "write_from_below": False, "write_fill": False}


# ----------------------------------------------------------------------------------------------
# Input types
# ----------------------------------------------------------------------------------------------
def _posint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


@dataclass(frozen=True)
class ConvDims:
    """One conv group of one layer, in elements.

    B batch, K output channels, C input channels, OY/OX output height/width, FY/FX kernel
    height/width, stride_y/stride_x and dilation_y/dilation_x in input pixels, in_y/in_x the
    *unpadded* input height/width (tile extents are clipped to it). ``in_y``/``in_x`` of 0 mean
    "no padding": ``stride*(O-1) + dilation*(F-1) + 1``.
    """

    B: int
    K: int
    C: int
    OY: int
    OX: int
    FY: int
    FX: int
    stride_y: int = 1
    stride_x: int = 1
    in_y: int = 0
    in_x: int = 0
    dilation_y: int = 1
    dilation_x: int = 1

    def __post_init__(self) -> None:
        for name in DIMS + ("stride_y", "stride_x", "dilation_y", "dilation_x"):
            if not _posint(getattr(self, name)):
                raise ValueError(f"ConvDims.{name}: expected a positive integer, got {getattr(self, name)!r}")
        for name, o, f, s, d in (("in_y", self.OY, self.FY, self.stride_y, self.dilation_y),
                                 ("in_x", self.OX, self.FX, self.stride_x, self.dilation_x)):
            v = getattr(self, name)
            if v == 0:
                object.__setattr__(self, name, s * (o - 1) + d * (f - 1) + 1)
            elif not _posint(v):
                raise ValueError(f"ConvDims.{name}: expected a positive integer (or 0), got {v!r}")

    @property
    def sizes(self) -> tuple[int, ...]:
        """(B, K, C, OY, OX, FY, FX)."""
        return (self.B, self.K, self.C, self.OY, self.OX, self.FY, self.FX)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of this conv group."""
        return math.prod(self.sizes)

    def operand_elements(self, operand: str) -> int:
        """Elements of a whole operand tensor (ifmap: unpadded input)."""
        if operand == "ifmap":
            return self.B * self.C * self.in_y * self.in_x
        if operand == "filter":
            return self.K * self.C * self.FY * self.FX
        if operand == "ofmap":
            return self.B * self.K * self.OY * self.OX
        raise ValueError(f"operand: expected one of {list(OPERANDS)}, got {operand!r}")

    @classmethod
    def from_layer(cls, layer: Any, convention: str = "torch") -> "ConvDims":
        """One group of a `hwsim.workloads.LayerShape` (multiply costs by ``layer.groups``)."""
        return cls(B=layer.batch, K=layer.out_channels // layer.groups,
                   C=layer.in_channels // layer.groups, OY=layer.out_h(convention),
                   OX=layer.out_w(convention), FY=layer.kernel_h, FX=layer.kernel_w,
                   stride_y=layer.stride_h, stride_x=layer.stride_w, in_y=layer.in_h,
                   in_x=layer.in_w, dilation_y=layer.dilation_h, dilation_x=layer.dilation_w)

    @classmethod
    def from_table(cls, table: Any, index: int) -> "ConvDims":
        """Row ``index`` of a `hwsim.cost.LayerTable` (one group; uses its out_h/out_w)."""
        g = int(table.groups[index])
        return cls(B=int(table.batch[index]), K=int(table.out_channels[index]) // g,
                   C=int(table.in_channels[index]) // g, OY=int(table.out_h[index]),
                   OX=int(table.out_w[index]), FY=int(table.kernel_h[index]),
                   FX=int(table.kernel_w[index]), stride_y=int(table.stride_h[index]),
                   stride_x=int(table.stride_w[index]), in_y=int(table.in_h[index]),
                   in_x=int(table.in_w[index]), dilation_y=int(table.dilation_h[index]),
                   dilation_x=int(table.dilation_w[index]))


@dataclass(frozen=True)
class NestLevel:
    """One memory level.

    name; holds: operand names it stores; size_bits: capacity of ONE instance in bits (None =
    unbounded, e.g. DRAM); per_pe: one instance per PE (else one instance shared by the array);
    access_bits: the word one access moves; read_energy_pj / write_energy_pj: pJ per access
    (per word); bandwidth_bits_per_cycle: bits per cycle per port per instance (inf =
    unlimited); ports: 1 (one port shared by reads and writes), 2 (a read and a write port) or
    4 (one port per direction: read towards the array, read up, write from below, fill).
    """

    name: str
    holds: tuple[str, ...]
    size_bits: int | None
    per_pe: bool
    access_bits: int
    read_energy_pj: float
    write_energy_pj: float
    bandwidth_bits_per_cycle: float = math.inf
    ports: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "holds", tuple(self.holds))
        bad = [op for op in self.holds if op not in OPERANDS]
        if bad or not self.holds:
            raise ValueError(f"NestLevel {self.name!r}.holds: expected operands among {list(OPERANDS)}, got {self.holds!r}")
        if self.size_bits is not None and not _posint(self.size_bits):
            raise ValueError(f"NestLevel {self.name!r}.size_bits: expected a positive integer or None, got {self.size_bits!r}")
        if not _posint(self.access_bits):
            raise ValueError(f"NestLevel {self.name!r}.access_bits: expected a positive integer, got {self.access_bits!r}")
        if not (self.bandwidth_bits_per_cycle > 0):
            raise ValueError(f"NestLevel {self.name!r}.bandwidth_bits_per_cycle: expected > 0, got {self.bandwidth_bits_per_cycle!r}")
        if self.ports not in (1, 2, 4):
            raise ValueError(f"NestLevel {self.name!r}.ports: expected 1, 2 or 4, got {self.ports!r}")


@dataclass(frozen=True)
class Precisions:
    """Bits per element: ifmap (act_bits), filter (weight_bits), psum (acc_bits: partial sums),
    ofmap (final outputs, usually act_bits)."""

    ifmap: int
    filter: int
    psum: int
    ofmap: int

    def __post_init__(self) -> None:
        for name in ("ifmap", "filter", "psum", "ofmap"):
            if not _posint(getattr(self, name)):
                raise ValueError(f"Precisions.{name}: expected a positive integer, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class LoopNest:
    """A mapping.

    spatial: ((array_dim, ((dim, factor), ...)), ...) with array_dim "cols" (ZigZag D1) or
    "rows" (D2); temporal: ((dim, bound), ...) innermost first; levels: {operand: (n_0, n_1,
    ...)}: how many temporal loops, counted from the innermost, each level of the operand's
    chain owns, innermost level first (one count per level, summing to len(temporal)).
    A dim's factors (spatial and temporal) multiply to its size, or to more when its outermost
    factor is the ceil division ``ceil(size / product of the others)`` (a partial last tile).
    """

    spatial: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    temporal: tuple[tuple[str, int], ...]
    levels: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sp = tuple((a, tuple((d, f) for d, f in loops)) for a, loops in self.spatial)
        object.__setattr__(self, "spatial", sp)
        object.__setattr__(self, "temporal", tuple((d, b) for d, b in self.temporal))
        object.__setattr__(self, "levels", {op: tuple(v) for op, v in self.levels.items()})
        _check_nest_structure(self)

    def __hash__(self) -> int:
        return hash((self.spatial, self.temporal, tuple(sorted(self.levels.items()))))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able form (lists and dicts)."""
        return {
            "spatial": {a: [[d, f] for d, f in loops] for a, loops in self.spatial},
            "temporal": [[d, b] for d, b in self.temporal],
            "levels": {op: list(v) for op, v in self.levels.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, dims: ConvDims | None = None) -> "LoopNest":
        """Parse `to_dict`'s form; with `dims`, also check the factors against the layer.
        Raises a one-line ValueError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"loop nest: expected a mapping with spatial/temporal/levels, got {type(data).__name__}")
        unknown = set(data) - {"spatial", "temporal", "levels"}
        if unknown:
            raise ValueError(f"loop nest: unknown field(s) {sorted(unknown)}; expected spatial, temporal, levels")
        spatial_in = data.get("spatial", {})
        if not isinstance(spatial_in, Mapping):
            raise ValueError("loop nest: spatial: expected a mapping {cols: [[dim, factor], ...], rows: [...]}")
        spatial = []
        for a, loops in spatial_in.items():
            spatial.append((a, _parse_pairs(loops, f"spatial.{a}")))
        temporal = _parse_pairs(data.get("temporal", []), "temporal")
        levels_in = data.get("levels", {})
        if not isinstance(levels_in, Mapping):
            raise ValueError("loop nest: levels: expected a mapping {operand: [count, ...]}")
        levels = {}
        for op, v in levels_in.items():
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"loop nest: levels.{op}: expected a list of loop counts, got {v!r}")
            levels[op] = tuple(v)
        nest = cls(spatial=tuple(spatial), temporal=temporal, levels=levels)
        if dims is not None:
            nest.check(dims)
        return nest

    def check(self, dims: ConvDims) -> None:
        """Raise ValueError unless every dim's factors cover `dims` (exactly, or by a ceil-divided
        outermost factor)."""
        factors: list[list[int]] = [[] for _ in DIMS]
        for _a, loops in self.spatial:
            for d, f in loops:
                factors[_DI[d]].append(f)
        for d, b in self.temporal:
            factors[_DI[d]].append(b)
        for i, size in enumerate(dims.sizes):
            fs = factors[i]
            prod = math.prod(fs)
            if prod == size:
                continue
            rest = prod // fs[-1] if fs else 1
            if fs and prod > size and fs[-1] == -(-size // rest) and rest < size:
                continue
            where = "temporal" if any(d == DIMS[i] for d, _ in self.temporal) else "spatial"
            raise ValueError(
                f"loop nest: {where}: factors of {DIMS[i]} {fs} multiply to {prod}, expected {size} "
                f"(or a ceil-divided outermost factor)")


def _parse_pairs(loops: Any, name: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(loops, (list, tuple)):
        raise ValueError(f"loop nest: {name}: expected a list of [dim, bound] pairs, got {loops!r}")
    out = []
    for i, item in enumerate(loops):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"loop nest: {name}[{i}]: expected a [dim, bound] pair, got {item!r}")
        out.append((item[0], item[1]))
    return tuple(out)


def _check_nest_structure(nest: LoopNest) -> None:
    seen = set()
    for a, loops in nest.spatial:
        if a not in ARRAY_DIMS:
            raise ValueError(f"loop nest: spatial: unknown array dim {a!r}; expected one of {list(ARRAY_DIMS)}")
        if a in seen:
            raise ValueError(f"loop nest: spatial.{a}: given twice")
        seen.add(a)
        for i, (d, f) in enumerate(loops):
            if d not in _DI:
                raise ValueError(f"loop nest: spatial.{a}[{i}]: unknown dim {d!r}; expected one of {list(DIMS)}")
            if not _posint(f):
                raise ValueError(f"loop nest: spatial.{a}[{i}]: factor of {d} must be a positive integer, got {f!r}")
    for i, (d, b) in enumerate(nest.temporal):
        if d not in _DI:
            raise ValueError(f"loop nest: temporal[{i}]: unknown dim {d!r}; expected one of {list(DIMS)}")
        if not _posint(b):
            raise ValueError(f"loop nest: temporal[{i}]: bound of {d} must be a positive integer, got {b!r}")
    n = len(nest.temporal)
    for op, counts in nest.levels.items():
        if op not in OPERANDS:
            raise ValueError(f"loop nest: levels: unknown operand {op!r}; expected one of {list(OPERANDS)}")
        if not counts or any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in counts):
            raise ValueError(f"loop nest: levels.{op}: expected non-negative integer loop counts, got {list(counts)!r}")
        if sum(counts) != n:
            raise ValueError(f"loop nest: levels.{op}: counts {list(counts)} sum to {sum(counts)}, expected {n} (the number of temporal loops)")


# ----------------------------------------------------------------------------------------------
# Result types
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transfer:
    """One direction of traffic at one (level, operand).

    direction: "read_down" (towards the array), "write_from_below" (ofmap), "read_up" (ofmap,
    to the parent), "write_fill" (from the parent). elements/bits per period per instance,
    period_cycles, periods (charged periods per instance), instances, accesses (words, total),
    elements (total), real_cycles / allowed_cycles (per period, for the stall model), port
    (index of the level's port that carries it).
    """

    direction: str
    elements_per_period: int
    bits_per_element: int
    period_cycles: int
    periods: int
    instances: int
    accesses: int
    elements: int
    real_cycles: float
    allowed_cycles: float
    port: int


@dataclass(frozen=True)
class OperandLevelCost:
    """Counts of one operand at one level. reads/writes in accesses (words of access_bits),
    reads_elements/writes_elements in elements, energies in pJ, tile_* per instance."""

    level: str
    operand: str
    reads: int
    writes: int
    reads_elements: int
    writes_elements: int
    read_energy_pj: float
    write_energy_pj: float
    tile_elements: int
    tile_bits: int
    instances: int
    holds_psums: bool
    double_buffered: bool
    loops: tuple[tuple[str, int], ...]
    transfers: tuple[Transfer, ...]

    @property
    def energy_pj(self) -> float:
        return self.read_energy_pj + self.write_energy_pj


@dataclass(frozen=True)
class LevelCost:
    """Totals of one level over its operands: accesses, pJ, tile bits per instance, fits."""

    level: str
    reads: int
    writes: int
    energy_pj: float
    tile_bits: int
    size_bits: int | None
    fits: bool
    stall_cycles: float


@dataclass(frozen=True)
class NestCost:
    """Cost of one mapping. Energies in pJ, latencies in cycles."""

    macs: int
    temporal_cycles: int
    pes_used: int
    mac_energy_pj: float
    memory_energy_pj: float
    per_operand: Mapping[tuple[str, str], OperandLevelCost]
    levels: Mapping[str, LevelCost]
    stall_cycles: float
    onload_cycles: float
    offload_cycles: float
    fits: bool

    @property
    def energy_pj(self) -> float:
        return self.mac_energy_pj + self.memory_energy_pj

    @property
    def latency_cycles(self) -> float:
        return self.temporal_cycles + self.stall_cycles + self.onload_cycles + self.offload_cycles

    @property
    def edp(self) -> float:
        """Energy-delay product, pJ x cycles."""
        return self.energy_pj * self.latency_cycles


def _check_spatial(nest: LoopNest, array_rows: int, array_cols: int) -> None:
    """Raise ValueError if `nest` unrolls more PEs along an array dim than the array has."""
    for a, loops in nest.spatial:
        used = math.prod(f for _, f in loops)
        cap = array_cols if a == "cols" else array_rows
        if used > cap:
            raise ValueError(f"loop nest: spatial.{a}: unrolls {used} > array {a} {cap}")
