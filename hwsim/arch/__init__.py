"""Accelerator models: compute units, memory levels, and config loading/validation."""

from hwsim.arch.accelerator import OPERANDS, Accelerator, MemoryLevel
from hwsim.arch.assign import POSITIONS, AssignRule, assign_units
from hwsim.arch.loader import accelerator_from_dict, load_accelerator
from hwsim.arch.units import (DATAFLOWS, UNIT_KINDS, ArrayAccesses, ComputeUnit, SystolicArray,
                              UnitKind, register_unit_kind, unit_kind)
from hwsim.arch.xnor import XnorPopcount  # registers the "xnor_popcount" kind

__all__ = [
    "DATAFLOWS",
    "OPERANDS",
    "POSITIONS",
    "UNIT_KINDS",
    "Accelerator",
    "ArrayAccesses",
    "AssignRule",
    "ComputeUnit",
    "MemoryLevel",
    "SystolicArray",
    "UnitKind",
    "XnorPopcount",
    "accelerator_from_dict",
    "assign_units",
    "load_accelerator",
    "register_unit_kind",
    "unit_kind",
]
