"""Definition of the integer-only element-wise product (``hwsim.kernels.eltwise.
mul_requantize_dyadic``), one output at a time in Python integers."""

from __future__ import annotations

import numpy as np

from hwsim.kernels._requant_checks import output_dtype, output_range


def mul_requantize_dyadic_reference(a, a_zp: int, b, b_zp: int, m: int, shift: int,
                                    out_zp: int, qmin: int, qmax: int) -> np.ndarray:
    """clamp(floor(((a - a_zp)(b - b_zp) m + 2^(shift-1)) / 2^shift) + out_zp, qmin, qmax) for
    codes a, b broadcast against each other."""
    zp, lo, hi = output_range("mul_requantize_dyadic_reference", out_zp, qmin, qmax)
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    half = (1 << (int(shift) - 1)) if int(shift) > 0 else 0
    out = np.empty(a.shape, dtype=output_dtype(lo, hi))
    for idx in np.ndindex(a.shape):
        t = (int(a[idx]) - int(a_zp)) * (int(b[idx]) - int(b_zp)) * int(m)
        out[idx] = min(max(((t + half) >> int(shift)) + zp, lo), hi)
    return out
