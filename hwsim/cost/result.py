"""`LayerCosts`: the cost model's per-layer result as typed arrays, with each figure's estimator.

One value per figure family instead of a dict of formatted column names: cycles, the compute
unit's actions (counts and energy per action), traffic, accesses and energy per memory level,
parallelism and utilization. `columns()` flattens it into the named columns users see in
`NetworkCost.per_layer` (a pandas DataFrame); code reads the attributes.

Provenance (in the spirit of Accelergy's energy reference tables): `provenance` maps each figure
to the estimator that produced it, per compute unit, e.g. ``{"compute_cycles": {"systolic":
"systolic unit: Compute cycles of one GEMM ... SCALE-Sim's fold model ..."}}``, so a reader can
tell a cycle count from a published formula from one of hwsim's own estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.mapping.buffers import BufferColumns, BufferMapping, mapping_of


@dataclass(frozen=True)
class LevelCosts:
    """One memory level's figures per layer: bytes and accesses read / written (int64), energy
    of those accesses (pJ, float64)."""

    read_bytes: np.ndarray
    write_bytes: np.ndarray
    read_accesses: np.ndarray
    write_accesses: np.ndarray
    energy_pj: np.ndarray

    def take(self, rows: np.ndarray) -> "LevelCosts":
        return LevelCosts(*(getattr(self, f)[rows] for f in _LEVEL_FIELDS))


_LEVEL_FIELDS = ("read_bytes", "write_bytes", "read_accesses", "write_accesses", "energy_pj")


@dataclass(frozen=True)
class LayerCosts:
    """Per-layer costs (arrays of one length) of layers priced on their compute units.

    Units: cycles of the accelerator clock, seconds, bytes, accesses of each level's
    `access_bits`, pJ. ``actions``/``action_energy_pj`` are keyed by compute action ("mac",
    "xnor", "shift", ...: every action of the units used; 0 on layers of units without it).
    ``levels`` is keyed by memory level name, DRAM first. ``unit`` names the unit of each layer.
    """

    names: tuple[str, ...]
    unit: np.ndarray
    macs: np.ndarray
    passes: np.ndarray
    compute_cycles: np.ndarray
    stall_cycles: np.ndarray
    total_cycles: np.ndarray
    latency_s: np.ndarray
    actions: dict[str, np.ndarray]
    action_energy_pj: dict[str, np.ndarray]
    levels: dict[str, LevelCosts]
    energy_compute_pj: np.ndarray
    energy_total_pj: np.ndarray
    peak_macs_per_cycle: np.ndarray
    utilization: np.ndarray
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the mapping each layer ran under (two-level model) and the dataflow of its unit
    mapping: BufferColumns | None = None
    dataflow: np.ndarray | None = None
    #: the loop nest of each layer (memory hierarchies), in row order
    nests: tuple[Any, ...] | None = None

    def mapping_of(self, row: int) -> Any:
        """The mapping value of layer `row`: a `BufferMapping` (two-level configs) or a
        `LoopNest` (hierarchies); None if the model has none."""
        if self.nests is not None:
            return self.nests[row]
        if self.mapping is None:
            return None
        dataflow = self.dataflow[row] if self.dataflow is not None else None
        return mapping_of(self.mapping, row, dataflow)

    def __len__(self) -> int:
        return len(self.names)

    def energy_level_pj(self, level: str) -> np.ndarray:
        """Energy of memory level `level` per layer (pJ)."""
        return self.levels[level].energy_pj

    def columns(self) -> dict[str, np.ndarray]:
        """Flat named columns, in the order of `NetworkCost.per_layer`: macs,
        ``<action>_actions``, passes, compute/stall/total cycles, latency_s, per level
        ``<level>_read_bytes``/``_write_bytes``/``_read_accesses``/``_write_accesses``,
        energy_compute_pj, ``energy_<action>_pj``, ``energy_<level>_pj``, energy_total_pj,
        peak_macs_per_cycle, utilization."""
        cols: dict[str, np.ndarray] = {"macs": self.macs}
        cols.update({f"{a}_actions": c for a, c in self.actions.items()})
        cols.update({"passes": self.passes, "compute_cycles": self.compute_cycles,
                     "stall_cycles": self.stall_cycles, "total_cycles": self.total_cycles,
                     "latency_s": self.latency_s})
        for name, level in self.levels.items():
            cols[f"{name}_read_bytes"] = level.read_bytes
            cols[f"{name}_write_bytes"] = level.write_bytes
            cols[f"{name}_read_accesses"] = level.read_accesses
            cols[f"{name}_write_accesses"] = level.write_accesses
        cols["energy_compute_pj"] = self.energy_compute_pj
        cols.update({f"energy_{a}_pj": e for a, e in self.action_energy_pj.items()})
        cols.update({f"energy_{n}_pj": lvl.energy_pj for n, lvl in self.levels.items()})
        cols["energy_total_pj"] = self.energy_total_pj
        cols["peak_macs_per_cycle"] = self.peak_macs_per_cycle
        cols["utilization"] = self.utilization
        return cols

    def take(self, rows: np.ndarray) -> "LayerCosts":
        """Rows `rows` of every figure."""
        idx = np.asarray(rows, dtype=np.int64)
        return LayerCosts(
            names=tuple(self.names[i] for i in idx), unit=self.unit[idx], macs=self.macs[idx],
            passes=self.passes[idx], compute_cycles=self.compute_cycles[idx],
            stall_cycles=self.stall_cycles[idx], total_cycles=self.total_cycles[idx],
            latency_s=self.latency_s[idx],
            actions={a: c[idx] for a, c in self.actions.items()},
            action_energy_pj={a: e[idx] for a, e in self.action_energy_pj.items()},
            levels={n: lvl.take(idx) for n, lvl in self.levels.items()},
            energy_compute_pj=self.energy_compute_pj[idx],
            energy_total_pj=self.energy_total_pj[idx],
            peak_macs_per_cycle=self.peak_macs_per_cycle[idx], utilization=self.utilization[idx],
            provenance=self.provenance,
            mapping=self.mapping.take(idx) if self.mapping is not None else None,
            dataflow=self.dataflow[idx] if self.dataflow is not None else None,
            nests=tuple(self.nests[i] for i in idx) if self.nests is not None else None)


def merge_layer_costs(parts: list[tuple[np.ndarray, LayerCosts]], names: tuple[str, ...]) -> LayerCosts:
    """Layer costs of a whole table from parts priced on different units: ``parts`` pairs each
    part's row indices (into `names`) with its costs. Actions of one unit are 0 on the others'
    rows; provenance is the union."""
    if len(parts) == 1 and len(parts[0][0]) == len(names):
        rows, only = parts[0]
        if np.array_equal(rows, np.arange(len(names))):
            return only
    n = len(names)

    def gather(get) -> np.ndarray:
        arrays = [get(cost) for _, cost in parts]
        out = np.zeros(n, dtype=np.result_type(*arrays))
        for (rows, _), values in zip(parts, arrays):
            out[rows] = values
        return out

    def gather_keyed(get) -> dict[str, np.ndarray]:
        keys: list[str] = []
        for _, cost in parts:
            keys += [k for k in get(cost) if k not in keys]
        merged = {}
        for key in keys:
            present = [get(cost)[key] for _, cost in parts if key in get(cost)]
            out = np.zeros(n, dtype=np.result_type(*present))
            for rows, cost in parts:
                if key in get(cost):
                    out[rows] = get(cost)[key]
            merged[key] = out
        return merged

    first = parts[0][1]
    mapping = None
    if all(cost.mapping is not None for _, cost in parts):
        mapping = BufferColumns(
            gather(lambda c: c.mapping.filter_outer),
            {op: gather(lambda c, op=op: c.mapping.tile_bytes[op])
             for op in first.mapping.tile_bytes})
    dataflow = None
    if all(cost.dataflow is not None for _, cost in parts):
        dataflow = np.empty(n, dtype=object)
        for rows, cost in parts:
            dataflow[rows] = cost.dataflow
    nests = None
    if all(cost.nests is not None for _, cost in parts):
        nests_list: list[Any] = [None] * n
        for rows, cost in parts:
            for r, nest in zip(rows.tolist(), cost.nests):
                nests_list[r] = nest
        nests = tuple(nests_list)
    levels = {name: LevelCosts(*(gather(lambda c, f=f, name=name: getattr(c.levels[name], f))
                                 for f in _LEVEL_FIELDS)) for name in first.levels}
    provenance: dict[str, dict[str, str]] = {}
    for _, cost in parts:
        for figure, by_unit in cost.provenance.items():
            provenance.setdefault(figure, {}).update(by_unit)
    return LayerCosts(
        names=names, unit=gather(lambda c: c.unit), macs=gather(lambda c: c.macs),
        passes=gather(lambda c: c.passes), compute_cycles=gather(lambda c: c.compute_cycles),
        stall_cycles=gather(lambda c: c.stall_cycles),
        total_cycles=gather(lambda c: c.total_cycles), latency_s=gather(lambda c: c.latency_s),
        actions=gather_keyed(lambda c: c.actions),
        action_energy_pj=gather_keyed(lambda c: c.action_energy_pj), levels=levels,
        energy_compute_pj=gather(lambda c: c.energy_compute_pj),
        energy_total_pj=gather(lambda c: c.energy_total_pj),
        peak_macs_per_cycle=gather(lambda c: c.peak_macs_per_cycle),
        utilization=gather(lambda c: c.utilization), provenance=provenance, mapping=mapping,
        dataflow=dataflow, nests=nests)
