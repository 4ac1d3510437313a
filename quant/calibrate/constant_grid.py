"""Exact per-tensor parameters for a constant operand whose values lie on a small grid.

A ``constant`` record (e.g. a detection head's strides 8 / 16 / 32, or its anchor centres
0.5, 1.5, ...) is quantized like an activation.  A min-max fit spreads its range over the whole
code range, so a stride of 8 next to 32 comes back as 8.03.  When every value is an integer
multiple of one step and the multiples fit the format's codes, that step is a scale that
stores every value exactly; ``exact_grid_params`` finds it.

Candidate steps, coarsest first: the greatest common divisor of the values as binary floats
(each float32 is an integer times a power of two, so this is exact: 8 for 8 / 16 / 32, 0.5 for
0.5 / 1.5 / 2.5), then ``d / m`` for ``m = 1 .. MAX_DIVISOR`` with ``d`` the smallest gap between
the sorted distinct values and 0 (0 is included so that the zero point is a code), which also
finds decimal grids such as 0.1 / 0.2 / 0.3 whose float32 values are not exact multiples of one
binary step.  A step is accepted when ``float32(rint(v / step) · step) == v`` for every value
``v`` (the fake-quant model's and the integer program's dequantized constant equal the float one
bit for bit) and the codes, zero point included, fit ``[fmt.qmin, fmt.qmax]``.  The first
(coarsest) accepted step is returned; every accepted step is exact, so none is better than
another for the constant.
"""

from __future__ import annotations

import math

import numpy as np

from quant.formats import IntFormat, QuantParams

MAX_DIVISOR = 8


def exact_grid_params(values: np.ndarray, fmt: IntFormat) -> QuantParams | None:
    """Per-tensor ``QuantParams`` that represent every entry of ``values`` exactly, or None.

    Args:
        values: the constant (any shape), float32 or float64; its float32 values are the target.
        fmt: the per-tensor activation format the constant is quantized in.
    Returns: scale (a step of the values' grid) and zero point (0 for symmetric formats) such
        that each value is ``(code - zero_point) · scale`` exactly in float32 with its code in
        ``[fmt.qmin, fmt.qmax]``; None when no candidate step does (non-finite values, all
        values 0, values off every candidate grid, or too many codes for the format).
    """
    if fmt.per_channel:
        return None
    v32 = np.unique(np.asarray(values, dtype=np.float32))
    if v32.size == 0 or not np.all(np.isfinite(v32)):
        return None
    grid = np.union1d(v32.astype(np.float64), [0.0])
    if grid.size < 2:
        return None
    gap = float(np.min(np.diff(grid)))
    steps = [gap / m for m in range(1, MAX_DIVISOR + 1)]
    binary = _binary_gcd(v32)
    for step in ([] if binary is None else [binary]) + steps:
        if not step > 0.0:
            return None
        codes = np.rint(v32.astype(np.float64) / step)
        if not np.array_equal((codes * step).astype(np.float32), v32):
            continue
        zero_point = _zero_point(int(codes.min()), int(codes.max()), fmt)
        if zero_point is not None:
            return QuantParams(np.float64(step), np.int64(zero_point), None, fmt)
    return None


def _zero_point(lo: int, hi: int, fmt: IntFormat) -> int | None:
    """The zero point placing codes ``lo .. hi`` (and 0) inside the format's range, or None."""
    if fmt.symmetric:
        return 0 if lo >= fmt.qmin and hi <= fmt.qmax else None
    zero_point = fmt.qmin - min(lo, 0)
    if zero_point + max(hi, 0) > fmt.qmax:
        return None
    return zero_point


def _binary_gcd(v32: np.ndarray) -> float | None:
    """The largest step of which every nonzero float32 in ``v32`` is an integer multiple, as
    the float64 ``g · 2^e``; None when the values' binary exponents differ by more than 28
    (their multiples of the finest unit would not fit float64's 53-bit significand)."""
    nonzero = v32[v32 != 0].astype(np.float64)
    mantissa, exponent = np.frexp(nonzero)              # v = mantissa · 2^exponent
    units = (mantissa * 2.0**24).astype(np.int64)       # exact: float32 has 24 mantissa bits
    exponent = exponent.astype(np.int64) - 24
    shift = exponent - exponent.min()
    if shift.max() > 52 - 24:
        return None
    g = math.gcd(*(abs(int(u)) << int(k) for u, k in zip(units, shift)))
    return math.ldexp(float(g), int(exponent.min()))
