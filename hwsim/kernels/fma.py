"""Fused multiply-add in float32 (x86 ``vfmadd``), emulated exactly with numpy float64.

Real engines (ONNX Runtime's QLinearAdd, PyTorch fbgemm's bias) round ``a * b + c`` once; numba
has no fma, so hwsim emulates it: the float32 product is exact in float64, and the one case
where rounding the float64 sum to float32 differs from rounding the exact sum (a float64 sum
sitting on a float32 midpoint) is resolved with the sum's exact error (TwoSum).
"""

from __future__ import annotations

import numpy as np

_F32 = np.float32


def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Fused multiply-add a * b + c of float32 arrays, rounded once (half to even) to float32.

    a * b is exact in float64 (two 24-bit significands). The float64 sum s = a*b + c may round;
    its error e (TwoSum) is exact. Rounding s to float32 is then correct unless s sits exactly
    halfway between two float32 values and e != 0, where the true value lies on e's side.
    """
    p = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
    c64 = np.asarray(c, dtype=_F32).astype(np.float64)
    s = p + c64
    bp = s - c64
    err = (p - bp) + (c64 - (s - bp))  # TwoSum: p + c = s + err exactly
    r = s.astype(_F32)
    r64 = r.astype(np.float64)
    toward = np.where(s > r64, np.inf, -np.inf).astype(_F32)
    nb = np.nextafter(r, toward)
    tie = (err != 0) & (s != r64) & (s == (r64 + nb.astype(np.float64)) / 2)
    if np.any(tie):
        lo, hi = np.minimum(r, nb), np.maximum(r, nb)
        r = np.where(tie, np.where(err > 0, hi, lo), r)
    return r.astype(_F32)
