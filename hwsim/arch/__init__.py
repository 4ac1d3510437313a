"""Accelerator models: compute units, memory levels, and config loading/validation."""

from hwsim.arch.accelerator import OPERANDS, Accelerator, MemoryLevel
from hwsim.arch.loader import accelerator_from_dict, load_accelerator
from hwsim.arch.units import (DATAFLOWS, UNIT_KINDS, ArrayAccesses, ComputeUnit, SystolicArray,
                              UnitKind, register_unit_kind, unit_kind)

__all__ = [
    "DATAFLOWS",
    "OPERANDS",
    "UNIT_KINDS",
    "Accelerator",
    "ArrayAccesses",
    "ComputeUnit",
    "MemoryLevel",
    "SystolicArray",
    "UnitKind",
    "accelerator_from_dict",
    "load_accelerator",
    "register_unit_kind",
    "unit_kind",
]
