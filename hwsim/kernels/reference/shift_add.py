"""The definition of the shift-add (Additive Powers-of-Two, APoT) accumulator: slow, obviously
correct, Python ints, one output element at a time, term by term.

An APoT weight is a signed integer level w = ±L whose magnitude L has a few set bits, so the
product x·w is the sum of shifted inputs ±(xc << s_t) over the set bits s_t of L: a shift-add
datapath with no multiplier. For one output element with bias b (0 if None):

    value = b
    for (c, r, s) in canonical order (input channel of the group, kernel row, kernel column;
            positions in the padding are skipped), with xc = x - x_zp and w the weight code:
        for each set bit s_t of |w|, most significant first:
            value = step(value + sign(w) * (xc << s_t))          # xc << s_t = xc * 2^s_t

step is the adder of `acc` (an AccumulatorSpec): "wrap" gives the exact sum wrapped to `bits`
(overflow: the exact sum is out of range), "saturate" clips the bias first and then after every
term (overflow: some step clipped), exactly as `hwsim.kernels.reference.dense._accumulate`.
Zero weights contribute no term. Weight codes may be any integers with |w| < 2^15 (at most 15
terms; the APoT level set is not required).

Note: all terms of one product have the same sign (sign(w) * sign(xc)), and saturating
additions of same-sign addends to an in-range value equal one saturating addition of their sum,
so in this (tap-major) order both modes give exactly what `conv2d_int_reference` gives with the
same accumulator. Term order matters only across products (e.g. a bit-plane-major schedule).

The operand validators used by the fast kernels (`hwsim.kernels.shift_add`) live here too, so
the fast kernels and their definition accept exactly the same operands.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck
from hwsim.kernels.reference.dense import _accumulate
from hwsim.kernels.types import AccumResult, AccumulatorSpec

MAX_SHIFT_ADD_WEIGHT = (1 << 15) - 1  # |w| <= this: at most 15 shift terms per product


def shift_add_weight_codes(fn: str, w: np.ndarray) -> None:
    """Check |w| < 2^15 for every weight code (w already checked to be an integer array)."""
    if w.size == 0:
        return
    lo, hi = int(w.min()), int(w.max())
    if lo < -MAX_SHIFT_ADD_WEIGHT or hi > MAX_SHIFT_ADD_WEIGHT:
        raise KernelError(f"{fn}: w must hold shift-add weight levels with |w| < 2^15 (at most "
                          f"15 shift terms per product); got values in [{lo}, {hi}].")


def conv_operands(fn, x, x_zp, w, bias, stride, padding, dilation, groups, acc):
    """Validate shift-add conv2d operands; return (x, x_zp, w, bias (K,) int64, stride pair,
    padding (top, left, bottom, right), dilation pair, groups, acc, (N, K, OH, OW))."""
    x, w, g, acc = ck.conv_arrays(fn, x, w, groups, acc)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    shift_add_weight_codes(fn, w)
    xzp = ck.zero_point(f"{fn}: x_zp", x_zp, x.dtype)
    b = ck.bias_vector(f"{fn}: bias", bias, k)
    st = ck.positive_pair(f"{fn}: stride", stride)
    dl = ck.positive_pair(f"{fn}: dilation", dilation)
    pd = ck.padding_quad(f"{fn}: padding", padding)
    oh = ck.conv_out_size(f"{fn} (height)", h, pd[0] + pd[2], r, st[0], dl[0])
    ow = ck.conv_out_size(f"{fn} (width)", wd, pd[1] + pd[3], s, st[1], dl[1])
    return x, xzp, w, b, st, pd, dl, g, acc, (n, k, oh, ow)


def linear_operands(fn, x, x_zp, w, bias, acc):
    """Validate shift-add linear operands; return (x, x_zp, w, bias (out,) int64, acc)."""
    x = ck.int_array(f"{fn}: x", x, 2, "(N, in)")
    w = ck.int_array(f"{fn}: w", w, 2, "(out, in)")
    acc = ck.accumulator_spec(acc)
    if x.shape[1] != w.shape[1]:
        raise KernelError(f"{fn}: x has {x.shape[1]} input features but w has shape {w.shape} "
                          f"(expected (out, {x.shape[1]})).")
    if w.shape[0] < 1:
        raise KernelError(f"{fn}: w must have at least one output row; got shape {w.shape}.")
    shift_add_weight_codes(fn, w)
    xzp = ck.zero_point(f"{fn}: x_zp", x_zp, x.dtype)
    b = ck.bias_vector(f"{fn}: bias", bias, w.shape[0])
    return x, xzp, w, b, acc


def weight_terms(w: int) -> list[tuple[int, int]]:
    """The shift-add terms of weight code w: (sign, shift) per set bit of |w|, most significant
    bit first. weight_terms(-33) == [(-1, 5), (-1, 0)]; weight_terms(0) == []."""
    sign, mag = (-1 if w < 0 else 1), abs(w)
    return [(sign, t) for t in range(mag.bit_length() - 1, -1, -1) if (mag >> t) & 1]


def _product_terms(xc: int, w: int) -> list[int]:
    return [sign * (xc << t) for sign, t in weight_terms(w)]  # xc << t == xc * 2^t (also < 0)


def conv2d_shift_add_reference(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Definition of conv2d_shift_add (module docstring): x codes (N, C, H, W), w weight codes
    (K, C/groups, R, S), bias None or (K,); returns values int64 (N, K, OH, OW) and the number
    of output elements that overflowed."""
    x, xzp, w, b, (sh, sw), (pt, pl, _, _), (dh, dw), g, acc, out_shape = conv_operands(
        "conv2d_shift_add_reference", x, x_zp, w, bias, stride, padding, dilation, groups, acc)
    n_b, k_out, oh_n, ow_n = out_shape
    _, _, h_in, w_in = x.shape
    _, cg, r_n, s_n = w.shape
    k_per_group = k_out // g
    xl, wl, bl = x.tolist(), w.tolist(), b.tolist()
    values = np.zeros(out_shape, dtype=np.int64)
    overflows = 0
    for n in range(n_b):
        for k in range(k_out):
            c0 = (k // k_per_group) * cg
            for oh in range(oh_n):
                for ow in range(ow_n):
                    terms: list[int] = []
                    for ci in range(cg):
                        for r in range(r_n):
                            ih = oh * sh - pt + r * dh
                            for s in range(s_n):
                                iw = ow * sw - pl + s * dw
                                if 0 <= ih < h_in and 0 <= iw < w_in:  # padding: no term
                                    xc = xl[n][c0 + ci][ih][iw] - xzp
                                    terms += _product_terms(xc, wl[k][ci][r][s])
                    v, o = _accumulate(bl[k], terms, acc)
                    values[n, k, oh, ow] = v
                    overflows += o
    return AccumResult(values, overflows)


def linear_shift_add_reference(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Definition of linear_shift_add: x codes (N, in), w weight codes (out, in), bias None or
    (out,); the reduction runs over input features ascending. Returns values int64 (N, out)."""
    x, xzp, w, b, acc = linear_operands("linear_shift_add_reference", x, x_zp, w, bias, acc)
    xl, wl, bl = x.tolist(), w.tolist(), b.tolist()
    values = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    overflows = 0
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            terms: list[int] = []
            for i in range(x.shape[1]):
                terms += _product_terms(xl[n][i] - xzp, wl[o][i])
            v, ov = _accumulate(bl[o], terms, acc)
            values[n, o] = v
            overflows += ov
    return AccumResult(values, overflows)
