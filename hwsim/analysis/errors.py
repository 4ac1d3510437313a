"""Errors of the analysis package."""

from hwsim.errors import HwsimError


class AnalysisError(HwsimError):
    """An analysis was asked of operands or a program it cannot analyse (names the layer/field)."""
