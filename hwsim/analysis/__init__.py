"""Analyses of integer programs (torch-free): accumulator widths; fbgemm's int16 pair saturation."""

from hwsim.analysis.accumulator import (
    AccumulatorBound,
    accumulator_bound,
    accumulator_report,
    exact_accumulators,
    node_accumulator_bound,
    signed_bits,
)
from hwsim.analysis.errors import AnalysisError
from hwsim.analysis.fbgemm import fbgemm_accumulators, fbgemm_linear, fma_f32

__all__ = [
    "AccumulatorBound",
    "AnalysisError",
    "accumulator_bound",
    "accumulator_report",
    "exact_accumulators",
    "fbgemm_accumulators",
    "fbgemm_linear",
    "fma_f32",
    "node_accumulator_bound",
    "signed_bits",
]
