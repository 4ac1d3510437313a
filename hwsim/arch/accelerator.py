"""The accelerator as frozen data: a compute unit, DRAM and on-chip buffers, a clock.

Memory energy is one table: every level has an access width `access_bits` and an energy per read
access and per write access of that width (pJ). A transfer of B bytes costs ``ceil(8 B /
access_bits)`` accesses. DRAM is unbounded (`size_bytes` is None) and holds every operand.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.arch.units import ComputeUnit
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

    @property
    def clock_mhz(self) -> float:
        return self.clock_hz / 1e6

    @property
    def levels(self) -> tuple[MemoryLevel, ...]:
        """DRAM first, then the on-chip buffers in config order."""
        return (self.dram, *self.buffers)

    def buffer_for(self, operand: str) -> MemoryLevel:
        """The on-chip buffer that holds `operand` ("ifmap", "filter" or "ofmap")."""
        for buffer in self.buffers:
            if operand in buffer.holds:
                return buffer
        raise ConfigError(f"{self.source}: no on-chip buffer holds operand {operand!r}; "
                          f"expected one of {list(OPERANDS)} in some buffer's 'holds'")
