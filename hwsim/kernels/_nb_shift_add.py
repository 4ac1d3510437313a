"""Private numba kernels of the shift-add (APoT) accumulator (see `hwsim.kernels.shift_add`).

The caller validates operands, proves that no value overflows int64 and chooses the kernel;
these functions trust all of that. Single-threaded on purpose (see _nb.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _popcount15(m):  # pragma: no cover - compiled
    """popcount of 0 <= m < 2^15 (SWAR, branch-free)."""
    m = m - ((m >> 1) & 0x5555)
    m = (m & 0x3333) + ((m >> 2) & 0x3333)
    m = (m + (m >> 4)) & 0x0F0F
    return (m + (m >> 8)) & 0x1F


@njit(cache=True)
def max_popcount(w_flat):  # pragma: no cover - compiled
    """max over the codes of popcount(|w|) (|w| < 2^15)."""
    best = 0
    for i in range(w_flat.shape[0]):
        best = max(best, _popcount15(abs(np.int64(w_flat[i]))))
    return best


@njit(cache=True)
def abs_row_sums(w2):  # pragma: no cover - compiled
    """(sum_j |w2[k, j]| per row as int64 (K,), max |w2|) in one pass, no temporaries."""
    k_n, l_n = w2.shape
    sums = np.zeros(k_n, dtype=np.int64)
    top = np.int64(0)
    for k in range(k_n):
        acc = np.int64(0)
        for j in range(l_n):
            m = abs(np.int64(w2[k, j]))
            acc += m
            top = max(top, m)
        sums[k] = acc
    return sums, top


@njit(cache=True)
def term_table(w2, n_bits):  # pragma: no cover - compiled
    """The shift-add terms of weight codes w2 (K, L) (|w| < 2^n_bits <= 2^15; for a conv, L
    runs over the taps (c, r, s) of the group), as CSR over output channels: ptr (K + 1,) int64,
    then per term the tap j (int32) and the signed coefficient ±2^shift (int32), ordered by tap,
    then shift from the most significant bit down. Zero weights have no term.

    Branch-free fill: every weight writes n_bits slots and advances past those of its set bits
    (the others are overwritten by the next weight's terms, or fall in the slack at the end)."""
    k_n, l_n = w2.shape
    ptr = np.zeros(k_n + 1, dtype=np.int64)
    for k in range(k_n):
        cnt = 0
        for j in range(l_n):
            cnt += _popcount15(abs(np.int64(w2[k, j])))
        ptr[k + 1] = ptr[k] + cnt
    total = ptr[k_n]
    tap = np.empty(total + n_bits, dtype=np.int32)
    coef = np.empty(total + n_bits, dtype=np.int32)
    t = 0
    for k in range(k_n):
        for j in range(l_n):
            v = np.int64(w2[k, j])
            m = abs(v)
            sign = -1 if v < 0 else 1
            for b in range(n_bits - 1, -1, -1):
                tap[t] = j
                coef[t] = sign << b
                t += (m >> b) & 1
    return ptr, tap[:total], coef[:total]


@njit(cache=True)
def center_pad_phases(x, zp, pt, pl, out):  # pragma: no cover - compiled
    """out[n, c, (pl + w) % sw, pt + h, (pl + w) // sw] = x[n, c, h, w] - zp, with out of shape
    (N, C, sw, Hp, Wq): the centred input inside zero padding, its columns split into the sw
    phases of the width stride, so every tap of a strided row, and (each phase plane being
    row-major) for unit height stride a run of whole rows, is contiguous. The border of ``out``
    stays as given (0)."""
    n_b, c_n, h_n, w_n = x.shape
    sw = out.shape[2]
    for n in range(n_b):
        for c in range(c_n):
            for h in range(h_n):
                xrow = x[n, c, h]
                for w in range(w_n):
                    col = pl + w
                    out[n, c, col % sw, pt + h, col // sw] = np.int64(xrow[w]) - zp


NARROW, WIDE, SAFE = 0, 1, 2  # adder implementations of saturate_terms (see there)


@njit(cache=True)
def saturate_terms(xq, ptr, tap, coef, tap_off, k_per_group, bias, sh, lo, hi, kind, plane,
                   flags, out):  # pragma: no cover - compiled
    """Saturating shift-add accumulation: for output (n, k, oh, ow), value = clip(bias[k]), then
    for each term t of channel k in table order, value = clip(value + coef[t] * xc) with xc the
    centred input under tap tap[t] (padding holds 0, which adds nothing and never clips).
    Returns the number of output elements where some step clipped.

    xq: (N, C, sw, Hp, Wq) centred padded input in column phases (see center_pad_phases).
    ptr, tap, coef: the term table (see term_table). tap_off: (L,) int64, offset in xq[n] of
    the input under tap j for output (0, 0) of a channel of group 0: ((c*sw + (s*dw) % sw)*Hp
    + r*dh)*Wq + (s*dw) // sw for tap j = (c, r, s). out: (N, K, OH, OW) int64.
    plane, flags: scratch of OH * Wq elements, same dtype as xq.
    kind: NARROW: xq, plane, flags are int32 and the caller proved 2^(bits-1) + |term| < 2^31,
        so value + term is exact in int32 (16 lanes per AVX-512 vector); WIDE: int64, the
        caller proved 2^(bits-1) + |term| < 2^63; SAFE: int64, compare before adding (a 64-bit
        adder, where value + term may leave int64).

    Each output plane is accumulated on a grid of width Wq; with unit height stride every term
    is one contiguous run over all output rows (the columns ow >= OW of the grid are scratch,
    computed from in-bounds inputs and discarded). Per output element the terms still arrive in
    table order, so the result is the element-by-element definition. flags[j] != 0 marks a
    clipped step (an OR of value-before-clip minus value-after-clip).
    """
    n_b, c_n, sw, hp, wq = xq.shape
    xflat = xq.reshape(-1)
    k_n = ptr.shape[0] - 1
    cg = c_n * k_per_group // k_n  # input channels per group
    oh_n, ow_n = out.shape[2], out.shape[3]
    if sh == 1:
        n_rows, row_len = 1, (oh_n - 1) * wq + ow_n
    else:
        n_rows, row_len = oh_n, ow_n
    chan = sw * hp * wq  # elements of one input channel in xq
    lo32, hi32 = np.int32(max(lo, -(1 << 31))), np.int32(min(hi, (1 << 31) - 1))
    overflows = 0
    for n in range(n_b):
        for k in range(k_n):
            base = (n * c_n + (k // k_per_group) * cg) * chan
            b = bias[k]
            v0 = min(max(b, lo), hi)
            plane[:] = v0  # NARROW: v0 fits int32 (bits <= 31)
            flags[:] = 1 if v0 != b else 0
            for t in range(ptr[k], ptr[k + 1]):
                d = np.int64(coef[t])
                d32 = np.int32(coef[t])
                o = base + tap_off[tap[t]]
                for i in range(n_rows):
                    src = xflat[o + i * sh * wq: o + i * sh * wq + row_len]
                    dst = plane[i * wq: i * wq + row_len]
                    fl = flags[i * wq: i * wq + row_len]
                    if kind == NARROW:
                        for j in range(row_len):
                            u = np.int32(dst[j] + d32 * src[j])
                            c = min(max(u, lo32), hi32)
                            fl[j] |= np.int32(u - c)
                            dst[j] = c
                    elif kind == WIDE:
                        for j in range(row_len):
                            u = dst[j] + d * src[j]
                            c = min(max(u, lo), hi)
                            fl[j] |= u - c
                            dst[j] = c
                    else:
                        for j in range(row_len):
                            a = d * src[j]
                            v = dst[j]
                            if a > 0 and v > hi - a:
                                dst[j] = hi
                                fl[j] = 1
                            elif a < 0 and v < lo - a:
                                dst[j] = lo
                                fl[j] = 1
                            else:
                                dst[j] = v + a
            res = out[n, k]
            for oh in range(oh_n):
                for ow in range(ow_n):
                    res[oh, ow] = plane[oh * wq + ow]
                    overflows += flags[oh * wq + ow] != 0
    return overflows
