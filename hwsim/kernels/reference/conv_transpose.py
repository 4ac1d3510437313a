"""Definition of the transposed 2-D convolution's accumulators (int64 / Python ints).

A direct scatter loop, independent of the fast kernel (which runs a conv2d on a zero-inserted
input): every input pixel (n, c, ih, iw) adds ``(x - x_zp) * (w - w_zp)`` to the outputs its
kernel taps reach. See ``hwsim.kernels.conv_transpose`` for shapes and the canonical order.
"""
from __future__ import annotations

import numpy as np

from hwsim.kernels.conv_transpose import conv_transpose_operands
from hwsim.kernels.reference.dense import _accumulate
from hwsim.kernels.types import AccumResult, AccumulatorSpec


def conv_transpose2d_int_reference(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    w_zp=None,
    bias=None,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups: int = 1,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Definition of ``conv_transpose2d_int`` (same arguments)."""
    (x, xzp, w, wzp, b, (sh, sw), (pt, pl, _, _), _, (dh, dw), g, acc,
     out_shape) = conv_transpose_operands(x, x_zp, w, w_zp, bias, stride, padding,
                                          output_padding, dilation, groups, acc)
    n_b, k_out, oh_n, ow_n = out_shape
    _, c_in, h_in, w_in = x.shape
    _, cg, r_n, s_n = w.shape
    kg = k_out // g
    xl, wl, zl, bl = x.tolist(), w.tolist(), wzp.tolist(), b.tolist()
    # products[n][k][oh][ow], appended in the canonical order: channel c, then input row ih,
    # then input column iw (each input pixel reaches an output through at most one tap).
    products = [[[[[] for _ in range(ow_n)] for _ in range(oh_n)] for _ in range(k_out)]
                for _ in range(n_b)]
    for n in range(n_b):
        for c in range(c_in):
            grp, ci = divmod(c, cg)
            for ih in range(h_in):
                for iw in range(w_in):
                    xv = xl[n][c][ih][iw] - xzp
                    for r in range(r_n):
                        oh = ih * sh - pt + r * dh
                        if not 0 <= oh < oh_n:
                            continue
                        for s in range(s_n):
                            ow = iw * sw - pl + s * dw
                            if not 0 <= ow < ow_n:
                                continue
                            for ko in range(kg):
                                k = grp * kg + ko
                                products[n][k][oh][ow].append(xv * (wl[k][ci][r][s] - zl[k]))
    values = np.zeros(out_shape, dtype=np.int64)
    overflows = 0
    for n in range(n_b):
        for k in range(k_out):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    v, o = _accumulate(bl[k], products[n][k][oh][ow], acc)
                    values[n, k, oh, ow] = v
                    overflows += o
    return AccumResult(values, overflows)
