"""Energy = action counts x per-action energies. Counts and the energy table are kept apart.

Actions: the compute unit's actions (a MAC array: one ``mac`` per multiply-accumulate per bit
pass; an XNOR unit: ``xnor``, ``popcount_bit``, ``accumulate``; a shift-add unit: ``shift``,
``add``, ``accumulate``; Bit Fusion: ``fusion_unit_cycle``; Stripes: ``serial_bit_mac``,
``accumulate``; Loom: ``serial_bit_step``, ``accumulate``); one read (write) access per
`access_bits` bits moved at a memory level, ``ceil(8 * bytes / access_bits)`` per layer.
Traffic is counted in whole bytes, so `access_bits` is a whole number of bytes (a multiple of 8,
checked by the config loader): an access never splits a byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.arch.accelerator import Accelerator
from hwsim.arch.units import ComputeUnit


@dataclass(frozen=True)
class EnergyTable:
    """pJ per action, built once per (accelerator, unit): ``mac_pj``, the unit's other compute
    actions in ``action_pj`` (empty for a MAC array), and per level read/write pJ."""

    mac_pj: float
    read_pj: dict[str, float]
    write_pj: dict[str, float]
    access_bits: dict[str, int]
    action_pj: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_accelerator(cls, accel: Accelerator, unit: ComputeUnit | None = None) -> "EnergyTable":
        """The table for `unit` (default: the accelerator's default unit) and its memories."""
        actions = dict((unit or accel.compute).action_energies_pj())
        return cls(
            mac_pj=actions.pop("mac", 0.0),
            read_pj={lvl.name: lvl.read_energy_pj for lvl in accel.levels},
            write_pj={lvl.name: lvl.write_energy_pj for lvl in accel.levels},
            access_bits={lvl.name: lvl.access_bits for lvl in accel.levels},
            action_pj=actions,
        )


def accesses(bytes_moved: np.ndarray, access_bits: int) -> np.ndarray:
    """Accesses of `access_bits` bits needed to move `bytes_moved` bytes (int64, rounded up):
    ``ceil(8 * bytes / access_bits)``, exact, computed as ``8 q + ceil(8 r / access_bits)`` with
    ``bytes = q * access_bits + r`` so that no intermediate exceeds the result (a float64
    estimate for float64 input: the cost model's overflow-check pass)."""
    if np.asarray(bytes_moved).dtype.kind == "f":
        return np.ceil(bytes_moved * 8.0 / access_bits)
    whole, rest = np.divmod(bytes_moved, access_bits)
    return 8 * whole + -(-(8 * rest) // access_bits)


def compute_energy_pj(counts: dict[str, np.ndarray], table: EnergyTable) -> np.ndarray:
    """Compute energy per layer: the sum over the unit's actions of count x pJ (``mac`` first,
    then ``action_pj`` in order), pJ. `counts` must have at least one action."""
    terms = [counts["mac"] * table.mac_pj] if "mac" in counts else []
    terms += [counts[action] * pj for action, pj in table.action_pj.items()]
    if not terms:
        raise ValueError("compute_energy_pj: the unit counted no actions")
    compute = terms[0]
    for term in terms[1:]:
        compute = compute + term
    return compute


def energy_pj(counts: dict[str, np.ndarray], table: EnergyTable) -> dict[str, np.ndarray]:
    """Energy per layer from action counts.

    `counts` has the compute actions (``"mac"`` and/or the keys of ``table.action_pj``) and, per
    level L, ``"L_read"`` and ``"L_write"`` access counts. Returns ``"compute"`` (the sum over
    actions of count x pJ, ``mac`` first, then ``action_pj`` in order) and one entry per level,
    in pJ.
    """
    out = {"compute": compute_energy_pj(counts, table)}
    for level in table.read_pj:
        out[level] = (counts[f"{level}_read"] * table.read_pj[level]
                      + counts[f"{level}_write"] * table.write_pj[level])
    return out
