"""Shift-add (Additive Powers-of-Two, APoT) accumulators: conv2d / linear whose products are
computed as sums of shifted inputs, x·w = ±Σ_t (xc << s_t) over the set bits s_t of |w|.

Definition: `hwsim.kernels.reference.shift_add` (bias, then per tap (c, r, s) in canonical
order the terms of its weight, most significant bit first, each added by a wrapping or
saturating adder of `acc.bits` bits). The functions here return exactly the same values and
overflow counts for every input.

Paths:
- wrap: the result is the exact sum wrapped, which is order-independent, so it is computed by
  the exact integer conv `conv2d_int` / `linear_int` (weight zero point 0, same AccumulatorSpec).
- saturate, when a bound proves that no step can clip: for every output channel k,
      |bias[k]| + A * Σ_{c,r,s} |w[k, c, r, s]| <= 2^(bits-1) - 1,   A = max |x - x_zp|
  over the whole input (a global input bound, per-output-channel weight sums). Every
  intermediate value of an output is bias plus a partial sum of terms ±xc·2^s_t whose
  magnitudes add up to Σ |xc|·|w| <= A·Σ|w|, so nothing clips and the result is the exact sum:
  again `conv2d_int` (with a wrapping accumulator of the same width, which then never wraps).
- saturate otherwise: a numba datapath kernel (`_nb_shift_add.saturate_terms`) that walks the
  terms in the defined order with a saturating adder, from a per-call term table (CSR per
  output channel: tap, coefficient ±2^s).

(Since all terms of one product share its sign, this saturating datapath in fact equals the
multiply-then-add saturating conv2d_int for every input; the datapath kernel is kept as the
model of the hardware, and the tests check both equalities.)

The kernel path needs every term to fit int64: A·2^(top bit of max|w|) < 2^63, else KernelError;
the exact-sum path needs A·max_k Σ|w[k]| < 2^63 (`conv2d_int`'s limit; a bias near ±2^63 is
added in Python ints). Neither limit can be reached with 8- or 16-bit codes.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _nb_shift_add as _nb
from hwsim.kernels.conv import conv2d_int, linear_int
from hwsim.kernels.reference.shift_add import (
    conv_operands,
    linear_operands,
    shift_add_weight_codes,
)
from hwsim.kernels.types import AccumResult, AccumulatorSpec

_I64_LIMIT = (1 << 63) - 1


def shift_add_terms(w: np.ndarray) -> int:
    """The largest number of shift-add terms of one product: max over the codes of
    popcount(|w|) (0 for an empty or all-zero array). w: integer codes, |w| < 2^15."""
    if not isinstance(w, np.ndarray) or w.dtype.kind not in "iu" or w.dtype == np.uint64:
        raise KernelError(f"shift_add_terms: w must be a numpy integer array (int8..int64 or "
                          f"uint8..uint32); got {getattr(w, 'dtype', type(w).__name__)}.")
    shift_add_weight_codes("shift_add_terms", w)
    return int(_nb.max_popcount(np.ascontiguousarray(w).reshape(-1))) if w.size else 0


def _max_abs_centered(x: np.ndarray, zp: int) -> int:
    if x.size == 0:
        return 0
    return max(int(x.max()) - zp, zp - int(x.min()), 0)


def _plan(x: np.ndarray, xzp: int, w: np.ndarray, bias: np.ndarray,
          acc: AccumulatorSpec) -> tuple[bool, int, int, int]:
    """(whether the numba datapath must run, A = max |x - x_zp|, max_k Σ|w[k]|, max |w|): the
    datapath runs in saturate mode unless the bound of the module docstring holds (checked per
    output channel, in Python ints)."""
    ax = _max_abs_centered(x, xzp)
    k = w.shape[0]
    sums, max_w = _nb.abs_row_sums(np.ascontiguousarray(w).reshape(k, -1))
    wsum = sums.tolist()
    hi = acc.max_value
    datapath = acc.mode == "saturate" and not all(abs(b) + ax * s <= hi
                                                  for b, s in zip(bias.tolist(), wsum))
    return datapath, ax, max(wsum), int(max_w)


def _exact_path(run, out_shape: tuple, bias: np.ndarray, bias_axes: tuple,
                acc: AccumulatorSpec, ax: int, wsum_max: int, empty: bool) -> AccumResult:
    """The exact sums wrapped to acc.bits (wrap mode, or saturate where nothing can clip).
    run(bias, spec) is conv2d_int / linear_int on the operands. When |bias| near 2^63 could
    carry bias + sum out of int64 (conv2d_int refuses that), the sums are taken without the
    bias and finished in Python ints; so is an empty reduction (no input channels), which
    conv2d_int does not take."""
    spec = AccumulatorSpec(acc.bits, "wrap")
    max_bias = max((abs(v) for v in bias.tolist()), default=0)
    if ax * wsum_max + max_bias <= _I64_LIMIT and not empty:
        return run(bias, spec)
    # exact: |sum| <= ax * wsum_max
    sums = np.zeros(out_shape, np.int64) if empty else run(None, AccumulatorSpec(64, "wrap")).values
    exact = sums.astype(object) + np.expand_dims(bias.astype(object), bias_axes)
    lo, hi, half = acc.min_value, acc.max_value, 1 << (acc.bits - 1)
    overflows = int(((exact < lo) | (exact > hi)).sum())
    values = ((exact + half) % (2 * half) - half).astype(np.int64)
    return AccumResult(values, overflows)


def _saturate_datapath(fn, x, xzp, w, b, stride, pads, dilation, groups, acc, ax, max_w,
                       out_shape) -> AccumResult:
    """The saturating shift-add datapath (numba), terms in the defined order."""
    n_b, k_n, _, _ = out_shape
    _, c_n, h_n, w_n = x.shape
    _, cg, r_n, s_n = w.shape
    top_term = ax << (max_w.bit_length() - 1) if max_w else 0
    if top_term > _I64_LIMIT:
        raise KernelError(f"{fn}: a shift-add term may exceed int64 (max |x - x_zp| = {ax}, "
                          f"max |w| = {max_w}); use narrower input codes.")
    reach = (1 << (acc.bits - 1)) + top_term  # bound on |value + term| before the clip
    kind = _nb.NARROW if reach < (1 << 31) else _nb.WIDE if reach < (1 << 63) else _nb.SAFE
    dtype = np.int32 if kind == _nb.NARROW else np.int64
    ptr, tap, coef = _nb.term_table(np.ascontiguousarray(w).reshape(k_n, -1), max_w.bit_length())
    pt, pl, pb, pr = pads
    sw = stride[1]
    hp, wq = h_n + pt + pb, -(-(w_n + pl + pr) // sw)
    xq = np.zeros((n_b, c_n, sw, hp, wq), dtype=dtype)
    _nb.center_pad_phases(np.ascontiguousarray(x), np.int64(xzp), pt, pl, xq)
    c, r, s = np.meshgrid(np.arange(cg), np.arange(r_n) * dilation[0], np.arange(s_n) * dilation[1],
                          indexing="ij")  # taps in (c, r, s) order; r, s already dilated
    tap_off = (((c * sw + s % sw) * hp + r) * wq + s // sw).reshape(-1).astype(np.int64)
    values = np.empty(out_shape, dtype=np.int64)
    scratch = out_shape[2] * wq
    overflows = _nb.saturate_terms(xq, ptr, tap, coef, tap_off, k_n // groups, b, stride[0],
                                   np.int64(acc.min_value), np.int64(acc.max_value), kind,
                                   np.empty(scratch, dtype), np.empty(scratch, dtype), values)
    return AccumResult(values, int(overflows))


def conv2d_shift_add(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Shift-add 2-D convolution accumulators (module docstring).

    x: input codes (N, C, H, W), any integer dtype; x_zp: scalar zero point in x's range.
    w: signed weight levels (K, C/groups, R, S), integer dtype, |w| < 2^15 (APoT levels or any
    integers: a product has popcount(|w|) terms). bias: None or integer (K,).
    stride, dilation: int or (h, w); padding: int, (h, w) or (top, left, bottom, right).
    acc: adder width and mode. Returns AccumResult: values int64 (N, K, OH, OW), and the number
    of output elements that overflowed (wrap: exact sum out of range; saturate: a step clipped).
    """
    fn = "conv2d_shift_add"
    x, xzp, w, b, st, pd, dl, g, acc, out_shape = conv_operands(
        fn, x, x_zp, w, bias, stride, padding, dilation, groups, acc)
    datapath, ax, wsum_max, max_w = _plan(x, xzp, w, b, acc)
    if datapath:
        return _saturate_datapath(fn, x, xzp, w, b, st, pd, dl, g, acc, ax, max_w, out_shape)
    return _exact_path(lambda bias, spec: conv2d_int(x, xzp, w, None, bias, st, pd, dl, g, spec),
                       out_shape, b, (0, 2, 3), acc, ax, wsum_max, w.size == 0)


def linear_shift_add(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Shift-add fully-connected accumulators: x codes (N, in), w weight levels (out, in) with
    |w| < 2^15, bias None or (out,); terms over input features ascending, each weight's bits
    most significant first. Returns AccumResult with values int64 (N, out)."""
    fn = "linear_shift_add"
    x, xzp, w, b, acc = linear_operands(fn, x, x_zp, w, bias, acc)
    datapath, ax, wsum_max, max_w = _plan(x, xzp, w, b, acc)
    if not datapath:
        return _exact_path(lambda bias, spec: linear_int(x, xzp, w, None, bias, spec),
                           (x.shape[0], w.shape[0]), b, (0,), acc, ax, wsum_max, w.size == 0)
    n, n_in = x.shape
    n_out = w.shape[0]
    # A linear layer is a 1x1 conv of the batch laid out as pixels: (1, in, N, 1) -> (1, out, N, 1).
    x4 = np.ascontiguousarray(x.T).reshape(1, n_in, n, 1)
    res = _saturate_datapath(fn, x4, xzp, w.reshape(n_out, n_in, 1, 1), b, (1, 1), (0, 0, 0, 0),
                             (1, 1), 1, acc, ax, max_w, (1, n_out, n, 1))
    return AccumResult(np.ascontiguousarray(res.values.reshape(n_out, n).T), res.overflow_count)
