"""How an integer tensor of the program is to be read: real = scale * (code - zero_point)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorQuant:
    """Quantization of one activation tensor (per-tensor).

    `qmin`/`qmax` are the storage range of the codes (the format's range, e.g. [0, 255] for
    uint8); a fused activation clamp narrows the requantization clamp, not this range.
    """

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive finite float, got {self.scale!r}")
        if not self.qmin <= self.zero_point <= self.qmax:
            raise ValueError(
                f"zero_point {self.zero_point} outside the code range [{self.qmin}, {self.qmax}]"
            )

    @property
    def dtype(self) -> np.dtype:
        """Smallest numpy integer dtype holding [qmin, qmax]."""
        return smallest_int_dtype(self.qmin, self.qmax)

    @property
    def bits(self) -> int:
        """Storage width in bits of one code."""
        return int(np.ceil(np.log2(self.qmax - self.qmin + 1)))

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> real values (float64), same shape."""
        return (codes.astype(np.float64) - self.zero_point) * self.scale

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point),
                "qmin": int(self.qmin), "qmax": int(self.qmax)}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorQuant":
        return cls(float(d["scale"]), int(d["zero_point"]), int(d["qmin"]), int(d["qmax"]))


@functools.lru_cache(maxsize=256)
def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest numpy integer dtype that holds every integer in [lo, hi]."""
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise ValueError(f"no integer dtype holds [{lo}, {hi}]")
