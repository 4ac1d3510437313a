"""Mappings of a layer onto a memory hierarchy: loop-nest analysis and the default mapper.

See `hwsim.mapping.loopnest` for the counting model (Timeloop/ZigZag style).
"""

from hwsim.mapping.loopnest import (
    ARRAY_DIMS,
    DIMS,
    OPERANDS,
    ConvDims,
    LevelCost,
    LoopNest,
    NestCost,
    NestLevel,
    OperandLevelCost,
    Precisions,
    Transfer,
    allocate_levels,
    clear_mapper_cache,
    evaluate,
    map_layer,
    mapper_candidates,
    objective_value,
    ORDERS,
)

__all__ = [
    "ARRAY_DIMS",
    "DIMS",
    "OPERANDS",
    "ConvDims",
    "LevelCost",
    "LoopNest",
    "NestCost",
    "NestLevel",
    "OperandLevelCost",
    "Precisions",
    "Transfer",
    "allocate_levels",
    "clear_mapper_cache",
    "evaluate",
    "map_layer",
    "mapper_candidates",
    "objective_value",
    "ORDERS",
]
