"""Private numba kernels for bit-packed binary products. Callers (binary.py) validate operands;
these functions trust their inputs.

Bit layout: element k of a row lives in word k // 64, bit k % 64 (least significant first).
Single-threaded on purpose, like _nb.py (numba parallel regions fight OpenBLAS for 2 cores).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def popcount64(typingctx, x):
    """LLVM's ctpop on a uint64: one POPCNT instruction on x86-64 with the host target."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True)
def popcount64_swar(x):  # pragma: no cover - compiled
    """Portable SWAR popcount of a uint64 (kept for bench/bench_binary.py's comparison)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(cache=True)
def popcount_total_ctpop(words):  # pragma: no cover - compiled
    """sum of popcount over a 1-D uint64 array, with the ctpop intrinsic."""
    s = np.uint64(0)
    for i in range(words.shape[0]):
        s += popcount64(words[i])
    return np.int64(s)


@njit(cache=True)
def popcount_total_swar(words):  # pragma: no cover - compiled
    """sum of popcount over a 1-D uint64 array, with the SWAR popcount."""
    s = np.uint64(0)
    for i in range(words.shape[0]):
        s += popcount64_swar(words[i])
    return np.int64(s)


@njit(cache=True)
def pack_bits(bits, out):  # pragma: no cover - compiled
    """bits (R, K) of 0/1 (any integer dtype) -> out (R, ceil(K/64)) uint64, padding bits 0."""
    r_n, k_n = bits.shape
    w_n = out.shape[1]
    for r in range(r_n):
        for w in range(w_n):
            word = np.uint64(0)
            k0 = w * 64
            k1 = min(k0 + 64, k_n)
            for k in range(k0, k1):
                if bits[r, k] != 0:
                    word |= np.uint64(1) << np.uint64(k - k0)
            out[r, w] = word


@njit(cache=True)
def unpack_signs(packed, n_bits, out):  # pragma: no cover - compiled
    """packed (R, W) uint64 -> out (R, n_bits) int8 of +1 (bit 1) / -1 (bit 0)."""
    r_n = packed.shape[0]
    for r in range(r_n):
        for k in range(n_bits):
            bit = (packed[r, k // 64] >> np.uint64(k % 64)) & np.uint64(1)
            out[r, k] = 1 if bit != 0 else -1


@njit(cache=True)
def xnor_matmul(a, b, last_mask, out):  # pragma: no cover - compiled
    """out[m, n] = popcount over valid bits of (a[m] XOR b[n]), int64 (M, N).

    The last word is ANDed with last_mask, so padding bits never count. Two rows of ``a`` share
    each load of a ``b`` row (b is the larger, streamed operand in the layers benchmarked)."""
    m_n, w_n = a.shape
    n_n = b.shape[0]
    wf = w_n - 1  # full words; word wf is masked
    m = 0
    while m + 1 < m_n:
        a0 = a[m]
        a1 = a[m + 1]
        for n in range(n_n):
            bn = b[n]
            s0 = np.uint64(0)
            s1 = np.uint64(0)
            for w in range(wf):
                bw = bn[w]
                s0 += popcount64(a0[w] ^ bw)
                s1 += popcount64(a1[w] ^ bw)
            bw = bn[wf]
            s0 += popcount64((a0[wf] ^ bw) & last_mask)
            s1 += popcount64((a1[wf] ^ bw) & last_mask)
            out[m, n] = np.int64(s0)
            out[m + 1, n] = np.int64(s1)
        m += 2
    if m < m_n:
        a0 = a[m]
        for n in range(n_n):
            bn = b[n]
            s0 = np.uint64(0)
            for w in range(wf):
                s0 += popcount64(a0[w] ^ bn[w])
            s0 += popcount64((a0[wf] ^ bn[wf]) & last_mask)
            out[m, n] = np.int64(s0)


@njit(cache=True)
def pack_planes(codes, out):  # pragma: no cover - compiled
    """codes (M, K) unsigned -> out (M, T, ceil(K/64)) uint64: bit t of codes[m, k] at word
    k // 64, bit k % 64 of plane out[m, t]; padding bits 0. Codes must be < 2^T."""
    m_n, k_n = codes.shape
    t_n, w_n = out.shape[1], out.shape[2]
    for m in range(m_n):
        for t in range(t_n):
            for w in range(w_n):
                out[m, t, w] = np.uint64(0)
        for k in range(k_n):
            v = np.uint64(codes[m, k])
            w = k // 64
            bit = np.uint64(k % 64)
            t = 0
            while v != np.uint64(0):
                out[m, t, w] |= (v & np.uint64(1)) << bit
                v >>= np.uint64(1)
                t += 1


@njit(cache=True)
def bitplane_matmul(planes, w_plus, out):  # pragma: no cover - compiled
    """out[m, n] = sum_t 2^t (popcount(planes[m, t] & w_plus[n]) - popcount(planes[m, t] &
    w_minus[n])), int64 (M, N), with planes (M, T, W) from pack_planes.

    w_minus = ~w_plus over the valid bits, and the planes' padding bits are 0, so
    popcount(p & w_minus) = popcount(p) - popcount(p & w_plus): one AND-popcount per word and
    plane instead of two, with popcount(p) computed once per (m, t)."""
    m_n, t_n, w_n = planes.shape
    n_n = w_plus.shape[0]
    ones = np.zeros(t_n, dtype=np.int64)
    for m in range(m_n):
        pm = planes[m]
        for t in range(t_n):
            c = np.uint64(0)
            for w in range(w_n):
                c += popcount64(pm[t, w])
            ones[t] = np.int64(c)
        for n in range(n_n):
            wp = w_plus[n]
            total = np.int64(0)
            for t in range(t_n):
                pt = pm[t]
                pos = np.uint64(0)
                for w in range(w_n):
                    pos += popcount64(pt[w] & wp[w])
                total += (2 * np.int64(pos) - ones[t]) << t
            out[m, n] = total
