"""Typed values for what integer nodes carry as plain JSON attrs: requantization and accumulators.

Nodes keep JSON-able dicts (``attrs["requant"] = {"mode": "dyadic", "clamp": [lo, hi]}``,
``attrs["accumulator"] = {"bits": 32, "mode": "wrap"}``) so programs save and load as data; code
that acts on them reads them through these types, so a mode is compared in one place. The
modes are ``str`` enums: ``RequantMode.DYADIC == "dyadic"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from hwsim.errors import ProgramError


class RequantMode(str, Enum):
    """How an accumulator becomes an output code.

    DYADIC: integer-only, ``M = m 2^-shift`` (m a 31-bit integer), round half up.
    FLOAT32: ONNX Runtime's float32 order, round half to even.
    """

    DYADIC = "dyadic"
    FLOAT32 = "float32"

    def __str__(self) -> str:
        return self.value


class AccumulatorMode(str, Enum):
    """Overflow behaviour of an accumulator (or adder) of ``bits`` bits.

    WRAP: the exact sum wrapped (two's complement; order-independent).
    SATURATE: clipped after every addition, in the op's canonical order.
    INT16_PAIRS: adjacent raw u8 x s8 products summed into int16 with saturation, then widened
    (x86 CPUs without VNNI; hwsim.kernels.pairs).
    """

    WRAP = "wrap"
    SATURATE = "saturate"
    INT16_PAIRS = "int16_pairs"

    def __str__(self) -> str:
        return self.value


REQUANT_MODES = tuple(m.value for m in RequantMode)
ACCUMULATOR_MODES = tuple(m.value for m in AccumulatorMode)


def _mode(enum: type[Enum], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ProgramError(f"{what} must be one of {[m.value for m in enum]}, got {value!r}") from None


@dataclass(frozen=True)
class RequantSpec:
    """``attrs["requant"]`` of a requantizing node: the mode and the output code clamp."""

    mode: RequantMode
    clamp: tuple[int, int]

    @classmethod
    def from_attrs(cls, attrs: dict) -> "RequantSpec":
        rq = attrs["requant"]
        lo, hi = rq["clamp"]
        return cls(_mode(RequantMode, rq.get("mode"), "requant mode"), (int(lo), int(hi)))

    def to_attrs(self) -> dict:
        return {"mode": self.mode.value, "clamp": [int(self.clamp[0]), int(self.clamp[1])]}

    @property
    def constant_arrays(self) -> tuple[str, ...]:
        """The node arrays this mode reads."""
        if self.mode is RequantMode.DYADIC:
            return ("rq_multiplier", "rq_shift")
        return ("rq_scale_f32",)


@dataclass(frozen=True)
class AccumulatorConfig:
    """``attrs["accumulator"]`` of an accumulating node: width in bits (8..64) and mode."""

    bits: int
    mode: AccumulatorMode

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 8 <= self.bits <= 64:
            raise ProgramError(f"accumulator bits must be an int in [8, 64], got {self.bits!r}")
        if self.mode is AccumulatorMode.INT16_PAIRS and self.bits < 16:
            raise ProgramError("accumulator mode 'int16_pairs' widens int16 pairs: bits must be "
                               f">= 16, got {self.bits}")

    @classmethod
    def from_attrs(cls, attrs: dict) -> "AccumulatorConfig":
        acc = attrs["accumulator"]
        if not isinstance(acc, dict):
            raise ProgramError(f"accumulator must be a mapping {{bits, mode}}, got {acc!r}")
        return cls(acc.get("bits"), _mode(AccumulatorMode, acc.get("mode"), "accumulator mode"))

    def to_attrs(self) -> dict:
        return {"bits": int(self.bits), "mode": self.mode.value}
