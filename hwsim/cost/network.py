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
from hwsim.cost.traffic import memory_traffic, transfer_cycles
from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape


#: Largest count (MACs, cycles, bytes, accesses) of one layer: exact in int64 with headroom for
#: intermediates, and exact in float64.
MAX_COUNT = 2**53
#: Columns that are not counts (float64; checked to be finite and non-negative).
_FLOAT_COLUMNS = ("latency_s", "peak_macs_per_cycle", "utilization")


def _unit_columns(accel: Accelerator, unit: ComputeUnit, table: LayerTable) -> dict[str, np.ndarray]:
    """Cost columns of `table` with every layer on `unit`, after checking in float64 that every
    figure is representable (see the module docstring)."""
    _check_representable(_figures(accel, unit, table.as_float()), table, unit)
    return _figures(accel, unit, table)


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


def _figures(accel: Accelerator, unit: ComputeUnit, table: LayerTable) -> dict[str, np.ndarray]:
    """The cost columns: int64 counts for an int64 table, or their float64 estimates for the
    float64 copy (`LayerTable.as_float`) -- the same formulas either way."""
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

    cols: dict[str, np.ndarray] = {"macs": macs}
    cols.update({f"{action}_actions": count for action, count in actions.items()})
    cols.update({
        "passes": passes,
        "compute_cycles": compute,
        "stall_cycles": total - compute,
        "total_cycles": total,
        "latency_s": total / accel.clock_hz,
    })
    for level in accel.levels:
        name = level.name
        cols[f"{name}_read_bytes"] = traffic.reads[name]
        cols[f"{name}_write_bytes"] = traffic.writes[name]
        cols[f"{name}_read_accesses"] = counts[f"{name}_read"]
        cols[f"{name}_write_accesses"] = counts[f"{name}_write"]
    cols["energy_compute_pj"] = energy["compute"]
    for level in accel.levels:
        cols[f"energy_{level.name}_pj"] = energy[level.name]
    cols["energy_total_pj"] = sum(energy.values())
    # Useful MACs per PE-cycle; at most 1 except on a 1x1 output-stationary array, where
    # SCALE-Sim's "- 1" makes the cycle count one less than the MACs (and 0 for a single MAC:
    # counted as one cycle here, so utilization stays finite).
    # The peak is the unit's at the layer's operand widths (a fused array at 2 bits has 16x the
    # parallelism of 8 bits), so a narrow layer that does not fill it shows low utilization.
    peak = unit.peak_macs_per_cycle(ops)
    cols["peak_macs_per_cycle"] = peak
    cols["utilization"] = macs / (np.maximum(compute, 1).astype(np.float64) * peak)
    return cols


def _columns(accel: Accelerator, table: LayerTable) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Cost columns and the unit name per layer; layers are priced on their assigned unit."""
    chosen = accel.layer_units(table.names, table.operands)
    used = [name for name in accel.units if (chosen == name).any()]
    if len(used) == 1:
        return _unit_columns(accel, accel.unit(used[0]), table), chosen
    parts = {}
    for name in used:
        rows = np.flatnonzero(chosen == name)
        parts[name] = (rows, _unit_columns(accel, accel.unit(name), table.take(rows)))
    keys: list[str] = []
    for _, cols in parts.values():
        keys += [k for k in cols if k not in keys]
    # Action columns of other units go next to the first unit's actions, before "passes".
    keys.remove("passes")
    keys.insert(max(i for i, k in enumerate(keys) if k.endswith("_actions")) + 1, "passes")
    merged: dict[str, np.ndarray] = {}
    for key in keys:
        dtype = np.result_type(*(cols[key] for _, cols in parts.values() if key in cols))
        column = np.zeros(len(table), dtype=dtype)
        for rows, cols in parts.values():
            if key in cols:
                column[rows] = cols[key]
        merged[key] = column
    return merged, chosen


def cost_table(accel: Accelerator, table: LayerTable) -> dict[str, np.ndarray]:
    """All per-layer cost columns as numpy arrays (the allocator's hot path; no DataFrame).

    Each layer is priced on the unit the accelerator's assignment gives it
    (`Accelerator.layer_units`; raises `ConfigError` for a layer its unit cannot run).
    Columns: macs, ``<action>_actions`` per compute action of the units used (``mac_actions``
    for a MAC array; ``xnor_actions``, ``popcount_bit_actions``, ``accumulate_actions`` for an
    XNOR unit; ``shift_actions``, ``add_actions``, ``accumulate_actions`` for a shift-add unit;
    0 on layers of other units; two kinds' actions of the same name share a column), passes,
    compute_cycles, stall_cycles, total_cycles, latency_s,
    ``<level>_read_bytes``/``_write_bytes``/``_read_accesses``/``_write_accesses`` per level,
    energy_compute_pj, ``energy_<level>_pj``, energy_total_pj, peak_macs_per_cycle (the unit's
    parallelism at the layer's widths), utilization.
    """
    return _columns(accel, table)[0]


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

    def totals(self) -> dict[str, float | int | str]:
        """The scalar totals as a dict (for reports and JSON)."""
        return {k: getattr(self, k) for k in (
            "accelerator", "convention", "macs", "compute_cycles", "stall_cycles",
            "total_cycles", "latency_s", "energy_compute_pj", "energy_total_pj", "dram_bytes",
            "utilization")}

    def energy_by_level_pj(self) -> dict[str, float]:
        """Total energy per memory level plus "compute", in pJ."""
        cols = [c for c in self.per_layer.columns if c.startswith("energy_") and c != "energy_total_pj"]
        return {c[len("energy_"):-len("_pj")]: float(self.per_layer[c].sum()) for c in cols}


def cost_network(accel: Accelerator, layers: Sequence[LayerShape], *,
                 convention: str = "torch") -> NetworkCost:
    """Price `layers`, run in order on `accel`. `convention` sets output sizes ("torch" pads,
    "scalesim" takes the input as already padded)."""
    table = LayerTable.from_layers(layers, convention)
    cols, chosen = _columns(accel, table)
    frame = pd.DataFrame({"name": list(table.names), "kind": list(table.kinds),
                          "weight_format": list(table.weight_format),
                          "act_format": list(table.act_format), **cols, "unit": list(chosen)})
    units = accel.units
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
    )


def _total(column: np.ndarray) -> int:
    """Exact sum of an int64 column."""
    return sum(column.tolist())
