"""Definition of the nearest-neighbour resize (``hwsim.kernels.resize``), one output at a time:
each source index from scalar float32 arithmetic and the ONNX rounding rules."""

from __future__ import annotations

import math

import numpy as np

from hwsim.kernels.reference._f32 import F32


def _source(x: int, length_in: int, length_out: int, scale, mode: str) -> float:
    s, half = F32(scale), F32(0.5)
    if mode == "half_pixel" or (mode == "pytorch_half_pixel" and length_out > 1):
        return float((F32(x) + half) / s - half)
    if mode == "pytorch_half_pixel" or (mode == "align_corners" and length_out == 1):
        return 0.0
    if mode == "align_corners":
        return float(F32(x) * F32(length_in - 1) / F32(length_out - 1))
    if mode == "asymmetric":
        return float(F32(x) / s)
    return float((F32(x) + half) / s)  # tf_half_pixel_for_nn


def _round(c: float, nearest_mode: str) -> int:
    if nearest_mode == "floor":
        return math.floor(c)
    if nearest_mode == "ceil":
        return math.ceil(c)
    if c - math.floor(c) == 0.5:
        return math.floor(c) if nearest_mode == "round_prefer_floor" else math.ceil(c)
    return math.floor(c + 0.5)


def resize_nearest_reference(x: np.ndarray, out_hw: tuple[int, int], scales: tuple, mode: str,
                             nearest_mode: str) -> np.ndarray:
    """Nearest resize of codes x (N, C, H, W) to (N, C, out_h, out_w); scales (s_h, s_w)."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        r = min(max(_round(_source(i, h, oh, scales[0], mode), nearest_mode), 0), h - 1)
        for j in range(ow):
            s = min(max(_round(_source(j, w, ow, scales[1], mode), nearest_mode), 0), w - 1)
            out[:, :, i, j] = x[:, :, r, s]
    return out


def resize_linear_reference(x: np.ndarray, zero_point: int, out_hw: tuple[int, int],
                            scales: tuple, mode: str, frac_bits: int, qmin: int,
                            qmax: int) -> np.ndarray:
    """Definition of the bilinear resize of codes (``hwsim.kernels.resize``), one output at a
    time: taps and weights from exact fractions, the sum in Python integers, rounded half to
    even."""
    from fractions import Fraction

    def tap(i: int, n_in: int, n_out: int, s) -> list[tuple[int, int]]:
        if mode == "align_corners":
            c = Fraction(0) if n_out == 1 else Fraction(i * (n_in - 1), n_out - 1)
        else:
            c = max((i + Fraction(1, 2)) / Fraction(float(s)) - Fraction(1, 2), Fraction(0))
        i0 = min(math.floor(c), n_in - 1)
        one = 1 << frac_bits
        w1 = min(math.floor((c - i0) * one + Fraction(1, 2)), one)
        return [(i0, one - w1), (min(i0 + 1, n_in - 1), w1)]

    x = np.asarray(x)
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.empty((n, c, oh, ow), dtype=np.int64)
    k = 2 * frac_bits
    for i in range(oh):
        rt = tap(i, h, oh, scales[0])
        for j in range(ow):
            ct = tap(j, w, ow, scales[1])
            for idx in np.ndindex(n, c):
                acc = sum(wr * wc * (int(x[idx][r, s]) - int(zero_point))
                          for r, wr in rt for s, wc in ct)
                q, rem = divmod(acc, 1 << k)  # floor division: rem in [0, 2^k)
                half = 1 << (k - 1)
                q += 1 if rem > half or (rem == half and q % 2) else 0
                out[idx + (i, j)] = min(max(q + int(zero_point), qmin), qmax)
    return out
