"""Definitions of ONNX Runtime's quantized reductions, one output at a time in scalar float32:
QLinearSoftmax (``hwsim.kernels.softmax_table``) and QLinearAveragePool
(``hwsim.kernels.avgpool_f32``); the order of operations is documented in those modules."""

from __future__ import annotations

import math

import numpy as np

from hwsim.kernels.reference._f32 import F32, rint
from hwsim.kernels.reference.qlinear import dequantize_reference

_FLT_MAX = F32(np.finfo(np.float32).max)


def exp_table_reference(x_scale, reduce_len: int) -> list[np.float32]:
    """The 256 float32 exp-table entries of a row of ``reduce_len`` codes."""
    s = float(F32(x_scale))
    log_f32 = float(F32(math.log(float(_FLT_MAX / F32(reduce_len)))))
    shift = max(0.0, log_f32 - 5.0) / s
    return [F32(math.exp((i - 255 + shift) * s)) for i in range(256)]


def qlinear_softmax_reference(x: np.ndarray, *, axis: int, opset: int, x_scale, y_scale,
                              y_zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """QLinearSoftmax of codes x, row by row (rows as `hwsim.kernels.softmax_table.rows`)."""
    x = np.asarray(x).astype(np.int64)
    axis = axis % x.ndim
    if opset < 13:
        rows, shape = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1), x.shape
    else:
        moved = np.moveaxis(x, axis, -1)
        rows, shape = moved.reshape(-1, x.shape[axis]), moved.shape
    table = exp_table_reference(x_scale, rows.shape[1])
    y_inv = float(F32(math.floor(F32(1.0) / F32(y_scale))))
    out = np.empty(rows.shape, dtype=np.int64)
    for r, row in enumerate(rows):
        top = max(int(c) for c in row)
        e = [table[int(c) - top + 255] for c in row]
        total = F32(0.0)
        for v in e:
            total = total + v                       # float32, left to right
        for j, v in enumerate(e):
            q = rint(float(v) * y_inv / float(total)) + int(y_zero_point)  # float64 ratio
            out[r, j] = min(max(q, qmin), qmax)
    out = out.reshape(shape)
    return out if opset < 13 else np.ascontiguousarray(np.moveaxis(out, -1, axis))


def average_pool2d_f32_reference(x: np.ndarray, *, x_scale, x_zero_point: int, y_scale,
                                 y_zero_point: int, kernel, stride, padding,
                                 count_include_pad: bool, qmin: int, qmax: int) -> np.ndarray:
    """QLinearAveragePool of codes x (N, C, H, W), one window at a time."""
    x = np.asarray(x)
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, stride, padding
    n, c, h, w = x.shape
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    out = np.empty((n, c, oh, ow), dtype=np.int64)
    for b, ch, i, j in np.ndindex(n, c, oh, ow):
        h0, w0 = i * sh - pt, j * sw - pl
        h1, w1 = min(h0 + kh, h), min(w0 + kw, w)
        h0, w0 = max(h0, 0), max(w0, 0)
        acc = F32(0.0)
        for r in range(h0, h1):
            for s in range(w0, w1):
                acc = acc + dequantize_reference(int(x[b, ch, r, s]), x_scale, x_zero_point)
        count = kh * kw if count_include_pad else (h1 - h0) * (w1 - w0)
        avg = acc / F32(count)
        v = avg / F32(y_scale) + F32(y_zero_point)
        out[b, ch, i, j] = min(max(rint(v), qmin), qmax)
    return out
