"""ONNX Resize, mode "linear" on 4-D (N, C, H, W) tensors, as ONNX Runtime 1.32's CPU kernels
compute it (upsample.h / upsample.cc; every formula below measured against onnxruntime 1.32 on
x86-64, tests/test_onnx_resize_linear.py).

Taps, per axis with input length L_in, output length L_out and float32 scale s: the source
coordinate c of output index i is `hwsim.kernels.resize.source_coordinates` (c = i when s == 1,
as ONNX Runtime skips the transformation then), clamped to [0, L_in - 1] in float32; then

    i1 = min(int(c), L_in - 1), i2 = min(i1 + 1, L_in - 1)
    d1 = f32(|c - i1|), d2 = f32(|c - i2|)                (both 0.5 when i1 == i2)
    e1 = |int(c · 1024) - 1024 · i1|, e2 = |int(c · 1024) - 1024 · i2|  (512 each if i1 == i2)

Three kernels (x11 = x[r1, c1], x21 = x[r1, c2], x12 = x[r2, c1], x22 = x[r2, c2]):

- ``float``: float32 tensors, either layout (UpsampleBilinear and NhwcUpsampleBilinear agree):
  y = ((c11·x11 + c21·x21) + c12·x12) + c22·x22 with c11 = dx2·dy2, c21 = dx1·dy2,
  c12 = dx2·dy1, c22 = dx1·dy1, every product and sum rounded to float32 (no fused
  multiply-add).
- ``nchw_cast``: 8-bit codes in NCHW (UpsampleBilinear<uint8/int8>): the float formula on the
  codes, then truncated toward zero (static_cast), within [qmin, qmax].
- ``nhwc_integer``: 8-bit codes in NHWC (NhwcUpsampleBilinearInteger): in integers,
  y = trunc((e2x·e2y·x11 + e1x·e2y·x21 + e2x·e1y·x12 + e1x·e1y·x22) / 2^20).

Which of the two code kernels runs depends on the layout ONNX Runtime chose for the node
(`hwsim.onnx._resize` decides it). Each kernel has a vectorized form and an element-by-element
reference; the float ones return float32, the code ones int64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.kernels.float_island_errors import FloatIslandError
from hwsim.kernels.resize import nearest_indices, source_coordinates

_F32 = np.float32
KERNELS = ("float", "nchw_cast", "nhwc_integer")
MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")


@dataclass(frozen=True)
class Taps:
    """The taps of one axis: int64 indices i1, i2 (L_out,), float32 weights d1, d2 and
    10-bit integer weights e1, e2 (int64)."""

    i1: np.ndarray
    i2: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    e1: np.ndarray
    e2: np.ndarray


def bilinear_taps(length_in: int, length_out: int, scale, mode: str) -> Taps:
    """The taps of one axis (module docstring)."""
    if mode not in MODES:
        raise FloatIslandError(f"Resize linear: coordinate_transformation_mode must be one of "
                               f"{MODES}; got {mode!r}")
    if length_in < 1 or length_out < 1:
        raise FloatIslandError(f"Resize linear: lengths must be >= 1; got {length_in} -> "
                               f"{length_out}")
    if _F32(scale) == _F32(1):
        c = np.arange(length_out, dtype=_F32)
    else:
        c = source_coordinates(length_in, length_out, _F32(scale), mode)
    c = np.minimum(np.maximum(c, _F32(0)), _F32(length_in - 1)).astype(_F32)
    i1 = np.minimum(c.astype(np.int64), length_in - 1)
    i2 = np.minimum(i1 + 1, length_in - 1)
    d1 = np.abs(c - i1.astype(_F32)).astype(_F32)
    d2 = np.abs(c - i2.astype(_F32)).astype(_F32)
    c10 = (c * _F32(1024)).astype(np.int64)  # exact: c < 2^14, a float32 times a power of 2
    e1, e2 = np.abs(c10 - 1024 * i1), np.abs(c10 - 1024 * i2)
    same = i1 == i2
    d1[same], d2[same], e1[same], e2[same] = _F32(0.5), _F32(0.5), 512, 512
    return Taps(i1, i2, d1, d2, e1, e2)


def _corners(x: np.ndarray, ty: Taps, tx: Taps) -> tuple:
    top, bot = x[:, :, ty.i1], x[:, :, ty.i2]
    return top[..., tx.i1], top[..., tx.i2], bot[..., tx.i1], bot[..., tx.i2]


def _check4(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise FloatIslandError(f"Resize linear: {what} must be (N, C, H, W); got {x.shape}")
    return x


def bilinear_f32(x: np.ndarray, ty: Taps, tx: Taps) -> np.ndarray:
    """The ``float`` kernel: x (N, C, H, W) float32 -> (N, C, len(ty.i1), len(tx.i1))."""
    x = _check4(x, "x").astype(_F32)
    x11, x21, x12, x22 = _corners(x, ty, tx)
    dy1, dy2 = ty.d1[:, None], ty.d2[:, None]
    dx1, dx2 = tx.d1[None, :], tx.d2[None, :]
    acc = (dx2 * dy2).astype(_F32) * x11
    acc = (acc + (dx1 * dy2).astype(_F32) * x21).astype(_F32)
    acc = (acc + (dx2 * dy1).astype(_F32) * x12).astype(_F32)
    return (acc + (dx1 * dy1).astype(_F32) * x22).astype(_F32)


def bilinear_f32_reference(x: np.ndarray, ty: Taps, tx: Taps) -> np.ndarray:
    """`bilinear_f32` one float32 scalar operation at a time."""
    x = _check4(x, "x").astype(_F32)
    n, c = x.shape[:2]
    out = np.empty((n, c, ty.i1.size, tx.i1.size), _F32)
    for b, ch, i, j in np.ndindex(out.shape):
        r1, r2, c1, c2 = ty.i1[i], ty.i2[i], tx.i1[j], tx.i2[j]
        w = (_F32(tx.d2[j] * ty.d2[i]), _F32(tx.d1[j] * ty.d2[i]),
             _F32(tx.d2[j] * ty.d1[i]), _F32(tx.d1[j] * ty.d1[i]))
        v = (x[b, ch, r1, c1], x[b, ch, r1, c2], x[b, ch, r2, c1], x[b, ch, r2, c2])
        acc = _F32(w[0] * v[0])
        for k in (1, 2, 3):
            acc = _F32(acc + _F32(w[k] * v[k]))
        out[b, ch, i, j] = acc
    return out


def _check_codes(x: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    x = _check4(x, "codes")
    if x.dtype.kind not in "iuf" or (x.size and (x.min() < qmin or x.max() > qmax)):
        raise FloatIslandError(f"Resize linear: codes must lie in [{qmin}, {qmax}]")
    if x.dtype.kind == "f" and x.size and not np.all(x == np.rint(x)):
        raise FloatIslandError("Resize linear: codes must be integers")
    return x.astype(np.int64)


def bilinear_codes(x: np.ndarray, ty: Taps, tx: Taps, kernel: str, qmin: int,
                   qmax: int) -> np.ndarray:
    """8-bit codes x (N, C, H, W) in [qmin, qmax] -> int64 codes by the ``nchw_cast`` or
    ``nhwc_integer`` kernel (module docstring)."""
    x = _check_codes(x, qmin, qmax)
    if kernel == "nchw_cast":
        y = np.trunc(bilinear_f32(x.astype(_F32), ty, tx)).astype(np.int64)
    elif kernel == "nhwc_integer":
        x11, x21, x12, x22 = _corners(x, ty, tx)
        e1y, e2y, e1x, e2x = ty.e1[:, None], ty.e2[:, None], tx.e1[None, :], tx.e2[None, :]
        acc = e2x * e2y * x11 + e1x * e2y * x21 + e2x * e1y * x12 + e1x * e1y * x22
        y = np.sign(acc) * (np.abs(acc) >> 20)  # C's integer division: toward zero
    else:
        raise FloatIslandError(f"Resize linear: the code kernel must be 'nchw_cast' or "
                               f"'nhwc_integer'; got {kernel!r}")
    return np.clip(y, qmin, qmax)


def bilinear_codes_reference(x: np.ndarray, ty: Taps, tx: Taps, kernel: str, qmin: int,
                             qmax: int) -> np.ndarray:
    """`bilinear_codes` one element at a time (Python integers / float32 scalars)."""
    x = _check_codes(x, qmin, qmax)
    if kernel == "nchw_cast":
        f = bilinear_f32_reference(x.astype(_F32), ty, tx)
        return np.clip(np.vectorize(lambda v: int(math.trunc(float(v))), otypes=[np.int64])(f)
                       if f.size else f.astype(np.int64), qmin, qmax)
    if kernel != "nhwc_integer":
        raise FloatIslandError(f"Resize linear: the code kernel must be 'nchw_cast' or "
                               f"'nhwc_integer'; got {kernel!r}")
    n, c = x.shape[:2]
    out = np.empty((n, c, ty.i1.size, tx.i1.size), np.int64)
    for b, ch, i, j in np.ndindex(out.shape):
        r1, r2, c1, c2 = int(ty.i1[i]), int(ty.i2[i]), int(tx.i1[j]), int(tx.i2[j])
        ey1, ey2, ex1, ex2 = int(ty.e1[i]), int(ty.e2[i]), int(tx.e1[j]), int(tx.e2[j])
        acc = (ex2 * ey2 * int(x[b, ch, r1, c1]) + ex1 * ey2 * int(x[b, ch, r1, c2])
               + ex2 * ey1 * int(x[b, ch, r2, c1]) + ex1 * ey1 * int(x[b, ch, r2, c2]))
        q = abs(acc) // (1 << 20)
        out[b, ch, i, j] = min(max(q if acc >= 0 else -q, qmin), qmax)
    return out


# --- the ONNX node: output size, then a kernel ----------------------------------------------

def output_geometry(shape: tuple, scales, sizes) -> tuple[list[int], list]:
    """(output shape, float32 scales) of Resize on a (N, C, H, W) input from its scales or
    sizes input (ONNX Runtime: floor(dim · scale); with sizes, scale = f32(out) / f32(in))."""
    if sizes is not None and np.asarray(sizes).size:
        out = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(out) != 4:
            raise FloatIslandError(f"Resize: sizes must have 4 entries; got {out}")
        s = [_F32(o) / _F32(i) for o, i in zip(out, shape)]
    elif scales is not None and np.asarray(scales).size:
        s = [_F32(v) for v in np.asarray(scales, dtype=_F32).reshape(-1)]
        if len(s) != 4:
            raise FloatIslandError(f"Resize: scales must have 4 entries; got {s}")
        out = [int(math.floor(float(_F32(d) * v))) for d, v in zip(shape, s)]
    else:
        raise FloatIslandError("Resize: either scales or sizes must be given")
    if out[0] != shape[0] or out[1] != shape[1] or min(out[2:]) < 1:
        raise FloatIslandError(f"Resize: only H and W may be resized, to at least 1; "
                               f"{tuple(shape)} -> {tuple(out)}")
    return out, s


def _onnx_resize(ins, attrs, reference: bool) -> np.ndarray:
    x = _check4(ins[0], "X")
    mode = attrs.get("mode", "nearest")
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    if attrs.get("antialias", 0) or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" \
            or "axes" in attrs:
        raise FloatIslandError("antialias, keep_aspect_ratio_policy and axes are not supported")
    pad = list(ins) + [None] * (4 - len(ins))
    out, s = output_geometry(x.shape, pad[2], pad[3])
    if mode == "nearest":
        try:
            rows = nearest_indices(x.shape[2], out[2], s[2], coord,
                                   attrs.get("nearest_mode", "round_prefer_floor"))
            cols = nearest_indices(x.shape[3], out[3], s[3], coord,
                                   attrs.get("nearest_mode", "round_prefer_floor"))
        except Exception as exc:
            raise FloatIslandError(str(exc)) from None
        return np.asarray(x, _F32)[:, :, rows][:, :, :, cols]
    if mode != "linear":
        raise FloatIslandError(f"mode must be 'nearest' or 'linear'; got {mode!r}")
    ty = bilinear_taps(x.shape[2], out[2], s[2], coord)
    tx = bilinear_taps(x.shape[3], out[3], s[3], coord)
    kernel = attrs.get("hwsim_kernel", "float")
    if kernel == "float":
        return (bilinear_f32_reference if reference else bilinear_f32)(x, ty, tx)
    lo, hi = (int(v) for v in attrs.get("hwsim_code_range", (0, 255)))
    fn = bilinear_codes_reference if reference else bilinear_codes
    return fn(x, ty, tx, kernel, lo, hi).astype(_F32)


def onnx_resize(ins, attrs) -> np.ndarray:
    """Float-island Resize: ins [X (N, C, H, W) float32, roi, scales, sizes] (roi unused:
    coordinate modes without it), ONNX attributes; float32 output. Mode "nearest" gathers;
    mode "linear" runs attrs["hwsim_kernel"] ("float" by default; "nchw_cast" /
    "nhwc_integer" on integer-valued codes within attrs["hwsim_code_range"])."""
    return _onnx_resize(ins, attrs, reference=False)


def onnx_resize_reference(ins, attrs) -> np.ndarray:
    """`onnx_resize` with the element-by-element kernels."""
    return _onnx_resize(ins, attrs, reference=True)
