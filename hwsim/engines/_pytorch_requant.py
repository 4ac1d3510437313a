"""Requantization of PyTorch's quantized engines, float32 step by float32 step (torch-free).

Scales arrive as torch stores them: x_scale, y_scale and per-tensor w_scale are doubles, per-channel
w_scale a double array. Each function follows the order of operations established against
torch 2.13 (see `hwsim.engines.pytorch`); every intermediate is rounded to float32 (round half
to even) exactly where the engine rounds it.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels.fma import fma_f32

F32 = np.float32
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INT32_SPAN = 1 << 32


def wrap_int32(v: np.ndarray) -> np.ndarray:
    """int64 values wrapped to int32 two's complement (kept as int64)."""
    return (v - _INT32_MIN) % _INT32_SPAN + _INT32_MIN


def _f32(v) -> np.ndarray:
    """Round doubles (or float32) to float32, half to even."""
    return np.asarray(v, dtype=np.float64).astype(F32)


def _recip(v) -> np.ndarray:
    """1 / v in float32 arithmetic (v already float32)."""
    return F32(1) / np.asarray(v, dtype=F32)


def cvtps_epi32(v: np.ndarray) -> np.ndarray:
    """x86 cvtps2dq: float32 -> int32 rounding half to even; out of range -> INT32_MIN. int64 out."""
    r = np.rint(np.asarray(v, dtype=F32).astype(np.float64))
    ok = (r >= _INT32_MIN) & (r <= _INT32_MAX)
    return np.where(ok, r, _INT32_MIN).astype(np.int64)


def _saturate_int16_then_u8(q: np.ndarray, y_zp: int) -> np.ndarray:
    """packs_epi32 (int16 saturation), adds_epi16(y_zp), packus_epi16: uint8 codes."""
    q16 = np.clip(q, -(1 << 15), (1 << 15) - 1)
    return np.clip(q16 + y_zp, 0, 255).astype(np.uint8)


def _channel_shape(ndim: int, axis: int, k: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis] = k
    return tuple(shape)


def qnnpack_multipliers(x_scale: float, w_scales: np.ndarray, y_scale: float) -> np.ndarray:
    """qnnpack's requantization scales (K,) float32: f32(f32(f32(s_w[k]) f32(s_x)) f32(1/f32(s_y)))."""
    return (_f32(w_scales) * F32(x_scale)) * _recip(F32(y_scale))


def qnnpack(acc, bias, x_scale, w_scales, y_scale, y_zp, axis):
    """qnnpack: returns (codes uint8, values float32 = f32(acc + b_int) * m, before + y_zp).

    b_int = clamp_int32(rint(f32(b) * f32(1 / f32(s_w[k] * s_x)))) with s_w[k] * s_x a double
    product (torch's bias quantization to qint32); m = f32(f32(f32(s_w[k]) f32(s_x)) f32(1/f32(s_y)));
    q = cvtps(v) (INT32_MIN when |v| >= 2^31); codes = clamp(sat16(q) + y_zp, 0, 255).
    """
    shape = _channel_shape(acc.ndim, axis, w_scales.shape[0])
    if bias is not None:
        inv_bias_scale = _recip(_f32(w_scales * x_scale))
        b_int = np.clip(np.rint((bias * inv_bias_scale).astype(np.float64)), _INT32_MIN, _INT32_MAX)
        acc = acc + b_int.astype(np.int64).reshape(shape)
    values = wrap_int32(acc).astype(F32) * qnnpack_multipliers(x_scale, w_scales, y_scale).reshape(shape)
    return _saturate_int16_then_u8(cvtps_epi32(values), y_zp), values


def fbgemm(acc, bias, x_scale, w_scales, per_channel, y_scale, y_zp, axis):
    """fbgemm (ReQuantizeOutput, float bias): returns (codes, values before + y_zp).

    s = f32(f32(s_x) f32(s_w[k])); per-tensor bias: xf = fma(b, f32(1/s), f32(acc)); per-channel:
    xf = f32(acc) + f32(b / s); values = f32(xf * f32(s / f32(s_y))); then as qnnpack: cvtps,
    int16 saturation, + y_zp, clamp to [0, 255].
    """
    shape = _channel_shape(acc.ndim, axis, w_scales.shape[0])
    s = (F32(x_scale) * _f32(w_scales)).reshape(shape)
    xf = wrap_int32(acc).astype(F32)
    if bias is not None:
        b = bias.reshape(shape)
        if per_channel:
            xf = xf + b / s
        else:
            xf = fma_f32(np.broadcast_to(b, xf.shape), np.broadcast_to(_recip(s), xf.shape), xf)
    values = xf * (s / F32(y_scale))
    return _saturate_int16_then_u8(cvtps_epi32(values), y_zp), values


def onednn_scales(x_scale, w_scales, per_channel, y_scale, op):
    """The float32 scales oneDNN applies after PyTorch and ideep pass them on.

    PyTorch hands ideep reciprocals (1/s_x, 1/s_y as float32) and ideep hands oneDNN their float32
    reciprocals; linear weights take the same round trip (per-tensor: 1/s_w in double, per-channel:
    1/f32(s_w) in float32), conv weights go through unchanged as f32(s_w).
    Returns (src x weight scale (K,) = f32(s_x' s_w'[k]), dst multiplier f32(1 / s_y')).
    """
    src = _recip(_f32(1.0 / x_scale))
    if op == "conv":
        wei = _f32(w_scales)
    elif per_channel:
        wei = _recip(_recip(_f32(w_scales)))
    else:
        wei = _recip(_f32(1.0 / w_scales))
    dst_scale = _recip(_f32(1.0 / y_scale))
    return src * wei, _recip(dst_scale)


def onednn(acc, bias, x_scale, w_scales, per_channel, y_scale, y_zp, axis, op):
    """oneDNN post-processing: returns (codes, values after + y_zp, before clamping).

    v = f32(f32(acc) * scale[k]) (+ f32 bias); v = f32(v * dst_mult); v = f32(v + f32(y_zp));
    clamp to [0, 255] in float32; round half to even.
    """
    shape = _channel_shape(acc.ndim, axis, w_scales.shape[0])
    scale, dst_mult = onednn_scales(x_scale, w_scales, per_channel, y_scale, op)
    v = wrap_int32(acc).astype(F32) * scale.reshape(shape)
    if bias is not None:
        v = v + bias.reshape(shape)
    values = v * dst_mult + F32(y_zp)
    codes = np.rint(np.clip(values, F32(0), F32(255))).astype(np.uint8)
    return codes, values


def exact_halves(engine: str, values: np.ndarray, y_zp: int) -> int:
    """How many values the engine rounds from an exact .5 inside the uint8 output range: the
    outputs where round-half-to-even decides the code."""
    lo, hi = (0, 255) if engine == "onednn" else (-y_zp, 255 - y_zp)
    v = np.asarray(values, dtype=F32)
    inside = (v >= lo) & (v <= hi)
    return int(np.count_nonzero(inside & (v - np.floor(v) == F32(0.5))))
