"""Uniform integer format: ``IntFormat`` (what a code can be) and ``QuantParams`` (what it means).

Conventions (chosen here, relied on by lowering and verification):

* Code ranges ``[qmin, qmax]``:
  - unsigned (symmetric or not): ``[0, 2^b - 1]``;
  - signed asymmetric: ``[-2^(b-1), 2^(b-1) - 1]``;
  - signed symmetric: the *restricted* range ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (int8: [-127, 127]),
    as ONNX Runtime uses for symmetric weights; the grid is symmetric about 0 and the product of
    two codes never reaches ``2^(2b-2)``.
* Symmetric formats have ``zero_point == 0``.  An unsigned symmetric format represents
  ``[0, qmax·scale]`` (suits post-ReLU activations; negative values clamp to 0).
* ``quantize``: ``codes = clamp(round_half_even(float64(x) / scale) + zero_point, qmin, qmax)``,
  computed in float64; codes are stored in the smallest numpy integer dtype holding
  ``[qmin, qmax]``.  ``dequantize``: ``(codes - zero_point) · scale`` in float64.
* Scales are positive float64 values that are exactly representable in float32, so a float32
  engine (ONNX Runtime, PyTorch) given these scales sees the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant._validate import check_bool, check_choice, check_float, check_int
from quant.formats._shared import broadcast_along
from quant.errors import QuantError

CLIPPING_METHODS = ("minmax", "percentile", "mse")

# Smallest-first: the first dtype that holds [qmin, qmax] is the code dtype.
_CODE_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)


@dataclass(frozen=True)
class IntFormat:
    """A uniform integer number format.

    Attributes:
        bits: code width in bits, 2..16.
        signed: codes are signed integers.
        symmetric: zero point fixed at 0 (otherwise fitted per tensor / channel).
        per_channel: one scale per slice along axis 0 (weights: output channels).
        clipping: how the range is chosen from data: "minmax", "percentile" or "mse".
        percentile: for clipping="percentile", the upper percentile in (50, 100] (the lower
            bound uses ``100 - percentile``).
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    per_channel: bool = False
    clipping: str = "minmax"
    percentile: float = 99.99

    def __post_init__(self) -> None:
        owner = "IntFormat"
        check_int(self.bits, "bits", owner, 2, 16)
        check_bool(self.signed, "signed", owner)
        check_bool(self.symmetric, "symmetric", owner)
        check_bool(self.per_channel, "per_channel", owner)
        check_choice(self.clipping, "clipping", owner, CLIPPING_METHODS)
        check_float(self.percentile, "percentile", owner, 50.0, 100.0, lo_open=True)

    @property
    def qmin(self) -> int:
        """Smallest code."""
        if not self.signed:
            return 0
        if self.symmetric:
            return -(2 ** (self.bits - 1) - 1)
        return -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        """Largest code."""
        if not self.signed:
            return 2**self.bits - 1
        return 2 ** (self.bits - 1) - 1

    @property
    def code_dtype(self) -> np.dtype:
        """Smallest numpy integer dtype holding ``[qmin, qmax]``."""
        for dt in _CODE_DTYPES:
            info = np.iinfo(dt)
            if info.min <= self.qmin and self.qmax <= info.max:
                return np.dtype(dt)
        raise QuantError(f"no integer dtype holds [{self.qmin}, {self.qmax}]")  # unreachable

    def describe(self) -> str:
        """Short human-readable name, e.g. ``int8-sym-pc`` or ``uint8-asym``."""
        base = f"{'int' if self.signed else 'uint'}{self.bits}"
        base += "-sym" if self.symmetric else "-asym"
        if self.per_channel:
            base += "-pc"
        if self.clipping != "minmax":
            base += f"-{self.clipping}"
        return base


def _as_param_array(value: object, dtype: type, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim > 1:
        raise QuantError(f"QuantParams.{name} must have shape () or (K,); got shape {arr.shape}")
    return arr.astype(dtype, copy=True)


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Scale(s) and zero point(s) giving integer codes of an ``IntFormat`` a real value.

    Attributes:
        scale: float64, shape () (per tensor) or (K,) (per channel); real value of one code step.
        zero_point: int64, same shape as ``scale``; the code that represents 0.0.
        axis: the channel axis of the tensors these parameters apply to (None when per tensor).
        fmt: the format of the codes.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    fmt: IntFormat

    def __post_init__(self) -> None:
        scale = _as_param_array(self.scale, np.float64, "scale")
        zp = _as_param_array(self.zero_point, np.int64, "zero_point")
        if scale.shape != zp.shape:
            raise QuantError(
                f"QuantParams.scale has shape {scale.shape} but zero_point has shape {zp.shape}"
            )
        if (self.axis is None) != (scale.ndim == 0):
            raise QuantError(
                "QuantParams.axis must be None for per-tensor (shape ()) parameters and an int "
                f"for per-channel (shape (K,)) parameters; got axis={self.axis!r} with scale "
                f"shape {scale.shape}"
            )
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise QuantError(f"QuantParams.scale must be finite and > 0; got {scale}")
        if np.any(zp < self.fmt.qmin) or np.any(zp > self.fmt.qmax):
            raise QuantError(
                f"QuantParams.zero_point must lie in [{self.fmt.qmin}, {self.fmt.qmax}] for "
                f"{self.fmt.describe()}; got {zp}"
            )
        if self.fmt.symmetric and np.any(zp != 0):
            raise QuantError(f"QuantParams.zero_point must be 0 for symmetric {self.fmt.describe()}")
        scale.setflags(write=False)
        zp.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def _broadcast(self, arr: np.ndarray, x: np.ndarray) -> np.ndarray:
        return broadcast_along(arr, x, self.axis, "QuantParams")

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float tensor (any shape) -> integer codes of the same shape in ``fmt.code_dtype``.

        Computed in float64: ``clamp(rint(x / scale) + zero_point, qmin, qmax)`` (rint rounds
        half to even).  NaN raises QuantError; +-inf clamp to qmax / qmin.
        """
        xf = np.asarray(x, dtype=np.float64)
        if np.isnan(xf).any():
            raise QuantError("cannot quantize a tensor containing NaN")
        scale = self._broadcast(self.scale, xf)
        zp = self._broadcast(self.zero_point, xf)
        q = np.rint(xf / scale) + zp
        np.clip(q, self.fmt.qmin, self.fmt.qmax, out=q)
        return q.astype(self.fmt.code_dtype)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Integer codes -> float64 real values ``(codes - zero_point) · scale``."""
        c = np.asarray(codes)
        if not np.issubdtype(c.dtype, np.integer):
            raise QuantError(f"dequantize expects integer codes; got dtype {c.dtype}")
        c64 = c.astype(np.int64)
        zp = self._broadcast(self.zero_point, c64)
        scale = self._broadcast(self.scale, c64)
        return (c64 - zp).astype(np.float64) * scale

    def fake_quantize(self, x: np.ndarray) -> np.ndarray:
        """``dequantize(quantize(x))`` in float64."""
        return self.dequantize(self.quantize(x))

    def representable_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) real values of the grid, float64, shape of ``scale``."""
        lo = (self.fmt.qmin - self.zero_point).astype(np.float64) * self.scale
        hi = (self.fmt.qmax - self.zero_point).astype(np.float64) * self.scale
        return lo, hi

    def __repr__(self) -> str:
        if self.axis is None:
            return (f"QuantParams({self.fmt.describe()}, scale={float(self.scale):.6g}, "
                    f"zero_point={int(self.zero_point)})")
        return (f"QuantParams({self.fmt.describe()}, axis={self.axis}, "
                f"channels={self.scale.shape[0]})")
