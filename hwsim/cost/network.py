"""`cost_network`: per-layer and total latency, traffic, energy and utilization of a workload.

Timing model: compute cycles come from the layer's compute unit (for a systolic array, SCALE-Sim
v3's CALC-mode formulas; for an XNOR unit, FINN folding; for a shift-add unit, lane folding times
cycles per product; for Bit Fusion, the paper's formula at the layer's precision factor; for
Stripes / Loom, folds times activation (x weight) bits: see hwsim/arch/), times groups (each
group of a grouped/depthwise conv is its own GEMM, run back to back) and bit passes (operands
wider than the datapath are bit-sliced). On a two-level config (``memory: {dram, buffers}``)
each layer's traffic follows its mapping (hwsim/mapping/buffers.py: given, or the best of the
default mapper's candidates for the objective). Memory transfers
are double-buffered and overlap compute perfectly, so a layer takes
``max(compute_cycles, ceil(max over levels of transfer cycles))``; the excess over compute is
``stall_cycles``. Layers run one after another. A memory level with ``unlimited`` bandwidth (e.g.
a SCALE-Sim .cfg in CALC mode) never stalls.

Exactness: counts (MACs and other actions, cycles, bytes, accesses) are int64. Before pricing, the
same formulas run once in float64 and every count of every layer must stay at most `MAX_COUNT`
(2^53): then the int64 arithmetic cannot overflow (no intermediate exceeds a small multiple of a
count) and every count is also exact as a float. A layer beyond that is a `WorkloadError` naming
it and the figure, never a wrapped (negative) number. Energies, latency and utilization are
float64 and finite; network totals are summed in Python integers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hwsim.arch.accelerator import Accelerator
from hwsim.arch.units import ComputeUnit
from hwsim.cost.energy import EnergyTable, accesses, compute_energy_pj
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.result import LayerCosts, LevelCosts, merge_layer_costs
from hwsim.cost.traffic import ArrayTraffic, array_traffic, memory_traffic, transfer_cycles
from hwsim.mapping.buffers import (DEFAULT_OBJECTIVE, BufferColumns, BufferMapping,
                                   candidate_columns, given_columns, objective_values)
from hwsim.errors import ConfigError, WorkloadError
from hwsim.workloads.layer import LayerShape


#: Largest count (MACs, cycles, bytes, accesses) of one layer: exact in int64 with headroom for
#: intermediates, and exact in float64.
MAX_COUNT = 2**53
#: Columns that are not counts (float64; checked to be finite and non-negative).
_FLOAT_COLUMNS = ("latency_s", "peak_macs_per_cycle", "utilization")


def unit_costs(accel: Accelerator, unit_name: str, table: LayerTable, *,
               mapping: GivenMappings | None = None, objective: str = DEFAULT_OBJECTIVE,
               unit: ComputeUnit | None = None) -> LayerCosts:
    """Costs of `table` with every layer on unit `unit_name` (not checked against the unit's
    `supports`: the callers route and check), after checking in float64 that every figure is
    representable (see the module docstring). Rows with a given mapping (`mapping`) use it; the
    others are mapped by the default mapper for `objective` (hwsim/mapping/buffers.py). `unit`
    replaces the named unit (e.g. with another dataflow)."""
    unit = unit or accel.unit(unit_name)
    candidates = _candidates(accel, len(table), mapping)
    _check_representable(_figures(accel, unit_name, unit, table.as_float(), candidates,
                                  objective).columns(), table, unit)
    return _figures(accel, unit_name, unit, table, candidates, objective)


@dataclass(frozen=True)
class GivenMappings:
    """Mappings given for some rows: `columns` (valid where `given`) and the row mask."""

    columns: BufferColumns
    given: np.ndarray

    def take(self, rows: np.ndarray) -> "GivenMappings":
        return GivenMappings(self.columns.take(rows), self.given[rows])


def _candidates(accel: Accelerator, n_rows: int,
                mapping: GivenMappings | None) -> list[BufferColumns]:
    """The default mapper's candidates, with the given mappings in place on their rows."""
    if mapping is not None and mapping.given.all():
        return [mapping.columns]
    search = candidate_columns(accel, n_rows)
    if mapping is None or not mapping.given.any():
        return search
    given, cols = mapping.given, mapping.columns
    return [BufferColumns(np.where(given, cols.filter_outer, c.filter_outer),
                          {op: np.where(given, cols.tile_bytes[op], c.tile_bytes[op])
                           for op in c.tile_bytes}) for c in search]


def _check_representable(cols: dict[str, np.ndarray], table: LayerTable,
                         unit: ComputeUnit) -> None:
    """Raise `WorkloadError` naming the first layer with a count above MAX_COUNT (or a float
    figure that is not finite)."""
    worst: tuple[int, str, float] | None = None
    for key, col in cols.items():
        col = np.asarray(col, dtype=np.float64)
        is_float = key in _FLOAT_COLUMNS or key.startswith("energy_")
        ok = (np.isfinite(col) & (col >= 0)) if is_float else ((col >= 0) & (col <= MAX_COUNT))
        bad = np.flatnonzero(~ok)
        if bad.size and (worst is None or bad[0] < worst[0]):
            worst = (int(bad[0]), key, float(col[bad[0]]))
    if worst is None:
        return
    row, key, value = worst
    name = table.names[row]
    shown = repr(name) if len(repr(name)) <= 60 else repr(name[:50] + "...")
    raise WorkloadError(
        f"layer {shown}: {key} would be {value:.4g} on the {unit.kind} unit, beyond what the cost "
        f"model counts exactly (at most 2^53 = {MAX_COUNT:.4g} per layer); split the layer or "
        f"reduce its batch (layer {row + 1} of {len(table)}: {table.row_macs(row):.4g} MACs)")


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    return text.split(". ")[0].rstrip(".") if text else "(undocumented)"


def _provenance(accel: Accelerator, unit_name: str, unit: ComputeUnit) -> dict[str, dict[str, str]]:
    """The estimator behind each figure family, for layers on `unit_name`."""
    kind = unit.kind
    actions = ", ".join(f"{a} {pj:g} pJ" for a, pj in unit.action_energies_pj().items())
    figures = {
        "compute_cycles": f"{kind} unit: {_first_sentence(type(unit).compute_cycles.__doc__)}",
        "actions": f"{kind} unit: {_first_sentence(type(unit).action_counts.__doc__)}",
        "energy_compute_pj": f"{kind} unit: action counts x per-action energy ({actions}; "
                             f"{unit.energy_source()})",
        "traffic": "hwsim traffic model: DRAM fetches by the cheaper loop order, buffer <-> "
                   "array reads from the unit's access pattern (hwsim/cost/traffic.py)",
        "energy_levels_pj": f"accesses of access_bits x read/write_energy_pj per level "
                            f"({accel.source})",
        "stall_cycles": "double-buffered overlap: max(compute, transfer cycles per level) - "
                        "compute",
        "peak_macs_per_cycle": f"{kind} unit: "
                               f"{_first_sentence(type(unit).peak_macs_per_cycle.__doc__)}",
    }
    return {figure: {unit_name: text} for figure, text in figures.items()}


def _figures(accel: Accelerator, unit_name: str, unit: ComputeUnit, table: LayerTable,
             candidates: list[BufferColumns], objective: str) -> LayerCosts:
    """The costs: int64 counts for an int64 table, or their float64 estimates for the float64
    copy (`LayerTable.as_float`) -- the same formulas either way. Compute figures do not depend
    on the mapping; memory figures are evaluated for every candidate mapping and each row keeps
    its best candidate for `objective` (the first on a tie)."""
    passes = unit.bit_passes(table.operands)
    macs = table.macs
    ops = table.operands
    gemm = table.gemm
    compute = table.groups * passes * unit.compute_cycles(gemm, ops)
    actions = unit.action_counts(gemm, passes, ops)
    per_action = dict(unit.action_energies_pj())
    action_energy = {a: c * per_action.get(a, 0.0) for a, c in actions.items()}
    energy_compute = compute_energy_pj(actions, EnergyTable.for_accelerator(accel, unit))

    array = array_traffic(table, unit)
    options = [_memory_figures(accel, unit, table, cand, compute, energy_compute, array)
               for cand in candidates]
    if len(options) == 1:
        best = options[0]
        chosen_columns = candidates[0]
    else:
        scores = np.stack([objective_values(objective, o.total, o.energy_total) for o in options])
        pick = np.argmin(scores, axis=0)
        best = _select(options, pick)
        chosen_columns = BufferColumns(
            _choose(pick, [c.filter_outer for c in candidates]),
            {op: _choose(pick, [c.tile_bytes[op] for c in candidates])
             for op in candidates[0].tile_bytes})
    # The peak is the unit's at the layer's operand widths (a fused array at 2 bits has 16x the
    # parallelism of 8 bits), so a narrow layer that does not fill it shows low utilization.
    # Useful MACs per peak MAC-cycle is at most 1 except on a 1x1 output-stationary array, where
    # SCALE-Sim's "- 1" makes the cycle count one less than the MACs (and 0 for a single MAC:
    # counted as one cycle here, so utilization stays finite).
    peak = unit.peak_macs_per_cycle(ops)
    return LayerCosts(
        names=table.names, unit=np.full(len(table), unit_name), macs=macs, passes=passes,
        compute_cycles=compute, stall_cycles=best.total - compute, total_cycles=best.total,
        latency_s=best.total / accel.clock_hz, actions=actions, action_energy_pj=action_energy,
        levels=best.levels, energy_compute_pj=energy_compute,
        energy_total_pj=best.energy_total, peak_macs_per_cycle=peak,
        utilization=macs / (np.maximum(compute, 1).astype(np.float64) * peak),
        provenance=_provenance(accel, unit_name, unit),
        mapping=chosen_columns, dataflow=np.full(len(table), getattr(unit, "dataflow", None),
                                                 dtype=object))


@dataclass(frozen=True)
class _MemoryFigures:
    total: np.ndarray
    energy_total: np.ndarray
    levels: dict[str, LevelCosts]


def _memory_figures(accel: Accelerator, unit: ComputeUnit, table: LayerTable,
                    columns: BufferColumns, compute: np.ndarray, energy_compute: np.ndarray,
                    array: ArrayTraffic) -> _MemoryFigures:
    """Traffic, accesses and energy per level, and the total cycles, under one mapping."""
    traffic = memory_traffic(accel, table, unit, columns, array)
    moving = transfer_cycles(accel, traffic)
    bound = np.ceil(np.max(np.stack(list(moving.values())), axis=0))
    if compute.dtype.kind == "i":  # exact: the float64 pass checked that every figure fits
        bound = bound.astype(np.int64)
    total = np.maximum(compute, bound)
    levels = {}
    energy_total = energy_compute
    for level in accel.levels:
        reads = accesses(traffic.reads[level.name], level.access_bits)
        writes = accesses(traffic.writes[level.name], level.access_bits)
        energy = reads * level.read_energy_pj + writes * level.write_energy_pj
        levels[level.name] = LevelCosts(traffic.reads[level.name], traffic.writes[level.name],
                                        reads, writes, energy)
        energy_total = energy_total + energy
    return _MemoryFigures(total, energy_total, levels)


def _choose(pick: np.ndarray, arrays: list[np.ndarray]) -> np.ndarray:
    """``arrays[pick[i]][i]`` per row (np.where chains: faster than np.choose for a few)."""
    out = arrays[0]
    for k in range(1, len(arrays)):
        out = np.where(pick == k, arrays[k], out)
    return out


def _select(options: list[_MemoryFigures], pick: np.ndarray) -> _MemoryFigures:
    levels = {name: LevelCosts(*(_choose(pick, [getattr(o.levels[name], f) for o in options])
                                 for f in ("read_bytes", "write_bytes", "read_accesses",
                                           "write_accesses", "energy_pj")))
              for name in options[0].levels}
    return _MemoryFigures(_choose(pick, [o.total for o in options]),
                          _choose(pick, [o.energy_total for o in options]), levels)


def cost_table(accel: Accelerator, table: LayerTable, *,
               mappings: Sequence[Any] | None = None,
               objective: str = DEFAULT_OBJECTIVE, source: str = "<mappings>") -> LayerCosts:
    """Price every layer of `table` on the unit the accelerator's assignment gives it
    (`Accelerator.layer_units`; raises `ConfigError` for a layer its unit cannot run): the
    allocator's hot path (numpy only, no DataFrame, on two-level configs). See `LayerCosts`.

    `mappings` (one per row, None for "search") fixes layers' mappings -- `BufferMapping`s on a
    two-level config, `LoopNest`s on a hierarchy (``memory.levels``); the other layers are
    mapped by the default mapper for `objective` ("latency", "energy" or "edp"; see
    hwsim/mapping/). `source` names where the mappings came from, for errors."""
    objective_values(objective, np.zeros(1), np.zeros(1))  # validates the name
    chosen = accel.layer_units(table.names, table.operands)
    if mappings is not None and len(mappings) != len(table):
        raise ConfigError(f"{source}: {len(mappings)} mappings for {len(table)} layers")
    if accel.hierarchy:
        return _hierarchy_table(accel, table, chosen, mappings, objective, source)
    given = None
    dataflows = np.full(len(table), None, dtype=object)
    if mappings is not None:
        _check_kinds(table, mappings, BufferMapping, source, f"{accel.source} has DRAM and "
                     f"buffers: expected a mapping with loop_order, dataflow, tiles_bytes")
        rows = [i for i, m in enumerate(mappings) if m is not None]
        mask = np.zeros(len(table), dtype=bool)
        mask[rows] = True
        columns = given_columns(accel, [mappings[i] or BufferMapping() for i in
                                        range(len(table))], table.names, source)
        given = GivenMappings(columns, mask)
        for i in rows:
            dataflows[i] = mappings[i].dataflow
    parts = []
    for name in [n for n in accel.units if (chosen == n).any()]:
        unit = accel.unit(name)
        rows_of_unit = np.flatnonzero(chosen == name)
        for dataflow in dict.fromkeys(dataflows[rows_of_unit].tolist()):
            rows = rows_of_unit[np.array([d == dataflow for d in dataflows[rows_of_unit]],
                                         dtype=bool)]
            variant = _with_dataflow(unit, name, dataflow, table.names[rows[0]], source)
            sub = table if len(rows) == len(table) else table.take(rows)
            parts.append((rows, unit_costs(accel, name, sub, unit=variant, objective=objective,
                                           mapping=None if given is None else
                                           given.take(rows))))
    return merge_layer_costs(parts, table.names)


def _hierarchy_table(accel: Accelerator, table: LayerTable, chosen: np.ndarray,
                     mappings: Sequence[Any] | None, objective: str, source: str) -> LayerCosts:
    """Every unit's rows priced by the loop-nest model (hwsim/cost/hierarchy.py)."""
    from hwsim.cost.hierarchy import hierarchy_costs
    from hwsim.mapping.loopnest import LoopNest

    if mappings is not None:
        _check_kinds(table, mappings, LoopNest, source, f"{accel.source} is a memory "
                     f"hierarchy: expected a loop nest (spatial, temporal, levels)")
    parts = []
    for name in [n for n in accel.units if (chosen == n).any()]:
        rows = np.flatnonzero(chosen == name)
        sub = table if len(rows) == len(table) else table.take(rows)
        nests = None if mappings is None else [mappings[i] for i in rows]
        parts.append((rows, hierarchy_costs(accel, name, accel.unit(name), sub, nests,
                                            objective, source)))
    return merge_layer_costs(parts, table.names)


def _check_kinds(table: LayerTable, mappings: Sequence[Any], kind: type, source: str,
                 expected: str) -> None:
    """Every given mapping is a `kind`, else a `ConfigError` naming the first layer."""
    for name, m in zip(table.names, mappings):
        if m is not None and not isinstance(m, kind):
            raise ConfigError(f"{source}: layer {name!r}: {expected}, got a {type(m).__name__}")


def _with_dataflow(unit: ComputeUnit, name: str, dataflow: str | None, layer: str,
                   source: str) -> ComputeUnit:
    """`unit` running `dataflow` (None: its own); a unit without dataflows refuses one."""
    if dataflow is None or dataflow == getattr(unit, "dataflow", None):
        return unit
    if not hasattr(unit, "dataflow"):
        raise ConfigError(f"{source}: layer {layer!r}: dataflow {dataflow!r}: unit {name!r} "
                          f"({unit.kind}) has no dataflows; remove the field")
    return replace(unit, dataflow=dataflow)


@dataclass(frozen=True)
class NetworkCost:
    """Cost of a workload on an accelerator: `per_layer` (one row per layer) and totals.

    Units: cycles at the accelerator clock, seconds, bytes, pJ. `utilization` is total MACs over
    the sum of each layer's compute cycles x the peak MACs per cycle of the unit that ran it at the
    layer's operand widths (its PEs, for a unit whose parallelism does not depend on the widths). `per_layer`'s
    ``weight_format`` / ``act_format`` columns give each layer's number-format families and its
    ``unit`` column names the unit that ran it (a single-unit config: its kind).
    """

    accelerator: str
    convention: str
    per_layer: pd.DataFrame
    macs: int
    compute_cycles: int
    stall_cycles: int
    total_cycles: int
    latency_s: float
    energy_compute_pj: float
    energy_total_pj: float
    dram_bytes: int
    utilization: float
    layers: LayerCosts

    @property
    def provenance(self) -> dict[str, dict[str, str]]:
        """Estimator of each figure family, per compute unit (see `LayerCosts`)."""
        return self.layers.provenance

    def totals(self) -> dict[str, float | int | str]:
        """The scalar totals as a dict (for reports and JSON)."""
        return {k: getattr(self, k) for k in (
            "accelerator", "convention", "macs", "compute_cycles", "stall_cycles",
            "total_cycles", "latency_s", "energy_compute_pj", "energy_total_pj", "dram_bytes",
            "utilization")}

    def mappings(self) -> list[BufferMapping | None]:
        """The mapping each layer ran under, in layer order."""
        return [self.layers.mapping_of(i) for i in range(len(self.layers))]

    def energy_by_level_pj(self) -> dict[str, float]:
        """Total energy per memory level plus "compute", in pJ."""
        layers = self.layers
        out = {"compute": float(layers.energy_compute_pj.sum())}
        out.update({name: float(level.energy_pj.sum()) for name, level in layers.levels.items()})
        return out

    def energy_by_action_pj(self) -> dict[str, float]:
        """Total compute energy per compute action ("mac", "xnor", ...), in pJ."""
        return {a: float(e.sum()) for a, e in self.layers.action_energy_pj.items()}


def cost_network(accel: Accelerator, layers: Sequence[LayerShape], *,
                 convention: str = "torch",
                 mappings: Sequence[BufferMapping | None] | None = None,
                 objective: str = DEFAULT_OBJECTIVE, source: str = "<mappings>") -> NetworkCost:
    """Price `layers`, run in order on `accel`. `convention` sets output sizes ("torch" pads,
    "scalesim" takes the input as already padded). `mappings` (one per layer, None: search) and
    `objective` are as for `cost_table`; `NetworkCost.mappings()` gives the mapping each layer
    ran under."""
    table = LayerTable.from_layers(layers, convention)
    costs = cost_table(accel, table, mappings=mappings, objective=objective, source=source)
    cols = costs.columns()
    if costs.mapping is not None:
        cols["loop_order"] = np.where(costs.mapping.filter_outer, "filter_outer", "ifmap_outer")
    frame = pd.DataFrame({"name": list(table.names), "kind": list(table.kinds),
                          "weight_format": list(table.weight_format),
                          "act_format": list(table.act_format),
                          "weight_bits": table.weight_bits, "act_bits": table.act_bits, **cols,
                          "unit": costs.unit.tolist()})
    # Totals in Python integers: exact however many layers are summed.
    pe_cycles = sum(max(c, 1) * peak for c, peak in
                    zip(cols["compute_cycles"].tolist(), cols["peak_macs_per_cycle"].tolist()))
    total_cycles = _total(cols["total_cycles"])
    macs = _total(cols["macs"])
    return NetworkCost(
        accelerator=accel.name,
        convention=convention,
        per_layer=frame,
        macs=macs,
        compute_cycles=_total(cols["compute_cycles"]),
        stall_cycles=_total(cols["stall_cycles"]),
        total_cycles=total_cycles,
        latency_s=total_cycles / accel.clock_hz,
        energy_compute_pj=float(cols["energy_compute_pj"].sum()),
        energy_total_pj=float(cols["energy_total_pj"].sum()),
        dram_bytes=_total(cols["dram_read_bytes"]) + _total(cols["dram_write_bytes"]),
        utilization=macs / pe_cycles,
        layers=costs,
    )


def _total(column: np.ndarray) -> int:
    """Exact sum of an int64 column."""
    return sum(column.tolist())
