"""Multipoint layers in integer arithmetic: extra points are extra rows of one ordinary b-bit
conv / GEMM, and each output channel sums its rows in the requantization stage.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  A layer with K output channels and R >= K weight rows (row p adds
to channel ``row_channel[p]`` with real multiplier ``M_p = s_x a_p / s_y``) computes

    acc_p = sum (x - zp_x) w_p                  one b-bit row, accumulator of ``acc.bits`` bits
    T_k   = B_k + sum_{p -> k} m_p acc_p        exact (int64, Python ints beyond), per channel
    y_k   = clamp(floor((T_k + 2^(s_k - 1)) / 2^s_k) + zp_y, qmin, qmax)

with per-row integer multipliers ``m_p`` on a per-channel shift ``s_k`` (``m_p 2^-s_k ~ M_p``)
and the bias ``B_k ~ 2^s_k b_k / s_y`` on the same shift.  The rows are summed exactly and
rounded once (half up, as ``requantize_dyadic``): with ``y*_k = b_k / s_y + sum_p M_p acc_p``,
the exact real output in output steps, ``|T_k / 2^s_k - y*_k| <= 2^-(s_k + 1) (1 + sum_p
|acc_p|)`` (each constant is rounded to the nearest multiple of 2^-s_k), so ``y_k`` is
``round(y*_k)`` except within that distance of a rounding tie.  ``multipoint_multipliers``
chooses ``s_k`` so that the channel's largest multiplier has 31 significant bits.

Fast path: the rows run on the exact integer conv / GEMM kernels (``hwsim.kernels.conv``) --
all rows as one conv when groups = 1, otherwise the first K rows as the layer's own grouped
conv and the extra rows as a conv of one group per row on the input channels of their channel's
group -- then one numba pass sums and rounds (the int64 path when a bound proves
``|T_k| + 2^(s_k - 1) < 2^62``, Python integers for the channels where it does not).
Reference: ``hwsim.kernels.reference.multipoint``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from hwsim.errors import KernelError
from hwsim.kernels._multipoint_checks import conv_rows_operands, requant_constants, row_map
from hwsim.kernels._requant_checks import output_dtype
from hwsim.kernels.conv import conv2d_int, linear_int
from hwsim.kernels.types import AccumResult, AccumulatorSpec

_M_LIMIT = 1 << 31
_SAFE = float(1 << 62)  # the int64 path runs when this float64 bound (2x margin) holds


@dataclass(frozen=True)
class RowRequant:
    """Integer requantization constants of a multipoint layer (``multipoint_multipliers``).

    Attributes:
        m: int64 (R,), per-row multipliers in [0, 2^31).
        shift: int64 (K,), per-channel shifts in [0, 63].
        bias: int64 (K,), ``rint(2^shift b / s_y)``, the bias in units of 2^-shift output
            steps (zeros without a bias).
    """

    m: np.ndarray
    shift: np.ndarray
    bias: np.ndarray


def multipoint_multipliers(row_multiplier: np.ndarray, row_channel: np.ndarray, channels: int,
                           bias: np.ndarray | None = None) -> RowRequant:
    """Integer constants for real per-row multipliers ``M_p = s_x a_p / s_y`` (float64 (R,),
    finite, >= 0) and a real bias in output steps ``b_k / s_y`` (float64 (K,) or None).

    Channel k's shift makes its largest multiplier ``m in [2^30, 2^31)`` (a channel whose rows
    all have M = 0 takes the layer's largest), capped at 63 and lowered until
    ``|bias_k| 2^shift < 2^62``; then ``m_p = rint(M_p 2^s_k)`` and ``B_k = rint(b_k 2^s_k)``,
    each within 2^-(s_k + 1) of the real value.  A multiplier of 2^31 or more, or a bias of
    2^62 output steps or more, raises KernelError.
    """
    fn = "multipoint_multipliers"
    mult = np.asarray(row_multiplier, dtype=np.float64)
    if mult.ndim != 1 or not np.all(np.isfinite(mult)) or np.any(mult < 0):
        raise KernelError(f"{fn}: row_multiplier must be finite and >= 0 of shape (R,); got "
                          f"shape {mult.shape}.")
    rc, k = row_map(fn, row_channel, mult.shape[0], channels)
    b = np.zeros(k) if bias is None else np.asarray(bias, dtype=np.float64)
    if b.shape != (k,) or not np.all(np.isfinite(b)):
        raise KernelError(f"{fn}: bias must be None or finite of shape ({k},); got shape "
                          f"{b.shape}.")
    top = np.zeros(k)
    np.maximum.at(top, rc, mult)
    layer_top = float(top.max(initial=0.0))
    top = np.where(top > 0, top, layer_top if layer_top > 0 else 1.0)
    shift = 31 - np.frexp(top)[1].astype(np.int64)         # top * 2^shift in [2^30, 2^31)
    if shift.min() < 0:
        raise KernelError(f"{fn}: a row multiplier of 2^31 or more cannot be stored (largest "
                          f"{float(mult.max()):.6g}).")
    shift = np.minimum(shift, 63)
    b_exp = np.where(b != 0, np.frexp(np.abs(b))[1], -1024).astype(np.int64)   # |b| < 2^b_exp
    room = 62 - b_exp
    if room.min() < 0:
        raise KernelError(f"{fn}: a bias of 2^62 output steps or more cannot be stored "
                          f"(largest |b / s_y| = {float(np.abs(b).max()):.6g}).")
    shift = np.minimum(shift, room)
    m = np.rint(np.ldexp(mult, shift[rc]))
    carry = np.zeros(k, dtype=bool)
    np.logical_or.at(carry, rc, m >= _M_LIMIT)
    if carry.any():  # rounding reached 2^31: one bit less for that channel
        shift = np.where(carry, shift - 1, shift)
        m = np.rint(np.ldexp(mult, shift[rc]))
    out = RowRequant(m=m.astype(np.int64), shift=shift.astype(np.int64),
                     bias=np.rint(np.ldexp(b, shift)).astype(np.int64))
    for arr in (out.m, out.shift, out.bias):
        arr.setflags(write=False)
    return out


# ---- row accumulators ---------------------------------------------------------------------

class PreparedRows:
    """The rows of a multipoint conv prepared once for running many times: the weight split into
    the layer's own grouped conv (rows 0..K-1, when they are channels 0..K-1) and the extra rows
    as one group each, with the input channels each extra row reads.

    ``prepared(x, x_zp)`` -> ``AccumResult`` of the row accumulators (N, R, OH, OW), equal to
    ``conv2d_rows``.
    """

    def __init__(self, w_rows: np.ndarray, row_channel: np.ndarray, channels: int,
                 stride, padding, dilation, groups: int, acc: AccumulatorSpec) -> None:
        self.w, self.rc, self.k = w_rows, row_channel, int(channels)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.acc = int(groups), acc
        rows, cg = w_rows.shape[:2]
        base = self.groups > 1 and rows >= self.k and np.array_equal(
            row_channel[:self.k], np.arange(self.k))
        self.first = self.k if base else 0                 # rows run as the layer's own conv
        extra = row_channel[self.first:] // (self.k // self.groups)  # each extra row's group
        self.extra_channels = (extra[:, None] * cg + np.arange(cg)).reshape(-1)
        self.w_first = self._frozen(w_rows[:self.first])
        self.w_extra = self._frozen(w_rows[self.first:])

    @staticmethod
    def _frozen(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a)
        if a.flags.writeable:
            a = a.copy()
            a.setflags(write=False)
        return a

    def __call__(self, x: np.ndarray, x_zp: int) -> AccumResult:
        from hwsim.kernels import _checks as ck

        x = ck.int_array("conv2d_rows: x", x, 4, "(N, C, H, W)")
        if x.shape[1] != self.groups * self.w.shape[1]:
            raise KernelError(f"conv2d_rows: x has {x.shape[1]} channels; the rows expect "
                              f"{self.groups * self.w.shape[1]} (groups={self.groups}).")
        geometry = (self.stride, self.padding, self.dilation)
        if self.groups == 1:
            return conv2d_int(x, x_zp, self.w, None, None, *geometry, 1, self.acc)
        parts, overflows = [], 0
        if self.first:
            res = conv2d_int(x, x_zp, self.w_first, None, None, *geometry, self.groups, self.acc)
            parts.append(res.values)
            overflows += res.overflow_count
        if self.w_extra.shape[0]:
            xg = np.ascontiguousarray(x[:, self.extra_channels])
            res = conv2d_int(xg, x_zp, self.w_extra, None, None, *geometry,
                             self.w_extra.shape[0], self.acc)
            parts.append(res.values)
            overflows += res.overflow_count
        values = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return AccumResult(values, overflows)


def prepare_conv2d_rows(w_rows: np.ndarray, row_channel: np.ndarray, channels: int,
                        stride=1, padding=0, dilation=1, groups: int = 1,
                        acc: AccumulatorSpec = AccumulatorSpec()) -> PreparedRows:
    """``conv2d_rows`` with its constants checked and prepared once (see ``PreparedRows``)."""
    from hwsim.kernels import _checks as ck

    fn = "prepare_conv2d_rows"
    w = ck.int_array(f"{fn}: w_rows", w_rows, 4, "(R, C/groups, kh, kw)")
    rc, k = row_map(fn, row_channel, w.shape[0], channels)
    g = ck.scalar_int(f"{fn}: groups", groups)
    if g < 1 or k % g or min(w.shape) < 1:
        raise KernelError(f"{fn}: groups must be >= 1 and divide K={k}, and w_rows must be "
                          f"non-empty; got groups={g}, w_rows shape {w.shape}.")
    return PreparedRows(w, rc, k, ck.positive_pair(f"{fn}: stride", stride),
                        ck.padding_quad(f"{fn}: padding", padding),
                        ck.positive_pair(f"{fn}: dilation", dilation), g,
                        ck.accumulator_spec(acc))


def conv2d_rows(x: np.ndarray, x_zp: int, w_rows: np.ndarray, row_channel: np.ndarray,
                channels: int, stride=1, padding=0, dilation=1, groups: int = 1,
                acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Row accumulators of a multipoint conv.

    x: codes (N, C, H, W); w_rows: signed codes (R, C/groups, kh, kw), zero point 0;
    row_channel: (R,) output channel of each row, in [0, K), K = ``channels``, divisible by
    ``groups``.  Row p reads the input channels of its channel's group, ``row_channel[p] //
    (K / groups)``.  Returns ``AccumResult``: values int64 (N, R, OH, OW), ``sum over (c, r, s)
    of (x - x_zp) w_rows[p]`` (padding contributes 0; no bias) wrapped or saturated to
    ``acc`` in the order c, r, s; overflow_count counts row outputs that overflowed.
    """
    x, xzp, w, rc, k, st, pd, dl, g, acc, _ = conv_rows_operands(
        "conv2d_rows", x, x_zp, w_rows, row_channel, channels, stride, padding, dilation,
        groups, acc)
    return PreparedRows(w, rc, k, st, pd, dl, g, acc)(x, xzp)


def linear_rows(x: np.ndarray, x_zp: int, w_rows: np.ndarray,
                acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Row accumulators of a multipoint linear layer: x codes (N, in), w_rows (R, in) signed
    codes (zero point 0). Values int64 (N, R) = ``(x - x_zp) @ w_rows^T``, wrapped or
    saturated to ``acc`` (order over ``in`` ascending)."""
    return linear_int(x, x_zp, w_rows, None, None, acc)


# ---- requantization -----------------------------------------------------------------------

@njit(cache=True)
def _sum_rows(acc3, ptr, rows, m, shift, bias, zp, lo, hi, ok, out3):  # pragma: no cover
    """out3[n, k, i] = clamp(((bias[k] + sum_j m[p_j] acc3[n, p_j, i] + half_k) >> shift[k])
    + zp, lo, hi) over the rows p_j = rows[ptr[k]:ptr[k+1]] of channel k, for channels with
    ok[k] (their sums proved to fit int64)."""
    n_b, _, l_n = acc3.shape
    k_n = ptr.shape[0] - 1
    for n in range(n_b):
        for k in range(k_n):
            if not ok[k]:
                continue
            s = shift[k]
            start = bias[k] + ((np.int64(1) << (s - 1)) if s > 0 else np.int64(0))
            for i in range(l_n):
                t = start
                for j in range(ptr[k], ptr[k + 1]):
                    p = rows[j]
                    t += acc3[n, p, i] * m[p]
                q = (t >> s) + zp
                out3[n, k, i] = min(max(q, lo), hi)


def _channel_rows(row_channel: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the rows of each channel: (ptr (K + 1,), rows (R,)), rows in ascending order."""
    order = np.argsort(row_channel, kind="stable").astype(np.int64)
    ptr = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_channel, minlength=k), out=ptr[1:])
    return ptr, order


def _exact_channel(acc3, rows, m, s, b, zp, lo, hi) -> np.ndarray:
    """One channel in Python integers: (N, L) codes (object arithmetic, no bound)."""
    t = np.full((acc3.shape[0], acc3.shape[2]), int(b) + ((1 << (int(s) - 1)) if s else 0),
                dtype=object)
    for p in rows:
        t = t + acc3[:, p, :].astype(object) * int(m[p])
    q = (t >> int(s)) + zp
    return np.minimum(np.maximum(q, lo), hi)


def requantize_rows(acc_rows: np.ndarray, row_channel: np.ndarray, m: np.ndarray,
                    shift: np.ndarray, bias: np.ndarray | None, out_zero_point: int, qmin: int,
                    qmax: int) -> np.ndarray:
    """Sum each channel's rows and requantize (module docstring).

    acc_rows: int64 row accumulators (N, R, ...); row_channel (R,); m (R,) in [0, 2^31);
    shift (K,) in [0, 63]; bias None or int64 (K,), |bias| < 2^62, in units of 2^-shift output
    steps.  Returns codes (N, K, ...) in the smallest dtype holding [qmin, qmax]:
    ``clamp(floor((bias_k + sum_{p -> k} m_p acc_p + 2^(shift_k - 1)) / 2^shift_k) + zp,
    qmin, qmax)``, exact.
    """
    acc3, rc, mv, sh, b, k, zp, lo, hi = requant_constants(
        "requantize_rows", acc_rows, row_channel, m, shift, bias, out_zero_point, qmin, qmax)
    out_shape = (acc3.shape[0], k, *np.shape(acc_rows)[2:])
    out3 = np.empty((acc3.shape[0], k, acc3.shape[2]), dtype=output_dtype(lo, hi))
    if out3.size == 0:
        return out3.reshape(out_shape)
    ptr, rows = _channel_rows(rc, k)
    row_max = np.maximum(acc3.max(axis=(0, 2)).astype(np.float64),
                         -acc3.min(axis=(0, 2)).astype(np.float64)) if acc3.size else np.zeros(
        mv.shape)
    bound = np.abs(b.astype(np.float64)) + np.ldexp(1.0, sh - 1)
    np.add.at(bound, rc, row_max * mv)
    ok = bound < _SAFE
    _sum_rows(acc3.astype(np.int64, copy=False), ptr, rows, mv, sh, b, np.int64(zp),
              np.int64(lo), np.int64(hi), ok, out3)
    for c in np.flatnonzero(~ok):
        out3[:, c, :] = _exact_channel(acc3, rows[ptr[c]:ptr[c + 1]], mv, sh[c], b[c], zp, lo,
                                       hi).astype(out3.dtype)
    return out3.reshape(out_shape)
