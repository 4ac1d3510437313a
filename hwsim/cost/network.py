"""`cost_network`: per-layer and total latency, traffic, energy and utilization of a workload.

Timing model: compute cycles come from the layer's compute unit (for a systolic array, SCALE-Sim
v3's CALC-mode formulas; for an XNOR unit, FINN folding; for a shift-add unit, lane folding times
cycles per product, see hwsim/arch/shift_add.py), times groups (each group of a grouped/depthwise
conv is its own GEMM, run back to back) and bit passes (operands wider than the datapath are
bit-sliced). Memory transfers
are double-buffered and overlap compute perfectly, so a layer takes
``max(compute_cycles, ceil(max over levels of transfer cycles))``; the excess over compute is
``stall_cycles``. Layers run one after another.
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
from hwsim.workloads.layer import LayerShape


def _unit_columns(accel: Accelerator, unit: ComputeUnit, table: LayerTable) -> dict[str, np.ndarray]:
    """Cost columns of `table` with every layer on `unit`."""
    traffic = memory_traffic(accel, table, unit)
    passes = traffic.passes
    macs = table.macs
    ops = table.operands
    compute = table.groups * passes * unit.compute_cycles(table.sr, table.sc, table.t, ops)
    moving = transfer_cycles(accel, traffic)
    bound = np.ceil(np.max(np.stack(list(moving.values())), axis=0)).astype(np.int64)
    total = np.maximum(compute, bound)

    energies = EnergyTable.for_accelerator(accel, unit)
    actions = unit.action_counts(table.sr, table.sc, table.t, table.groups, passes, ops)
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
    cols["utilization"] = macs / (np.maximum(compute, 1) * unit.pe_count)
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
    energy_compute_pj, ``energy_<level>_pj``, energy_total_pj, utilization.
    """
    return _columns(accel, table)[0]


@dataclass(frozen=True)
class NetworkCost:
    """Cost of a workload on an accelerator: `per_layer` (one row per layer) and totals.

    Units: cycles at the accelerator clock, seconds, bytes, pJ. `utilization` is total MACs over
    the sum of each layer's compute cycles x the PEs of the unit that ran it. `per_layer`'s
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
    pes = np.array([units[name].pe_count for name in chosen], dtype=np.int64)
    pe_cycles = int((np.maximum(cols["compute_cycles"], 1) * pes).sum())
    return NetworkCost(
        accelerator=accel.name,
        convention=convention,
        per_layer=frame,
        macs=int(cols["macs"].sum()),
        compute_cycles=int(cols["compute_cycles"].sum()),
        stall_cycles=int(cols["stall_cycles"].sum()),
        total_cycles=int(cols["total_cycles"].sum()),
        latency_s=float(cols["total_cycles"].sum() / accel.clock_hz),
        energy_compute_pj=float(cols["energy_compute_pj"].sum()),
        energy_total_pj=float(cols["energy_total_pj"].sum()),
        dram_bytes=int(cols["dram_read_bytes"].sum() + cols["dram_write_bytes"].sum()),
        utilization=float(cols["macs"].sum() / pe_cycles),
    )
