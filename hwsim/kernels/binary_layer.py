"""A whole binary (least-squares sign-plane) conv2d / linear layer on integer input codes.

Semantics (the integer program's ``binary_conv2d`` / ``binary_linear``):

1. Input: integer codes x (N, C, H, W) or (N, C) with zero point zp_x and scale s_x.
2. Binarize the centred codes ``x - zp_x`` (``quant.binary_input.binarize_codes``): k_a sign
   planes b_a,i (N, ...) and scales v_a (N, k_a) in code units, fitted per sample at run time
   or thresholded with static running scales.  Without a binarizer the centred codes are one
   integer "plane" with v_a = 1 (binary weights times integer activations).
3. dots[i, j] = exact integer products of plane i with weight plane j (conv: zero padding
   contributes 0; groups and dilation as in torch).
4. y = sum_i sum_j ((s_x v_a[n, i]) · v_w[k, j]) · dots[i, j] + bias[k], float64, i then j
   ascending, starting at 0.0, the bias last.
5. code = clamp(rint_half_even(y / s_y) + zp_y, lo, hi).

Steps 4-5 are the only float arithmetic; they mirror the fake-quant model, which computes the
same sum in float32 (torch conv on the dequantized planes), so outputs agree up to that
rounding: within 1 LSB of the output, stated by the tests.

Fast: binary x binary convs with groups = 1 and no dilation run on the XNOR/popcount kernel
(planes padded with +1, the border corrected exactly: a padded tap contributes +w there, 0 in
the definition); everything else runs ``conv2d_int`` / ``linear_int`` (exact BLAS-planned)
on the ±1 / integer planes.  Reference: ``conv2d_int_reference`` / ``linear_int_reference``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels.binary import pack_signs, sign_columns, xnor_popcount_matmul
from hwsim.kernels.conv import conv2d_int, linear_int
from hwsim.kernels.reference import conv2d_int_reference, linear_int_reference
from hwsim.kernels.types import AccumulatorSpec
from quant.binary_input import BinaryInput, binarize_codes

_ACC64 = AccumulatorSpec(bits=64, mode="wrap")


@dataclass(frozen=True)
class BinaryLayer:
    """Constants of one binary layer (see the module docstring for the semantics).

    weight_planes: int8 ±1 (k_w, K, C/groups, R, S) for conv, (k_w, K, C) for linear.
    weight_scales: float64 (K, k_w), v_w per output channel.
    bias: float64 (K,) or None (real units).
    binarizer: {"method", "k", "scaling"} of the input, or None (integer input codes).
    input_scales: float64 (k_a,) static scales in code units ("running" scaling), else None.
    input_zero_point, input_scale: the input codes' quantization.
    output_scale, output_zero_point, output_clamp: the output codes' quantization and range.
    conv: (stride, padding (top, left, bottom, right), dilation, groups), or None for linear.
    """

    weight_planes: np.ndarray
    weight_scales: np.ndarray
    bias: np.ndarray | None
    binarizer: dict | None
    input_scales: np.ndarray | None
    input_zero_point: int
    input_scale: float
    output_scale: float
    output_zero_point: int
    output_clamp: tuple[int, int]
    conv: tuple | None = None


def _input_planes(layer: BinaryLayer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(planes (k_a, N, ...) integer, real scales (N, k_a) float64)."""
    centred = x.astype(np.int64) - layer.input_zero_point
    n = x.shape[0]
    if layer.binarizer is None:
        return centred[None], np.full((n, 1), layer.input_scale, dtype=np.float64)
    params = binarize_codes(centred, BinaryInput.from_attrs(layer.binarizer), layer.input_scales)
    return np.asarray(params.b), params.v * layer.input_scale


@dataclass(frozen=True)
class _PackedWeights:
    """Weight planes prepared for the XNOR kernel: packed (k_w K, words) uint64 rows in (c, r, s)
    order, and the per-tap channel sums (k_w K, R S) int64 that correct +1 padding."""

    packed: np.ndarray
    n_bits: int
    tap_sums: np.ndarray


# Prepared weights per read-only weight-plane array (an IntProgram's arrays are read-only);
# an entry leaves when its array is freed.
_PACKED: dict[int, tuple[weakref.ref, _PackedWeights]] = {}


def _packed_weights(w_planes: np.ndarray) -> _PackedWeights:
    hit = _PACKED.get(id(w_planes))
    if hit is not None and hit[0]() is w_planes:
        return hit[1]
    k_w, k, c, r, s = w_planes.shape
    w_all = w_planes.reshape(k_w * k, c * r * s)
    packed, n_bits = pack_signs(w_all)
    prepared = _PackedWeights(packed, n_bits,
                              w_all.reshape(k_w * k, c, r * s).astype(np.int64).sum(axis=1))
    if not w_planes.flags.writeable:
        key = id(w_planes)
        _PACKED[key] = (weakref.ref(w_planes, lambda _, key=key: _PACKED.pop(key, None)), prepared)
    return prepared


def _xnor_conv_dots(x_planes: np.ndarray, w_planes: np.ndarray, stride, padding) -> np.ndarray:
    """Zero-padded ±1 conv dots via XNOR/popcount: (k_a, k_w, N, K, OH, OW) int64.

    The planes are padded with +1 and im2col'd; a padded tap then adds +w, which is removed
    exactly with the weights' per-tap channel sums over the padded taps of each output pixel.
    """
    k_w, k, _, r, s = w_planes.shape
    top, left, bottom, right = padding
    weights = _packed_weights(w_planes)
    pad_mask = np.pad(np.zeros(x_planes.shape[-2:], dtype=np.int64),
                      ((top, bottom), (left, right)), constant_values=1)
    taps = sign_columns(pad_mask[None, None], (r, s), stride)  # (OH OW, R S) of 0/1
    oh = (pad_mask.shape[0] - r) // stride[0] + 1
    ow = (pad_mask.shape[1] - s) // stride[1] + 1
    border = (weights.tap_sums @ taps.T).T  # (OH OW, k_w K)
    n = x_planes.shape[1]
    dots = []
    for plane in x_planes:
        padded = np.pad(plane, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=1)
        xb, _ = pack_signs(sign_columns(padded, (r, s), stride))
        d = xnor_popcount_matmul(xb, weights.packed, weights.n_bits)  # (N OH OW, k_w K)
        d = (d.reshape(n, oh * ow, k_w * k) - border).reshape(n, oh, ow, k_w, k)
        dots.append(d.transpose(3, 0, 4, 1, 2))
    return np.ascontiguousarray(np.stack(dots))


def _dots(layer: BinaryLayer, planes: np.ndarray, fast: bool) -> np.ndarray:
    """Exact integer products of every input plane with every weight plane:
    (k_a, k_w, N, K, ...) int64."""
    wp = layer.weight_planes
    if layer.conv is None:
        fn = linear_int if fast else linear_int_reference
        return np.stack([np.stack([fn(p, 0, w, acc=_ACC64).values for w in wp]) for p in planes])
    stride, padding, dilation, groups = layer.conv
    binary_input = layer.binarizer is not None
    if fast and binary_input and groups == 1 and tuple(dilation) == (1, 1):
        return _xnor_conv_dots(planes, wp, tuple(stride), tuple(padding))
    fn = conv2d_int if fast else conv2d_int_reference
    return np.stack([np.stack([fn(p, 0, w, stride=stride, padding=padding, dilation=dilation,
                                  groups=groups, acc=_ACC64).values for w in wp]) for p in planes])


def combine_scaled_dots(x_scales: np.ndarray, w_scales: np.ndarray, dots: np.ndarray,
                        bias: np.ndarray | None) -> np.ndarray:
    """y = sum_i sum_j (x_scales[n, i] · w_scales[k, j]) · dots[i, j] + bias[k], float64.

    x_scales (N, k_a), w_scales (K, k_w), dots (k_a, k_w, N, K, ...) int64, bias (K,) or None.
    Element-wise IEEE float64 in a fixed order (i, then j, from 0.0; bias last), so any
    implementation following it gives bitwise-equal results.  Returns (N, K, ...).
    """
    extra = (1,) * (dots.ndim - 4)
    y = np.zeros(dots.shape[2:], dtype=np.float64)
    for i in range(dots.shape[0]):
        for j in range(dots.shape[1]):
            scale = x_scales[:, i][:, None] * w_scales[:, j][None, :]
            y += scale.reshape(scale.shape + extra) * dots[i, j]
    if bias is not None:
        y += bias.reshape((1, -1) + extra)
    return y


def binary_layer_dots(layer: BinaryLayer, x: np.ndarray, *, fast: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3 of the module docstring: (dots (k_a, k_w, N, K, ...) int64, real input scales
    (N, k_a) float64 = s_x · v_a). ``fast`` picks the XNOR/popcount + BLAS-planned kernels,
    else the int64 references; both give the same integers."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise KernelError(f"binary layer: input must be integer codes; got dtype {x.dtype}")
    planes, x_scales = _input_planes(layer, x)
    return _dots(layer, planes, fast), x_scales


def binary_layer_forward(layer: BinaryLayer, x: np.ndarray, *, fast: bool = True) -> np.ndarray:
    """Output codes (int64, (N, K, OH, OW) or (N, K)) of a binary layer on input codes x
    (steps 1-5 of the module docstring); fast and reference give the same codes."""
    dots, x_scales = binary_layer_dots(layer, x, fast=fast)
    y = combine_scaled_dots(x_scales, layer.weight_scales, dots, layer.bias)
    lo, hi = layer.output_clamp
    codes = np.rint(y / layer.output_scale) + layer.output_zero_point
    return np.clip(codes, lo, hi).astype(np.int64)
