"""Accelerator models: compute units, memory levels, and config loading/validation."""

from hwsim.arch.accelerator import OPERANDS, Accelerator, MemoryLevel
from hwsim.arch.assign import POSITIONS, AssignRule, assign_units
from hwsim.arch.bit_serial import Loom, Stripes  # registers the "stripes" and "loom" kinds
from hwsim.arch.bit_fusion import BitFusion  # registers the "bit_fusion" kind
from hwsim.arch.loader import accelerator_from_dict, load_accelerator
from hwsim.arch.shift_add import ShiftAdd, terms_per_weight  # registers the "shift_add" kind
from hwsim.arch.spatial import SpatialArray  # registers the "spatial_array" kind
from hwsim.arch.units import (DATAFLOWS, UNIT_KINDS, ArrayAccesses, ComputeUnit, Gemm, Operands,
                              SystolicArray, UnitKind, register_unit_kind, unit_kind,
                              unregister_unit_kind)
from hwsim.arch.xnor import XnorPopcount  # registers the "xnor_popcount" kind

__all__ = [
    "DATAFLOWS",
    "OPERANDS",
    "POSITIONS",
    "UNIT_KINDS",
    "Accelerator",
    "ArrayAccesses",
    "AssignRule",
    "BitFusion",
    "ComputeUnit",
    "Gemm",
    "Loom",
    "MemoryLevel",
    "Operands",
    "ShiftAdd",
    "SpatialArray",
    "Stripes",
    "SystolicArray",
    "UnitKind",
    "XnorPopcount",
    "accelerator_from_dict",
    "assign_units",
    "load_accelerator",
    "register_unit_kind",
    "terms_per_weight",
    "unit_kind",
    "unregister_unit_kind",
]
