"""Definitions of ONNX Runtime's element-wise quantized ops, one output at a time in scalar
float32 (``_f32``): table activations (QLinearSigmoid, QLinearLeakyRelu), QLinearConcat's
requantization, QLinearMul and QLinearAdd with broadcasting. The fast kernels
(``hwsim.kernels.lut``, ``hwsim.kernels.eltwise``) must equal these on every input; the order of
operations is documented there and in ``hwsim.kernels.mlas_float``.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels.eltwise import add_path
from hwsim.kernels.mlas_float import LOGISTIC_ALPHA, LOGISTIC_BETA, LOGISTIC_RANGE
from hwsim.kernels.reference._f32 import F32, fma, rint


def dequantize_reference(code: int, scale, zero_point: int) -> np.float32:
    """f32(scale · f32(code - zero_point))."""
    return F32(scale) * F32(int(code) - int(zero_point))


def quantize_reference(v, scale, zero_point: int, qmin: int, qmax: int) -> int:
    """QuantizeLinear of one float32 value: v / s, clamped in float32, rounded half to even."""
    q = F32(v) / F32(scale)
    lo, hi = F32(qmin - zero_point), F32(qmax - zero_point)
    q = lo if np.isnan(q) else min(max(q, lo), hi)
    return rint(q) + int(zero_point)


def logistic_reference(x) -> np.float32:
    """MLAS's logistic of one float32 value, each multiply-add fused (exact fractions)."""
    v = min(max(F32(x), LOGISTIC_RANGE[0]), LOGISTIC_RANGE[1])
    v2 = v * v
    a9, a7, a5, a3, a1 = LOGISTIC_ALPHA
    p = fma(v2, a9, a7)
    for c in (a5, a3, a1):
        p = fma(p, v2, c)
    p = p * v
    b10, b8, b6, b4, b2, b0 = LOGISTIC_BETA
    q = fma(v2, b10, b8)
    for c in (b6, b4, b2, b0):
        q = fma(q, v2, c)
    return max(p / q + F32(0.5), F32(0.0))


def activation_code_reference(code: int, fn: str, *, x_scale, x_zero_point: int, y_scale,
                              y_zero_point: int, qmin: int, qmax: int,
                              alpha: float = 0.0) -> int:
    """One entry of a lookup table: Q_y(fn(DQ_x(code))), fn 'sigmoid', 'leaky_relu' or
    'identity'."""
    x = dequantize_reference(code, x_scale, x_zero_point)
    if fn == "sigmoid":
        y = logistic_reference(x)
    elif fn == "leaky_relu":
        y = x if x >= 0 else F32(alpha) * x
    else:
        y = x
    return quantize_reference(y, y_scale, y_zero_point, qmin, qmax)


def activation_lut_reference(codes: np.ndarray, fn: str, **params) -> np.ndarray:
    """`activation_code_reference` applied to every code (any shape): int64 codes."""
    codes = np.asarray(codes)
    out = np.empty(codes.shape, dtype=np.int64)
    for idx in np.ndindex(codes.shape):
        out[idx] = activation_code_reference(int(codes[idx]), fn, **params)
    return out


def _saturate(v, qmin: int, qmax: int) -> int:
    """x86 float -> int32 conversion (out of range or NaN: INT32_MIN), then saturation."""
    q = rint(v) if np.isfinite(v) and abs(float(v)) < 2.0 ** 31 else None
    q = -(1 << 31) if q is None or abs(q) >= 1 << 31 else q
    return min(max(q, qmin), qmax)


def qlinear_mul_reference(a, a_zp: int, b, b_zp: int, ratio, out_zp: int, qmin: int,
                          qmax: int) -> np.ndarray:
    """QLinearMul one output at a time: f32(f32(f32(prod) · r) + f32(zp_c)), saturated."""
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    out = np.empty(a.shape, dtype=np.int64)
    for idx in np.ndindex(a.shape):
        prod = (int(a[idx]) - int(a_zp)) * (int(b[idx]) - int(b_zp))
        out[idx] = _saturate(F32(prod) * F32(ratio) + F32(out_zp), qmin, qmax)
    return out


def qlinear_add_reference(a, a_zp: int, ratio_a, b, b_zp: int, ratio_b, out_zp: int,
                          qmin: int, qmax: int) -> np.ndarray:
    """QLinearAdd one output at a time (operands exchanged on the "scalar_a" path)."""
    a, b = np.asarray(a), np.asarray(b)
    ra, rb = F32(ratio_a), F32(ratio_b)
    if add_path(a.shape, b.shape) == "scalar_a":
        a, b, a_zp, b_zp, ra, rb = b, a, b_zp, a_zp, rb, ra
    fixed = F32(out_zp) - fma(ra, int(a_zp), rb * F32(int(b_zp)))
    a, b = np.broadcast_arrays(a, b)
    out = np.empty(a.shape, dtype=np.int64)
    for idx in np.ndindex(a.shape):
        out[idx] = _saturate(fma(int(a[idx]), ra, fma(int(b[idx]), rb, fixed)), qmin, qmax)
    return out
