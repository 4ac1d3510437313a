"""The definition of the int16-pairs accumulator mode (`hwsim.kernels.pairs`, whose module
docstring states it): Python ints, one output element at a time. The fast `conv2d_int_pairs` /
`linear_int_pairs` are tested against these functions for exact equality.

Operands are validated by the same checks as the fast kernels (`hwsim.kernels._checks`,
`hwsim.kernels._pairs_checks`), so both accept and reject exactly the same inputs.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels import _checks as ck
from hwsim.kernels._pairs_checks import (
    EXACT64,
    I16_MAX,
    I16_MIN,
    Int16PairsAccumulator,
    eight_bit,
    pairs_accumulator,
)
from hwsim.kernels.types import AccumResult


def _sat16(p: int) -> int:
    return min(max(p, I16_MIN), I16_MAX)


def _element(bias: int, raw: list[tuple[int, int]], x_zp: int, w_zp: int,
             acc: Int16PairsAccumulator) -> tuple[int, bool]:
    """One output: (value, overflowed) from the raw (x, w) codes in reduction order."""
    exact = bias + sum((a - x_zp) * (b - w_zp) for a, b in raw)
    excess = 0
    for j in range(0, len(raw), 2):
        p = raw[j][0] * raw[j][1] + (raw[j + 1][0] * raw[j + 1][1] if j + 1 < len(raw) else 0)
        excess += _sat16(p) - p
    total = exact + excess
    half = 1 << (acc.bits - 1)
    wrapped = ((total + half) % (2 * half)) - half
    return wrapped, excess != 0 or wrapped != total


def conv2d_int_pairs_reference(x, x_zp, w, w_zp=None, bias=None, stride=1, padding=0,
                               dilation=1, groups=1,
                               acc: Int16PairsAccumulator = Int16PairsAccumulator()) -> AccumResult:
    """Definition of conv2d_int_pairs (same arguments), Python ints."""
    fn = "conv2d_int_pairs_reference"
    acc = pairs_accumulator(fn, acc)
    x, xzp, w, wzp, b, (sh, sw), (pt, pl, _, _), (dh, dw), g, _, out_shape = ck.conv_operands(
        x, x_zp, w, w_zp, bias, stride, padding, dilation, groups, EXACT64)
    eight_bit(fn, "x", x)
    eight_bit(fn, "w", w)
    n_b, k_n, oh_n, ow_n = out_shape
    _, _, h_n, w_n = x.shape
    _, cg, r_n, s_n = w.shape
    xl, wl, zl, bl = x.tolist(), w.tolist(), wzp.tolist(), b.tolist()
    values = np.zeros(out_shape, dtype=np.int64)
    overflows = 0
    for n in range(n_b):
        for k in range(k_n):
            c0 = (k // (k_n // g)) * cg
            for oh in range(oh_n):
                for ow in range(ow_n):
                    raw = []
                    for r in range(r_n):
                        ih = oh * sh - pt + r * dh
                        for s in range(s_n):
                            iw = ow * sw - pl + s * dw
                            inside = 0 <= ih < h_n and 0 <= iw < w_n
                            for c in range(cg):
                                a = xl[n][c0 + c][ih][iw] if inside else xzp
                                raw.append((a, wl[k][c][r][s]))
                    v, o = _element(bl[k], raw, xzp, zl[k], acc)
                    values[n, k, oh, ow] = v
                    overflows += o
    return AccumResult(values, overflows)


def linear_int_pairs_reference(x, x_zp, w, w_zp=None, bias=None,
                               acc: Int16PairsAccumulator = Int16PairsAccumulator()) -> AccumResult:
    """Definition of linear_int_pairs (same arguments), Python ints."""
    fn = "linear_int_pairs_reference"
    acc = pairs_accumulator(fn, acc)
    x, xzp, w, wzp, b, _ = ck.linear_operands(x, x_zp, w, w_zp, bias, EXACT64)
    eight_bit(fn, "x", x)
    eight_bit(fn, "w", w)
    xl, wl, zl, bl = x.tolist(), w.tolist(), wzp.tolist(), b.tolist()
    values = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    overflows = 0
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            v, ov = _element(bl[o], list(zip(xl[n], wl[o])), xzp, zl[o], acc)
            values[n, o] = v
            overflows += ov
    return AccumResult(values, overflows)
