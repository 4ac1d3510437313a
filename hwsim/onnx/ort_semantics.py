"""What ONNX Runtime's CPU kernels compute for the ops the importer folds, as numpy (no onnx or
onnxruntime import). Each formula below was established against onnxruntime 1.32 on an AVX2
CPU (tests/test_onnx_import.py re-checks them against the installed runtime):

- QuantizeLinear (MLAS): v = f32(x) / f32(s); clamp v to [qmin - zp, qmax - zp] in float32
  (NaN -> qmin - zp); round half to even; + zp.
- QLinearConv, QLinearMatMul: requantization scale f32(f32(s_x s_w) / s_y) (`ort_output_scale`).
- QGemm: scale f32(f32(f32(alpha s_a) s_b) / s_y).
- QLinearGlobalAveragePool: acc = sum(x) - zp_x * count; scale f32(s_x / f32(s_y * count)),
  then the same float32 requantization as QLinearConv.
- QLinearAdd (AVX2 kernel): ratios r_a = f32(s_a / s_c), r_b = f32(s_b / s_c); a constant
  F = f32(zp_c) - fma(r_a, zp_a, f32(r_b zp_b)); v = fma(a, r_a, fma(b, r_b, F)) on the raw
  codes; y = saturate(round_half_even(v)). The zero points are folded into F before rounding,
  so this is *not* hwsim's float32 `add` (which rounds f32(f32(a - zp_a) r_a) + f32(f32(b -
  zp_b) r_b) and adds zp_c afterwards): the two differ on about 5% of random inputs.

The float32 contrib ops with kernels of their own are defined in hwsim.kernels, each module
stating its order of operations: QLinearSigmoid / QLinearLeakyRelu / QLinearConcat tables
(`lut`, `mlas_float`), QLinearMul and QLinearAdd with broadcasting (`eltwise`), QLinearSoftmax
(`softmax_table`), QLinearAveragePool (`avgpool_f32`), nearest Resize (`resize`).
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels.fma import fma_f32

_F32 = np.float32


def quantize_linear(x: np.ndarray, scale, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """ONNX Runtime's QuantizeLinear of float x (any shape) with a per-tensor scale and zero
    point; returns int64 codes in [qmin, qmax]."""
    v = np.asarray(x, dtype=_F32) / _F32(scale)
    lo, hi = _F32(qmin - zero_point), _F32(qmax - zero_point)
    v = np.where(np.isnan(v), lo, v)  # MAXPS returns its second operand for NaN
    v = np.minimum(np.maximum(v, lo), hi)
    return np.rint(v).astype(np.int64) + int(zero_point)


def gemm_output_scale(alpha: float, s_a, s_b, s_y) -> np.ndarray:
    """QGemm's requantization scale f32(f32(f32(alpha s_a) s_b) / s_y); s_b scalar or (N,)."""
    a = _F32(_F32(alpha) * _F32(s_a))
    return np.asarray((a * np.asarray(s_b, dtype=_F32)) / _F32(s_y), dtype=_F32)


def global_avgpool_scale(s_x, s_y, count: int) -> np.float32:
    """QLinearGlobalAveragePool's scale f32(s_x / f32(s_y * count))."""
    return _F32(_F32(s_x) / _F32(_F32(s_y) * _F32(count)))


def add_ratios(s_a, s_b, s_c) -> np.ndarray:
    """QLinearAdd's ratios [f32(s_a / s_c), f32(s_b / s_c)] as float32 (2,)."""
    return np.array([_F32(s_a) / _F32(s_c), _F32(s_b) / _F32(s_c)], dtype=_F32)


def qlinear_add(a: np.ndarray, a_zp: int, ratio_a, b: np.ndarray, b_zp: int, ratio_b,
                out_zp: int, qmin: int, qmax: int) -> np.ndarray:
    """ONNX Runtime's QLinearAdd on codes a, b of the same shape (module docstring): int64
    codes in [qmin, qmax]. ratio_a, ratio_b from `add_ratios`."""
    ra, rb = _F32(ratio_a), _F32(ratio_b)
    fixed = _F32(_F32(out_zp) - fma_f32(ra, _F32(a_zp), _F32(rb * _F32(b_zp))))
    v = fma_f32(np.asarray(a, dtype=_F32), ra, fma_f32(np.asarray(b, dtype=_F32), rb, fixed))
    return np.clip(np.rint(v).astype(np.int64), qmin, qmax)
