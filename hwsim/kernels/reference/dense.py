"""The definition of every integer kernel: slow, obviously correct, Python-int arithmetic.

Fast kernels in this package are tested against these functions for exact equality. Nothing
here is optimized; everything is computed one output element at a time with Python ints, so no
intermediate value can wrap.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from hwsim.kernels import _checks as ck
from hwsim.kernels._requant_checks import (
    accumulator_array,
    broadcast_shape,
    channel_param,
    output_dtype,
    output_range,
)
from hwsim.kernels.types import AccumResult, AccumulatorSpec, PoolSumResult


def _wrap(v: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((v + half) % (1 << bits)) - half


def _accumulate(bias: int, products: list[int], acc: AccumulatorSpec) -> tuple[int, bool]:
    """One output element: (value, overflowed) from a bias and the products in canonical order."""
    lo, hi = acc.min_value, acc.max_value
    if acc.mode == "wrap":
        exact = bias + sum(products)
        return _wrap(exact, acc.bits), not lo <= exact <= hi
    value = min(max(bias, lo), hi)
    overflow = value != bias
    for p in products:
        step = value + p
        value = min(max(step, lo), hi)
        overflow = overflow or value != step
    return value, overflow


def conv2d_int_reference(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    w_zp: int | np.ndarray | None = None,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Definition of conv2d_int (same arguments); see that function for shapes and semantics."""
    x, xzp, w, wzp, b, (sh, sw), (pt, pl, _, _), (dh, dw), g, acc, out_shape = ck.conv_operands(
        x, x_zp, w, w_zp, bias, stride, padding, dilation, groups, acc
    )
    n_b, k_out, oh_n, ow_n = out_shape
    _, c_in, h_in, w_in = x.shape
    _, cg, r_n, s_n = w.shape
    k_per_group = k_out // g
    xl, wl, zl, bl = x.tolist(), w.tolist(), wzp.tolist(), b.tolist()
    values = np.zeros(out_shape, dtype=np.int64)
    overflows = 0
    for n in range(n_b):
        for k in range(k_out):
            c0 = (k // k_per_group) * cg
            for oh in range(oh_n):
                for ow in range(ow_n):
                    products = []
                    for ci in range(cg):
                        for r in range(r_n):
                            ih = oh * sh - pt + r * dh
                            for s in range(s_n):
                                iw = ow * sw - pl + s * dw
                                if 0 <= ih < h_in and 0 <= iw < w_in:
                                    xv = xl[n][c0 + ci][ih][iw] - xzp
                                else:
                                    xv = 0  # zero padding in the real domain
                                products.append(xv * (wl[k][ci][r][s] - zl[k]))
                    v, o = _accumulate(bl[k], products, acc)
                    values[n, k, oh, ow] = v
                    overflows += o
    return AccumResult(values, overflows)


def linear_int_reference(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    w_zp: int | np.ndarray | None = None,
    bias: np.ndarray | None = None,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Definition of linear_int (same arguments); see that function for shapes and semantics."""
    x, xzp, w, wzp, b, acc = ck.linear_operands(x, x_zp, w, w_zp, bias, acc)
    xl, wl, zl, bl = x.tolist(), w.tolist(), wzp.tolist(), b.tolist()
    values = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    overflows = 0
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            products = [(xl[n][i] - xzp) * (wl[o][i] - zl[o]) for i in range(x.shape[1])]
            v, ov = _accumulate(bl[o], products, acc)
            values[n, o] = v
            overflows += ov
    return AccumResult(values, overflows)


def _per_channel_lists(fn, acc_arr, axis, **params):
    """Python-int/float lists of per-channel parameters broadcast to acc's shape."""
    out = {}
    for name, (v, kind) in params.items():
        p = channel_param(fn, name, v, acc_arr, axis, kind)
        out[name] = np.broadcast_to(p.reshape(broadcast_shape(acc_arr, axis, p.shape[0])), acc_arr.shape)
    return out


def requantize_dyadic_reference(
    acc: np.ndarray,
    m: int | np.ndarray,
    shift: int | np.ndarray,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    axis: int = 1,
) -> np.ndarray:
    """Definition of requantize_dyadic: clamp(floor((acc*m + 2^(shift-1)) / 2^shift) + zp)."""
    fn = "requantize_dyadic_reference"
    acc = accumulator_array(fn, acc)
    zp, lo, hi = output_range(fn, out_zero_point, qmin, qmax)
    p = _per_channel_lists(fn, acc, axis, m=(m, "int"), shift=(shift, "int"))
    out = np.empty(acc.shape, dtype=output_dtype(lo, hi))
    for idx in np.ndindex(acc.shape):
        a, mm, sh = int(acc[idx]), int(p["m"][idx]), int(p["shift"][idx])
        half = (1 << (sh - 1)) if sh > 0 else 0
        out[idx] = min(max(((a * mm + half) >> sh) + zp, lo), hi)
    return out


def requantize_float32_reference(
    acc: np.ndarray,
    scale_f32: np.float32 | np.ndarray,
    out_zero_point: int,
    qmin: int,
    qmax: int,
    axis: int = 1,
) -> np.ndarray:
    """Definition of requantize_float32 (ONNX Runtime order), one element at a time."""
    fn = "requantize_float32_reference"
    acc = accumulator_array(fn, acc)
    zp, lo, hi = output_range(fn, out_zero_point, qmin, qmax)
    p = _per_channel_lists(fn, acc, axis, scale=(scale_f32, "float32"))
    out = np.empty(acc.shape, dtype=output_dtype(lo, hi))
    for idx in np.ndindex(acc.shape):
        v = np.float32(int(acc[idx])) * p["scale"][idx]  # float32 x float32 -> float32
        v = min(max(v, np.float32(lo - zp)), np.float32(hi - zp))
        out[idx] = int(np.rint(v)) + zp
    return out


def add_requantize_dyadic_reference(a, a_zp, m_a, b, b_zp, m_b, shift, out_zp, qmin, qmax) -> np.ndarray:
    """Definition of add_requantize_dyadic: clamp(floor(((a-a_zp)m_a + (b-b_zp)m_b + 2^(shift-1))
    / 2^shift) + out_zp)."""
    fn = "add_requantize_dyadic_reference"
    zp, lo, hi = output_range(fn, out_zp, qmin, qmax)
    a, b = np.broadcast_arrays(a, b)
    half = (1 << (int(shift) - 1)) if int(shift) > 0 else 0
    out = np.empty(a.shape, dtype=output_dtype(lo, hi))
    for idx in np.ndindex(a.shape):
        t = (int(a[idx]) - int(a_zp)) * int(m_a) + (int(b[idx]) - int(b_zp)) * int(m_b)
        out[idx] = min(max(((t + half) >> int(shift)) + zp, lo), hi)
    return out


def _round_f32(v: Fraction) -> np.float32:
    """The float32 nearest to the exact rational v, ties to even (one rounding)."""
    f = np.float32(float(v))  # float(v) rounds once to float64; fix a double-rounding tie below
    exact = Fraction(float(f))
    if exact == v:
        return f
    other = np.nextafter(f, np.float32(np.inf) if exact < v else np.float32(-np.inf))
    d_f, d_o = abs(Fraction(float(f)) - v), abs(Fraction(float(other)) - v)
    if d_o < d_f or (d_o == d_f and int(other.view(np.uint32)) % 2 == 0):
        return other
    return f


def _fma_exact(x, y, z) -> np.float32:
    return _round_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))


def add_requantize_float32_reference(a, a_zp, scale_a_f32, b, b_zp, scale_b_f32, out_zp, qmin, qmax) -> np.ndarray:
    """Definition of add_requantize_float32 (QLinearAdd), each fma computed as the exact
    rational x*y + z rounded once to float32: F = f32(zp) - fma(r_a, a_zp, f32(r_b b_zp)),
    v = fma(a, r_a, fma(b, r_b, F)), clamp(round half even(v))."""
    fn = "add_requantize_float32_reference"
    zp, lo, hi = output_range(fn, out_zp, qmin, qmax)
    a, b = np.broadcast_arrays(a, b)
    ra, rb = np.float32(scale_a_f32), np.float32(scale_b_f32)
    fixed = np.float32(np.float32(zp) - _fma_exact(ra, a_zp, np.float32(rb * np.float32(b_zp))))
    out = np.empty(a.shape, dtype=output_dtype(lo, hi))
    for idx in np.ndindex(a.shape):
        v = _fma_exact(int(a[idx]), ra, _fma_exact(int(b[idx]), rb, fixed))
        out[idx] = min(max(int(np.rint(v)), lo), hi)
    return out


def _window_bounds(o: int, stride: int, pad_before: int, k: int, dil: int) -> list[int]:
    return [o * stride - pad_before + i * dil for i in range(k)]


def sum_pool2d_reference(x, x_zp, kernel, stride=None, padding=0, count_include_pad=True, ceil_mode=False) -> PoolSumResult:
    """Definition of sum_pool2d: window sums of (x - x_zp) and torch avg_pool2d's divisors."""
    from hwsim.kernels.pool import pool_geometry

    x, xzp, (kh, kw), (sh, sw), (pt, pl, pb, pr), (oh_n, ow_n) = pool_geometry(
        "sum_pool2d_reference", x, x_zp, kernel, stride, padding, (1, 1), ceil_mode
    )
    n_b, c_n, h_in, w_in = x.shape
    xl = x.tolist()
    values = np.zeros((n_b, c_n, oh_n, ow_n), dtype=np.int64)
    count = np.zeros((oh_n, ow_n), dtype=np.int64)
    for oh in range(oh_n):
        for ow in range(ow_n):
            rows = _window_bounds(oh, sh, pt, kh, 1)
            cols = _window_bounds(ow, sw, pl, kw, 1)
            if count_include_pad:  # torch: the window clipped to the padded extent
                count[oh, ow] = sum(r < h_in + pb for r in rows) * sum(c < w_in + pr for c in cols)
            else:
                count[oh, ow] = sum(0 <= r < h_in for r in rows) * sum(0 <= c < w_in for c in cols)
            for n in range(n_b):
                for c in range(c_n):
                    values[n, c, oh, ow] = sum(
                        xl[n][c][r][q] - xzp for r in rows for q in cols if 0 <= r < h_in and 0 <= q < w_in
                    )
    return PoolSumResult(values, count)


def max_pool2d_reference(codes, kernel, stride=None, padding=0, dilation=1, ceil_mode=False, pad_value=None) -> np.ndarray:
    """Definition of max_pool2d: max over each window; padding holds pad_value (default: the
    smallest code of the dtype, so it never wins)."""
    from hwsim.kernels.pool import pool_geometry

    x, _, (kh, kw), (sh, sw), (pt, pl, _, _), (oh_n, ow_n) = pool_geometry(
        "max_pool2d_reference", codes, 0, kernel, stride, padding, dilation, ceil_mode
    )
    dh, dw = ck.positive_pair("max_pool2d: dilation", dilation)
    pad = int(np.iinfo(x.dtype).min) if pad_value is None else int(pad_value)
    n_b, c_n, h_in, w_in = x.shape
    xl = x.tolist()
    out = np.zeros((n_b, c_n, oh_n, ow_n), dtype=x.dtype)
    for n in range(n_b):
        for c in range(c_n):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    out[n, c, oh, ow] = max(
                        xl[n][c][r][q] if 0 <= r < h_in and 0 <= q < w_in else pad
                        for r in _window_bounds(oh, sh, pt, kh, dh)
                        for q in _window_bounds(ow, sw, pl, kw, dw)
                    )
    return out
