"""The accelerator as frozen data: compute unit(s), DRAM and on-chip buffers, a clock.

A single-unit accelerator has just `compute` (its unit name is its kind, e.g. "systolic"). A
heterogeneous one also has `other_units` and assignment `rules`: `compute` is then the default
unit, named `compute_name`; every unit shares the memory hierarchy, layers run one at a time.

Memory energy is one table: every level has an access width `access_bits` and an energy per read
access and per write access of that width (pJ). A transfer of B bytes costs ``ceil(8 B /
access_bits)`` accesses. DRAM is unbounded (`size_bytes` is None) and holds every operand.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Sequence

import numpy as np

from hwsim.arch.assign import AssignRule, assign_units
from hwsim.arch.units import ComputeUnit, Operands
from hwsim.errors import ConfigError

OPERANDS = ("ifmap", "filter", "ofmap")


@dataclass(frozen=True)
class MemoryLevel:
    """A DRAM or on-chip buffer. `holds` lists the operands it stores (DRAM: all of them)."""

    name: str
    size_bytes: int | None
    bandwidth_bytes_per_cycle: float
    access_bits: int
    read_energy_pj: float
    write_energy_pj: float
    holds: tuple[str, ...]
    #: one instance in every PE (size_bytes each), e.g. a register file; else one shared instance
    per_pe: bool = False
    #: the level this one is filled from (a hierarchy's levels; None: DRAM, or two-level configs)
    parent: str | None = None
    #: ports of `bandwidth_bytes_per_cycle` each (hierarchies: 1 shared, 2 read + write, 4 one per
    #: direction; None: DRAM 1, on-chip 2)
    ports: int | None = None

    @property
    def is_dram(self) -> bool:
        return self.size_bytes is None

    def capacity_per_operand_bytes(self) -> float:
        """Buffer bytes available to one of its operands: shared buffers are split evenly."""
        if self.size_bytes is None:
            return float("inf")
        return self.size_bytes / len(self.holds)


@dataclass(frozen=True)
class Accelerator:
    """A validated accelerator. Build it with `hwsim.arch.load_accelerator`."""

    name: str
    clock_hz: float
    compute: ComputeUnit
    dram: MemoryLevel
    buffers: tuple[MemoryLevel, ...]
    source: str = "<memory>"
    compute_name: str = ""
    other_units: tuple[tuple[str, ComputeUnit], ...] = ()
    rules: tuple[AssignRule, ...] = ()
    #: built from ``memory.levels``: priced by the loop-nest model (hwsim/mapping/loopnest.py)
    hierarchy: bool = False

    @property
    def clock_mhz(self) -> float:
        return self.clock_hz / 1e6

    @property
    def levels(self) -> tuple[MemoryLevel, ...]:
        """DRAM first, then the on-chip buffers in config order."""
        return (self.dram, *self.buffers)

    @property
    def default_unit(self) -> str:
        """Name of `compute`: `compute_name`, or its kind when unnamed (single-unit configs)."""
        return self.compute_name or self.compute.kind

    @property
    def units(self) -> dict[str, ComputeUnit]:
        """Every compute unit by name, the default one first."""
        return {self.default_unit: self.compute, **dict(self.other_units)}

    def unit(self, name: str) -> ComputeUnit:
        """The unit called `name`; a failed lookup lists the units."""
        units = self.units
        if name not in units:
            raise ConfigError(f"{self.source}: no compute unit named {name!r}; units: "
                              f"{list(units)}")
        return units[name]

    def layer_units(self, names: Sequence[str], ops: Operands) -> np.ndarray:
        """Name of the unit that runs each layer (object array of str) by the config's rules.

        `ops` gives each layer's operand widths and weight / activation format families. Raises
        `ConfigError` naming, per offending layer, the file, the unit's config section, the
        layer, its formats and widths, and what the unit supports.
        """
        chosen = assign_units(self.rules, self.default_unit, names, ops)
        problems = []
        for name, unit in self.units.items():
            where = f"units.{name}" if self.other_units else "compute"
            rows = np.flatnonzero(chosen == name)
            bad = rows[~unit.supports(ops.take(rows))]
            seen: set[str] = set()
            for i in bad:
                if names[i] in seen:
                    continue
                seen.add(names[i])
                problems.append(
                    f"{self.source}: {where}: layer {names[i]!r} (act_bits={ops.act_bits[i]}, "
                    f"weight_bits={ops.weight_bits[i]}) with {str(ops.weight_format[i])!r} "
                    f"weights and {str(ops.act_format[i])!r} activations runs on unit {name!r} "
                    f"({unit.kind}), which supports {unit.support_text()}")
        if problems:
            hint = "the 'assign' rules" if self.other_units else "the compute unit"
            count = f"{len(problems)} layers" if len(problems) > 1 else "1 layer"
            raise ConfigError("\n  ".join(
                [f"{problems[0]} ({count} cannot run on their compute unit; change the layer "
                 f"formats or {hint})", *problems[1:]]))
        return chosen

    def chain(self, operand: str) -> tuple[MemoryLevel, ...]:
        """The levels holding `operand`, outermost (DRAM) first: its path to the array."""
        return tuple(level for level in self.levels_by_depth() if operand in level.holds)

    def levels_by_depth(self) -> tuple[MemoryLevel, ...]:
        """DRAM, then the on-chip levels by their depth below DRAM (following `parent`; config
        order among equals): outermost first."""
        by_name = {level.name: level for level in self.buffers}

        def depth(level: MemoryLevel) -> int:
            count = 0
            while level.parent in by_name:
                level, count = by_name[level.parent], count + 1
            return count

        return (self.dram, *sorted(self.buffers, key=depth))

    def buffer_for(self, operand: str) -> MemoryLevel:
        """The on-chip buffer that holds `operand` ("ifmap", "filter" or "ofmap")."""
        for buffer in self.buffers:
            if operand in buffer.holds:
                return buffer
        raise ConfigError(f"{self.source}: no on-chip buffer holds operand {operand!r}; "
                          f"expected one of {list(OPERANDS)} in some buffer's 'holds'")
