"""Private numba kernels of the shift-add (APoT) accumulator (see `hwsim.kernels.shift_add`).

The caller validates operands, proves that no value overflows int64 and chooses the kernel;
these functions trust all of that. Single-threaded on purpose (see _nb.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

@njit(cache=True)
def max_popcount(w_flat):  # pragma: no cover - compiled
    """max over the codes of popcount(|w|) (|w| < 2^15)."""
    best = 0
    for i in range(w_flat.shape[0]):
        m = abs(np.int64(w_flat[i]))
        cnt = 0
        while m:
            cnt += m & 1
            m >>= 1
        best = max(best, cnt)
    return best


@njit(cache=True)
def term_table(w2, k_per_group, cg, r_n, s_n):  # pragma: no cover - compiled
    """The shift-add terms of weight codes w2 (K, C/groups * R * S), taps in (c, r, s) order,
    as CSR over output channels: ptr (K + 1,), then per term the absolute input channel, kernel
    row, kernel column and signed coefficient ±2^shift (int64), ordered by tap, then shift from
    the most significant bit down. Zero weights have no term."""
    k_n, l_n = w2.shape
    ptr = np.zeros(k_n + 1, dtype=np.int64)
    for k in range(k_n):
        cnt = 0
        for j in range(l_n):
            m = abs(np.int64(w2[k, j]))
            while m:  # popcount: one iteration per set bit
                m &= m - 1
                cnt += 1
        ptr[k + 1] = ptr[k] + cnt
    total = ptr[k_n]
    ch = np.empty(total, dtype=np.int64)
    rr = np.empty(total, dtype=np.int64)
    ss = np.empty(total, dtype=np.int64)
    coef = np.empty(total, dtype=np.int64)
    rs = r_n * s_n
    tap_c = np.empty(l_n, dtype=np.int64)
    tap_r = np.empty(l_n, dtype=np.int64)
    tap_s = np.empty(l_n, dtype=np.int64)
    for j in range(l_n):
        tap_c[j] = j // rs
        tap_r[j] = (j % rs) // s_n
        tap_s[j] = j % s_n
    for k in range(k_n):
        t = ptr[k]
        c0 = (k // k_per_group) * cg
        for j in range(l_n):
            v = np.int64(w2[k, j])
            m = abs(v)
            cnt = 0
            mm = m
            while mm:
                mm &= mm - 1
                cnt += 1
            # lowest set bit first, written backwards: the terms end up most significant first
            pos = t + cnt - 1
            while m:
                low = m & -m
                ch[pos] = c0 + tap_c[j]
                rr[pos] = tap_r[j]
                ss[pos] = tap_s[j]
                coef[pos] = -low if v < 0 else low
                m ^= low
                pos -= 1
            t += cnt
    return ptr, ch, rr, ss, coef


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
def saturate_terms(xq, ptr, ch, rr, ss, coef, bias, sh, dh, dw, lo, hi, kind, plane, flags,
                   out):  # pragma: no cover - compiled
    """Saturating shift-add accumulation: for output (n, k, oh, ow), value = clip(bias[k]), then
    for each term t of channel k in table order, value = clip(value + coef[t] * xc) with xc the
    centred input at (ch[t], oh*sh + rr[t]*dh, ow*sw + ss[t]*dw) of the padded input (padding
    holds 0, which adds nothing and never clips). Returns the number of output elements where
    some step clipped.

    xq: (N, C, sw, Hp, Wq) centred padded input in column phases (see center_pad_phases).
    ptr, ch, rr, ss, coef: the term table (see term_table). out: (N, K, OH, OW) int64.
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
    n_b = xq.shape[0]
    sw = xq.shape[2]
    wq = xq.shape[4]
    k_n = ptr.shape[0] - 1
    oh_n, ow_n = out.shape[2], out.shape[3]
    if sh == 1:
        n_rows, row_len = 1, (oh_n - 1) * wq + ow_n
    else:
        n_rows, row_len = oh_n, ow_n
    lo32, hi32 = np.int32(max(lo, -(1 << 31))), np.int32(min(hi, (1 << 31) - 1))
    overflows = 0
    for n in range(n_b):
        for k in range(k_n):
            b = bias[k]
            v0 = min(max(b, lo), hi)
            plane[:] = v0  # NARROW: v0 fits int32 (bits <= 31)
            flags[:] = 1 if v0 != b else 0
            for t in range(ptr[k], ptr[k + 1]):
                d = coef[t]
                off = ss[t] * dw
                src_plane = xq[n, ch[t], off % sw].reshape(-1)
                base = rr[t] * dh * wq + off // sw
                for i in range(n_rows):
                    src = src_plane[base + i * sh * wq: base + i * sh * wq + row_len]
                    dst = plane[i * wq: i * wq + row_len]
                    fl = flags[i * wq: i * wq + row_len]
                    if kind == NARROW:
                        d32 = np.int32(d)
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
