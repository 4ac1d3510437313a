"""ONNX Runtime's float32 ConvTranspose (CPU provider, 2-D, NCHW), bit for bit.

ONNX Runtime (onnxruntime/core/providers/cpu/nn/conv_transpose.cc) computes, per image and per
group, the column buffer col = W_g^T · X_g with MLAS's SGEMM (M = K/group · R · S rows,
P = H · W columns, reduction over the group's C/group input channels), scatters it with
Col2im, and adds the bias last. Every operation below rounds once to float32 (half to even);
"fma" rounds a·b + c once. Measured against onnxruntime 1.32 (x86-64, AVX-512 + FMA3, one
intra-op thread), 0 mismatches (tests/test_onnx_conv_transpose.py):

- SGEMM, general case (P > 1): the reduction runs in blocks of `stride_k` channels; within a
  block, acc = 0 then acc = fma(w[c, m], x[c, p], acc) for each channel c in order; the first
  block's acc is col, each further block adds: col = f32(col + acc).
  stride_k = 128, except when ONNX Runtime pre-packed the weights (a constant initializer W,
  i.e. QOperator's float weights; not a DequantizeLinear output, i.e. not QDQ) and P < C/group:
  then stride_k doubles while stride_n (from 128) > 16 and stride_n / 2 >= P, halving stride_n.
  ONNX Runtime pre-packs only when K/group · R · S > 1 and C/group > 1.
- SGEMM with one column (a 1x1 input image, P = 1): MLAS's M = 1 kernels (AVX, no fma).
  Weights not pre-packed: per output m, the channels in groups of 4 then 2 then 1 (from the
  front), t = ((p0 + p1) + p2) + p3 of the float32 products p, col = f32(t + col) (col from 0).
  Pre-packed: 8 lanes, lane j = sum of the products of channels c = j (mod 8) in order; rows m
  are reduced in blocks of 4, then 2, then 1 (from the front), lanes l0..l7 summed as
  (((l0 + l1) + l2) + l3) + (((l4 + l5) + l6) + l7) in a block of 4,
  ((l0 + l2) + (l4 + l6)) + ((l1 + l3) + (l5 + l7)) in a block of 2 and
  ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) alone.
- Col2im: y = 0, then for each kernel tap (r, s) in row-major order, y[oy, ox] += col[(k, r, s),
  (iy, ix)] where oy = iy · stride_h - pad_top + r · dilation_h (likewise ox); taps landing in
  the padding are dropped.
- Bias: y = f32(y + b[k]) after Col2im.

With several intra-op threads and pre-packed weights, MLAS splits P between threads and each
part picks its own stride_k: not modelled (hwsim compares with one-thread sessions).

Shapes: x (N, C, H, W), w (C, K/group, R, S) (ONNX's layout: input-channel major), b (K,) or
None; y (N, K, OH, OW) with OH = (H - 1) · stride_h - pad_top - pad_bottom
+ dilation_h · (R - 1) + 1 + output_padding_h (likewise OW). All float32 values.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels.fma import fma_f32

_F32 = np.float32
STRIDE_K = 128  # MLAS_SGEMM_STRIDEK
STRIDE_N = 128  # MLAS_SGEMM_STRIDEN
_M1_LANES = 8  # the AVX M = 1 kernels' ymm lanes


class ConvTransposeF32Error(KernelError):
    """Bad operands or geometry for the float32 transposed convolution."""


@dataclass(frozen=True)
class Geometry:
    """A 2-D transposed convolution's geometry (all pairs are (height, width))."""

    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    output_padding: tuple[int, int] = (0, 0)
    group: int = 1

    def out_size(self, h: int, w: int, kernel: tuple[int, int]) -> tuple[int, int]:
        t, lf, b, rt = self.pads
        oh = (h - 1) * self.strides[0] - t - b + self.dilations[0] * (kernel[0] - 1) + 1 \
            + self.output_padding[0]
        ow = (w - 1) * self.strides[1] - lf - rt + self.dilations[1] * (kernel[1] - 1) + 1 \
            + self.output_padding[1]
        return oh, ow


def packed_stride_k(p: int, k: int, packed: bool) -> int:
    """MLAS's K block for a general SGEMM with P output columns and reduction length k
    (module docstring); pre-packed weights are MLAS's non-transposed A."""
    stride_k, stride_n = STRIDE_K, STRIDE_N
    if p >= k:
        return stride_k  # MLAS may shrink stride_k here, but never below k: one block
    if packed:
        while stride_n > 16 and stride_n // 2 >= p:
            stride_k, stride_n = stride_k * 2, stride_n // 2
    return stride_k


def ort_packs_weights(w_shape: tuple[int, ...], group: int) -> bool:
    """Does ONNX Runtime pre-pack a constant ConvTranspose weight of this shape?"""
    return len(w_shape) > 2 and w_shape[0] // group > 1 \
        and int(np.prod(w_shape[1:])) > 1


def _check(x, w, b, g: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, w = np.asarray(x, dtype=_F32), np.asarray(w, dtype=_F32)
    if x.ndim != 4 or w.ndim != 4:
        raise ConvTransposeF32Error(f"2-D transposed convolutions only: x must be (N, C, H, W) "
                                    f"and w (C, K/group, R, S); got {x.shape} and {w.shape}")
    if g.group < 1 or x.shape[1] % g.group or w.shape[0] != x.shape[1]:
        raise ConvTransposeF32Error(f"group {g.group}: x has {x.shape[1]} channels and w "
                                    f"{w.shape[0]} input channels; both must be equal and a "
                                    "multiple of group")
    if min(g.strides + g.dilations) < 1 or min(g.pads + g.output_padding) < 0:
        raise ConvTransposeF32Error(f"strides {g.strides} and dilations {g.dilations} must be "
                                    f">= 1, pads {g.pads} and output_padding "
                                    f"{g.output_padding} >= 0")
    oh, ow = g.out_size(x.shape[2], x.shape[3], w.shape[2:])
    if oh < 1 or ow < 1:
        raise ConvTransposeF32Error(f"the output would be {oh}x{ow}: pads {g.pads} remove the "
                                    "whole image")
    k = w.shape[1] * g.group
    if b is not None:
        b = np.asarray(b, dtype=_F32).reshape(-1)
        if b.size != k:
            raise ConvTransposeF32Error(f"bias has {b.size} entries; expected one per output "
                                        f"channel ({k})")
    return x, w, b


# ------------------------------------------------------------------------------------------------
# Fast (vectorized numpy)

def _gemm(a: np.ndarray, xs: np.ndarray, packed: bool) -> np.ndarray:
    """col (N, G, M, P) of a (G, Cg, M) and xs (N, G, Cg, P) in MLAS's order."""
    cg, p = a.shape[1], xs.shape[3]
    if p == 1:
        return (_m1_transposed(a, xs) if packed else _m1(a, xs))
    stride_k = packed_stride_k(p, cg, packed)
    col = None
    for k0 in range(0, cg, stride_k):
        acc = np.zeros(xs.shape[:2] + (a.shape[2], p), dtype=_F32)
        for c in range(k0, min(cg, k0 + stride_k)):
            acc = fma_f32(a[None, :, c, :, None], xs[:, :, c, None, :], acc)
        col = acc if col is None else (col + acc).astype(_F32)
    return col


def _m1(a: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """MLAS's M = 1 kernel (weights not pre-packed, P = 1): groups of 4, 2, 1 channels."""
    prods = (a[None] * xs[:, :, :, :1]).astype(_F32)  # (N, G, Cg, M)
    cg = a.shape[1]
    col = np.zeros(prods.shape[:2] + (a.shape[2],), dtype=_F32)
    c = 0
    for size in (4, 2, 1):
        while cg - c >= size:
            t = prods[:, :, c]
            for j in range(1, size):
                t = (t + prods[:, :, c + j]).astype(_F32)
            col = (t + col).astype(_F32)
            c += size
            if size < 4:
                break
    return col[..., None]


def _lane_sums(prods: np.ndarray) -> np.ndarray:
    """(..., Cg, M) products -> (..., 8, M): lane j sums channels j, j + 8, ... in order."""
    cg = prods.shape[-2]
    lanes = np.zeros(prods.shape[:-2] + (_M1_LANES, prods.shape[-1]), dtype=_F32)
    for c0 in range(0, cg, _M1_LANES):
        n = min(_M1_LANES, cg - c0)
        lanes[..., :n, :] = (lanes[..., :n, :] + prods[..., c0:c0 + n, :]).astype(_F32)
    return lanes


def _add(*vs):
    out = vs[0]
    for v in vs[1:]:
        out = (out + v).astype(_F32)
    return out


def _reduce_lanes(lanes: np.ndarray, block: int) -> np.ndarray:
    """The M1TransposeB kernel's lane reduction of a row in a block of `block` rows."""
    ln = [lanes[..., j, :] for j in range(_M1_LANES)]
    if block == 4:
        return _add(_add(*ln[0:4]), _add(*ln[4:8]))
    if block == 2:
        return _add(_add(_add(ln[0], ln[2]), _add(ln[4], ln[6])),
                    _add(_add(ln[1], ln[3]), _add(ln[5], ln[7])))
    return _add(_add(_add(ln[0], ln[1]), _add(ln[2], ln[3])),
                _add(_add(ln[4], ln[5]), _add(ln[6], ln[7])))


def _row_blocks(m: int) -> np.ndarray:
    """The block size (4, 2 or 1) each of m rows is reduced in."""
    sizes, r = np.empty(m, dtype=np.int64), 0
    for size in (4, 2, 1):
        while m - r >= size:
            sizes[r:r + size] = size
            r += size
            if size < 4:
                break
    return sizes


def _m1_transposed(a: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """MLAS's M = 1, B-transposed kernel (pre-packed weights, P = 1): 8-lane sums."""
    prods = (a[None] * xs[:, :, :, :1]).astype(_F32)  # (N, G, Cg, M)
    lanes = _lane_sums(prods)
    blocks = _row_blocks(a.shape[2])
    col = np.empty(prods.shape[:2] + (a.shape[2],), dtype=_F32)
    for size in (4, 2, 1):
        sel = blocks == size
        if sel.any():
            col[..., sel] = _reduce_lanes(lanes[..., sel], size)
    return col[..., None]


def conv_transpose_f32(x, w, b=None, geometry: Geometry = Geometry(), *,
                       packed_weights: bool = False) -> np.ndarray:
    """ONNX Runtime's float32 ConvTranspose (module docstring); packed_weights: whether ONNX
    Runtime pre-packed w (a constant initializer; see `ort_packs_weights`). Float32
    (N, K, OH, OW)."""
    x, w, b = _check(x, w, b, geometry)
    n, c, h, wd = x.shape
    g, (kh, kw) = geometry.group, w.shape[2:]
    cg, kg = c // g, w.shape[1]
    a = w.reshape(g, cg, kg * kh * kw)
    col = _gemm(a, x.reshape(n, g, cg, h * wd), packed_weights)
    col = col.reshape(n, g * kg, kh, kw, h, wd)
    oh, ow = geometry.out_size(h, wd, (kh, kw))
    (sh, sw), (dh, dw) = geometry.strides, geometry.dilations
    top, left = geometry.pads[:2]
    # a canvas holding every tap's target, padding included
    canvas = np.zeros((n, g * kg, top + oh + dh * kh + sh * h, left + ow + dw * kw + sw * wd),
                      dtype=_F32)
    for r in range(kh):
        for s in range(kw):
            view = canvas[:, :, r * dh:r * dh + sh * (h - 1) + 1:sh,
                          s * dw:s * dw + sw * (wd - 1) + 1:sw]
            view += col[:, :, r, s]
    y = canvas[:, :, top:top + oh, left:left + ow]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y, dtype=_F32)


# ------------------------------------------------------------------------------------------------
# Reference (element by element, exact rational fma)

def _round(q: Fraction) -> np.float32:
    """The float32 nearest the rational q, ties to the even significand."""
    r = _F32(float(q))  # float(q) rounds to float64 first: check the float32 neighbours
    best = None
    for v in (r, np.nextafter(r, _F32(np.inf)), np.nextafter(r, _F32(-np.inf))):
        key = (abs(Fraction(float(v)) - q), int(np.asarray(v, _F32).view(np.int32)) & 1)
        if best is None or key < best[0]:
            best = (key, v)
    return _F32(best[1])


def _fma(a, b, c) -> np.float32:
    return _round(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


def _col_general(ws, xs, stride_k: int) -> np.float32:
    col = None
    for k0 in range(0, len(ws), stride_k):
        acc = _F32(0)
        for wv, xv in zip(ws[k0:k0 + stride_k], xs[k0:k0 + stride_k]):
            acc = _fma(wv, xv, acc)
        col = acc if col is None else _F32(col + acc)
    return col


def _col_m1(ws, xs) -> np.float32:
    prods = [_F32(wv * xv) for wv, xv in zip(ws, xs)]
    col, c = _F32(0), 0
    for size in (4, 2, 1):
        while len(prods) - c >= size:
            t = prods[c]
            for j in range(1, size):
                t = _F32(t + prods[c + j])
            col = _F32(t + col)
            c += size
            if size < 4:
                break
    return col


def _col_m1_transposed(ws, xs, m: int, rows: int) -> np.float32:
    lanes = [_F32(0)] * _M1_LANES
    for c, (wv, xv) in enumerate(zip(ws, xs)):
        lanes[c % _M1_LANES] = _F32(lanes[c % _M1_LANES] + _F32(wv * xv))
    block = int(_row_blocks(rows)[m])
    return _F32(_reduce_lanes(np.array(lanes, dtype=_F32).reshape(_M1_LANES, 1), block)[0])


def conv_transpose_f32_reference(x, w, b=None, geometry: Geometry = Geometry(), *,
                                 packed_weights: bool = False) -> np.ndarray:
    """Definition of `conv_transpose_f32`: each output element on its own, the column values
    it sums recomputed from scratch."""
    x, w, b = _check(x, w, b, geometry)
    n, c, h, wd = x.shape
    g, kg, (kh, kw) = geometry.group, w.shape[1], w.shape[2:]
    cg = c // g
    (sh, sw), (dh, dw) = geometry.strides, geometry.dilations
    top, left = geometry.pads[:2]
    oh, ow = geometry.out_size(h, wd, (kh, kw))
    rows = kg * kh * kw  # the GEMM's M
    stride_k = packed_stride_k(h * wd, cg, packed_weights)
    y = np.empty((n, g * kg, oh, ow), dtype=_F32)
    for i, k, oy, ox in np.ndindex(y.shape):
        grp, kk = divmod(k, kg)
        acc = _F32(0)
        for r in range(kh):
            for s in range(kw):
                iy, ry = divmod(oy + top - r * dh, sh)
                ix, rx = divmod(ox + left - s * dw, sw)
                if ry or rx or not (0 <= iy < h and 0 <= ix < wd):
                    continue
                ws = [w[grp * cg + cc, kk, r, s] for cc in range(cg)]
                xs = [x[i, grp * cg + cc, iy, ix] for cc in range(cg)]
                if h * wd > 1:
                    v = _col_general(ws, xs, stride_k)
                elif packed_weights:
                    v = _col_m1_transposed(ws, xs, (kk * kh + r) * kw + s, rows)
                else:
                    v = _col_m1(ws, xs)
                acc = _F32(acc + v)
        y[i, k, oy, ox] = acc if b is None else _F32(acc + b[k])
    return y


# ------------------------------------------------------------------------------------------------
# The ONNX node (float islands)

def _attr_ints(attrs: dict, key: str, count: int, default: int) -> tuple[int, ...]:
    v = attrs.get(key)
    if v is None:
        return (default,) * count
    v = tuple(int(e) for e in (v if isinstance(v, (list, tuple)) else [v]))
    if len(v) != count:
        raise ConvTransposeF32Error(f"{key} {list(v)}: expected {count} values (a 2-D "
                                    "transposed convolution)")
    return v


def onnx_geometry(attrs: dict, w_shape: tuple[int, ...]) -> Geometry:
    """The Geometry of an ONNX ConvTranspose's attributes; ConvTransposeF32Error for what
    hwsim does not model (auto_pad other than NOTSET, output_shape, other ranks)."""
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad != "NOTSET":
        raise ConvTransposeF32Error(f"auto_pad {auto_pad!r} is not supported (give explicit "
                                    "pads, auto_pad NOTSET)")
    if attrs.get("output_shape") is not None:
        raise ConvTransposeF32Error("the output_shape attribute is not supported (give pads "
                                    "and output_padding)")
    if len(w_shape) != 4:
        raise ConvTransposeF32Error(f"2-D transposed convolutions only; weight shape "
                                    f"{tuple(w_shape)}")
    kernel = _attr_ints(attrs, "kernel_shape", 2, 0)
    if attrs.get("kernel_shape") is not None and kernel != tuple(w_shape[2:]):
        raise ConvTransposeF32Error(f"kernel_shape {list(kernel)} disagrees with the weight "
                                    f"shape {tuple(w_shape)}")
    return Geometry(strides=_attr_ints(attrs, "strides", 2, 1),
                    pads=_attr_ints(attrs, "pads", 4, 0),
                    dilations=_attr_ints(attrs, "dilations", 2, 1),
                    output_padding=_attr_ints(attrs, "output_padding", 2, 0),
                    group=int(attrs.get("group", 1)))


def _onnx(ins, attrs, fn) -> np.ndarray:
    from hwsim.kernels.float_island import FloatIslandError  # (registers this op)

    try:
        if ins[1] is None:
            raise ConvTransposeF32Error("the weight input is missing")
        w = np.asarray(ins[1], dtype=_F32)
        geometry = onnx_geometry(attrs, w.shape)
        b = ins[2] if len(ins) > 2 else None
        return fn(ins[0], w, b, geometry,
                  packed_weights=bool(attrs.get("ort_packed_weights", 0)))
    except ConvTransposeF32Error as exc:
        raise FloatIslandError(f"ConvTranspose: {exc}") from None


def onnx_conv_transpose(ins: list, attrs: dict) -> np.ndarray:
    """The float-island op: ins = [x, W, B or None]; attrs: the ONNX node's, plus
    "ort_packed_weights" (1 when ONNX Runtime pre-packs W; the importer sets it)."""
    return _onnx(ins, attrs, conv_transpose_f32)


def onnx_conv_transpose_reference(ins: list, attrs: dict) -> np.ndarray:
    return _onnx(ins, attrs, conv_transpose_f32_reference)
