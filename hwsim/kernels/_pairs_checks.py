"""The int16-pairs accumulator type and the operand checks shared by the int16-pairs kernels
(`hwsim.kernels.pairs`) and their definitions (`hwsim.kernels.reference.pairs`), so both accept
exactly the same operands and raise the same KernelError messages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels.types import AccumulatorSpec

I16_MIN, I16_MAX = -(1 << 15), (1 << 15) - 1
EXACT64 = AccumulatorSpec(bits=64, mode="wrap")  # the exact sum, for the shared conv/linear checks
CODE_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))


@dataclass(frozen=True)
class Int16PairsAccumulator:
    """The int16-pairs accumulator (`hwsim.kernels.pairs`): raw-code product pairs saturated to
    int16, then summed with the zero-point corrections and bias into a wrapping accumulator of
    `bits` bits (two's complement, 16..64; ONNX Runtime uses 32)."""

    bits: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) \
                or not 16 <= int(self.bits) <= 64:
            raise KernelError(f"Int16PairsAccumulator.bits must be an int in [16, 64]. Got "
                              f"{self.bits!r} instead.")
        object.__setattr__(self, "bits", int(self.bits))

    min_value = AccumulatorSpec.min_value  # two's complement range of `bits` bits
    max_value = AccumulatorSpec.max_value


def pairs_accumulator(fn: str, acc: object) -> Int16PairsAccumulator:
    if not isinstance(acc, Int16PairsAccumulator):
        raise KernelError(f"{fn}: acc must be an Int16PairsAccumulator(bits=...); got {acc!r}.")
    return acc


def eight_bit(fn: str, name: str, a: np.ndarray) -> None:
    if a.dtype not in CODE_DTYPES:
        raise KernelError(f"{fn}: {name} must hold 8-bit codes (uint8 or int8) for the int16 "
                          f"pair mode; got dtype {a.dtype}.")
