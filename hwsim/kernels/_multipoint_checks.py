"""Validation shared by the multipoint kernels and their reference: the rows of a multipoint
layer, the map from rows to output channels, and the per-row requantization constants."""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck

_M_LIMIT = 1 << 31
_BIAS_LIMIT = 1 << 62


def row_map(fn: str, row_channel: object, rows: int, channels: object) -> tuple[np.ndarray, int]:
    """``row_channel`` as int64 (rows,) with values in [0, channels); returns (map, channels)."""
    k = ck.scalar_int(f"{fn}: channels", channels)
    if k < 1:
        raise KernelError(f"{fn}: channels must be >= 1; got {k}.")
    rc = np.asarray(row_channel)
    if rc.dtype.kind not in "iu" or rc.shape != (rows,):
        raise KernelError(f"{fn}: row_channel must be integers of shape ({rows},) (one output "
                          f"channel per weight row); got {rc.dtype} of shape {rc.shape}.")
    if rows and (int(rc.min()) < 0 or int(rc.max()) >= k):
        raise KernelError(f"{fn}: row_channel must lie in [0, {k}); got values in "
                          f"[{int(rc.min())}, {int(rc.max())}].")
    return rc.astype(np.int64), k


def conv_rows_operands(fn: str, x, x_zp, w_rows, row_channel, channels, stride, padding,
                       dilation, groups, acc):
    """Validate the operands of a multipoint conv: x (N, C, H, W), w_rows (R, C/groups, kh, kw),
    row_channel (R,) in [0, K), groups dividing C and K. Returns (x, x_zp, w_rows, row_channel,
    K, stride, padding, dilation, groups, acc, (N, R, OH, OW))."""
    x = ck.int_array(f"{fn}: x", x, 4, "(N, C, H, W)")
    w = ck.int_array(f"{fn}: w_rows", w_rows, 4, "(R, C/groups, kh, kw)")
    acc = ck.accumulator_spec(acc)
    rows, cg, kh, kw = w.shape
    rc, k = row_map(fn, row_channel, rows, channels)
    g = ck.scalar_int(f"{fn}: groups", groups)
    c = x.shape[1]
    if g < 1 or c % g or k % g:
        raise KernelError(f"{fn}: groups must be >= 1 and divide both C={c} and K={k}; got {g}.")
    if cg != c // g or min(rows, kh, kw) < 1:
        raise KernelError(f"{fn}: w_rows must have shape (R >= 1, C/groups, kh, kw) = "
                          f"(R, {c // g}, kh, kw) for C={c}, groups={g}; got {w.shape}.")
    xzp = ck.zero_point(f"{fn}: x_zp", x_zp, x.dtype)
    st = ck.positive_pair(f"{fn}: stride", stride)
    dl = ck.positive_pair(f"{fn}: dilation", dilation)
    pd = ck.padding_quad(f"{fn}: padding", padding)
    oh = ck.conv_out_size(f"{fn} (height)", x.shape[2], pd[0] + pd[2], kh, st[0], dl[0])
    ow = ck.conv_out_size(f"{fn} (width)", x.shape[3], pd[1] + pd[3], kw, st[1], dl[1])
    return x, xzp, w, rc, k, st, pd, dl, g, acc, (x.shape[0], rows, oh, ow)


def requant_constants(fn: str, acc_rows, row_channel, m, shift, bias, out_zero_point, qmin,
                      qmax):
    """Validate the inputs of a multipoint requantization. ``acc_rows``: int64 (N, R, ...);
    ``m``: (R,) in [0, 2^31); ``shift``: (K,) in [0, 63]; ``bias``: None or (K,) with
    |bias| < 2^62. Returns (acc3 (N, R, L), row_channel, m, shift, bias, K, zp, lo, hi)."""
    from hwsim.kernels._requant_checks import accumulator_array, output_range

    acc = accumulator_array(fn, acc_rows)
    if acc.ndim < 2:
        raise KernelError(f"{fn}: acc_rows must have shape (N, R, ...); got {acc.shape}.")
    rows = acc.shape[1]
    sh = np.asarray(shift)
    if sh.dtype.kind not in "iu" or sh.ndim != 1 or sh.shape[0] < 1:
        raise KernelError(f"{fn}: shift must be integers of shape (K,) (one per output channel);"
                          f" got {sh.dtype} of shape {sh.shape}.")
    k = sh.shape[0]
    rc, _ = row_map(fn, row_channel, rows, k)
    mv = np.asarray(m)
    if mv.dtype.kind not in "iu" or mv.shape != (rows,):
        raise KernelError(f"{fn}: m must be integers of shape ({rows},) (one per row); got "
                          f"{mv.dtype} of shape {mv.shape}.")
    mv, sh = mv.astype(np.int64), sh.astype(np.int64)
    if rows and (mv.min() < 0 or mv.max() >= _M_LIMIT):
        raise KernelError(f"{fn}: m must lie in [0, 2^31); got values in [{mv.min()}, "
                          f"{mv.max()}].")
    if sh.min() < 0 or sh.max() > 63:
        raise KernelError(f"{fn}: shift must lie in [0, 63]; got values in [{sh.min()}, "
                          f"{sh.max()}].")
    if bias is None:
        b = np.zeros(k, dtype=np.int64)
    else:
        b = np.asarray(bias)
        if b.dtype.kind not in "iu" or b.shape != (k,):
            raise KernelError(f"{fn}: bias must be None or integers of shape ({k},); got "
                              f"{b.dtype} of shape {b.shape}.")
        b = b.astype(np.int64)
        big = max(abs(int(b.min())), abs(int(b.max())))
        if big >= _BIAS_LIMIT:
            raise KernelError(f"{fn}: |bias| must be below 2^62; got {big}.")
    zp, lo, hi = output_range(fn, out_zero_point, qmin, qmax)
    acc3 = np.ascontiguousarray(acc).reshape(acc.shape[0], rows, -1)
    return acc3, rc, mv, sh, b, k, zp, lo, hi
