"""The definition of multipoint layers (``hwsim.kernels.multipoint``): each weight row is an
ordinary conv / linear row on its channel's input group (the int64 definitions of ``dense``),
and each output channel sums its rows' accumulators times their multipliers in Python integers
and rounds once."""

from __future__ import annotations

import numpy as np

from hwsim.kernels._multipoint_checks import conv_rows_operands, requant_constants
from hwsim.kernels._requant_checks import output_dtype
from hwsim.kernels.reference.dense import conv2d_int_reference, linear_int_reference
from hwsim.kernels.types import AccumResult, AccumulatorSpec


def conv2d_rows_reference(x: np.ndarray, x_zp: int, w_rows: np.ndarray,
                          row_channel: np.ndarray, channels: int, stride=1, padding=0,
                          dilation=1, groups: int = 1,
                          acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Definition of ``conv2d_rows``: row p is a one-output conv over the input channels of
    group ``row_channel[p] // (K / groups)`` (``conv2d_int_reference``, no bias)."""
    x, xzp, w, rc, k, st, pd, dl, g, acc, out_shape = conv_rows_operands(
        "conv2d_rows_reference", x, x_zp, w_rows, row_channel, channels, stride, padding,
        dilation, groups, acc)
    cg = w.shape[1]
    values = np.zeros(out_shape, dtype=np.int64)
    overflows = 0
    for p in range(w.shape[0]):
        group = int(rc[p]) // (k // g)
        res = conv2d_int_reference(x[:, group * cg:(group + 1) * cg], xzp, w[p:p + 1], None,
                                   None, st, pd, dl, 1, acc)
        values[:, p] = res.values[:, 0]
        overflows += res.overflow_count
    return AccumResult(values, overflows)


def linear_rows_reference(x: np.ndarray, x_zp: int, w_rows: np.ndarray,
                          acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Definition of ``linear_rows``: ``linear_int_reference`` without a bias."""
    return linear_int_reference(x, x_zp, w_rows, None, None, acc)


def requantize_rows_reference(acc_rows: np.ndarray, row_channel: np.ndarray, m: np.ndarray,
                              shift: np.ndarray, bias: np.ndarray | None, out_zero_point: int,
                              qmin: int, qmax: int) -> np.ndarray:
    """Definition of ``requantize_rows``, one output element at a time in Python integers:
    ``clamp(floor((bias_k + sum_{p -> k} m_p acc_p + 2^(shift_k - 1)) / 2^shift_k) + zp)``."""
    acc3, rc, mv, sh, b, k, zp, lo, hi = requant_constants(
        "requantize_rows_reference", acc_rows, row_channel, m, shift, bias, out_zero_point,
        qmin, qmax)
    rows_of = [[p for p in range(rc.shape[0]) if int(rc[p]) == c] for c in range(k)]
    out = np.empty((acc3.shape[0], k, acc3.shape[2]), dtype=output_dtype(lo, hi))
    for n in range(acc3.shape[0]):
        for c in range(k):
            s = int(sh[c])
            half = (1 << (s - 1)) if s > 0 else 0
            for i in range(acc3.shape[2]):
                t = int(b[c]) + sum(int(acc3[n, p, i]) * int(mv[p]) for p in rows_of[c])
                out[n, c, i] = min(max(((t + half) >> s) + zp, lo), hi)
    return out.reshape((acc3.shape[0], k, *np.shape(acc_rows)[2:]))
