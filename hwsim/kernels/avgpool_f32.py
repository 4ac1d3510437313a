"""ONNX Runtime's QLinearAveragePool (com.microsoft contrib op, 2-D) on 8-bit codes, numpy.

Order of float32 operations, per output (n, c, oh, ow) of a window clipped to the input
(rows max(oh·s_h - p_top, 0) .. min(oh·s_h - p_top + k_h, H), columns likewise):

1. x = f32(s_x · f32(code - zp_x)) for every input code (the kernel dequantizes first);
2. acc = 0; acc += x over the window, rows outer, columns inner, in float32;
3. avg = f32(acc / count), count = k_h·k_w with count_include_pad, else the clipped window's
   size;
4. y = clamp(round_half_even(f32(f32(avg / s_y) + zp_y)), qmin, qmax).

(A kernel covering the whole input with no padding is not computed this way: ONNX Runtime then
runs QLinearGlobalAveragePool's exact integer sum; the importer emits that op instead.)
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels.mlas_float import dequantize_f32

_F32 = np.float32


def _out_size(size: int, before: int, after: int, k: int, s: int) -> int:
    return (size + before + after - k) // s + 1


def _counts(o_n: int, size: int, before: int, k: int, s: int) -> np.ndarray:
    start = np.arange(o_n) * s - before
    return np.minimum(start + k, size) - np.maximum(start, 0)


def average_pool2d_f32(x: np.ndarray, *, x_scale, x_zero_point: int, y_scale,
                       y_zero_point: int, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int, int, int], count_include_pad: bool, qmin: int,
                       qmax: int) -> np.ndarray:
    """Steps 1-4 for codes x (N, C, H, W); padding (top, left, bottom, right). Returns int64
    codes (N, C, OH, OW), OH = (H + top + bottom - k_h) // s_h + 1 (floor)."""
    x = np.asarray(x)
    if x.ndim != 4 or x.dtype.kind not in "iu":
        raise KernelError(f"average_pool2d_f32: x must be integer codes (N, C, H, W); got "
                          f"{x.dtype} {x.shape}.")
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, stride, padding
    n, c, h, w = x.shape
    oh, ow = _out_size(h, pt, pb, kh, sh), _out_size(w, pl, pr, kw, sw)
    if min(kh, kw, sh, sw) < 1 or min(pt, pl, pb, pr) < 0 or oh < 1 or ow < 1:
        raise KernelError(f"average_pool2d_f32: kernel {kernel}, stride {stride}, padding "
                          f"{padding} do not fit an input of {h}x{w}.")
    xf = np.zeros((n, c, h + pt + max(pb, kh), w + pl + max(pr, kw)), dtype=_F32)
    xf[:, :, pt:pt + h, pl:pl + w] = dequantize_f32(x, x_scale, x_zero_point)
    acc = np.zeros((n, c, oh, ow), dtype=_F32)
    for i in range(kh):          # rows outer, columns inner; padding adds +0.0 (exact)
        for j in range(kw):
            acc += xf[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    if count_include_pad:
        count = np.full((oh, ow), kh * kw, dtype=np.int64)
    else:
        count = np.outer(_counts(oh, h, pt, kh, sh), _counts(ow, w, pl, kw, sw))
    avg = (acc / count.astype(_F32)).astype(_F32)
    v = (avg / _F32(y_scale)).astype(_F32) + _F32(y_zero_point)
    return np.clip(np.rint(v.astype(_F32)), qmin, qmax).astype(np.int64)
