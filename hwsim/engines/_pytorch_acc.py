"""int32 accumulators of PyTorch's quantized linear / conv2d engines (torch-free).

Every engine's accumulator is the exact sum of (x - x_zp)(w - w_zp) (+ an int bias for qnnpack),
except where a u8 x s8 kernel without VNNI adds the raw products of two reduction elements into
int16 with saturation (`vpmaddubsw`). Which elements form a pair depends on the kernel's layout
of the reduction; the pairings established against torch 2.13 are:

- "natural": linear, pairs (2j, 2j+1) along K (fbgemm's GEMM).
- "onednn_gemm": linear, pairs restart at every K block of oneDNN's int8 GEMM (see
  `onednn_gemm_k_blocks`).
- "fbgemm": conv as an im2col GEMM per group, reduction flattened in (r, s, c) order, padded
  pixels holding the raw code x_zp (so pairs may straddle two taps when C/groups is odd); also
  fbgemm's depthwise kernels, whose pairs are adjacent taps (r, s) of one channel.
- "onednn": conv pairs of adjacent input channels (c, c+1) inside one tap, channels zero-padded
  to an even count; taps that fall on padding are skipped (contribute no product).

Accumulators are returned as int64 exact sums plus the saturation excess; callers wrap to int32.
"""

from __future__ import annotations

import numpy as np

from hwsim.engines._pairs import pair_saturation_excess
from hwsim.kernels import conv2d_int, linear_int

PAIRINGS_LINEAR = ("none", "natural", "onednn_gemm")
PAIRINGS_CONV = ("none", "fbgemm", "onednn")

_I16_MAX = (1 << 15) - 1
# oneDNN's AVX2 (no VNNI) s8u8s32 GEMM: one K block up to this length ...
_ONEDNN_GEMM_BK_TRADITIONAL = 256
# ... else two halves below 2 * this, else blocks of this length.
_ONEDNN_GEMM_BK = 384


def _may_saturate(x: np.ndarray, w: np.ndarray, pad_code: int = 0) -> bool:
    """False when no u8 x s8 pair can leave int16: 2 max|x| max|w| <= 32767 (e.g. 7-bit x)."""
    if x.size == 0 or w.size == 0:
        return False
    x_max = max(int(x.max()), pad_code)
    return 2 * x_max * int(np.abs(w.astype(np.int16)).max()) > _I16_MAX


def onednn_gemm_k_blocks(k: int) -> list[tuple[int, int]]:
    """[start, stop) K blocks of oneDNN's int8 GEMM on AVX2 without VNNI (gemm_driver's k_padd):
    K <= 256: one block; 256 < K < 768: blocks of ceil(K / 2); K >= 768: blocks of 384."""
    if k <= _ONEDNN_GEMM_BK_TRADITIONAL:
        size = max(k, 1)
    elif k < 2 * _ONEDNN_GEMM_BK:
        size = (k + 1) // 2
    else:
        size = _ONEDNN_GEMM_BK
    return [(k0, min(k, k0 + size)) for k0 in range(0, k, size)]


def linear_accumulators(x: np.ndarray, x_zp: int, w: np.ndarray, w_zp: np.ndarray, pairing: str) -> np.ndarray:
    """int64 (M, N): sum_k (x[m,k] - x_zp)(w[n,k] - w_zp[n]) plus the int16 pair excess of ``pairing``.

    x: uint8 (M, K); w: int8 (N, K); w_zp: int64 (N,); pairing: one of PAIRINGS_LINEAR.
    """
    acc = linear_int(x, x_zp, w, w_zp).values
    if pairing == "none" or not _may_saturate(x, w):
        return acc
    blocks = [(0, x.shape[1])] if pairing == "natural" else onednn_gemm_k_blocks(x.shape[1])
    for k0, k1 in blocks:
        acc = acc + pair_saturation_excess(x[:, k0:k1], np.ascontiguousarray(w[:, k0:k1].T))
    return acc


def _im2col_group(xp: np.ndarray, g: int, c_g: int, r_n: int, s_n: int, stride, dilation, oh: int, ow: int,
                  c_padded: int) -> np.ndarray:
    """Rows (N*OH*OW, R*S*c_padded) of group g, reduction ordered (r, s, c); channels beyond c_g are 0."""
    n = xp.shape[0]
    cols = np.zeros((n, oh, ow, r_n, s_n, c_padded), dtype=xp.dtype)
    (sh, sw), (dh, dw) = stride, dilation
    for r in range(r_n):
        for s in range(s_n):
            h_window = slice(r * dh, r * dh + (oh - 1) * sh + 1, sh)
            w_window = slice(s * dw, s * dw + (ow - 1) * sw + 1, sw)
            cols[:, :, :, r, s, :c_g] = xp[:, g * c_g:(g + 1) * c_g, h_window, w_window].transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, r_n * s_n * c_padded)


def _conv_pair_excess(x, x_zp, w, stride, padding, dilation, groups, out_hw, pairing) -> np.ndarray:
    """int64 (N, K, OH, OW) pair saturation excess of the conv's u8 x s8 products."""
    n, c, h, w_in = x.shape
    k, c_g, r_n, s_n = w.shape
    oh, ow = out_hw
    (ph, pw) = padding
    pad_code = x_zp if pairing == "fbgemm" else 0
    xp = np.full((n, c, h + 2 * ph, w_in + 2 * pw), pad_code, dtype=np.uint8)
    xp[:, :, ph:ph + h, pw:pw + w_in] = x
    c_padded = c_g + (c_g % 2 if pairing == "onednn" else 0)
    k_g = k // groups
    out = np.zeros((n, k, oh * ow), dtype=np.int64)
    for g in range(groups):
        wg = np.zeros((k_g, r_n, s_n, c_padded), dtype=np.int8)
        wg[..., :c_g] = w[g * k_g:(g + 1) * k_g].transpose(0, 2, 3, 1)
        if not _may_saturate(xp[:, g * c_g:(g + 1) * c_g], wg):
            continue
        a = _im2col_group(xp, g, c_g, r_n, s_n, stride, dilation, oh, ow, c_padded)
        ex = pair_saturation_excess(a, np.ascontiguousarray(wg.reshape(k_g, -1).T))
        out[:, g * k_g:(g + 1) * k_g] = ex.reshape(n, oh * ow, k_g).transpose(0, 2, 1)
    return out.reshape(n, k, oh, ow)


def onednn_conv_pairs_saturate(c_per_group: int, k_per_group: int, groups: int) -> bool:
    """Whether torch's onednn conv runs oneDNN's jit u8 x s8 kernel with int16 pairs (AVX2, no
    VNNI): plain convs (groups == 1) and grouped convs whose channels per group (in and out) are
    multiples of 4. Depthwise convs (1 in, 1 out per group) use an exact int32 jit kernel, other
    grouped convs oneDNN's exact reference kernel."""
    if groups == 1:
        return True
    if c_per_group == 1 and k_per_group == 1:
        return False
    return c_per_group % 4 == 0 and k_per_group % 4 == 0


def conv_accumulators(x: np.ndarray, x_zp: int, w: np.ndarray, w_zp: np.ndarray, stride, padding, dilation,
                      groups: int, out_hw: tuple[int, int], pairing: str) -> np.ndarray:
    """int64 (N, K, OH, OW): exact conv sums of (x - x_zp)(w - w_zp[k]) (padding contributes 0)
    plus the int16 pair excess of ``pairing`` (one of PAIRINGS_CONV).

    x: uint8 (N, C, H, W); w: int8 (K, C/groups, R, S); stride, padding, dilation: (h, w).
    """
    acc = conv2d_int(x, x_zp, w, w_zp, None, stride=stride, padding=padding, dilation=dilation, groups=groups).values
    if pairing == "none" or not _may_saturate(x, w, x_zp if pairing == "fbgemm" else 0):
        return acc
    return acc + _conv_pair_excess(x, x_zp, w, stride, padding, dilation, groups, out_hw, pairing)
