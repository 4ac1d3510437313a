"""`cost_network`: per-layer and total latency, traffic, energy and utilization of a workload.

Timing model: compute cycles come from the layer's compute unit (for a systolic array, SCALE-Sim
v3's CALC-mode formulas; for an XNOR unit, FINN folding; for a shift-add unit, lane folding times
cycles per product, see hwsim/arch/shift_add.py), times groups (each group of a grouped/depthwise
conv is its own GEMM, run back to back) and bit passes (operands wider than the datapath are
bit-sliced). Memory transfers
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

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from hwsim.arch.accelerator import Accelerator
from hwsim.arch.units import ComputeUnit
from hwsim.cost.energy import EnergyTable, accesses, energy_pj
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.result import LayerCosts, LevelCosts, merge_layer_costs
from hwsim.cost.traffic import memory_traffic, transfer_cycles
from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape


#: Largest count (MACs, cycles, bytes, accesses) of one layer: exact in int64 with headroom for
#: intermediates, and exact in float64.
MAX_COUNT = 2**53
#: Columns that are not counts (float64; checked to be finite and non-negative).
_FLOAT_COLUMNS = ("latency_s", "peak_macs_per_cycle", "utilization")


def unit_costs(accel: Accelerator, unit_name: str, table: LayerTable) -> LayerCosts:
    """Costs of `table` with every layer on unit `unit_name` (not checked against the unit's
    `supports`: the callers route and check), after checking in float64 that every figure is
    representable (see the module docstring)."""
    unit = accel.unit(unit_name)
    _check_representable(_figures(accel, unit_name, unit, table.as_float()).columns(), table,
                         unit)
    return _figures(accel, unit_name, unit, table)


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


def _figures(accel: Accelerator, unit_name: str, unit: ComputeUnit,
             table: LayerTable) -> LayerCosts:
    """The costs: int64 counts for an int64 table, or their float64 estimates for the float64
    copy (`LayerTable.as_float`) -- the same formulas either way."""
    traffic = memory_traffic(accel, table, unit)
    passes = traffic.passes
    macs = table.macs
    ops = table.operands
    gemm = table.gemm
    compute = table.groups * passes * unit.compute_cycles(gemm, ops)
    moving = transfer_cycles(accel, traffic)
    bound = np.ceil(np.max(np.stack(list(moving.values())), axis=0))
    if compute.dtype.kind == "i":  # exact: the float64 pass checked that every figure fits
        bound = bound.astype(np.int64)
    total = np.maximum(compute, bound)

    energies = EnergyTable.for_accelerator(accel, unit)
    actions = unit.action_counts(gemm, passes, ops)
    counts: dict[str, np.ndarray] = dict(actions)
    for level in accel.levels:
        counts[f"{level.name}_read"] = accesses(traffic.reads[level.name], level.access_bits)
        counts[f"{level.name}_write"] = accesses(traffic.writes[level.name], level.access_bits)
    energy = energy_pj(counts, energies)
    per_action = dict(unit.action_energies_pj())
    levels = {level.name: LevelCosts(
        read_bytes=traffic.reads[level.name], write_bytes=traffic.writes[level.name],
        read_accesses=counts[f"{level.name}_read"], write_accesses=counts[f"{level.name}_write"],
        energy_pj=energy[level.name]) for level in accel.levels}
    # The peak is the unit's at the layer's operand widths (a fused array at 2 bits has 16x the
    # parallelism of 8 bits), so a narrow layer that does not fill it shows low utilization.
    # Useful MACs per peak MAC-cycle is at most 1 except on a 1x1 output-stationary array, where
    # SCALE-Sim's "- 1" makes the cycle count one less than the MACs (and 0 for a single MAC:
    # counted as one cycle here, so utilization stays finite).
    peak = unit.peak_macs_per_cycle(ops)
    return LayerCosts(
        names=table.names, unit=np.full(len(table), unit_name), macs=macs, passes=passes,
        compute_cycles=compute, stall_cycles=total - compute, total_cycles=total,
        latency_s=total / accel.clock_hz, actions=actions,
        action_energy_pj={a: c * per_action.get(a, 0.0) for a, c in actions.items()},
        levels=levels, energy_compute_pj=energy["compute"],
        energy_total_pj=sum(energy.values()), peak_macs_per_cycle=peak,
        utilization=macs / (np.maximum(compute, 1).astype(np.float64) * peak),
        provenance=_provenance(accel, unit_name, unit))


def cost_table(accel: Accelerator, table: LayerTable) -> LayerCosts:
    """Price every layer of `table` on the unit the accelerator's assignment gives it
    (`Accelerator.layer_units`; raises `ConfigError` for a layer its unit cannot run): the
    allocator's hot path (numpy only, no DataFrame). See `LayerCosts` for the figures."""
    chosen = accel.layer_units(table.names, table.operands)
    used = [name for name in accel.units if (chosen == name).any()]
    if len(used) == 1:
        return unit_costs(accel, used[0], table)
    parts = []
    for name in used:
        rows = np.flatnonzero(chosen == name)
        parts.append((rows, unit_costs(accel, name, table.take(rows))))
    return merge_layer_costs(parts, table.names)


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
                 convention: str = "torch") -> NetworkCost:
    """Price `layers`, run in order on `accel`. `convention` sets output sizes ("torch" pads,
    "scalesim" takes the input as already padded)."""
    table = LayerTable.from_layers(layers, convention)
    costs = cost_table(accel, table)
    cols = costs.columns()
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
