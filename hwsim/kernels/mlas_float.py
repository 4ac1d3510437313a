"""Float32 building blocks of ONNX Runtime's CPU kernels (its MLAS library), vectorized numpy.

Each function states its order of float32 operations; every operation rounds once to float32
(round half to even), as x86 SSE/AVX arithmetic does. The formulas were measured against
onnxruntime 1.32 on x86-64 (AVX2/AVX-512 with FMA3), 0 mismatches over millions of inputs:

- QuantizeLinear: v = f32(x) / f32(s); clamp v to [qmin - zp, qmax - zp] in float32;
  round half to even; + zp. (ONNX QuantizeLinear, opset 10+, with MLAS's clamp-then-round.)
- dequantize (the QLinear* kernels' own): x = f32(s · f32(code - zp)).
- logistic (ONNX Sigmoid; MLAS's FMA3 kernel, coefficients of Eigen's rational approximation):
  x clamped to [-18, 18]; p = x·(((a9 x² + a7) x² + a5) x² + a3) x² + a1) and
  q = ((((b10 x² + b8) x² + b6) x² + b4) x² + b2) x² + b0, each step one fused multiply-add;
  y = max(p / q + 0.5, 0). There is no upper clamp: y can exceed 1 by one ulp.
- LeakyRelu: v >= 0 ? v : f32(alpha · v).
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels.fma import fma_f32

_F32 = np.float32

# Eigen's logistic approximation as MLAS stores it (float32 constants).
LOGISTIC_RANGE = (_F32(-18.0), _F32(18.0))
LOGISTIC_ALPHA = tuple(_F32(v) for v in (4.37031012579801e-11, 1.15627324459942e-07,
                                        6.08574864600143e-05, 8.51377133304701e-03,
                                        2.48287947061529e-01))  # a9, a7, a5, a3, a1
LOGISTIC_BETA = tuple(_F32(v) for v in (6.10247389755681e-13, 5.76102136993427e-09,
                                       6.29106785017040e-06, 1.70198817374094e-03,
                                       1.16817656904453e-01, 9.93151921023180e-01))  # b10 .. b0


def quantize_linear_f32(x: np.ndarray, scale, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """ONNX Runtime's QuantizeLinear of float32 values x (any shape) with a per-tensor float32
    scale: int64 codes in [qmin, qmax] (order in the module docstring; NaN -> qmin)."""
    v = np.asarray(x, dtype=_F32) / _F32(scale)
    lo, hi = _F32(qmin - zero_point), _F32(qmax - zero_point)
    v = np.where(np.isnan(v), lo, v)
    v = np.minimum(np.maximum(v, lo), hi)
    return np.rint(v).astype(np.int64) + int(zero_point)


def dequantize_f32(codes: np.ndarray, scale, zero_point: int) -> np.ndarray:
    """f32(scale · f32(code - zero_point)) for integer codes of any shape (float32 result)."""
    diff = np.asarray(codes, dtype=np.int64) - int(zero_point)
    return (_F32(scale) * diff.astype(_F32)).astype(_F32)


def logistic_f32(x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's float32 Sigmoid (MLAS logistic, FMA3 kernel; module docstring)."""
    v = np.minimum(np.maximum(np.asarray(x, dtype=_F32), LOGISTIC_RANGE[0]), LOGISTIC_RANGE[1])
    v2 = v * v
    a9, a7, a5, a3, a1 = LOGISTIC_ALPHA
    p = fma_f32(v2, a9, a7)
    for c in (a5, a3, a1):
        p = fma_f32(p, v2, c)
    p = p * v
    b10, b8, b6, b4, b2, b0 = LOGISTIC_BETA
    q = fma_f32(v2, b10, b8)
    for c in (b6, b4, b2, b0):
        q = fma_f32(q, v2, c)
    return np.maximum(p / q + _F32(0.5), _F32(0.0)).astype(_F32)


def leaky_relu_f32(x: np.ndarray, alpha) -> np.ndarray:
    """x >= 0 ? x : f32(alpha · x), float32."""
    x = np.asarray(x, dtype=_F32)
    return np.where(x >= 0, x, _F32(alpha) * x).astype(_F32)
