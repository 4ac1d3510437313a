"""Private numba kernel of the int16-pairs accumulator mode (see `hwsim.kernels.pairs`).

The caller (pairs.py) validates operands, pads the input with its zero point and lists, per
output channel, only the pairs of reduction elements whose sum can leave int16 for some input in
the input's code range; this kernel trusts all of that. Single-threaded on purpose (see _nb.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_I16_MIN = -(1 << 15)
_I16_MAX = (1 << 15) - 1


@njit(cache=True)
def conv_pair_excess(xp, ptr, ch_a, r_a, s_a, w_a, ch_b, r_b, s_b, w_b, sh, sw, dh, dw,
                     out):  # pragma: no cover - compiled
    """out[n, k, oh, ow] += sum over the listed pairs of output channel k of
    sat16(P) - P, with P = xp[n, ch_a, oh*sh + r_a*dh, ow*sw + s_a*dw] * w_a + (same for b).

    xp: raw input codes, padded with the input zero point, (N, C, Hp, Wp) int32.
    ptr: (K + 1,) int64; the pairs of channel k are entries ptr[k]:ptr[k + 1] of the int64
    arrays ch_* (absolute input channel), r_*, s_* (kernel tap) and w_* (raw weight code).
    out: (N, K, OH, OW) int64, accumulated into.
    """
    n_b = xp.shape[0]
    k_n = ptr.shape[0] - 1
    oh_n, ow_n = out.shape[2], out.shape[3]
    for n in range(n_b):
        for k in range(k_n):
            plane = out[n, k]
            for idx in range(ptr[k], ptr[k + 1]):
                ca, ra, sa, wa = ch_a[idx], r_a[idx], s_a[idx], w_a[idx]
                cb, rb, sb, wb = ch_b[idx], r_b[idx], s_b[idx], w_b[idx]
                for oh in range(oh_n):
                    row_a = xp[n, ca, oh * sh + ra * dh]
                    row_b = xp[n, cb, oh * sh + rb * dh]
                    dst = plane[oh]
                    for ow in range(ow_n):
                        p = (np.int64(row_a[ow * sw + sa * dw]) * wa
                             + np.int64(row_b[ow * sw + sb * dw]) * wb)
                        if p > _I16_MAX:
                            dst[ow] += _I16_MAX - p
                        elif p < _I16_MIN:
                            dst[ow] += _I16_MIN - p


@njit(cache=True)
def add_excess_and_wrap(values, excess, bits):  # pragma: no cover - compiled
    """values += excess in place (flat int64 arrays), wrapped to `bits` (two's complement);
    returns how many elements had a nonzero excess or left the `bits` range."""
    lo = -(np.int64(1) << (bits - 1)) if bits < 64 else np.iinfo(np.int64).min
    hi = -lo - 1
    up = 64 - bits
    count = 0
    for i in range(values.shape[0]):
        e = excess[i]
        v = values[i] + e
        if v < lo or v > hi:
            v = (v << up) >> up
            count += 1
        elif e != 0:
            count += 1
        values[i] = v
    return count
