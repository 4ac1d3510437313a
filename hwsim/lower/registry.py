"""The tables of lowerings: one function per captured record op, one per weight format family.

A conv2d / linear record is lowered by the entry of its weight format's family (the family
name from ``quant.formats``' registry: "int", "binary", "apot", ...); every other record by the
entry of its op. A new format family registers its weight lowering here, once.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hwsim.errors import ProgramError

WEIGHTED_RECORD_OPS = ("conv2d", "linear")

Lowering = Callable[[Any, Any], Any]  # (LoweringContext, LayerRecord) -> Node


@dataclass(frozen=True)
class WeightLowering:
    """How conv2d / linear records with weights of format family `family` become nodes.

    `engine_modes`: the nodes it builds can take a real engine's arithmetic (``lower(engine=)``).
    """

    family: str
    lower: Lowering
    engine_modes: bool = False


RECORD_LOWERINGS: dict[str, Lowering] = {}
WEIGHT_LOWERINGS: dict[str, WeightLowering] = {}


def register_record_lowering(op: str, fn: Lowering) -> None:
    """Lower captured records of op `op` (not conv2d / linear) with `fn`."""
    if op in WEIGHTED_RECORD_OPS:
        raise ProgramError(f"{op} records are lowered by their weight format family; use "
                           "register_weight_lowering")
    if op in RECORD_LOWERINGS:
        raise ProgramError(f"records of op {op!r} already have a lowering")
    RECORD_LOWERINGS[op] = fn


def register_weight_lowering(entry: WeightLowering) -> WeightLowering:
    """Lower conv2d / linear records whose weights are of format family `entry.family`."""
    if entry.family in WEIGHT_LOWERINGS:
        raise ProgramError(f"format family {entry.family!r} already has a weight lowering")
    WEIGHT_LOWERINGS[entry.family] = entry
    return entry


def unregister_weight_lowering(family: str) -> None:
    """Remove the weight lowering of `family` (for tests that register a toy format)."""
    if WEIGHT_LOWERINGS.pop(family, None) is None:
        raise ProgramError(f"format family {family!r} has no weight lowering")


def weight_lowering(family: str, where: str) -> WeightLowering:
    """The entry of `family`; a failed lookup names `where` and the families that lower."""
    entry = WEIGHT_LOWERINGS.get(family)
    if entry is None:
        raise ProgramError(f"{where}: weights of format family {family!r} have no integer "
                           f"lowering; lowered families: {', '.join(sorted(WEIGHT_LOWERINGS))}")
    return entry
