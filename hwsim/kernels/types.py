"""Value objects shared by the integer kernels: accumulator settings and results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError

ACCUMULATOR_MODES = ("wrap", "saturate")


@dataclass(frozen=True)
class AccumulatorSpec:
    """Width and overflow behaviour of the accumulator of a conv/linear kernel.

    bits: accumulator width in bits, two's complement, 8..64.
    mode: "wrap" (the exact sum wrapped to ``bits`` bits; order-independent) or "saturate"
        (clip to the range after every addition, in the canonical order bias, then c, r, s).
    """

    bits: int = 32
    mode: str = "wrap"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise KernelError(
                f"AccumulatorSpec.bits must be an int in [8, 64]. Got {self.bits!r} instead."
            )
        if not 8 <= int(self.bits) <= 64:
            raise KernelError(
                f"AccumulatorSpec.bits must be an int in [8, 64]. Got {self.bits} instead."
            )
        if self.mode not in ACCUMULATOR_MODES:
            raise KernelError(
                f"AccumulatorSpec.mode must be one of {ACCUMULATOR_MODES}. Got {self.mode!r} instead."
            )
        object.__setattr__(self, "bits", int(self.bits))

    min_value = property(lambda self: -(1 << (self.bits - 1)),
                         doc="Smallest representable accumulator value, -2^(bits-1).")
    max_value = property(lambda self: (1 << (self.bits - 1)) - 1,
                         doc="Largest representable accumulator value, 2^(bits-1) - 1.")


@dataclass(frozen=True)
class AccumResult:
    """Accumulators of a conv/linear kernel.

    values: int64 array, (N, K, OH, OW) for conv, (N, out) for linear; already wrapped or
        saturated to the accumulator width.
    overflow_count: number of output elements whose accumulation overflowed the width
        (wrap: exact sum out of range; saturate: some step clipped).
    """

    values: np.ndarray
    overflow_count: int


@dataclass(frozen=True)
class PoolSumResult:
    """Window sums of an average pool, before requantization.

    values: int64 array (N, C, OH, OW): sum over each window of (x - x_zp), padding counts 0.
    count: int64 array (OH, OW): the divisor of each output position (the window area, or only
        the in-image elements when count_include_pad is False).
    """

    values: np.ndarray
    count: np.ndarray


@dataclass(frozen=True)
class RequantResult:
    """Output codes of a fused conv/linear + requantization.

    codes: (N, K, OH, OW) or (N, out), in the smallest dtype holding [qmin, qmax].
    overflow_count: accumulator overflows, as in AccumResult.
    """

    codes: np.ndarray
    overflow_count: int
