"""Layers priced on a memory hierarchy of any depth (``memory.levels``) by the loop-nest model.

Every layer (one conv group; the counts are multiplied by ``groups``, the groups running back to
back) gets a `LoopNest` mapping -- given, or the default mapper's best for the objective
(hwsim/mapping/loopnest.py, which states the counting model and how it compares with ZigZag)
-- and its figures come from that nest:

- compute cycles = the nest's temporal cycles x groups x bit passes (operands wider than the
  unit's datapath run in passes; the memory traffic is counted once, at the layer's widths: the
  passes re-use the operands held in the PEs);
- stall cycles = (the nest's stalls + its first-tile onload and last-tile offload) x groups;
- per level: bytes read / written (each transfer at its operand's precision: weights at
  weight_bits, inputs at act_bits, partial sums at the unit's acc_bits, final outputs at
  act_bits), accesses of the level's word and their energy, summed over operands;
- compute actions and energy from the unit (one MAC per multiply-accumulate per pass).

A mapping whose tiles do not fit a level, or a layer no candidate mapping fits, is a
`ConfigError` naming the layer, the level and the sizes. Ports: DRAM has one port shared by
reads and writes, an on-chip level a read port and a write port (as in the two-level model),
unless the level sets ``ports`` (1, 2 or 4).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from hwsim.arch.accelerator import Accelerator
from hwsim.arch.units import ComputeUnit
from hwsim.cost.energy import EnergyTable, compute_energy_pj
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.result import LayerCosts, LevelCosts
from hwsim.errors import ConfigError, WorkloadError
from hwsim.mapping.loopnest import (ConvDims, LoopNest, NestCost, NestLevel, Precisions,
                                    evaluate, map_layer)

#: Largest count of one layer (as in hwsim/cost/network.py): exact in int64 and float64.
MAX_COUNT = 2**53


def nest_levels(accel: Accelerator) -> tuple[NestLevel, ...]:
    """The accelerator's levels as the loop-nest model takes them, outermost first (DRAM, then
    the on-chip levels ordered by their depth below DRAM)."""
    return tuple(NestLevel(
        name=level.name, holds=level.holds,
        size_bits=None if level.size_bytes is None else level.size_bytes * 8,
        per_pe=level.per_pe, access_bits=level.access_bits,
        read_energy_pj=level.read_energy_pj, write_energy_pj=level.write_energy_pj,
        bandwidth_bits_per_cycle=level.bandwidth_bytes_per_cycle * 8,
        ports=level.ports or (1 if level.is_dram else 2)) for level in accel.levels_by_depth())


def hierarchy_costs(accel: Accelerator, unit_name: str, unit: ComputeUnit, table: LayerTable,
                    nests: Sequence[LoopNest | None] | None, objective: str,
                    source: str) -> LayerCosts:
    """Costs of the rows of `table`, all on `unit` (a unit whose schedule is the mapping, e.g.
    ``spatial_array``), each under its given nest (None: the default mapper's). A mapping that
    does not fit is a `ConfigError` naming the layer and level."""
    costs, fits, problems = priced_nests(accel, unit_name, unit, table, nests, objective, source)
    if not fits.all():
        raise ConfigError(problems[int(np.flatnonzero(~fits)[0])])
    return costs


def priced_nests(accel: Accelerator, unit_name: str, unit: ComputeUnit, table: LayerTable,
                 nests: Sequence[LoopNest | None] | None, objective: str,
                 source: str) -> tuple[LayerCosts, np.ndarray, list[str | None]]:
    """`hierarchy_costs` without refusing: also each row's fit and, where it does not fit, the
    problem (rows that fit nowhere are priced under the best non-fitting candidate)."""
    levels = nest_levels(accel)
    rows_, cols_ = unit.rows, unit.cols
    n = len(table)
    ops = table.operands
    passes = unit.bit_passes(ops)
    chosen: list[LoopNest] = []
    costs: list[NestCost] = []
    problems: list[str | None] = []
    for i in range(n):
        dims = ConvDims.from_table(table, i)
        precisions = Precisions(ifmap=int(table.act_bits[i]), filter=int(table.weight_bits[i]),
                                psum=unit.acc_bits, ofmap=int(table.act_bits[i]))
        given = nests[i] if nests is not None else None
        name = table.names[i]
        if given is None:
            nest, cost = map_layer(dims, levels, precisions, rows_, cols_, unit.mac_energy_pj,
                                   objective)
            where = f"{accel.source}: no mapping of layer {name!r} fits the hierarchy"
        else:
            try:
                cost = evaluate(dims, given, levels, precisions, array_rows=rows_,
                                array_cols=cols_, mac_energy_pj=unit.mac_energy_pj)
            except ValueError as exc:
                raise ConfigError(f"{source}: layer {name!r}: {exc}") from None
            nest = given
            where = f"{source}: layer {name!r}: the mapping's tiles do not fit"
        problem = None
        if not cost.fits:
            bad = [lv for lv in cost.levels.values() if not lv.fits]
            problem = where + ": " + "; ".join(
                f"level {lv.level!r} needs {lv.tile_bits} bits per instance, holds "
                f"{lv.size_bits}" for lv in bad)
        chosen.append(nest)
        costs.append(cost)
        problems.append(problem)
    fits = np.array([p is None for p in problems], dtype=bool)
    return (_layer_costs(accel, unit_name, unit, table, chosen, costs, passes, levels), fits,
            problems)


def _layer_costs(accel: Accelerator, unit_name: str, unit: ComputeUnit, table: LayerTable,
                 nests: list[LoopNest], costs: list[NestCost], passes: np.ndarray,
                 levels: tuple[NestLevel, ...]) -> LayerCosts:
    groups = [int(g) for g in table.groups]
    pas = [int(p) for p in passes]
    compute = [c.temporal_cycles * g * p for c, g, p in zip(costs, groups, pas)]
    extra = [math.ceil(c.stall_cycles + c.onload_cycles + c.offload_cycles) * g
             for c, g in zip(costs, groups)]
    per_level: dict[str, list[list[int | float]]] = {}
    for lv in levels:
        cols = [[], [], [], [], []]  # read bytes, write bytes, reads, writes, energy
        for cost, g in zip(costs, groups):
            read_bits = write_bits = 0
            for (level, _op), oc in cost.per_operand.items():
                if level != lv.name:
                    continue
                for t in oc.transfers:
                    bits = t.elements * t.bits_per_element
                    if t.direction in ("read_down", "read_up"):
                        read_bits += bits
                    else:
                        write_bits += bits
            total = cost.levels[lv.name]
            cols[0].append(-(-read_bits // 8) * g)
            cols[1].append(-(-write_bits // 8) * g)
            cols[2].append(total.reads * g)
            cols[3].append(total.writes * g)
            cols[4].append(total.energy_pj * g)
        per_level[lv.name] = cols
    _check_counts(table, {"compute_cycles": compute, "stall_cycles": extra,
                          **{f"{name}_{kind}": col for name, c in per_level.items()
                             for kind, col in zip(("read_bytes", "write_bytes", "read_accesses",
                                                   "write_accesses"), c[:4])}})
    compute_a = np.array(compute, dtype=np.int64)
    total_a = compute_a + np.array(extra, dtype=np.int64)
    ops = table.operands
    gemm = table.gemm
    actions = unit.action_counts(gemm, passes, ops)
    per_action = dict(unit.action_energies_pj())
    energy_compute = compute_energy_pj(actions, EnergyTable.for_accelerator(accel, unit))
    level_costs = {}
    energy_total = energy_compute
    for lv in accel.levels:  # config order, DRAM first
        c = per_level[lv.name]
        energy = np.array(c[4], dtype=np.float64)
        level_costs[lv.name] = LevelCosts(*(np.array(x, dtype=np.int64) for x in c[:4]), energy)
        energy_total = energy_total + energy
    peak = unit.peak_macs_per_cycle(ops)
    macs = table.macs
    kind = unit.kind
    provenance = {
        "compute_cycles": {unit_name: f"{kind} unit on a hierarchy: the loop nest's temporal "
                                      f"cycles x groups x passes (hwsim/mapping/loopnest.py)"},
        "actions": {unit_name: f"{kind} unit: one MAC per multiply-accumulate per pass"},
        "energy_compute_pj": {unit_name: f"{kind} unit: action counts x per-action energy "
                                         f"({unit.energy_source()})"},
        "traffic": {unit_name: "loop-nest model: per-level tiles and refills of the layer's "
                               "mapping (hwsim/mapping/loopnest.py; ZigZag-style counting with "
                               "exact partial sums)"},
        "energy_levels_pj": {unit_name: f"accesses of access_bits x read/write_energy_pj per "
                                        f"level ({accel.source})"},
        "stall_cycles": {unit_name: "loop-nest model: bandwidth stalls per port plus the first "
                                    "tiles' onload and the last outputs' offload"},
        "peak_macs_per_cycle": {unit_name: f"{kind} unit: one MAC per PE per cycle"},
    }
    return LayerCosts(
        names=table.names, unit=np.full(len(table), unit_name), macs=macs, passes=passes,
        compute_cycles=compute_a, stall_cycles=total_a - compute_a, total_cycles=total_a,
        latency_s=total_a / accel.clock_hz, actions=actions,
        action_energy_pj={a: c * per_action.get(a, 0.0) for a, c in actions.items()},
        levels=level_costs, energy_compute_pj=energy_compute, energy_total_pj=energy_total,
        peak_macs_per_cycle=peak,
        utilization=macs / (np.maximum(compute_a, 1).astype(np.float64) * peak),
        provenance=provenance, nests=tuple(nests))


def _check_counts(table: LayerTable, columns: dict[str, list[int]]) -> None:
    """Every count of every layer at most MAX_COUNT (Python integers: exact), else a
    `WorkloadError` naming the layer and the figure."""
    for key, values in columns.items():
        for i, value in enumerate(values):
            if value > MAX_COUNT:
                raise WorkloadError(
                    f"layer {table.names[i]!r}: {key} would be {value:.4g}, beyond what the cost "
                    f"model counts exactly (at most 2^53 per layer); split the layer or reduce "
                    f"its batch")
