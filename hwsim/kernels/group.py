"""Group-wise (block) weights in integer arithmetic: every (output channel, group) block is an
ordinary accumulator, and each output channel sums its blocks in the requantization stage.

A layer with K output channels and C input features cut into G = C / group_size groups (a conv
group spans its input channels' R x S kernel) computes, for output channel k,

    acc_{k,g} = sum_{i in g} (x_i - zp_x)(w_{k,i} - zp_{k,g})   accumulator of ``acc.bits`` bits
    T_k       = B_k + sum_g m_{k,g} acc_{k,g}                     exact (int64, Python ints beyond)
    y_k       = clamp(floor((T_k + 2^(s_k - 1)) / 2^s_k) + zp_y, qmin, qmax)

with integer multipliers ``m_{k,g} ~ 2^s_k s_x s_{k,g} / s_y`` on one shift per channel and the
float bias ``B_k ~ 2^s_k b_k / s_y``: structurally a multipoint layer whose "rows" are the
blocks, so the constants (``multipoint_multipliers``), the requantization (``requantize_rows``:
int64 where a bound proves it exact, Python integers for the channels where it does not) and
its error bound are the multipoint kernel's (``hwsim.kernels.multipoint``).

Fast path: a linear layer whose partial sums a bound proves below 2^24 (``max |x - zp_x|`` times
the largest block sum of ``|w - zp|``) runs as one batched float32 GEMM over the groups (exact),
wrapped to the accumulator; otherwise (and for convs) one exact integer GEMM / conv per group
(``conv2d_int``: BLAS where a bound proves float arithmetic exact, numba where saturation needs
every step), its K outputs rows ``g·K .. g·K + K - 1`` of the G·K block accumulators (a single
grouped conv of G groups would take the per-pixel numba kernel for groups under 48 features,
tens of times slower).  Then one numba pass sums and rounds.  Reference:
``hwsim.kernels.reference.group`` (one int64 linear / conv per group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels._group_checks import group_rows_map, group_weight
from hwsim.kernels.conv import conv2d_int
from hwsim.kernels.multipoint import requantize_rows
from hwsim.kernels.types import AccumResult, AccumulatorSpec

_F32_EXACT = 1 << 24  # integer-valued float32 sums below this are exact in any order


@dataclass(frozen=True, eq=False)
class GroupRows:
    """The blocks of a group-wise weight laid out once for the fast kernels (``group_rows``).

    Attributes:
        weights: G read-only contiguous arrays (K, group_size, R, S) (linear: R = S = 1);
            ``weights[g][k]`` is ``w[k, g·group_size:(g+1)·group_size]``.
        zero_points: G read-only int64 arrays (K,), the blocks' zero points.
        centered: linear layers whose blocks' sums of ``|w - zp|`` stay below 2^24: float32
            (G, K, group_size), ``w - zp`` of every block, for one batched GEMM; else None.
        block_bound: the largest sum of ``|w - zp|`` over one block.
    """

    weights: tuple[np.ndarray, ...]
    zero_points: tuple[np.ndarray, ...]
    centered: np.ndarray | None
    block_bound: int

    @property
    def channels(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def group_size(self) -> int:
        return int(self.weights[0].shape[1])


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a).copy()
    a.setflags(write=False)
    return a


def group_rows(w: np.ndarray, w_zp: np.ndarray | None, group_size: int) -> GroupRows:
    """Lay out a group-wise weight once for ``group_linear_rows`` / ``group_conv2d_rows``: codes
    ``w`` (K, C) or (K, C, R, S), zero points None or (K, G), ``group_size`` dividing C."""
    w, zp, gs, g = group_weight("group_rows", w, w_zp, group_size, 4 if np.ndim(w) == 4 else 2)
    k = w.shape[0]
    w4 = w.reshape(k, w.shape[1], *(w.shape[2:] or (1, 1)))
    centered = w4.reshape(k, g, -1).astype(np.int64) - zp[:, :, None]      # (K, G, gs·R·S)
    bound = int(np.abs(centered).sum(axis=2).max())
    stacked = None
    if w.ndim == 2 and bound < _F32_EXACT:
        stacked = _frozen(np.swapaxes(centered, 0, 1).astype(np.float32))    # (G, K, gs)
    return GroupRows(tuple(_frozen(w4[:, i * gs:(i + 1) * gs]) for i in range(g)),
                     tuple(_frozen(zp[:, i]) for i in range(g)), stacked, bound)


def _rows(rows: object) -> GroupRows:
    if not isinstance(rows, GroupRows):
        raise KernelError(f"expected the weight laid out by group_rows (GroupRows); got "
                          f"{type(rows).__name__}")
    return rows


def _per_group(rows: GroupRows, x: np.ndarray, run) -> AccumResult:
    """``run(x_g, w_g, zp_g)`` (an ``AccumResult``) for every group g, ``x_g`` the group's input
    channels of ``x`` (channels on axis 0: (C, N) for a linear, (C, N, H, W) for a conv); the
    results side by side along axis 1, row ``g·K + k``."""
    parts, overflows = [], 0
    gs = rows.group_size
    for g, (wg, zg) in enumerate(zip(rows.weights, rows.zero_points)):
        res = run(x[g * gs:(g + 1) * gs], wg, zg)
        parts.append(res.values)
        overflows += res.overflow_count
    return AccumResult(np.concatenate(parts, axis=1), overflows)


def _batched_linear(xt: np.ndarray, zp: int, rows: GroupRows,
                    acc: AccumulatorSpec) -> AccumResult | None:
    """``linear_blocks`` as one batched float32 GEMM over the groups, when it is exact (every
    partial sum below 2^24: ``max |x - x_zp| · block_bound``) and no saturation step can clip
    (then saturating equals wrapping the exact sum); None otherwise.  ``xt``: codes (C, N)."""
    from hwsim.kernels._nb import finish

    if rows.centered is None or xt.size == 0:
        return None
    bound = max(int(xt.max()) - zp, zp - int(xt.min()), 0) * rows.block_bound
    if bound >= _F32_EXACT or (acc.mode == "saturate" and bound > acc.max_value):
        return None
    g, k, gs = rows.centered.shape
    xs = np.subtract(xt, np.float32(zp), dtype=np.float32).reshape(g, gs, xt.shape[1])
    sums = np.matmul(rows.centered, xs).reshape(g * k, -1)              # (G·K, N), exact
    if bound <= acc.max_value:
        return AccumResult(sums.astype(np.int64), 0)
    values, overflows = finish(sums[None], np.zeros(g * k, dtype=np.int64), acc.bits, True, True)
    return AccumResult(values[0], int(overflows))


def linear_blocks(x: np.ndarray, x_zp: int, rows: GroupRows,
                  acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Block accumulators of a group-wise linear layer with the blocks first: x codes (N, C);
    values int64 (G·K, N), row ``g·K + k`` = ``sum_{i in g} (x_i - x_zp)(w_{k,i} - zp_{k,g})``
    wrapped or saturated to ``acc`` (order over i ascending); the count of overflowing blocks.
    (The batch as the trailing axis: ``requantize_groups`` takes ``values[None]``.)"""
    from hwsim.kernels import _checks as ck

    rows = _rows(rows)
    if rows.weights[0].shape[2:] != (1, 1):
        raise KernelError("group_linear_rows: the rows are a conv's (kernel "
                          f"{rows.weights[0].shape[2:]}); use group_conv2d_rows")
    x = ck.int_array("group_linear_rows: x", x, 2, "(N, C)")
    c = len(rows.weights) * rows.group_size
    if x.shape[1] != c:
        raise KernelError(f"group_linear_rows: x has {x.shape[1]} input features; the weight "
                          f"has {c}.")
    zp = ck.zero_point("group_linear_rows: x_zp", x_zp, x.dtype)
    acc = ck.accumulator_spec(acc)
    n = x.shape[0]
    xt = np.ascontiguousarray(x.T)             # (C, N): each group's rows are contiguous
    batched = _batched_linear(xt, zp, rows, acc)
    if batched is not None:
        return batched
    res = _per_group(rows, xt, lambda xg, wg, zg: conv2d_int(   # the batch as 1x1-conv pixels
        xg.reshape(1, -1, n, 1), zp, wg, zg, None, 1, 0, 1, 1, acc))
    return AccumResult(res.values.reshape(-1, n), res.overflow_count)


def group_linear_rows(x: np.ndarray, x_zp: int, rows: GroupRows,
                      acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Block accumulators of a group-wise linear layer: x codes (N, C); returns values int64
    (N, G·K), column ``g·K + k`` = ``sum_{i in g} (x_i - x_zp)(w_{k,i} - zp_{k,g})`` wrapped or
    saturated to ``acc`` (order over i ascending), and the count of overflowing blocks
    (``linear_blocks``, transposed)."""
    res = linear_blocks(x, x_zp, rows, acc)
    return AccumResult(np.ascontiguousarray(res.values.T), res.overflow_count)


def group_conv2d_rows(x: np.ndarray, x_zp: int, rows: GroupRows, stride=1, padding=0,
                      dilation=1, acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Block accumulators of a group-wise conv (groups = 1): x codes (N, C, H, W); returns
    values int64 (N, G·K, OH, OW), channel ``g·K + k`` the sum over the input channels of group
    g, r, s of ``(x - x_zp)(w_k - zp_{k,g})`` (padding contributes 0), wrapped or saturated in
    the order c, r, s."""
    from hwsim.kernels import _checks as ck

    rows = _rows(rows)
    x = ck.int_array("group_conv2d_rows: x", x, 4, "(N, C, H, W)")
    c = len(rows.weights) * rows.group_size
    if x.shape[1] != c:
        raise KernelError(f"group_conv2d_rows: x has {x.shape[1]} channels; the weight has "
                          f"{c}.")
    xc = np.moveaxis(x, 1, 0)                  # (C, N, H, W) view: groups slice axis 0
    return _per_group(rows, xc, lambda xg, wg, zg: conv2d_int(
        np.moveaxis(xg, 0, 1), x_zp, wg, zg, None, stride, padding, dilation, 1, acc))


def requantize_groups(acc_rows: np.ndarray, m: np.ndarray, shift: np.ndarray,
                      bias: np.ndarray | None, out_zero_point: int, qmin: int,
                      qmax: int) -> np.ndarray:
    """Sum each channel's blocks and requantize (module docstring): acc_rows int64 (N, G·K, ...)
    as ``group_*_rows`` return them; m (K, G) in [0, 2^31); shift (K,) in [0, 63]; bias None
    or int64 (K,) in units of 2^-shift output steps.  Returns codes (N, K, ...)."""
    mv, channel = group_rows_map("requantize_groups", m, shift)
    return requantize_rows(acc_rows, channel, mv, shift, bias, out_zero_point, qmin, qmax)
