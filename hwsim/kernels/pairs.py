"""Accumulator mode "int16_pairs": u8 x s8 products summed in adjacent pairs with int16
saturation, as CPUs without VNNI do (`vpmaddubsw`), then widened into a wrapping accumulator.

Definition (conv2d; a linear layer is the 1x1 conv of its batch). For output (n, k, oh, ow) in
group g, the reduction runs over t = 0 .. L-1, L = R * S * C/groups, ordered (r, s, c) with c
fastest: the NHWC im2col order of ONNX Runtime's u8 x s8 GEMM (established in
`hwsim.engines.ort`, whose pair arithmetic is `hwsim.engines._pairs`). The engine works on raw
codes and corrects zero points afterwards, so the pairs are formed from raw codes:
a_t = x[n, c, ih, iw], or x_zp where (ih, iw) is padding; b_t = w[k, c, r, s]. With
P_j = a_2j b_2j + a_2j+1 b_2j+1 (a lone last element pairs with 0):

    acc = wrap_bits(bias[k] + sum_t (a_t - x_zp)(b_t - w_zp[k]) + sum_j (sat16(P_j) - P_j))

that is, the exact accumulator plus what int16 saturation of the raw pairs takes away, wrapped
to the accumulator width (ONNX Runtime widens into int32: bits=32). An output element counts as
an overflow when some pair saturated or the sum left the `bits` range. For linear layers the
reduction order is the input-feature order.

Fast path: exact accumulators from `conv2d_int` / `linear_int`, plus the saturation excess from a
numba kernel that visits only the pairs of weights that can leave int16 for some input code (for
real int8 networks a few percent of all pairs). The Python-int definition is
`hwsim.kernels.reference.pairs` (`conv2d_int_pairs_reference`, `linear_int_pairs_reference`);
the accumulator type and the operand checks both use are in `hwsim.kernels._pairs_checks`.
Operands must be 8-bit codes (uint8 / int8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck
from hwsim.kernels import _nb_pairs
from hwsim.kernels._pairs_checks import (
    EXACT64,
    I16_MAX,
    I16_MIN,
    Int16PairsAccumulator,
    eight_bit,
    pairs_accumulator,
)
from hwsim.kernels.conv import conv2d_int
from hwsim.kernels.requant import requantize_dyadic, requantize_float32
from hwsim.kernels.types import AccumResult, RequantResult


def _code_range(x: np.ndarray) -> tuple[int, int]:
    info = np.iinfo(x.dtype)
    return int(info.min), int(info.max)


# --------------------------------------------------------------------------------------------
# Pairs that can saturate, per output channel

@dataclass(frozen=True)
class _PairTable:
    """The pairs of one weight tensor whose sum can leave int16 for inputs in a code range, as
    CSR over output channels: ptr (K+1,), then per pair the absolute input channel, kernel tap
    and raw weight of both elements (int64 arrays)."""

    ptr: np.ndarray
    ch_a: np.ndarray
    r_a: np.ndarray
    s_a: np.ndarray
    w_a: np.ndarray
    ch_b: np.ndarray
    r_b: np.ndarray
    s_b: np.ndarray
    w_b: np.ndarray

    @property
    def size(self) -> int:
        return int(self.ptr[-1])


def _pair_table(w: np.ndarray, groups: int, x_lo: int, x_hi: int) -> _PairTable:
    """Pairs (in the (r, s, c) reduction order) of w (K, C/groups, R, S) whose raw sum
    a0 b0 + a1 b1 can leave int16 for some a0, a1 in [x_lo, x_hi]."""
    k_n, cg, r_n, s_n = w.shape
    length = cg * r_n * s_n
    wt = w.astype(np.int64).transpose(0, 2, 3, 1).reshape(k_n, length)  # (r, s, c) order
    t_a = np.arange(0, length, 2)
    t_b = np.minimum(t_a + 1, length - 1)  # a lone last element pairs with itself, weight 0
    w_a = wt[:, t_a]
    w_b = np.where(t_a + 1 < length, wt[:, t_b], 0)
    p_max = np.maximum(x_lo * w_a, x_hi * w_a) + np.maximum(x_lo * w_b, x_hi * w_b)
    p_min = np.minimum(x_lo * w_a, x_hi * w_a) + np.minimum(x_lo * w_b, x_hi * w_b)
    ks, js = np.nonzero((p_max > I16_MAX) | (p_min < I16_MIN))  # row-major: sorted by k
    ptr = np.zeros(k_n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ks, minlength=k_n), out=ptr[1:])
    base = (ks // (k_n // groups)) * cg  # first input channel of the output channel's group

    def tap(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return base + t % cg, t // (s_n * cg), (t // cg) % s_n

    ca, ra, sa = tap(t_a[js])
    cb, rb, sb = tap(t_b[js])
    i64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
    return _PairTable(ptr, i64(ca), i64(ra), i64(sa), i64(w_a[ks, js]), i64(cb), i64(rb),
                      i64(sb), i64(w_b[ks, js]))


def _pair_excess(x: np.ndarray, x_zp: int, table: _PairTable, stride, pads, dilation,
                 out_shape) -> np.ndarray:
    """sum_j (sat16(P_j) - P_j) per output, int64 (N, K, OH, OW)."""
    out = np.zeros(out_shape, dtype=np.int64)
    if table.size == 0 or out.size == 0:
        return out
    pt, pl, pb, pr = pads
    n, c, h, w = x.shape
    xp = np.full((n, c, h + pt + pb, w + pl + pr), x_zp, dtype=np.int32)
    xp[:, :, pt : pt + h, pl : pl + w] = x
    t = table
    _nb_pairs.conv_pair_excess(xp, t.ptr, t.ch_a, t.r_a, t.s_a, t.w_a, t.ch_b, t.r_b, t.s_b,
                               t.w_b, stride[0], stride[1], dilation[0], dilation[1], out)
    return out


def _finish(exact: np.ndarray, excess: np.ndarray, acc: Int16PairsAccumulator) -> AccumResult:
    """exact + excess wrapped to acc.bits (in place in `exact`); counts elements with a
    saturated pair or out of range."""
    values = np.ascontiguousarray(exact)
    overflow = _nb_pairs.add_excess_and_wrap(values.reshape(-1), excess.reshape(-1), acc.bits)
    return AccumResult(values, int(overflow))


# --------------------------------------------------------------------------------------------
# Fast kernels

def conv2d_int_pairs(x: np.ndarray, x_zp: int, w: np.ndarray, w_zp=None, bias=None,
                     stride=1, padding=0, dilation=1, groups: int = 1,
                     acc: Int16PairsAccumulator = Int16PairsAccumulator()) -> AccumResult:
    """conv2d accumulators in the int16-pairs mode (module docstring).

    x: uint8/int8 codes (N, C, H, W); w: uint8/int8 codes (K, C/groups, R, S); x_zp, w_zp,
    bias, stride, padding, dilation, groups as for `conv2d_int`. Returns AccumResult: values
    int64 (N, K, OH, OW) wrapped to acc.bits, overflow_count (module docstring).
    """
    return _PreparedPairs("conv2d_int_pairs", w, w_zp, bias, stride, padding, dilation, groups,
                          acc).accumulate(x, x_zp)


def linear_int_pairs(x: np.ndarray, x_zp: int, w: np.ndarray, w_zp=None, bias=None,
                     acc: Int16PairsAccumulator = Int16PairsAccumulator()) -> AccumResult:
    """linear accumulators in the int16-pairs mode: x uint8/int8 (N, in), w uint8/int8
    (out, in); pairs of adjacent input features. Returns values int64 (N, out)."""
    fn = "linear_int_pairs"
    w = ck.int_array(f"{fn}: w", w, 2, "(out, in)")
    return _PreparedPairsLinear(fn, w, w_zp, bias, acc).accumulate(x, x_zp)


class _PreparedPairs:
    """Validated conv weights of the int16-pairs mode, with pair tables cached per input
    code range."""

    def __init__(self, fn: str, w, w_zp, bias, stride, padding, dilation, groups,
                 acc: Int16PairsAccumulator) -> None:
        self.fn = fn
        (self.w, self.groups, self.in_channels, self.w_zp, self.bias, self.stride,
         self.padding, self.dilation) = ck.conv_layer_constants(fn, w, w_zp, bias, stride,
                                                                padding, dilation, groups)
        eight_bit(fn, "w", self.w)
        self.acc = pairs_accumulator(fn, acc)
        self._tables: dict[tuple[int, int], _PairTable] = {}

    def table(self, x: np.ndarray) -> _PairTable:
        key = _code_range(x)
        if key not in self._tables:
            self._tables[key] = _pair_table(self.w, self.groups, *key)
        return self._tables[key]

    def accumulate(self, x: np.ndarray, x_zp: int) -> AccumResult:
        x = ck.int_array(f"{self.fn}: x", x, 4, "(N, C, H, W)")
        eight_bit(self.fn, "x", x)
        xzp = ck.zero_point(f"{self.fn}: x_zp", x_zp, x.dtype)
        exact = conv2d_int(x, xzp, self.w, self.w_zp, self.bias, self.stride, self.padding,
                           self.dilation, self.groups, EXACT64).values
        excess = _pair_excess(x, xzp, self.table(x), self.stride, self.padding, self.dilation,
                              exact.shape)
        return _finish(exact, excess, self.acc)


class _PreparedPairsLinear:
    """A linear layer as the 1x1 conv of its batch laid out as pixels: (1, in, N, 1)."""

    def __init__(self, fn: str, w, w_zp, bias, acc: Int16PairsAccumulator) -> None:
        w = ck.int_array(f"{fn}: w", w, 2, "(out, in)")
        if w.shape[0] < 1:
            raise KernelError(f"{fn}: w must have at least one output row; got shape {w.shape}.")
        self.fn, self.n_out, self.n_in = fn, w.shape[0], w.shape[1]
        self.conv = _PreparedPairs(fn, w.reshape(self.n_out, self.n_in, 1, 1), w_zp, bias, 1, 0,
                                   1, 1, acc)

    def accumulate(self, x: np.ndarray, x_zp: int) -> AccumResult:
        x = ck.int_array(f"{self.fn}: x", x, 2, "(N, in)")
        if x.shape[1] != self.n_in:
            raise KernelError(f"{self.fn}: x has {x.shape[1]} input features but w has shape "
                              f"({self.n_out}, {self.n_in}).")
        n = x.shape[0]
        res = self.conv.accumulate(np.ascontiguousarray(x.T).reshape(1, self.n_in, n, 1), x_zp)
        return AccumResult(np.ascontiguousarray(res.values.reshape(self.n_out, n).T),
                           res.overflow_count)


# --------------------------------------------------------------------------------------------
# Prepared layers fused with requantization (what the executor runs)

def _requant_constants(fn: str, requant: str, k: int, scale_f32, m, shift) -> dict:
    def per_channel(name: str, v, kind: str) -> np.ndarray:
        if v is None:
            raise KernelError(f"{fn}: requant={requant!r} needs {name}.")
        arr = np.asarray(v)
        if kind == "float32" and arr.dtype != np.float32:
            raise KernelError(f"{fn}: {name} must be float32; got dtype {arr.dtype}.")
        if kind == "int" and arr.dtype.kind not in "iu":
            raise KernelError(f"{fn}: {name} must be integer(s); got dtype {arr.dtype}.")
        arr = arr.reshape(-1)
        if arr.shape[0] not in (1, k):
            raise KernelError(f"{fn}: {name} must be a scalar or have shape ({k},) (one per "
                              f"output channel); got {arr.shape[0]} values.")
        return arr.reshape(()) if arr.shape[0] == 1 else arr

    if requant == "float32":
        return {"scale_f32": per_channel("scale_f32", scale_f32, "float32")}
    if requant == "dyadic":
        return {"m": per_channel("m", m, "int"), "shift": per_channel("shift", shift, "int")}
    raise KernelError(f"{fn}: requant must be 'float32' or 'dyadic'; got {requant!r}.")


class PreparedPairsLayer:
    """A conv2d / linear layer in the int16-pairs mode followed by requantization, validated
    once. `layer(x, x_zp)` equals conv2d_int_pairs (or linear_int_pairs) then requantize_float32
    / requantize_dyadic along axis 1, and returns a RequantResult."""

    def __init__(self, accumulate, n_out: int, requant: str, constants: dict,
                 out_zero_point: int, qmin: int, qmax: int) -> None:
        self._accumulate, self.n_out = accumulate, n_out
        self.requant, self.constants = requant, constants
        self.out_zero_point, self.qmin, self.qmax = out_zero_point, qmin, qmax

    def __call__(self, x: np.ndarray, x_zp: int) -> RequantResult:
        res = self._accumulate(x, x_zp)
        c, zp, lo, hi = self.constants, self.out_zero_point, self.qmin, self.qmax
        if self.requant == "float32":
            codes = requantize_float32(res.values, c["scale_f32"], zp, lo, hi, axis=1)
        else:
            codes = requantize_dyadic(res.values, c["m"], c["shift"], zp, lo, hi, axis=1)
        return RequantResult(codes, res.overflow_count)


def prepare_conv2d_pairs(w, w_zp, bias, stride, padding, dilation, groups,
                         acc: Int16PairsAccumulator, *, out_zero_point: int, qmin: int,
                         qmax: int, requant: str, scale_f32=None, m=None,
                         shift=None) -> PreparedPairsLayer:
    """prepare_conv2d for the int16-pairs mode (same arguments; acc an Int16PairsAccumulator)."""
    fn = "conv2d_pairs_requantize"
    conv = _PreparedPairs(fn, w, w_zp, bias, stride, padding, dilation, groups, acc)
    k = conv.w.shape[0]
    return PreparedPairsLayer(conv.accumulate, k,
                              requant, _requant_constants(fn, requant, k, scale_f32, m, shift),
                              out_zero_point, qmin, qmax)


def prepare_linear_pairs(w, w_zp, bias, acc: Int16PairsAccumulator, *, out_zero_point: int,
                         qmin: int, qmax: int, requant: str, scale_f32=None, m=None,
                         shift=None) -> PreparedPairsLayer:
    """prepare_linear for the int16-pairs mode (same arguments; acc an Int16PairsAccumulator)."""
    fn = "linear_pairs_requantize"
    lin = _PreparedPairsLinear(fn, w, w_zp, bias, acc)
    return PreparedPairsLayer(lin.accumulate, lin.n_out,
                              requant, _requant_constants(fn, requant, lin.n_out, scale_f32, m,
                                                          shift),
                              out_zero_point, qmin, qmax)
