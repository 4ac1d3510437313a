"""Mappings on a two-level accelerator (DRAM + on-chip buffers): the value and the search.

A `BufferMapping` says how one layer is laid onto a ``memory: {dram, buffers}`` accelerator,
apart from the hardware:

- ``dataflow``: the systolic dataflow ("os", "ws", "is"); None runs the unit's own (the config's
  ``dataflow`` field, kept as the hardware default);
- ``loop_order``: "filter_outer" (filter chunks stay resident in their buffer while the ifmap is
  re-streamed from DRAM once per chunk) or "ifmap_outer" (the reverse);
- ``tiles_bytes``: each operand's resident tile in bytes -- the buffer partition. An operand not
  named gets an even share of what its buffer has left. The tiles of the operands sharing a
  buffer must fit it together.

The default mapper (`candidate_columns`, used by `hwsim.cost.cost_table` for every layer without
a given mapping) searches, per layer and vectorized over layers: both loop orders x the buffer
partitions below, and keeps the best for the objective ("latency": total cycles, "energy": total
pJ, "edp": their product; the first candidate on a tie). Partitions: the even split; and, for a
buffer shared by several operands, 3/4 of it to the loop order's resident operand (the filters
for filter_outer, the ifmap for ifmap_outer) and the rest split evenly. On configs whose
operands each have their own buffer (every SCALE-Sim-style config) the search is over the loop
order alone. The dataflow is not searched: on a systolic array it is wired in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hwsim.arch.accelerator import OPERANDS, Accelerator
from hwsim.arch.units import DATAFLOWS
from hwsim.errors import ConfigError

@dataclass(frozen=True)
class BufferColumns:
    """A two-level mapping as columns over layers: whether the filters stay resident in chunks
    while the ifmap is re-streamed (``filter_outer``; else the ifmap stays and the filters are
    re-streamed), and each operand's resident tile in bytes (``tile_bytes``: at most its share
    of the buffer holding it). See hwsim/mapping/buffers.py for the per-layer mapping value."""

    filter_outer: np.ndarray
    tile_bytes: dict[str, np.ndarray]

    def take(self, rows: np.ndarray) -> "BufferColumns":
        return BufferColumns(self.filter_outer[rows],
                             {op: t[rows] for op, t in self.tile_bytes.items()})


def even_tiles(accel: Accelerator, n_layers: int) -> dict[str, np.ndarray]:
    """Each operand's tile: an even share of the buffer holding it, for every layer."""
    return {op: np.full(n_layers, accel.buffer_for(op).capacity_per_operand_bytes())
            for op in OPERANDS}


LOOP_ORDERS = ("filter_outer", "ifmap_outer")
OBJECTIVES = ("latency", "energy", "edp")
DEFAULT_OBJECTIVE = "energy"
#: share of a shared buffer given to the resident operand by the second partition candidate
RESIDENT_SHARE = 0.75


@dataclass(frozen=True)
class BufferMapping:
    """One layer's mapping on a DRAM + buffers accelerator (see the module docstring)."""

    loop_order: str = "filter_outer"
    dataflow: str | None = None
    tiles_bytes: tuple[tuple[str, int], ...] = ()

    def tile(self, operand: str) -> int | None:
        return dict(self.tiles_bytes).get(operand)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loop_order": self.loop_order}
        if self.dataflow is not None:
            out["dataflow"] = self.dataflow
        if self.tiles_bytes:
            out["tiles_bytes"] = dict(self.tiles_bytes)
        return out

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> "BufferMapping":
        """Validate a mapping read from a file; `where` prefixes every error ("file: layer")."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping with loop_order, dataflow, "
                              f"tiles_bytes, got {raw!r}")
        unknown = sorted(set(raw) - {"loop_order", "dataflow", "tiles_bytes"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown field; expected loop_order, "
                              f"dataflow, tiles_bytes")
        order = raw.get("loop_order", "filter_outer")
        if order not in LOOP_ORDERS:
            raise ConfigError(f"{where}.loop_order: expected one of {list(LOOP_ORDERS)}, got "
                              f"{order!r}")
        dataflow = raw.get("dataflow")
        if dataflow is not None and dataflow not in DATAFLOWS:
            raise ConfigError(f"{where}.dataflow: expected one of {list(DATAFLOWS)}, got "
                              f"{dataflow!r}")
        tiles = raw.get("tiles_bytes") or {}
        if not isinstance(tiles, Mapping):
            raise ConfigError(f"{where}.tiles_bytes: expected a mapping operand -> bytes, got "
                              f"{tiles!r}")
        for op, size in tiles.items():
            if op not in OPERANDS:
                raise ConfigError(f"{where}.tiles_bytes.{op}: unknown operand; expected one of "
                                  f"{list(OPERANDS)}")
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ConfigError(f"{where}.tiles_bytes.{op}: expected a positive integer "
                                  f"(bytes), got {size!r}")
        return cls(order, dataflow, tuple(sorted(tiles.items())))


def _tiles_for(accel: Accelerator, mapping: BufferMapping, where: str) -> dict[str, float]:
    """Each operand's tile under `mapping`: given ones as given, the others an even share of
    what their buffer has left. Raises `ConfigError` if the tiles of a buffer do not fit it."""
    tiles: dict[str, float] = {}
    for buffer in accel.buffers:
        given = {op: mapping.tile(op) for op in buffer.holds if mapping.tile(op) is not None}
        used = sum(given.values())
        if used > buffer.size_bytes:
            raise ConfigError(f"{where}: tiles_bytes {given} need {used} bytes; buffer "
                              f"{buffer.name!r} ({accel.source}) holds {buffer.size_bytes}")
        rest = [op for op in buffer.holds if op not in given]
        tiles.update(given)
        tiles.update({op: (buffer.size_bytes - used) / len(rest) for op in rest})
    for op in OPERANDS:
        if op in tiles and tiles[op] <= 0:
            raise ConfigError(f"{where}: tiles_bytes leave no room for {op!r} in buffer "
                              f"{accel.buffer_for(op).name!r} ({accel.source})")
    return tiles


def given_columns(accel: Accelerator, mappings: Sequence[BufferMapping],
                  names: Sequence[str], source: str) -> BufferColumns:
    """Columns of explicit per-layer mappings (one per layer)."""
    tiles = {op: np.empty(len(mappings)) for op in OPERANDS}
    for i, mapping in enumerate(mappings):
        for op, size in _tiles_for(accel, mapping, f"{source}: layer {names[i]!r}").items():
            tiles[op][i] = size
    outer = np.array([m.loop_order == "filter_outer" for m in mappings], dtype=bool)
    return BufferColumns(outer, tiles)


def _partitions(accel: Accelerator, resident: str, n_layers: int) -> list[dict[str, np.ndarray]]:
    """The partition candidates for loop orders keeping `resident` on chip."""
    even = even_tiles(accel, n_layers)
    shared = [b for b in accel.buffers if len(b.holds) > 1 and resident in b.holds]
    if not shared:
        return [even]
    skewed = dict(even)
    for buffer in shared:
        others = [op for op in buffer.holds if op != resident]
        skewed[resident] = np.full(n_layers, RESIDENT_SHARE * buffer.size_bytes)
        for op in others:
            skewed[op] = np.full(n_layers, (1 - RESIDENT_SHARE) * buffer.size_bytes / len(others))
    return [even, skewed]


def candidate_columns(accel: Accelerator, n_layers: int) -> list[BufferColumns]:
    """The default mapper's candidates (module docstring), each for every layer."""
    out = []
    for order in LOOP_ORDERS:
        resident = "filter" if order == "filter_outer" else "ifmap"
        for tiles in _partitions(accel, resident, n_layers):
            out.append(BufferColumns(np.full(n_layers, order == "filter_outer"), tiles))
    return out


def objective_values(objective: str, total_cycles: np.ndarray,
                     energy_pj: np.ndarray) -> np.ndarray:
    """The per-layer figure the mapper minimizes (float64)."""
    if objective == "latency":
        return np.asarray(total_cycles, dtype=np.float64)
    if objective == "energy":
        return np.asarray(energy_pj, dtype=np.float64)
    if objective == "edp":
        return np.asarray(total_cycles, dtype=np.float64) * energy_pj
    raise ConfigError(f"objective: expected one of {list(OBJECTIVES)}, got {objective!r}")


def mapping_of(columns: BufferColumns, row: int, dataflow: str | None) -> BufferMapping:
    """The per-layer value of row `row` of `columns` (tiles rounded down to whole bytes)."""
    tiles = tuple(sorted((op, int(math.floor(t[row]))) for op, t in columns.tile_bytes.items()
                         if math.isfinite(t[row])))
    order = "filter_outer" if columns.filter_outer[row] else "ifmap_outer"
    return BufferMapping(order, dataflow, tiles)
