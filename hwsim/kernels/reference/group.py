"""The definition of group-wise weight layers (``hwsim.kernels.group``): each group is an
ordinary linear / conv over its input features (the int64 definitions of ``dense``), and each
output channel sums its groups' accumulators times their multipliers in Python integers and
rounds once (``requantize_rows_reference``)."""

from __future__ import annotations

import numpy as np

from hwsim.kernels._group_checks import group_rows_map, group_weight
from hwsim.kernels.reference.dense import conv2d_int_reference, linear_int_reference
from hwsim.kernels.reference.multipoint import requantize_rows_reference
from hwsim.kernels.types import AccumResult, AccumulatorSpec


def _per_group(x, w, w_zp, group_size, ndim, run) -> AccumResult:
    """``run(x_g, w_g, zp_g)`` for every group g, the results side by side along axis 1."""
    from hwsim.errors import KernelError
    from hwsim.kernels import _checks as ck

    fn = "group reference"
    w, zp, gs, groups = group_weight(fn, w, w_zp, group_size, ndim)
    x = ck.int_array(f"{fn}: x", x, ndim, "(N, C)" if ndim == 2 else "(N, C, H, W)")
    if x.shape[1] != w.shape[1]:
        raise KernelError(f"{fn}: x has {x.shape[1]} input features; w has {w.shape[1]}.")
    parts, overflows = [], 0
    for g in range(groups):
        sl = slice(g * gs, (g + 1) * gs)
        res = run(x[:, sl], w[:, sl], zp[:, g])
        parts.append(res.values)
        overflows += res.overflow_count
    return AccumResult(np.concatenate(parts, axis=1), overflows)


def group_linear_rows_reference(x: np.ndarray, x_zp: int, w: np.ndarray,
                                w_zp: np.ndarray | None, group_size: int,
                                acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Definition of ``group_linear_rows`` on the weight as stored: x (N, C), w (K, C), w_zp
    None or (K, G); column ``g·K + k`` is ``linear_int_reference`` of group g's features."""
    return _per_group(x, w, w_zp, group_size, 2, lambda xg, wg, zg: linear_int_reference(
        xg, x_zp, wg, zg, None, acc))


def group_conv2d_rows_reference(x: np.ndarray, x_zp: int, w: np.ndarray,
                                w_zp: np.ndarray | None, group_size: int, stride=1, padding=0,
                                dilation=1,
                                acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Definition of ``group_conv2d_rows``: x (N, C, H, W), w (K, C, R, S); channel ``g·K + k``
    is ``conv2d_int_reference`` of group g's input channels."""
    return _per_group(x, w, w_zp, group_size, 4, lambda xg, wg, zg: conv2d_int_reference(
        xg, x_zp, wg, zg, None, stride, padding, dilation, 1, acc))


def requantize_groups_reference(acc_rows: np.ndarray, m: np.ndarray, shift: np.ndarray,
                                bias: np.ndarray | None, out_zero_point: int, qmin: int,
                                qmax: int) -> np.ndarray:
    """Definition of ``requantize_groups``: ``requantize_rows_reference`` with row ``g·K + k``
    multiplied by ``m[k, g]`` and added to channel k."""
    mv, channel = group_rows_map("requantize_groups_reference", m, shift)
    return requantize_rows_reference(acc_rows, channel, mv, shift, bias, out_zero_point, qmin,
                                     qmax)
