"""Exact integer transposed 2-D convolution (torch's ``conv_transpose2d``), torch-free.

Weights are stored **output-channel major**, ``(K, C/groups, R, S)`` like conv2d's, with
``w[g*K/groups + o, i, r, s] = torch_weight[g*C/groups + i, o, r, s]`` (torch stores
``(C, K/groups, R, S)``); so per-channel zero points, bias and requantization constants are
along axis 0 exactly as for conv2d.

Definition, for output (n, k, oh, ow)::

    acc = bias[k] + sum over c in k's group, (ih, iw), (r, s) with
          oh = ih*sh - pad_top + r*dh and ow = iw*sw - pad_left + s*dw
          of (x[n, c, ih, iw] - x_zp) * (w[k, c mod C/g, r, s] - w_zp[k])

Output size ``OH = (H-1)*sh + dh*(R-1) + 1 - pad_top - pad_bottom + output_padding_h`` (torch's
with symmetric padding); output rows no tap reaches hold the bias. Saturating accumulators clip
after every addition in the canonical order: bias, then input channel c, then input row ih, then
input column iw (the order of the equivalent direct convolution below; zero products never
change a saturated sum, so the zeros it adds are harmless).

Fast path: the same layer as a stride-1 conv2d (``hwsim.kernels.conv2d_int`` / the fused
``prepare_conv2d``, no padding) of the input with ``sh - 1`` rows / ``sw - 1`` columns of real
zeros (code ``x_zp``) inserted between pixels, then padded with real zeros by ``dh*(R-1) - pad_top`` above and
``dh*(R-1) - pad_bottom + output_padding_h`` below (a negative pad crops), with the kernel
flipped in both spatial axes. The reference (``hwsim.kernels.reference``) is a scatter loop.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck
from hwsim.kernels.types import AccumResult, AccumulatorSpec, RequantResult


def conv_transpose_out_size(size: int, stride: int, pad_lo: int, pad_hi: int, kernel: int,
                            dilation: int, output_padding: int) -> int:
    """Output length of a transposed conv along one axis (may be <= 0 for bad geometry)."""
    return (size - 1) * stride + dilation * (kernel - 1) + 1 - pad_lo - pad_hi + output_padding


def conv_transpose_operands(x, x_zp, w, w_zp, bias, stride, padding, output_padding, dilation,
                            groups, acc):
    """Validate operands; returns (x, x_zp, w, w_zp (K,), bias (K,), stride, padding (4),
    output_padding, dilation, groups, acc, out_shape)."""
    fn = "conv_transpose2d"
    x, w, g, acc = ck.conv_arrays(fn, x, w, groups, acc)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    xzp = ck.zero_point(f"{fn}: x_zp", x_zp, x.dtype)
    wzp = ck.channel_zero_points(f"{fn}: w_zp", w_zp, k, w.dtype)
    b = ck.bias_vector(f"{fn}: bias", bias, k)
    st = ck.positive_pair(f"{fn}: stride", stride)
    dl = ck.positive_pair(f"{fn}: dilation", dilation)
    pd = ck.padding_quad(f"{fn}: padding", padding)
    op = _output_padding(output_padding, st, dl)
    oh = conv_transpose_out_size(h, st[0], pd[0], pd[2], r, dl[0], op[0])
    ow = conv_transpose_out_size(wd, st[1], pd[1], pd[3], s, dl[1], op[1])
    if oh < 1 or ow < 1:
        raise KernelError(f"{fn}: output size ({oh}, {ow}) is not positive (input {h}x{wd}, "
                          f"kernel {r}x{s}, stride {st}, padding {pd}, output_padding {op}).")
    return x, xzp, w, wzp, b, st, pd, op, dl, g, acc, (n, k, oh, ow)


def _output_padding(output_padding, stride, dilation) -> tuple[int, int]:
    if isinstance(output_padding, (int, np.integer)) and not isinstance(output_padding, bool):
        op = (int(output_padding),) * 2
    else:
        op = tuple(int(v) for v in output_padding)
    if len(op) != 2 or min(op) < 0:
        raise KernelError(f"conv_transpose2d: output_padding must be one or two ints >= 0; got "
                          f"{output_padding!r}.")
    for v, st, dl in zip(op, stride, dilation):
        if v >= max(st, dl):
            raise KernelError(f"conv_transpose2d: output_padding {op} must be smaller than "
                              f"max(stride, dilation) = {max(st, dl)} on each axis (as torch "
                              "requires).")
    return op  # type: ignore[return-value]


def _equivalent_pads(kernel, padding, output_padding, dilation) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) padding of the equivalent conv2d; negative = crop."""
    (dh, dw), (pt, pl, pb, pr), (oph, opw) = dilation, padding, output_padding
    return (dh * (kernel[0] - 1) - pt, dw * (kernel[1] - 1) - pl,
            dh * (kernel[0] - 1) - pb + oph, dw * (kernel[1] - 1) - pr + opw)


def as_conv2d(x: np.ndarray, x_zp: int, kernel: tuple[int, int], stride, padding,
              output_padding, dilation) -> np.ndarray:
    """The input of the equivalent stride-1, unpadded conv2d with the flipped kernel: `x` with
    stride-1 real zeros (code `x_zp`) between pixels, padded with real zeros by the equivalent
    padding (cropped where that is negative)."""
    n, c, h, wd = x.shape
    sh, sw = stride
    lo_h, lo_w, hi_h, hi_w = _equivalent_pads(kernel, padding, output_padding, dilation)
    rows, cols = (h - 1) * sh + 1 + lo_h + hi_h, (wd - 1) * sw + 1 + lo_w + hi_w
    dtype = np.promote_types(x.dtype, np.min_scalar_type(int(x_zp)))
    up = np.full((n, c, max(rows, 0), max(cols, 0)), x_zp, dtype=dtype)
    ih = np.arange(h) * sh + lo_h  # where input row i lands
    iw = np.arange(wd) * sw + lo_w
    keep_h = (ih >= 0) & (ih < rows)
    keep_w = (iw >= 0) & (iw < cols)
    up[:, :, ih[keep_h][:, None], iw[keep_w][None, :]] = x[:, :, keep_h][:, :, :, keep_w]
    return up


def flip_kernel(w: np.ndarray) -> np.ndarray:
    """The equivalent conv2d's weights: ``w`` flipped in both spatial axes."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1])


def conv_transpose2d_int(x, x_zp, w, w_zp=None, bias=None, stride=1, padding=0,
                         output_padding=0, dilation=1, groups: int = 1,
                         acc: AccumulatorSpec = AccumulatorSpec()) -> AccumResult:
    """Exact transposed-conv accumulators (module docstring): int64 (N, K, OH, OW), wrapped or
    saturated to ``acc.bits``, and the number of output elements that overflowed."""
    from hwsim.kernels.conv import conv2d_int

    (x, xzp, w, wzp, b, st, pd, op, dl, g, acc, out_shape) = conv_transpose_operands(
        x, x_zp, w, w_zp, bias, stride, padding, output_padding, dilation, groups, acc)
    up = as_conv2d(x, xzp, w.shape[2:], st, pd, op, dl)
    res = conv2d_int(up, xzp, flip_kernel(w), wzp, b, 1, 0, dl, g, acc)
    assert res.values.shape == out_shape  # geometry of the equivalence (not user input)
    return res


def prepare_conv_transpose2d(w, w_zp, bias, stride, padding, output_padding, dilation,
                             groups: int, acc: AccumulatorSpec, **requant
                             ) -> Callable[[np.ndarray, int], RequantResult]:
    """Validate once and return ``run(x, x_zp) -> RequantResult``: the accumulators above,
    requantized per output channel exactly as ``prepare_conv2d`` does (``requant`` keywords:
    out_zero_point, qmin, qmax, requant, and m/shift or scale_f32)."""
    from hwsim.kernels.fused import prepare_conv2d

    w = ck.int_array("conv_transpose2d: w", w, 4, "(K, C/groups, R, S)")
    st = ck.positive_pair("conv_transpose2d: stride", stride)
    dl = ck.positive_pair("conv_transpose2d: dilation", dilation)
    pd = ck.padding_quad("conv_transpose2d: padding", padding)
    op = _output_padding(output_padding, st, dl)
    layer = prepare_conv2d(flip_kernel(w), w_zp, bias, 1, 0, dl, groups, acc, **requant)

    def run(x: np.ndarray, x_zp: int) -> RequantResult:
        conv_transpose_operands(x, x_zp, w, w_zp, bias, st, pd, op, dl, groups, acc)
        return layer(as_conv2d(x, x_zp, w.shape[2:], st, pd, op, dl), x_zp)

    return run
