"""Energy = action counts x per-action energies. Counts and the energy table are kept apart.

Actions: one MAC action per multiply-accumulate per bit pass; one read (write) access per
`access_bits` bits moved at a memory level, ``ceil(8 * bytes / access_bits)`` per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.arch.accelerator import Accelerator


@dataclass(frozen=True)
class EnergyTable:
    """pJ per action, built once per accelerator: ``mac_pj`` and per level read/write pJ."""

    mac_pj: float
    read_pj: dict[str, float]
    write_pj: dict[str, float]
    access_bits: dict[str, int]

    @classmethod
    def for_accelerator(cls, accel: Accelerator) -> "EnergyTable":
        return cls(
            mac_pj=accel.compute.mac_energy_pj,
            read_pj={lvl.name: lvl.read_energy_pj for lvl in accel.levels},
            write_pj={lvl.name: lvl.write_energy_pj for lvl in accel.levels},
            access_bits={lvl.name: lvl.access_bits for lvl in accel.levels},
        )


def accesses(bytes_moved: np.ndarray, access_bits: int) -> np.ndarray:
    """Accesses of `access_bits` bits needed to move `bytes_moved` bytes (int64, rounded up)."""
    return -(-(bytes_moved * 8) // access_bits)


def energy_pj(counts: dict[str, np.ndarray], table: EnergyTable) -> dict[str, np.ndarray]:
    """Energy per layer from action counts.

    `counts` has ``"mac"`` and, per level L, ``"L_read"`` and ``"L_write"`` access counts.
    Returns ``"compute"`` and one entry per level, in pJ.
    """
    out = {"compute": counts["mac"] * table.mac_pj}
    for level in table.read_pj:
        out[level] = (counts[f"{level}_read"] * table.read_pj[level]
                      + counts[f"{level}_write"] * table.write_pj[level])
    return out
