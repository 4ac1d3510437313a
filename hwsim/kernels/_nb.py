"""Private numba kernels. Callers (conv.py, requant.py) validate operands and prove bounds;
these functions trust their inputs.

The kernels are single-threaded on purpose: numba parallel regions interleaved with OpenBLAS's
own threads stalled every BLAS call by ~8 ms on a 2-core machine (measured in
bench/bench_kernels.py); BLAS keeps the cores for the GEMMs. prange marks the loops that could
be parallel."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def center_pad(x, zp, pt, pl, narrow, out):  # pragma: no cover - compiled
    """out[n, c, pt + h, (pl + w) % sw, (pl + w) // sw] = x[n, c, h, w] - zp, with sw =
    out.shape[3]: the padded input split into column phases of the width stride, so a strided
    conv reads contiguous rows. The border of ``out`` stays as given (0). ``narrow``: |x - zp|
    < 2^31, so subtract in int32 (int32 -> float converts packed; int64 -> float does not)."""
    n_b, c_n, h_n, w_n = x.shape
    sw = out.shape[3]
    zp32 = np.int32(zp) if narrow else np.int32(0)
    for nc in prange(n_b * c_n):
        n = nc // c_n
        c = nc % c_n
        for h in range(h_n):
            xrow = x[n, c, h]
            for p in range(sw):
                w0 = (p - pl) % sw  # first input column landing in phase p
                dst = out[n, c, pt + h, p, (pl + w0) // sw :]
                cnt = (w_n - w0 + sw - 1) // sw
                if narrow and sw == 1:
                    for i in range(cnt):
                        dst[i] = np.int32(np.int32(xrow[i]) - zp32)
                elif narrow:
                    for i in range(cnt):
                        dst[i] = np.int32(np.int32(xrow[w0 + i * sw]) - zp32)
                else:
                    for i in range(cnt):
                        dst[i] = xrow[w0 + i * sw] - zp


@njit(cache=True)
def center_weights(w2d, wzp, out):  # pragma: no cover - compiled
    """out[k, j] = w2d[k, j] - wzp[k]; returns sum_j |out[k, j]| per row as int64 (K,)."""
    k_n, l_n = w2d.shape
    abs_sum = np.zeros(k_n, dtype=np.int64)
    for k in range(k_n):
        z = wzp[k]
        s = 0
        for j in range(l_n):
            v = np.int64(w2d[k, j]) - z
            out[k, j] = v
            s += abs(v)
        abs_sum[k] = s
    return abs_sum


@njit(cache=True)
def direct_conv(xq, wc, out, sh, dh, dw, k_per_group):  # pragma: no cover - compiled
    """Grouped conv on a centered, padded, column-phased input xq (N, C, Hp, sw, Wp/sw) (see
    center_pad): out[n, k] += sum_{c, r, s} wc * x. Exact when the caller proved every partial
    sum representable in the dtype. Inner loops run over contiguous output/input rows."""
    n_b = xq.shape[0]
    sw = xq.shape[3]
    k_n, cg, r_n, s_n = wc.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    for nk in prange(n_b * k_n):
        n = nk // k_n
        k = nk % k_n
        c0 = (k // k_per_group) * cg
        acc = out[n, k]
        for ci in range(cg):
            for r in range(r_n):
                for oh in range(oh_n):
                    orow = acc[oh]
                    irow = xq[n, c0 + ci, oh * sh + r * dh]
                    for s in range(s_n):
                        off = s * dw
                        q = off // sw
                        src = irow[off % sw, q : q + ow_n]
                        wv = wc[k, ci, r, s]
                        for ow in range(ow_n):
                            orow[ow] += wv * src[ow]


@njit(cache=True)
def saturate_conv(x, x_zp, wc, bias, sh, sw, pt, pl, dh, dw, k_per_group, lo, hi, out):  # pragma: no cover
    """Canonical-order saturating accumulation (bias, then c, r, s; clip after every add).
    Returns the number of output elements where some step clipped. Padded positions add 0,
    which never clips, so they are skipped."""
    n_b, _, h_n, w_n = x.shape
    k_n, cg, r_n, s_n = wc.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    overflows = 0
    for n in range(n_b):
        for k in range(k_n):
            c0 = (k // k_per_group) * cg
            b = bias[k]
            for oh in range(oh_n):
                for ow in range(ow_n):
                    v = min(max(b, lo), hi)
                    clipped = v != b
                    for ci in range(cg):
                        for r in range(r_n):
                            ih = oh * sh - pt + r * dh
                            if ih < 0 or ih >= h_n:
                                continue
                            for s in range(s_n):
                                iw = ow * sw - pl + s * dw
                                if iw < 0 or iw >= w_n:
                                    continue
                                step = v + (np.int64(x[n, c0 + ci, ih, iw]) - x_zp) * wc[k, ci, r, s]
                                if step > hi:
                                    v = hi
                                    clipped = True
                                elif step < lo:
                                    v = lo
                                    clipped = True
                                else:
                                    v = step
                    out[n, k, oh, ow] = v
                    overflows += clipped
    return overflows


@njit(cache=True)
def finish(res, bias, bits, check, narrow):  # pragma: no cover - compiled
    """int64(res[n, k, p]) + bias[k]; when ``check``, wrap to ``bits`` and count elements out of
    range. res: (N, K, P) float or int holding exact integers; ``narrow``: they fit in int32
    (converting through int32 vectorizes). Returns (values, overflow_count)."""
    n_b, k_n, p_n = res.shape
    values = np.empty((n_b, k_n, p_n), dtype=np.int64)
    lo = -(np.int64(1) << (bits - 1))
    hi = -lo - 1
    up = 64 - bits
    counts = np.zeros(n_b * k_n, dtype=np.int64)
    for nk in prange(n_b * k_n):
        n = nk // k_n
        k = nk % k_n
        b = bias[k]
        cnt = 0
        for p in range(p_n):
            v = np.int64(np.int32(res[n, k, p])) + b if narrow else np.int64(res[n, k, p]) + b
            if check and (v < lo or v > hi):
                cnt += 1
                v = (v << up) >> up  # two's-complement wrap to `bits`
            values[n, k, p] = v
        counts[nk] = cnt
    return values, counts.sum()


@njit(cache=True)
def dyadic_requant(acc3, m, shift, zp, lo, hi, split, out3):  # pragma: no cover - compiled
    """out = clamp(floor((acc*m + 2^(shift-1)) / 2^shift) + zp, lo, hi) on (outer, C, inner)
    arrays with per-channel m/shift (length C or 1). ``split``: compute acc*m as
    acc*(m >> 16)*2^16 + acc*(m & 0xffff) so |acc| may reach 2^46 (requires shift >= 16)."""
    o_n, c_n, i_n = acc3.shape
    per_channel = m.shape[0] > 1
    for oc in prange(o_n * c_n):
        o = oc // c_n
        c = oc % c_n
        j = c if per_channel else 0
        mm = np.int64(m[j])
        s = np.int64(shift[j])
        half = (np.int64(1) << (s - 1)) if s > 0 else np.int64(0)
        m_hi = mm >> 16
        m_lo = mm & 0xFFFF
        for i in range(i_n):
            a = np.int64(acc3[o, c, i])
            if split:
                q = (a * m_hi + ((a * m_lo + half) >> 16)) >> (s - 16)
            else:
                q = (a * mm + half) >> s
            q += zp
            out3[o, c, i] = min(max(q, lo), hi)


_MAGIC_F32 = np.float32(12582912.0)  # 1.5 * 2^23


@njit(cache=True)
def float32_requant(acc3, scale, zp, lo, hi, fast, out3):  # pragma: no cover - compiled
    """ONNX Runtime order: v = f32(acc) * scale (float32); clamp to [lo - zp, hi - zp] in
    float32; round half to even; + zp. ``fast``: acc fits in int32 and |lo - zp|, |hi - zp| <=
    2^22, so the conversion goes through int32 and rounding is (v + 1.5*2^23) - 1.5*2^23, which
    is round-half-even in float32 for |v| <= 2^22 (both vectorize; the results are identical)."""
    o_n, c_n, i_n = acc3.shape
    per_channel = scale.shape[0] > 1
    f_lo = np.float32(lo - zp)
    f_hi = np.float32(hi - zp)
    for oc in prange(o_n * c_n):
        o = oc // c_n
        c = oc % c_n
        sc = scale[c if per_channel else 0]
        src = acc3[o, c]
        dst = out3[o, c]
        if fast:
            for i in range(i_n):
                v = np.float32(np.int32(src[i])) * sc
                v = min(max(v, f_lo), f_hi)
                dst[i] = np.int32((v + _MAGIC_F32) - _MAGIC_F32) + zp
        else:
            for i in range(i_n):
                v = np.float32(src[i]) * sc
                v = min(max(v, f_lo), f_hi)
                dst[i] = np.int64(np.rint(v)) + zp


@njit(cache=True)
def add_dyadic(a, a_zp, m_a, b, b_zp, m_b, shift, zp, lo, hi, out):  # pragma: no cover - compiled
    """Flat arrays: clamp(floor(((a-a_zp)m_a + (b-b_zp)m_b + 2^(shift-1)) / 2^shift) + zp)."""
    half = (np.int64(1) << (shift - 1)) if shift > 0 else np.int64(0)
    for i in range(a.shape[0]):
        t = (np.int64(a[i]) - a_zp) * m_a + (np.int64(b[i]) - b_zp) * m_b
        q = ((t + half) >> shift) + zp
        out[i] = min(max(q, lo), hi)


@njit(cache=True)
def fused_float32(sums, bias_f32, scale, zp, lo, hi, out):  # pragma: no cover - compiled
    """sums (N, K, P) float32 exact integers; f32(sum + bias) is exact (caller proved
    |sum| + |bias| < 2^24), then the float32_requant fast path (ONNX Runtime order)."""
    n_b, k_n, p_n = sums.shape
    per_channel = scale.shape[0] > 1
    f_lo = np.float32(lo - zp)
    f_hi = np.float32(hi - zp)
    for nk in prange(n_b * k_n):
        n = nk // k_n
        k = nk % k_n
        sc = scale[k if per_channel else 0]
        b = bias_f32[k]
        src = sums[n, k]
        dst = out[n, k]
        for i in range(p_n):
            v = (src[i] + b) * sc
            v = v if v > f_lo else f_lo
            v = v if v < f_hi else f_hi
            dst[i] = np.int32((v + _MAGIC_F32) - _MAGIC_F32) + zp


@njit(cache=True)
def fused_dyadic(sums, bias, m, shift, zp, lo, hi, out):  # pragma: no cover - compiled
    """sums (N, K, P) float32 exact integers below 2^24; acc = sum + bias, then the dyadic
    requantization floor((acc*m + 2^(shift-1)) / 2^shift) + zp, clamped."""
    n_b, k_n, p_n = sums.shape
    per_channel = m.shape[0] > 1
    for nk in prange(n_b * k_n):
        n = nk // k_n
        k = nk % k_n
        j = k if per_channel else 0
        mm = np.int64(m[j])
        s = np.int64(shift[j])
        half = (np.int64(1) << (s - 1)) if s > 0 else np.int64(0)
        b = bias[k]
        src = sums[n, k]
        dst = out[n, k]
        for i in range(p_n):
            a = np.int64(np.int32(src[i])) + b
            q = ((a * mm + half) >> s) + zp
            dst[i] = min(max(q, lo), hi)


@njit(cache=True, inline="always")
def _depthwise_plane(x, zp, n, c, sw, xph):  # pragma: no cover
    """xph[h, p, j] = x[n, c, h, j*sw + p] - zp (int32): the channel's rows split into `sw`
    column phases, converted once per channel, so that every tap of a strided row reads a
    contiguous slice."""
    w_n = x.shape[3]
    zp32 = np.int32(zp)
    for h in range(x.shape[2]):
        row = x[n, c, h]
        for p in range(sw):
            dst = xph[h, p]
            for j in range((w_n - p + sw - 1) // sw):
                dst[j] = np.int32(row[j * sw + p]) - zp32


@njit(cache=True, inline="always")
def _depthwise_row(xph, w_n, wc, c, oh, sh, sw, pt, pl, dh, dw, acc):  # pragma: no cover
    """acc[ow] = sum_{r,s} wc[c, r, s] * xph-value at (ih, iw) over the in-image taps of output
    row oh (padded taps add 0). int32 is exact: the caller proved the bound < 2^24. All slice
    starts are non-negative (no wraparound checks), which lets LLVM vectorize the inner loop."""
    h_n = xph.shape[0]
    ow_n = acc.shape[0]
    acc[:] = 0
    for r in range(wc.shape[1]):
        ih = oh * sh - pt + r * dh
        if ih < 0 or ih >= h_n:
            continue
        for s in range(wc.shape[2]):
            wv = np.int32(wc[c, r, s])
            off = s * dw - pl  # iw = ow * sw + off
            ow_lo = max(0, (sw - 1 - off) // sw)
            ow_hi = min(ow_n, (w_n - 1 - off) // sw + 1)
            if ow_hi <= ow_lo:
                continue
            first = ow_lo * sw + off  # >= 0
            src = xph[ih, first % sw, first // sw:first // sw + (ow_hi - ow_lo)]
            out = acc[ow_lo:ow_hi]
            for i in range(ow_hi - ow_lo):
                out[i] += wv * src[i]


@njit(cache=True)
def depthwise_dyadic(x, zp_x, wc, bias, sh, sw, pt, pl, dh, dw, m, shift, zp, lo, hi, out):  # pragma: no cover
    """Depthwise conv (groups == C == K) fused with dyadic requantization, straight from the
    codes x (N, C, H, W): no padded copy, no accumulator array. Same results as conv2d_int then
    requantize_dyadic when the caller proved |sum| + |bias| < 2^24."""
    n_b, c_n = x.shape[0], x.shape[1]
    oh_n, ow_n = out.shape[2], out.shape[3]
    per_channel = m.shape[0] > 1
    acc = np.empty(ow_n, dtype=np.int32)
    xph = np.empty((x.shape[2], sw, (x.shape[3] + sw - 1) // sw), dtype=np.int32)
    for n in range(n_b):
        for c in range(c_n):
            _depthwise_plane(x, zp_x, n, c, sw, xph)
            j = c if per_channel else 0
            mm = np.int64(m[j])
            s = np.int64(shift[j])
            half = (np.int64(1) << (s - 1)) if s > 0 else np.int64(0)
            b = np.int64(bias[c])
            for oh in range(oh_n):
                _depthwise_row(xph, x.shape[3], wc, c, oh, sh, sw, pt, pl, dh, dw, acc)
                dst = out[n, c, oh]
                for ow in range(ow_n):
                    q = (((np.int64(acc[ow]) + b) * mm + half) >> s) + zp
                    dst[ow] = min(max(q, lo), hi)


@njit(cache=True)
def depthwise_float32(x, zp_x, wc, bias, sh, sw, pt, pl, dh, dw, scale, zp, lo, hi, out):  # pragma: no cover
    """As depthwise_dyadic, with ONNX Runtime's float32 requantization (see fused_float32)."""
    n_b, c_n = x.shape[0], x.shape[1]
    oh_n, ow_n = out.shape[2], out.shape[3]
    per_channel = scale.shape[0] > 1
    f_lo = np.float32(lo - zp)
    f_hi = np.float32(hi - zp)
    acc = np.empty(ow_n, dtype=np.int32)
    xph = np.empty((x.shape[2], sw, (x.shape[3] + sw - 1) // sw), dtype=np.int32)
    for n in range(n_b):
        for c in range(c_n):
            _depthwise_plane(x, zp_x, n, c, sw, xph)
            sc = scale[c if per_channel else 0]
            b = np.int32(bias[c])
            for oh in range(oh_n):
                _depthwise_row(xph, x.shape[3], wc, c, oh, sh, sw, pt, pl, dh, dw, acc)
                dst = out[n, c, oh]
                for ow in range(ow_n):
                    v = np.float32(acc[ow] + b) * sc
                    v = v if v > f_lo else f_lo
                    v = v if v < f_hi else f_hi
                    dst[ow] = np.int32((v + _MAGIC_F32) - _MAGIC_F32) + zp


# Depthwise conv, channels-last: for many channels on small planes (14x14, 7x7 with hundreds of
# channels) rows are too short to vectorize; transposing the input once makes the inner loop run
# over contiguous channels instead.

@njit(cache=True, inline="always")
def _channels_last(x, zp, n, xt):  # pragma: no cover
    """xt[h, w, c] = x[n, c, h, w] - zp (int32)."""
    zp32 = np.int32(zp)
    for c in range(x.shape[1]):
        for h in range(x.shape[2]):
            row = x[n, c, h]
            for w in range(x.shape[3]):
                xt[h, w, c] = np.int32(row[w]) - zp32


@njit(cache=True, inline="always")
def _depthwise_pixel(xt, wt, oh, ow, sh, sw, pt, pl, dh, dw, acc):  # pragma: no cover
    """acc[c] = sum over in-image taps (r, s) of wt[r, s, c] * xt[ih, iw, c]; int32 is exact
    (the caller proved the bound < 2^24)."""
    h_n, w_n = xt.shape[0], xt.shape[1]
    acc[:] = 0
    for r in range(wt.shape[0]):
        ih = oh * sh - pt + r * dh
        if ih < 0 or ih >= h_n:
            continue
        for s in range(wt.shape[1]):
            iw = ow * sw - pl + s * dw
            if iw < 0 or iw >= w_n:
                continue
            xs = xt[ih, iw]
            ws = wt[r, s]
            for c in range(acc.shape[0]):
                acc[c] += ws[c] * xs[c]


@njit(cache=True)
def depthwise_cl_dyadic(x, zp_x, wt, bias, sh, sw, pt, pl, dh, dw, m, shift, zp, lo, hi, out):  # pragma: no cover
    """depthwise_dyadic computed channels-last; wt is the weight as (R, S, C) int32; m and
    shift are per channel (C,). Same results."""
    n_b, c_n, h_n, w_n = x.shape
    xt = np.empty((h_n, w_n, c_n), dtype=np.int32)
    acc = np.empty(c_n, dtype=np.int32)
    half = np.zeros(c_n, dtype=np.int64)
    for c in range(c_n):
        if shift[c] > 0:
            half[c] = np.int64(1) << (shift[c] - 1)
    for n in range(n_b):
        _channels_last(x, zp_x, n, xt)
        for oh in range(out.shape[2]):
            for ow in range(out.shape[3]):
                _depthwise_pixel(xt, wt, oh, ow, sh, sw, pt, pl, dh, dw, acc)
                for c in range(c_n):
                    q = (((np.int64(acc[c]) + bias[c]) * m[c] + half[c]) >> shift[c]) + zp
                    out[n, c, oh, ow] = min(max(q, lo), hi)


@njit(cache=True)
def depthwise_cl_float32(x, zp_x, wt, bias, sh, sw, pt, pl, dh, dw, scale, zp, lo, hi, out):  # pragma: no cover
    """depthwise_float32 computed channels-last; wt (R, S, C) int32, scale per channel (C,)."""
    n_b, c_n, h_n, w_n = x.shape
    xt = np.empty((h_n, w_n, c_n), dtype=np.int32)
    acc = np.empty(c_n, dtype=np.int32)
    f_lo = np.float32(lo - zp)
    f_hi = np.float32(hi - zp)
    for n in range(n_b):
        _channels_last(x, zp_x, n, xt)
        for oh in range(out.shape[2]):
            for ow in range(out.shape[3]):
                _depthwise_pixel(xt, wt, oh, ow, sh, sw, pt, pl, dh, dw, acc)
                for c in range(c_n):
                    v = np.float32(acc[c] + np.int32(bias[c])) * scale[c]
                    v = v if v > f_lo else f_lo
                    v = v if v < f_hi else f_hi
                    out[n, c, oh, ow] = np.int32((v + _MAGIC_F32) - _MAGIC_F32) + zp
