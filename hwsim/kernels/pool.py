"""Pooling on integer codes: window sums for average pools, exact max pool.

An average pool is requantized by the caller as a requantization of the window sum with the
multiplier s_x / (count * s_y); these kernels return the sums and the counts.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck
from hwsim.kernels.types import PoolSumResult


def _pool_out_size(fn: str, size: int, pad_before: int, pad_after: int, k: int, s: int, d: int, ceil_mode: bool) -> int:
    span = d * (k - 1) + 1
    if size + pad_before + pad_after < span:
        raise KernelError(f"{fn}: the padded input ({size} + {pad_before + pad_after} padding) is smaller than the window extent {span}.")
    num = size + pad_before + pad_after - span + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + pad_before:  # torch: the last window must start inside
        out -= 1
    return out


def pool_geometry(fn, x, x_zp, kernel, stride, padding, dilation, ceil_mode):
    """Validate pooling arguments; return (x, x_zp, kernel, stride, padding quad, (OH, OW))."""
    x = ck.int_array(f"{fn}: x", x, 4, "(N, C, H, W)")
    xzp = ck.zero_point(f"{fn}: x_zp", x_zp, x.dtype)
    kh, kw = ck.positive_pair(f"{fn}: kernel", kernel)
    sh, sw = ck.positive_pair(f"{fn}: stride", (kh, kw) if stride is None else stride)
    dh, dw = ck.positive_pair(f"{fn}: dilation", dilation)
    pt, pl, pb, pr = ck.padding_quad(f"{fn}: padding", padding)
    oh = _pool_out_size(f"{fn} (height)", x.shape[2], pt, pb, kh, sh, dh, bool(ceil_mode))
    ow = _pool_out_size(f"{fn} (width)", x.shape[3], pl, pr, kw, sw, dw, bool(ceil_mode))
    return x, xzp, (kh, kw), (sh, sw), (pt, pl, pb, pr), (oh, ow)


def _padded(x: np.ndarray, fill, pt: int, pl: int, rows: int, cols: int, dtype) -> np.ndarray:
    """x placed at (pt, pl) inside an array of (rows, cols) spatial size filled with ``fill``,
    cropping whatever lies beyond (ceil-mode windows may not reach the bottom padding)."""
    n, c, h, w = x.shape
    out = np.full((n, c, rows, cols), fill, dtype=dtype)
    hh, ww = min(h, rows - pt), min(w, cols - pl)
    out[:, :, pt : pt + hh, pl : pl + ww] = x[:, :, :hh, :ww]
    return out


def _counts(o_n: int, s: int, pad_before: int, k: int, size: int, pad_after: int, include_pad: bool) -> np.ndarray:
    start = np.arange(o_n, dtype=np.int64) * s - pad_before
    if include_pad:
        return np.minimum(start + k, size + pad_after) - start
    return np.maximum(np.minimum(start + k, size) - np.maximum(start, 0), 0)  # 0: window all padding


def pool_counts(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    count_include_pad: bool,
    ceil_mode: bool = False,
) -> np.ndarray:
    """The avg_pool2d divisor of every output position, int64 (OH, OW), without running a pool
    (what ``sum_pool2d`` returns as ``count``), for an (H, W) input; padding (top, left, bottom,
    right)."""
    (h, w), (kh, kw), (sh, sw) = in_hw, kernel, stride
    pt, pl, pb, pr = padding
    oh = _pool_out_size("pool_counts (height)", h, pt, pb, kh, sh, 1, bool(ceil_mode))
    ow = _pool_out_size("pool_counts (width)", w, pl, pr, kw, sw, 1, bool(ceil_mode))
    return np.outer(_counts(oh, sh, pt, kh, h, pb, count_include_pad),
                    _counts(ow, sw, pl, kw, w, pr, count_include_pad))


def sum_pool2d(
    x: np.ndarray,
    x_zp: int,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, ...] = 0,
    count_include_pad: bool = True,
    ceil_mode: bool = False,
) -> PoolSumResult:
    """Window sums of (x - x_zp) for an average pool (torch avg_pool2d geometry).

    x: integer codes (N, C, H, W); padding (top, left, bottom, right) contributes 0.
    Returns values int64 (N, C, OH, OW) and count int64 (OH, OW): the avg_pool2d divisor
    (window clipped to the padded extent, or to the image when count_include_pad is False).
    """
    x, xzp, (kh, kw), (sh, sw), (pt, pl, pb, pr), (oh, ow) = pool_geometry(
        "sum_pool2d", x, x_zp, kernel, stride, padding, (1, 1), ceil_mode
    )
    rows, cols = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    xp = _padded(x, xzp, pt, pl, rows, cols, np.int64)
    xp -= xzp
    values = np.zeros((x.shape[0], x.shape[1], oh, ow), dtype=np.int64)
    for r in range(kh):
        for s in range(kw):
            values += xp[:, :, r : r + (oh - 1) * sh + 1 : sh, s : s + (ow - 1) * sw + 1 : sw]
    count = np.outer(
        _counts(oh, sh, pt, kh, x.shape[2], pb, count_include_pad),
        _counts(ow, sw, pl, kw, x.shape[3], pr, count_include_pad),
    )
    return PoolSumResult(values, count)


def global_sum_pool(x: np.ndarray, x_zp: int) -> PoolSumResult:
    """Sum of (x - x_zp) over H and W (adaptive average pool to 1x1).

    x: integer codes (N, C, H, W). Returns values int64 (N, C, 1, 1) and count (1, 1) = H*W.
    """
    x = ck.int_array("global_sum_pool: x", x, 4, "(N, C, H, W)")
    xzp = ck.zero_point("global_sum_pool: x_zp", x_zp, x.dtype)
    hw = x.shape[2] * x.shape[3]
    values = x.sum(axis=(2, 3), dtype=np.int64, keepdims=True) - np.int64(xzp) * hw
    return PoolSumResult(values, np.full((1, 1), hw, dtype=np.int64))


def max_pool2d(
    codes: np.ndarray,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    pad_value: int | None = None,
) -> np.ndarray:
    """Max over each window of integer codes (N, C, H, W) -> (N, C, OH, OW), same dtype.

    torch max_pool2d output sizes (ceil_mode included); padding is (top, left, bottom, right) and
    holds pad_value, by default the dtype's smallest code so it never wins.
    """
    x, _, (kh, kw), (sh, sw), (pt, pl, _, _), (oh, ow) = pool_geometry(
        "max_pool2d", codes, 0, kernel, stride, padding, dilation, ceil_mode
    )
    dh, dw = ck.positive_pair("max_pool2d: dilation", dilation)
    info = np.iinfo(x.dtype)
    pad = info.min if pad_value is None else ck.scalar_int("max_pool2d: pad_value", pad_value)
    if not info.min <= pad <= info.max:
        raise KernelError(f"max_pool2d: pad_value must lie in [{info.min}, {info.max}] (the range of {x.dtype}); got {pad}.")
    rows, cols = (oh - 1) * sh + dh * (kh - 1) + 1, (ow - 1) * sw + dw * (kw - 1) + 1
    xp = _padded(x, pad, pt, pl, rows, cols, x.dtype)
    out = None
    for r in range(kh):
        for s in range(kw):
            win = xp[:, :, r * dh : r * dh + (oh - 1) * sh + 1 : sh, s * dw : s * dw + (ow - 1) * sw + 1 : sw]
            out = win.copy() if out is None else np.maximum(out, win, out=out)
    return out
