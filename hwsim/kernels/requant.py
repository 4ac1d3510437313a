"""Requantization of int64 accumulators to output codes: dyadic (integer-only) and float32
(ONNX Runtime order), per tensor or per output channel; quantized residual add.

Rounding: dyadic rounds half up (toward +inf): floor((acc*m + 2^(shift-1)) / 2^shift).
float32 rounds half to even, as ONNX Runtime and PyTorch do.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _nb
from hwsim.kernels.fma import fma_f32
from hwsim.kernels._checks import scalar_int
from hwsim.kernels._requant_checks import (
    accumulator_array,
    broadcast_shape,
    channel_param,
    output_dtype,
    output_range,
)

_I64_LIMIT = (1 << 63) - 1
_MIN_SHIFT, _MAX_SHIFT = 0, 63
_M_LIMIT = 1 << 31


def dyadic_multiplier(real_multiplier: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Represent M > 0 as m * 2^-shift with integer m in [2^30, 2^31) and 0 <= shift <= 63.

    Vectorized: returns int64 arrays (m, shift) of M's shape (0-d for a scalar). m is M * 2^shift
    rounded to nearest, so |m * 2^-shift - M| <= 2^-(shift+1). Representable M lie in about
    [2^-33, 2^31); anything else (or M <= 0, NaN, inf) raises KernelError.
    """
    mult = np.asarray(real_multiplier, dtype=np.float64)
    bad = ~np.isfinite(mult) | (mult <= 0)
    if bad.any():
        raise KernelError(f"dyadic_multiplier: real_multiplier must be finite and > 0; got {mult[bad].ravel()[:4]} (index {np.argwhere(bad)[0].tolist()}).")
    frac, exp = np.frexp(mult)  # mult = frac * 2^exp, frac in [0.5, 1)
    m = np.round(frac * float(_M_LIMIT)).astype(np.int64)  # exact scaling, then one rounding
    shift = (31 - exp).astype(np.int64)
    carry = m == _M_LIMIT
    m = np.where(carry, m // 2, m)
    shift = np.where(carry, shift - 1, shift)
    bad = (shift < _MIN_SHIFT) | (shift > _MAX_SHIFT)
    if bad.any():
        raise KernelError(
            "dyadic_multiplier: real_multiplier must lie in [2^-33, 2^31) to be stored as m*2^-shift "
            f"with m in [2^30, 2^31) and shift in [0, 63]; got {mult[bad].ravel()[:4]}."
        )
    return m, shift


def dyadic_multiplier_pair(multiplier_a: float, multiplier_b: float) -> tuple[int, int, int]:
    """Two multipliers on a common shift: M_a ~ m_a 2^-shift, M_b ~ m_b 2^-shift.

    The larger multiplier gets m in [2^30, 2^31) (see dyadic_multiplier); the other is rounded
    to nearest on the same shift. Each satisfies |m 2^-shift - M| <= 2^-(shift+1).
    Returns Python ints (m_a, m_b, shift).
    """
    ma_f, mb_f = float(multiplier_a), float(multiplier_b)
    for name, v in (("multiplier_a", ma_f), ("multiplier_b", mb_f)):
        if not np.isfinite(v) or v <= 0:
            raise KernelError(f"dyadic_multiplier_pair: {name} must be finite and > 0; got {v}.")
    m_big, shift = dyadic_multiplier(max(ma_f, mb_f))
    shift = int(shift)
    small = min(ma_f, mb_f)
    m_small = int(np.round(np.ldexp(small, shift)))
    if m_small == 0:
        raise KernelError(
            f"dyadic_multiplier_pair: the multipliers differ too much ({ma_f} vs {mb_f}); the smaller "
            f"rounds to 0 on the common shift {shift}."
        )
    big = int(m_big)
    return (big, m_small, shift) if ma_f >= mb_f else (m_small, big, shift)


def ort_output_scale(s_x: float | np.ndarray, s_w: float | np.ndarray, s_y: float | np.ndarray) -> np.ndarray:
    """ONNX Runtime's requantization scale f32(f32(s_x * s_w) / s_y), all in float32.

    s_w may be per-channel (K,). Returns a float32 array (0-d for scalars).
    """
    sx, sw, sy = (np.asarray(v, dtype=np.float32) for v in (s_x, s_w, s_y))
    return np.asarray((sx * sw) / sy, dtype=np.float32)


def _as_3d(acc: np.ndarray, axis: int, channels: int) -> np.ndarray:
    """acc viewed as (outer, C, inner) around ``axis`` (C = 1 for per-tensor parameters)."""
    if channels == 1 or acc.ndim == 0:
        return np.ascontiguousarray(acc).reshape(1, 1, -1)
    ax = axis % acc.ndim
    outer = int(np.prod(acc.shape[:ax], dtype=np.int64))
    return np.ascontiguousarray(acc).reshape(outer, acc.shape[ax], -1)


def requantize_dyadic(
    acc: np.ndarray,
    m: int | np.ndarray,
    shift: int | np.ndarray,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    axis: int = 1,
) -> np.ndarray:
    """y = clamp(floor((acc * m + 2^(shift-1)) / 2^shift) + out_zero_point, qmin, qmax).

    acc: integer accumulators, any shape (int64). m, shift: scalars or per-channel along
    ``axis`` (0 <= m < 2^31, 0 <= shift <= 63). Rounds half up. Integer-only and exact: acc*m
    is formed in int64 when it fits, else split into two partial products (|acc| < 2^46,
    shift >= 16); otherwise KernelError. Returns codes in the smallest dtype holding [qmin, qmax].
    """
    fn = "requantize_dyadic"
    acc = accumulator_array(fn, acc)
    zp, lo, hi = output_range(fn, out_zero_point, qmin, qmax)
    mv = channel_param(fn, "m", m, acc, axis, "int")
    sv = channel_param(fn, "shift", shift, acc, axis, "int")
    if mv.shape != sv.shape and 1 not in (mv.shape[0], sv.shape[0]):
        raise KernelError(f"{fn}: m has {mv.shape[0]} entries but shift has {sv.shape[0]}.")
    channels = max(mv.shape[0], sv.shape[0])
    mv, sv = np.broadcast_to(mv, (channels,)).copy(), np.broadcast_to(sv, (channels,)).copy()
    if mv.min() < 0 or mv.max() >= _M_LIMIT:
        raise KernelError(f"{fn}: m must lie in [0, 2^31); got values in [{mv.min()}, {mv.max()}].")
    if sv.min() < _MIN_SHIFT or sv.max() > _MAX_SHIFT:
        raise KernelError(f"{fn}: shift must lie in [0, 63]; got values in [{sv.min()}, {sv.max()}].")
    out = np.empty(acc.shape, dtype=output_dtype(lo, hi))
    if acc.size == 0:
        return out
    amax = max(abs(int(acc.max())), abs(int(acc.min())))
    half_max = (1 << (int(sv.max()) - 1)) if sv.max() > 0 else 0
    split = amax * int(mv.max()) + half_max > _I64_LIMIT
    if split and (amax >= 1 << 46 or sv.min() < 16):
        raise KernelError(
            f"{fn}: acc * m cannot be formed exactly in int64 (max |acc| = {amax}, max m = {mv.max()}, "
            f"min shift = {sv.min()}); supported: |acc|*m < 2^63, or |acc| < 2^46 with shift >= 16."
        )
    acc3 = _as_3d(acc.astype(np.int64, copy=False), axis, channels)
    _nb.dyadic_requant(acc3, mv, sv, np.int64(zp), np.int64(lo), np.int64(hi), split, out.reshape(acc3.shape))
    return out


def requantize_float32(
    acc: np.ndarray,
    scale_f32: np.float32 | np.ndarray,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    axis: int = 1,
) -> np.ndarray:
    """ONNX Runtime requantization: v = float32(acc) * scale_f32 (float32 product), clamp v to
    [qmin - zp, qmax - zp] in float32, round half to even, + zp.

    acc: integer accumulators (bias already added), any shape. scale_f32: float32 scalar or
    per-channel along ``axis`` (use ort_output_scale). Returns codes in the smallest dtype
    holding [qmin, qmax].
    """
    fn = "requantize_float32"
    acc = accumulator_array(fn, acc)
    zp, lo, hi = output_range(fn, out_zero_point, qmin, qmax)
    sc = channel_param(fn, "scale_f32", scale_f32, acc, axis, "float32")
    if not np.all(np.isfinite(sc)):
        raise KernelError(f"{fn}: scale_f32 must be finite; got {sc[~np.isfinite(sc)][:4]}.")
    out = np.empty(acc.shape, dtype=output_dtype(lo, hi))
    if acc.size == 0:
        return out
    acc3 = _as_3d(acc, axis, sc.shape[0])
    fast = (
        -(2**31) <= int(acc.min()) and int(acc.max()) < 2**31
        and abs(lo - zp) <= 2**22 and abs(hi - zp) <= 2**22
    )
    _nb.float32_requant(acc3, np.ascontiguousarray(sc), np.int64(zp), np.int64(lo), np.int64(hi), fast, out.reshape(acc3.shape))
    return out


def _add_operands(fn: str, a, a_zp, b, b_zp, out_zp, qmin, qmax):
    for name, v in (("a", a), ("b", b)):
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "iu" or v.dtype == np.uint64:
            raise KernelError(f"{fn}: {name} must be a numpy array of integer codes; got {type(v).__name__} {getattr(v, 'dtype', '')}.")
    if a.shape != b.shape:
        raise KernelError(f"{fn}: a and b must have the same shape; got {a.shape} and {b.shape}.")
    azp = scalar_int(f"{fn}: a_zp", a_zp)
    bzp = scalar_int(f"{fn}: b_zp", b_zp)
    zp, lo, hi = output_range(fn, out_zp, qmin, qmax)
    return np.ascontiguousarray(a).ravel(), azp, np.ascontiguousarray(b).ravel(), bzp, zp, lo, hi


def _max_abs_centered(v: np.ndarray, zp: int) -> int:
    return max(abs(int(v.max()) - zp), abs(int(v.min()) - zp)) if v.size else 0


def add_requantize_dyadic(a, a_zp: int, m_a: int, b, b_zp: int, m_b: int, shift: int, out_zp: int, qmin: int, qmax: int) -> np.ndarray:
    """Quantized add: clamp(floor(((a - a_zp) m_a + (b - b_zp) m_b + 2^(shift-1)) / 2^shift)
    + out_zp, qmin, qmax), rounding half up. a, b: codes of the same shape; m_a, m_b, shift from
    dyadic_multiplier_pair(s_a / s_y, s_b / s_y). Returns the smallest dtype holding [qmin, qmax]."""
    fn = "add_requantize_dyadic"
    fa, azp, fb, bzp, zp, lo, hi = _add_operands(fn, a, a_zp, b, b_zp, out_zp, qmin, qmax)
    ma, mb, sh = (scalar_int(f"{fn}: {n}", v) for n, v in (("m_a", m_a), ("m_b", m_b), ("shift", shift)))
    if not (0 <= ma < _M_LIMIT and 0 <= mb < _M_LIMIT and _MIN_SHIFT <= sh <= _MAX_SHIFT):
        raise KernelError(f"{fn}: m_a, m_b must lie in [0, 2^31) and shift in [0, 63]; got m_a={ma}, m_b={mb}, shift={sh}.")
    bound = _max_abs_centered(fa, azp) * ma + _max_abs_centered(fb, bzp) * mb + ((1 << (sh - 1)) if sh else 0)
    if bound > _I64_LIMIT:
        raise KernelError(f"{fn}: (a - a_zp) m_a + (b - b_zp) m_b may exceed int64 (bound {bound}); codes this wide are not supported.")
    out = np.empty(a.shape, dtype=output_dtype(lo, hi))
    _nb.add_dyadic(fa, np.int64(azp), np.int64(ma), fb, np.int64(bzp), np.int64(mb), np.int64(sh), np.int64(zp), np.int64(lo), np.int64(hi), out.reshape(-1))
    return out


def add_requantize_float32(a, a_zp: int, scale_a_f32, b, b_zp: int, scale_b_f32, out_zp: int, qmin: int, qmax: int) -> np.ndarray:
    """Quantized add in float32, ONNX Runtime's QLinearAdd (its AVX2 kernel, bit for bit):
    F = f32(out_zp) - fma(r_a, a_zp, f32(r_b b_zp)); v = fma(a, r_a, fma(b, r_b, F)) on the raw
    codes; y = clamp(round_half_even(v), qmin, qmax). r_a = f32(s_a / s_y), r_b = f32(s_b / s_y)
    (float32 scalars ``scale_a_f32``, ``scale_b_f32``); fma rounds once (``hwsim.kernels.fma``).
    The zero points are folded into F before rounding. Returns the smallest dtype holding
    [qmin, qmax]."""
    fn = "add_requantize_float32"
    fa, azp, fb, bzp, zp, lo, hi = _add_operands(fn, a, a_zp, b, b_zp, out_zp, qmin, qmax)
    ra, rb = _add_ratios(fn, scale_a_f32, scale_b_f32)
    fixed = np.float32(np.float32(zp) - fma_f32(ra, np.float32(azp), np.float32(rb * np.float32(bzp))))
    v = fma_f32(fa.astype(np.float32), ra, fma_f32(fb.astype(np.float32), rb, fixed))
    out = np.clip(np.rint(v).astype(np.int64), lo, hi)
    return out.astype(output_dtype(lo, hi)).reshape(np.shape(a))


def _add_ratios(fn: str, scale_a_f32, scale_b_f32) -> tuple[np.float32, np.float32]:
    scales = []
    for name, s in (("scale_a_f32", scale_a_f32), ("scale_b_f32", scale_b_f32)):
        arr = np.asarray(s)
        if arr.dtype != np.float32 or arr.ndim != 0 or not np.isfinite(arr):
            raise KernelError(f"{fn}: {name} must be a finite float32 scalar; got {s!r} ({arr.dtype}).")
        scales.append(np.float32(arr))
    return scales[0], scales[1]
