"""Scalar float32 arithmetic for the reference kernels: each operation is the exact rational
result rounded once to float32 (round half to even), as IEEE 754 defines it.

numpy float32 scalars already round +, -, *, / correctly; `fma` is the one operation numpy
lacks, so it is computed here from exact fractions, independently of the fast path's emulation
(`hwsim.kernels.fma`).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

F32 = np.float32


def round_f32(v: Fraction) -> np.float32:
    """The float32 nearest to the rational v, ties to even."""
    f = F32(float(v))  # rounds to float64, then to float32; corrected below if that double-rounded
    if Fraction(float(f)) == v:
        return f
    other = np.nextafter(f, F32(np.inf) if Fraction(float(f)) < v else F32(-np.inf))
    d_f, d_o = abs(Fraction(float(f)) - v), abs(Fraction(float(other)) - v)
    if d_o < d_f or (d_o == d_f and int(other.view(np.uint32)) % 2 == 0):
        return other
    return f


def fma(x, y, z) -> np.float32:
    """x · y + z rounded once to float32 (x, y, z float32 values or integers)."""
    return round_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))


def rint(v) -> int:
    """Round half to even to an integer."""
    return int(round(float(v)))
