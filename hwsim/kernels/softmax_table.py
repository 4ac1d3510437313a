"""ONNX Runtime's QLinearSoftmax (com.microsoft contrib op) on 8-bit codes, vectorized numpy.

The input zero point plays no part (softmax is shift-invariant). For rows of D codes along the
softmax axis (opset >= 13: one axis; opset < 13: all dims from the axis, flattened):

1. An exp table of 256 float32 entries, indexed by i = c - max(row) + 255:
   shift = max(0, f32(ln(f32(FLT_MAX / D))) - 5) / s_x (the logarithm rounded to float32, the
   rest in float64); E[i] = f32(exp((i - 255 + shift) · s_x)) with exp in float64. (The shift
   keeps a row's sum below FLT_MAX; it cancels in the ratio.)
2. Per row, sum = E[c_0] + E[c_1] + ... in float32, left to right.
3. Per code, y = round_half_even(E[c] · Y / sum) + zp_y, the ratio in float64 (one rounding),
   with Y = floor(f32(1 / s_y)) a float32 integer (ONNX Runtime scales by the floor of the
   inverse output scale), saturated to the output type.

Established by experiment against onnxruntime 1.32 (x86-64): computing the ratio in float32, or
the logarithm in float64, or summing in SIMD lanes each mismatch on about 1% of near-tie rows.
"""

from __future__ import annotations

import math

import numpy as np

from hwsim.errors import KernelError

_F32 = np.float32
_FLT_MAX = float(np.finfo(np.float32).max)
_RESERVED_BITS = 5.0


def exp_table(x_scale, reduce_len: int) -> np.ndarray:
    """Step 1: the float32 exp table (256,) for input scale ``x_scale`` (float32) and rows of
    ``reduce_len`` codes. exp and log are the C library's (math.exp, math.log; glibc's are
    correctly rounded in practice, so f32(log) is the float32 logarithm)."""
    if isinstance(reduce_len, bool) or not isinstance(reduce_len, (int, np.integer)) \
            or reduce_len < 1:
        raise KernelError(f"exp_table: reduce_len must be a positive integer; got {reduce_len!r}.")
    s = float(_F32(x_scale))
    log_f32 = float(_F32(math.log(float(_F32(_FLT_MAX) / _F32(reduce_len)))))
    shift = max(0.0, log_f32 - _RESERVED_BITS) / s
    return np.array([math.exp((i - 255 + shift) * s) for i in range(256)], dtype=_F32)


def inverse_scale_floor(y_scale) -> np.float32:
    """Y = floor(f32(1 / s_y)) as float32 (step 3)."""
    return _F32(math.floor(_F32(1.0) / _F32(y_scale)))


def rows(x: np.ndarray, axis: int, opset: int) -> tuple[np.ndarray, tuple, tuple]:
    """x rearranged as (rows, D) for the softmax, and what `unrows` needs to undo it."""
    axis = axis % x.ndim
    if opset < 13:
        return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1), x.shape, ()
    moved = np.moveaxis(x, axis, -1)
    return moved.reshape(-1, x.shape[axis]), moved.shape, (axis,)


def unrows(y: np.ndarray, shape: tuple, moved: tuple) -> np.ndarray:
    y = y.reshape(shape)
    return np.ascontiguousarray(np.moveaxis(y, -1, moved[0])) if moved else y


def qlinear_softmax(x: np.ndarray, *, axis: int, opset: int, table: np.ndarray, y_inv_floor,
                    y_zero_point: int, signed: bool) -> np.ndarray:
    """QLinearSoftmax of 8-bit codes x (any shape, uint8 or int8 values): int64 codes of x's
    shape. ``table`` from `exp_table` (for D = the row length), ``y_inv_floor`` from
    `inverse_scale_floor`."""
    x = np.asarray(x)
    if x.ndim == 0:
        raise KernelError("qlinear_softmax: x must have at least one dimension.")
    table = np.asarray(table, dtype=_F32)
    if table.shape != (256,):
        raise KernelError(f"qlinear_softmax: table must have shape (256,); got {table.shape}.")
    r, shape, moved = rows(x.astype(np.int64), axis, opset)
    if r.size == 0:
        return x.astype(np.int64)
    e = table[r - r.max(axis=1, keepdims=True) + 255]            # (rows, D) float32
    total = np.add.accumulate(e, axis=1, dtype=_F32)[:, -1:]       # left-to-right float32 sum
    ratio = e.astype(np.float64) * float(_F32(y_inv_floor)) / total.astype(np.float64)
    q = np.rint(ratio).astype(np.int64) + int(y_zero_point)
    q = np.clip(q, -128, 127) if signed else np.minimum(q, 255)
    return unrows(q, shape, moved)
