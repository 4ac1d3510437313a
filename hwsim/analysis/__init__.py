"""Analyses of integer programs (torch-free): accumulator widths."""

from hwsim.analysis.accumulator import (
    AccumulatorBound,
    accumulator_bound,
    accumulator_report,
    exact_accumulators,
    node_accumulator_bound,
    signed_bits,
)
from hwsim.analysis.errors import AnalysisError

__all__ = [
    "AccumulatorBound",
    "AnalysisError",
    "accumulator_bound",
    "accumulator_report",
    "exact_accumulators",
    "node_accumulator_bound",
    "signed_bits",
]
