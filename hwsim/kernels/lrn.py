"""Local response normalization across channels on integer codes, computed in float64 (a
vector-unit op: dequantize, normalize, requantize).

    x = (c - zp_x) · s_x                                           (float64)
    q_{n,c,h,w} = Σ x_{n,j,h,w}²,  j from c - size//2 to c + (size-1)//2 (inside [0, C))
    y = x / (k + alpha · q / size)^beta
    code = clamp(round_half_even(y / s_y) + zp_y, lo, hi)

torch's ``F.local_response_norm`` (its window, and the divisor ``size`` whatever the clipping)
and ONNX LRN for odd ``size``. The window sum adds the squares in increasing channel order in
both forms below, so the fast and reference kernels agree bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck


def _args(fn: str, codes, size, alpha, beta, k, clamp):
    x = ck.int_array(f"{fn}: codes", codes, 4, "(N, C, H, W)")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise KernelError(f"{fn}: size must be an int >= 1; got {size!r}")
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if not math.isfinite(float(v)):
            raise KernelError(f"{fn}: {name} must be finite; got {v!r}")
    lo, hi = (int(v) for v in clamp)
    if lo > hi:
        raise KernelError(f"{fn}: empty output clamp [{lo}, {hi}]")
    return x, int(size), lo, hi


def lrn_codes(codes: np.ndarray, x_scale: float, x_zero_point: int, size: int, alpha: float,
              beta: float, k: float, y_scale: float, y_zero_point: int,
              clamp: tuple[int, int], out_dtype=np.int64) -> np.ndarray:
    """Output codes (N, C, H, W) of ``out_dtype`` (module docstring), vectorized numpy."""
    x, size, lo, hi = _args("lrn_codes", codes, size, alpha, beta, k, clamp)
    real = (x.astype(np.float64) - float(x_zero_point)) * float(x_scale)
    sq = real * real
    c = x.shape[1]
    before, after = size // 2, (size - 1) // 2
    total = np.zeros_like(real)
    for d in range(-before, after + 1):  # increasing channel offset: same order as the reference
        lo_c, hi_c = max(0, -d), min(c, c - d)
        if lo_c < hi_c:
            total[:, lo_c:hi_c] = total[:, lo_c:hi_c] + sq[:, lo_c + d:hi_c + d]
    y = real / np.power(float(k) + float(alpha) * total / float(size), float(beta))
    q = np.rint(y / float(y_scale)) + float(y_zero_point)
    return np.clip(q, lo, hi).astype(out_dtype)


def lrn_codes_reference(codes: np.ndarray, x_scale: float, x_zero_point: int, size: int,
                        alpha: float, beta: float, k: float, y_scale: float, y_zero_point: int,
                        clamp: tuple[int, int], out_dtype=np.int64) -> np.ndarray:
    """Definition of ``lrn_codes``, element by element (float64 scalars)."""
    x, size, lo, hi = _args("lrn_codes_reference", codes, size, alpha, beta, k, clamp)
    n_b, c_n, h_n, w_n = x.shape
    f = np.float64
    out = np.zeros(x.shape, dtype=out_dtype)
    for n in range(n_b):
        for h in range(h_n):
            for w in range(w_n):
                real = [(f(int(x[n, j, h, w])) - f(x_zero_point)) * f(x_scale)
                        for j in range(c_n)]
                for c in range(c_n):
                    total = f(0.0)
                    for j in range(c - size // 2, c + (size - 1) // 2 + 1):
                        if 0 <= j < c_n:
                            total = total + real[j] * real[j]
                    y = real[c] / np.power(f(k) + f(alpha) * total / f(size), f(beta))
                    q = int(np.rint(y / f(y_scale))) + int(y_zero_point)
                    out[n, c, h, w] = min(max(q, lo), hi)
    return out
