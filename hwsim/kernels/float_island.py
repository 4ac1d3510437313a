"""Float islands: ONNX float ops that ONNX Runtime's quantizer left between a DequantizeLinear
and a QuantizeLinear, computed in float32 exactly as ONNX Runtime's CPU kernels compute them.

Every operation below rounds once to float32 (round half to even), as x86 SSE/AVX arithmetic
does; "fma" rounds a·b + c once. Each order was measured against onnxruntime 1.32 on x86-64
(tests/test_onnx_float_islands.py re-checks them against the installed runtime, 0 mismatches):

- DequantizeLinear: x = f32(f32(code - zp) · s).
- QuantizeLinear: v = f32(x / s); clamp v to [qmin - zp, qmax - zp] (NaN -> qmin - zp);
  round half to even; + zp.
- Relu: max(x, 0). LeakyRelu: x >= 0 ? x : f32(alpha · x). Clip: min(max(x, lo), hi) (bounds
  from the inputs, or the min/max attributes before opset 11; absent bounds do not clip).
- HardSigmoid: min(max(f32(f32(alpha · x) + beta), 0), 1) (a multiply, then an add: no fma).
- HardSwish: f32(x · HardSigmoid(x; alpha = f32(1/6), beta = 0.5)).
- Sigmoid: MLAS's logistic (`mlas_float.logistic_f32`: Eigen's rational approximation, each
  step an fma, on x clamped to [-18, 18]).
- Tanh: MLAS's tanh (FMA3 kernel): v = clamp(x, -9, 9), v2 = f32(v·v);
  p = fma chain ((((((a13 v2 + a11) v2 + a9) v2 + a7) v2 + a5) v2 + a3) v2 + a1), p = f32(p·v);
  q = fma chain (((b6 v2 + b4) v2 + b2) v2 + b0); y = f32(p / q).
- Add, Sub, Mul, Div: one float32 operation, numpy broadcasting (= ONNX's); a constant divisor
  stays a division.
- BatchNormalization (inference): inv = f32(1 / f32(sqrt(f32(var + eps)))); a = f32(inv · scale);
  b = f32(B - f32(mean · a)); y = f32(f32(x · a) + b), per channel (axis 1).
- GlobalAveragePool (MLAS global kernel, every float GAP whose input comes from another node):
  per (n, c), 4 float32 lanes l_j += x[4i + j] over the whole groups of 4, then
  s = f32(f32(l0 + l2) + f32(l1 + l3)), then s += x[k] for the remaining k in order;
  y = f32(s / count).
- ReduceMean over trailing axes (keepdims either way): Eigen's vectorized sum of each row of R
  contiguous values, 4-float packets (ONNX Runtime's core is built for SSE), then
  y = f32(sum / R). The row's first aligned element a = (-offset) mod 4, where offset is the
  row's element offset in the tensor ONNX Runtime ran (its buffers are 16-byte aligned): with
  at least 4 values from a: two packet accumulators P0 = x[a:a+4], P1 = x[a+4:a+8] take the
  following packets alternately (lane-wise adds) over whole pairs, P0 += P1, P0 += the one
  remaining whole packet if any, s = f32(f32(P0_0 + P0_2) + f32(P0_1 + P0_3)), then
  s += x[0..a-1] in order, then the values after the last whole packet in order; with fewer,
  s = x[0] + x[1] + ... in order.
- Flatten, Reshape, Identity: the values unchanged. Transpose, Split, Squeeze, Unsqueeze,
  MaxPool (exact) and Sum of N inputs (left to right): `float_island_ops`. LRN: `lrn_f32`.

Functions take the op's inputs (float32 arrays, or None for an omitted optional input) and its
ONNX attributes; `FLOAT_OPS` maps each op type to its fast (vectorized numpy) and reference
(element by element, exact fma) implementations, which agree bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from hwsim.kernels import float_island_ops
from hwsim.kernels.conv_transpose_f32 import (onnx_conv_transpose,
                                             onnx_conv_transpose_reference)
from hwsim.kernels.float_island_errors import FloatIslandError
from hwsim.kernels.fma import fma_f32
from hwsim.kernels.lrn_f32 import onnx_lrn, onnx_lrn_reference
from hwsim.kernels.resize_linear_ort import onnx_resize, onnx_resize_reference
from hwsim.kernels.mlas_float import (LOGISTIC_ALPHA, LOGISTIC_BETA, LOGISTIC_RANGE,
                                      leaky_relu_f32, logistic_f32)

_F32 = np.float32

# MLAS's tanh constants (Eigen's rational approximation), float32.
TANH_RANGE = (_F32(-9.0), _F32(9.0))
TANH_ALPHA = tuple(_F32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13,
                                    -8.60467152213735e-11, 5.12229709037114e-08,
                                    1.48572235717979e-05, 6.37261928875436e-04,
                                    4.89352455891786e-03))  # a13 .. a1
TANH_BETA = tuple(_F32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04,
                                   2.26843463243900e-03, 4.89352518554385e-03))  # b6 .. b0
HARD_SWISH_ALPHA = _F32(1.0 / 6.0)
PACKET = 4  # Eigen's float packet in ONNX Runtime's (SSE) build; MLAS's MLAS_FLOAT32X4


# ------------------------------------------------------------------------------------------------
# Quantize / dequantize at the island's boundary

def dequantize(codes: np.ndarray, scale, zero_point: int) -> np.ndarray:
    """ONNX Runtime's DequantizeLinear: f32(f32(code - zp) · s), float32."""
    diff = (np.asarray(codes, dtype=np.int64) - int(zero_point)).astype(_F32)
    return (diff * _F32(scale)).astype(_F32)


def quantize(x: np.ndarray, scale, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """ONNX Runtime's QuantizeLinear (per tensor): int64 codes in [qmin, qmax]."""
    with np.errstate(invalid="ignore", over="ignore"):
        v = (np.asarray(x, dtype=_F32) / _F32(scale)).astype(_F32)
    lo, hi = _F32(qmin - zero_point), _F32(qmax - zero_point)
    v = np.where(np.isnan(v), lo, v)
    v = np.minimum(np.maximum(v, lo), hi)
    return np.rint(v).astype(np.int64) + int(zero_point)


def dequantize_reference(codes: np.ndarray, scale, zero_point: int) -> np.ndarray:
    s = _F32(scale)
    return _map(lambda c: _F32(_F32(int(c) - int(zero_point)) * s), np.asarray(codes),
                cast=False)


def quantize_reference(x: np.ndarray, scale, zero_point: int, qmin: int, qmax: int
                       ) -> np.ndarray:
    s, lo, hi = _F32(scale), _F32(qmin - zero_point), _F32(qmax - zero_point)

    def one(v) -> int:
        q = _F32(v / s)
        q = lo if math.isnan(q) else min(max(q, lo), hi)
        return round(float(q)) + int(zero_point)  # Python's round: half to even
    x = np.asarray(x, dtype=_F32)
    out = np.empty(x.shape, np.int64)
    for idx in np.ndindex(x.shape):
        out[idx] = one(x[idx])
    return out


# ------------------------------------------------------------------------------------------------
# Scalar helpers of the reference implementations

def _map(fn, *arrays, cast: bool = True) -> np.ndarray:
    """fn applied element by element (numpy broadcasting), float32 result."""
    arrays = [np.asarray(a, dtype=_F32) if cast else np.asarray(a) for a in arrays]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    views = [np.broadcast_to(a, shape) for a in arrays]
    out = np.empty(shape, _F32)
    for idx in np.ndindex(shape):
        out[idx] = fn(*(v[idx] for v in views))
    return out


def _round_f32(q: Fraction) -> np.float32:
    """The float32 nearest to the rational q (ties to the even significand)."""
    r = _F32(float(q))
    cands = {r, np.nextafter(r, _F32(np.inf)), np.nextafter(r, _F32(-np.inf))}
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - q),
                                     int(np.asarray(v, _F32).view(np.int32)) & 1))


def _fma(a, b, c) -> np.float32:
    """a·b + c rounded once to float32, in exact rational arithmetic."""
    return _round_f32(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


# ------------------------------------------------------------------------------------------------
# The ops

def _f32(v) -> np.ndarray:
    return np.asarray(v, dtype=_F32)


def _one(ins) -> np.ndarray:
    return _f32(ins[0])


def _relu(ins, attrs):
    return np.maximum(_one(ins), _F32(0))


def _relu_ref(ins, attrs):
    return _map(lambda v: v if v > 0 or v != v else _F32(0), ins[0])


def _leaky(ins, attrs):
    return leaky_relu_f32(_one(ins), _F32(attrs.get("alpha", 0.01)))


def _leaky_ref(ins, attrs):
    a = _F32(attrs.get("alpha", 0.01))
    return _map(lambda v: v if v >= 0 else _F32(a * v), ins[0])


def _clip_bounds(ins, attrs) -> tuple:
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else attrs.get("max")
    for v in (lo, hi):
        if v is not None and np.size(v) != 1:
            raise FloatIslandError(f"Clip bounds must be scalars; got shape {np.shape(v)}")
    return (None if lo is None else _F32(np.reshape(lo, ())),
            None if hi is None else _F32(np.reshape(hi, ())))


def _clip(ins, attrs):
    lo, hi = _clip_bounds(ins, attrs)
    x = _one(ins)
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x


def _clip_ref(ins, attrs):
    lo, hi = _clip_bounds(ins, attrs)

    def one(v):
        if lo is not None and v < lo:
            v = lo
        if hi is not None and v > hi:
            v = hi
        return v
    return _map(one, ins[0])


def _hard_sigmoid(x, alpha, beta):
    v = (_F32(alpha) * _f32(x)).astype(_F32) + _F32(beta)
    return np.minimum(np.maximum(v.astype(_F32), _F32(0)), _F32(1))


def _hard_sigmoid_scalar(v, alpha, beta):
    return min(max(_F32(_F32(_F32(alpha) * v) + _F32(beta)), _F32(0)), _F32(1))


def _hsig(ins, attrs):
    return _hard_sigmoid(ins[0], attrs.get("alpha", 0.2), attrs.get("beta", 0.5))


def _hsig_ref(ins, attrs):
    a, b = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return _map(lambda v: _hard_sigmoid_scalar(v, a, b), ins[0])


def _hswish(ins, attrs):
    x = _one(ins)
    return (x * _hard_sigmoid(x, HARD_SWISH_ALPHA, 0.5)).astype(_F32)


def _hswish_ref(ins, attrs):
    return _map(lambda v: _F32(v * _hard_sigmoid_scalar(v, HARD_SWISH_ALPHA, 0.5)), ins[0])


def _sigmoid(ins, attrs):
    return logistic_f32(_one(ins))


def _sigmoid_ref(ins, attrs):
    def one(v):
        v = min(max(v, LOGISTIC_RANGE[0]), LOGISTIC_RANGE[1])
        v2 = _F32(v * v)
        a9, a7, a5, a3, a1 = LOGISTIC_ALPHA
        p = _fma(v2, a9, a7)
        for c in (a5, a3, a1):
            p = _fma(p, v2, c)
        p = _F32(p * v)
        b10, b8, b6, b4, b2, b0 = LOGISTIC_BETA
        q = _fma(v2, b10, b8)
        for c in (b6, b4, b2, b0):
            q = _fma(q, v2, c)
        return max(_F32(_F32(p / q) + _F32(0.5)), _F32(0))
    return _map(one, ins[0])


def tanh_f32(x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's float32 Tanh (MLAS, FMA3 kernel; module docstring)."""
    v = np.minimum(np.maximum(_f32(x), TANH_RANGE[0]), TANH_RANGE[1])
    v2 = (v * v).astype(_F32)
    p = fma_f32(v2, TANH_ALPHA[0], TANH_ALPHA[1])
    for c in TANH_ALPHA[2:]:
        p = fma_f32(p, v2, c)
    p = (p * v).astype(_F32)
    q = fma_f32(v2, TANH_BETA[0], TANH_BETA[1])
    for c in TANH_BETA[2:]:
        q = fma_f32(q, v2, c)
    return (p / q).astype(_F32)


def _tanh(ins, attrs):
    return tanh_f32(ins[0])


def _tanh_ref(ins, attrs):
    def one(v):
        v = min(max(v, TANH_RANGE[0]), TANH_RANGE[1])
        v2 = _F32(v * v)
        p = _fma(v2, TANH_ALPHA[0], TANH_ALPHA[1])
        for c in TANH_ALPHA[2:]:
            p = _fma(p, v2, c)
        p = _F32(p * v)
        q = _fma(v2, TANH_BETA[0], TANH_BETA[1])
        for c in TANH_BETA[2:]:
            q = _fma(q, v2, c)
        return _F32(p / q)
    return _map(one, ins[0])


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _binary(op: str):
    fn = _BINARY[op]

    def fast(ins, attrs):
        a, b = _f32(ins[0]), _f32(ins[1])
        _broadcast(op, a, b)
        with np.errstate(all="ignore"):
            return fn(a, b).astype(_F32)

    def ref(ins, attrs):
        _broadcast(op, _f32(ins[0]), _f32(ins[1]))
        with np.errstate(all="ignore"):
            return _map(lambda u, v: _F32(fn(u, v)), ins[0], ins[1])
    return fast, ref


def _broadcast(op: str, a, b) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise FloatIslandError(f"{op}: operand shapes {a.shape} and {b.shape} do not "
                               "broadcast") from None


def _bn_params(ins, attrs) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) per channel: y = f32(f32(x · a) + b)."""
    x = _f32(ins[0])
    if x.ndim < 2:
        raise FloatIslandError(f"BatchNormalization needs (N, C, ...) input; got {x.shape}")
    c = x.shape[1]
    scale, bias, mean, var = (_f32(v).reshape(-1) for v in ins[1:5])
    if any(v.size != c for v in (scale, bias, mean, var)):
        raise FloatIslandError(f"BatchNormalization parameters must have {c} entries (one per "
                               "channel)")
    eps = _F32(attrs.get("epsilon", 1e-5))
    inv = (_F32(1) / np.sqrt((var + eps).astype(_F32)).astype(_F32)).astype(_F32)
    a = (inv * scale).astype(_F32)
    b = (bias - (mean * a).astype(_F32)).astype(_F32)
    return a, b


def _bn(ins, attrs):
    x = _f32(ins[0])
    a, b = _bn_params(ins, attrs)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return ((x * a.reshape(shape)).astype(_F32) + b.reshape(shape)).astype(_F32)


def _bn_ref(ins, attrs):
    x = _f32(ins[0])
    c = x.shape[1]
    scale, bias, mean, var = (_f32(v).reshape(-1) for v in ins[1:5])
    eps = _F32(attrs.get("epsilon", 1e-5))
    a = [_F32(_F32(_F32(1) / _F32(math.sqrt(_F32(var[k] + eps)))) * scale[k]) for k in range(c)]
    b = [_F32(bias[k] - _F32(mean[k] * a[k])) for k in range(c)]
    out = np.empty(x.shape, _F32)
    for idx in np.ndindex(x.shape):
        k = idx[1]
        out[idx] = _F32(_F32(x[idx] * a[k]) + b[k])
    return out


# --- sums ---------------------------------------------------------------------------------------

def _rows(x: np.ndarray, first_reduced: int) -> np.ndarray:
    lead = int(np.prod(x.shape[:first_reduced]))
    return np.ascontiguousarray(x.reshape(lead, -1))


def _seq(acc: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """acc + cols[:, 0] + cols[:, 1] + ... left to right, float32 each step (acc (M,))."""
    for j in range(cols.shape[1]):
        acc = (acc + cols[:, j]).astype(_F32)
    return acc


def _lanes(blocks: np.ndarray) -> np.ndarray:
    """Lane-wise float32 running sum of packets: blocks (M, B, 4) -> (M, 4), left to right."""
    return np.add.accumulate(blocks, axis=1, dtype=_F32)[:, -1]


def _hsum(p: np.ndarray) -> np.ndarray:
    """SSE horizontal add of (M, 4) packets: f32(f32(p0 + p2) + f32(p1 + p3))."""
    return ((p[:, 0] + p[:, 2]).astype(_F32) + (p[:, 1] + p[:, 3]).astype(_F32)).astype(_F32)


def mlas_global_sum(rows: np.ndarray) -> np.ndarray:
    """MLAS's global pooling sum of each row of rows (M, L) (module docstring), float32 (M,)."""
    rows = _f32(rows)
    m, n = rows.shape
    whole = n // PACKET * PACKET
    if whole:
        s = _hsum(_lanes(rows[:, :whole].reshape(m, whole // PACKET, PACKET)))
    else:
        s = np.zeros(m, _F32)
    return _seq(s, rows[:, whole:])


def mlas_global_sum_reference(row: np.ndarray) -> np.float32:
    row = [_F32(v) for v in np.asarray(row, _F32).reshape(-1)]
    lanes = [_F32(0)] * PACKET
    i = 0
    while len(row) - i >= PACKET:
        lanes = [_F32(lanes[j] + row[i + j]) for j in range(PACKET)]
        i += PACKET
    s = _F32(_F32(lanes[0] + lanes[2]) + _F32(lanes[1] + lanes[3]))
    for v in row[i:]:
        s = _F32(s + v)
    return s


def eigen_sum(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Eigen's vectorized sum (module docstring, ReduceMean) of each row of rows (M, R) whose
    first element sits at element offset offsets[m] of a 16-byte aligned buffer; float32 (M,)."""
    rows = _f32(rows)
    m, r = rows.shape
    out = np.empty(m, _F32)
    starts = np.minimum((-np.asarray(offsets, dtype=np.int64)) % PACKET, r)
    for start in np.unique(starts):
        sel = np.flatnonzero(starts == start)
        out[sel] = _eigen_sum_from(rows[sel], int(start))
    return out


def _eigen_sum_from(x: np.ndarray, a: int) -> np.ndarray:
    m, r = x.shape
    whole = (r - a) // PACKET * PACKET
    if not whole:
        return _seq(x[:, 0].copy(), x[:, 1:])
    pairs = (r - a) // (2 * PACKET) * (2 * PACKET)
    end2, end1 = a + pairs, a + whole
    if whole > PACKET:
        blocks = x[:, a:end2].reshape(m, pairs // (2 * PACKET), 2, PACKET)
        p0, p1 = _lanes(blocks[:, :, 0]), _lanes(blocks[:, :, 1])
        p0 = (p0 + p1).astype(_F32)
        if end1 > end2:
            p0 = (p0 + x[:, end2:end2 + PACKET]).astype(_F32)
    else:
        p0 = x[:, a:a + PACKET]
    s = _hsum(p0)
    s = _seq(s, x[:, :a])
    return _seq(s, x[:, end1:])


def eigen_sum_reference(row: np.ndarray, offset: int) -> np.float32:
    """Eigen's redux (LinearVectorizedTraversal, no unrolling) transcribed one step at a time."""
    x = [_F32(v) for v in np.asarray(row, _F32).reshape(-1)]
    size = len(x)
    start = min((-offset) % PACKET, size)
    size2 = (size - start) // (2 * PACKET) * (2 * PACKET)
    size1 = (size - start) // PACKET * PACKET
    end2, end1 = start + size2, start + size1

    def packet(i):
        return x[i:i + PACKET]

    def padd(p, q):
        return [_F32(u + v) for u, v in zip(p, q)]
    if size1:
        p0 = packet(start)
        if size1 > PACKET:
            p1 = packet(start + PACKET)
            for i in range(start + 2 * PACKET, end2, 2 * PACKET):
                p0 = padd(p0, packet(i))
                p1 = padd(p1, packet(i + PACKET))
            p0 = padd(p0, p1)
            if end1 > end2:
                p0 = padd(p0, packet(end2))
        res = _F32(_F32(p0[0] + p0[2]) + _F32(p0[1] + p0[3]))
        for i in range(0, start):
            res = _F32(res + x[i])
        for i in range(end1, size):
            res = _F32(res + x[i])
        return res
    res = x[0]
    for v in x[1:]:
        res = _F32(res + v)
    return res


def _gap(ins, attrs):
    x = _one(ins)
    if x.ndim < 3:
        raise FloatIslandError(f"GlobalAveragePool needs (N, C, spatial...) input; got {x.shape}")
    count = _F32(int(np.prod(x.shape[2:])))
    s = mlas_global_sum(_rows(x, 2))
    return (s / count).astype(_F32).reshape(x.shape[:2] + (1,) * (x.ndim - 2))


def _gap_ref(ins, attrs):
    x = _one(ins)
    count = _F32(int(np.prod(x.shape[2:])))
    rows = _rows(x, 2)
    out = np.array([_F32(mlas_global_sum_reference(r) / count) for r in rows], _F32)
    return out.reshape(x.shape[:2] + (1,) * (x.ndim - 2))


def _pool_geometry(x: np.ndarray, attrs) -> tuple:
    """AveragePool's (kernel, stride, pads (top, left, bottom, right), count_include_pad,
    output size) for a 2-D pool; FloatIslandError for what ONNX Runtime would compute
    otherwise (ceil_mode, auto_pad other than NOTSET/VALID, dilations, other ranks)."""
    if x.ndim != 4:
        raise FloatIslandError(f"AveragePool: 2-D pools on (N, C, H, W) only; got {x.shape}")
    kernel = tuple(int(v) for v in attrs.get("kernel_shape", ()))
    stride = tuple(int(v) for v in attrs.get("strides", (1, 1)))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    pads = tuple(int(v) for v in attrs.get("pads", (0, 0, 0, 0)))
    if auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad != "NOTSET":
        raise FloatIslandError(f"AveragePool: auto_pad {auto_pad!r} is not supported")
    if len(kernel) != 2 or len(stride) != 2 or len(pads) != 4 or min(kernel + stride) < 1 \
            or min(pads) < 0:
        raise FloatIslandError(f"AveragePool: kernel_shape {kernel}, strides {stride}, pads "
                               f"{pads}: expected a 2-D pool")
    if attrs.get("ceil_mode", 0) or any(int(d) != 1 for d in attrs.get("dilations", (1, 1))):
        raise FloatIslandError("AveragePool: ceil_mode and dilations are not supported")
    top, left, bottom, right = pads
    oh = (x.shape[2] + top + bottom - kernel[0]) // stride[0] + 1
    ow = (x.shape[3] + left + right - kernel[1]) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise FloatIslandError(f"AveragePool: kernel {kernel} does not fit {x.shape[2:]}")
    return kernel, stride, (top, left, bottom, right), int(attrs.get("count_include_pad", 0)), \
        (oh, ow)


def _window_counts(o: int, size: int, before: int, k: int, s: int) -> np.ndarray:
    start = np.arange(o) * s - before
    return np.minimum(start + k, size) - np.maximum(start, 0)


def _pool_counts(x: np.ndarray, kernel, stride, pads, include_pad, out) -> np.ndarray:
    if include_pad:
        return np.full(out, kernel[0] * kernel[1], dtype=np.int64)
    return np.outer(_window_counts(out[0], x.shape[2], pads[0], kernel[0], stride[0]),
                    _window_counts(out[1], x.shape[3], pads[1], kernel[1], stride[1]))


def _avgpool(ins, attrs):
    """ONNX Runtime's float AveragePool (MLAS): per output, acc = 0, acc += x over the window
    in float32, kernel rows outer, columns inner (padding adds +0.0, exactly nothing), then
    f32(acc / count); count = kh·kw with count_include_pad, else the window inside the input."""
    x = _one(ins)
    kernel, stride, pads, include_pad, (oh, ow) = _pool_geometry(x, attrs)
    top, left, bottom, right = pads
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + top + max(bottom, kh), w + left + max(right, kw)), dtype=_F32)
    xp[:, :, top:top + h, left:left + w] = x
    acc = np.zeros((n, c, oh, ow), dtype=_F32)
    for i in range(kh):
        for j in range(kw):
            acc += xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    count = _pool_counts(x, kernel, stride, pads, include_pad, (oh, ow)).astype(_F32)
    return (acc / count).astype(_F32)


def _avgpool_ref(ins, attrs):
    x = _one(ins)
    kernel, stride, pads, include_pad, (oh, ow) = _pool_geometry(x, attrs)
    counts = _pool_counts(x, kernel, stride, pads, include_pad, (oh, ow))
    out = np.zeros(x.shape[:2] + (oh, ow), dtype=_F32)
    for a in range(x.shape[0]):
        for ch in range(x.shape[1]):
            for p in range(oh):
                for q in range(ow):
                    acc = _F32(0)
                    for i in range(kernel[0]):
                        r = p * stride[0] - pads[0] + i
                        for j in range(kernel[1]):
                            col = q * stride[1] - pads[1] + j
                            if 0 <= r < x.shape[2] and 0 <= col < x.shape[3]:
                                acc = _F32(acc + x[a, ch, r, col])
                    out[a, ch, p, q] = _F32(acc / _F32(counts[p, q]))
    return out


def reduce_axes(ins, attrs, rank: int) -> list[int]:
    """ReduceMean's axes (attribute before opset 18, input since), normalized and sorted; they
    must be trailing axes, not the batch axis."""
    axes = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("axes")
    if axes is None or np.size(axes) == 0:
        if attrs.get("noop_with_empty_axes", 0):
            return []
        axes = list(range(rank))
    given = [int(a) for a in np.asarray(axes).reshape(-1)]
    if any(not -rank <= a < rank for a in given):
        raise FloatIslandError(f"ReduceMean axes {given} out of range for rank {rank}")
    axes = sorted({a % rank for a in given})
    if 0 in axes:
        raise FloatIslandError(f"ReduceMean over axes {axes} reduces the batch axis 0; hwsim "
                               "runs each sample alone")
    if axes and axes != list(range(rank - len(axes), rank)):
        raise FloatIslandError(f"ReduceMean over axes {axes} of a rank-{rank} tensor: only "
                               "trailing axes (e.g. the spatial axes of (N, C, H, W)) are "
                               "supported")
    return axes


def _reduce_prepare(ins, attrs):
    x = _one(ins)
    axes = reduce_axes(ins, attrs, x.ndim)
    keep = bool(attrs.get("keepdims", 1))
    if not axes:
        return x, None, None, None
    first = axes[0]
    out_shape = (x.shape[:first] + (1,) * len(axes)) if keep else x.shape[:first]
    rows = _rows(x, first)
    # the row's element offset in the tensor ONNX Runtime ran: `ort_batch` samples at a time
    # (0: the whole batch)
    per_sample = rows.shape[0] // max(x.shape[0], 1)
    chunk = int(attrs.get("ort_batch", 0)) * per_sample
    index = np.arange(rows.shape[0], dtype=np.int64)
    offsets = (index % chunk if chunk else index) * rows.shape[1]
    return x, rows, offsets, out_shape


def _reduce_mean(ins, attrs):
    x, rows, offsets, out_shape = _reduce_prepare(ins, attrs)
    if rows is None:
        return x
    if rows.shape[1] == 0:
        raise FloatIslandError("ReduceMean over an empty axis")
    s = eigen_sum(rows, offsets)
    return (s / _F32(rows.shape[1])).astype(_F32).reshape(out_shape)


def _reduce_mean_ref(ins, attrs):
    x, rows, offsets, out_shape = _reduce_prepare(ins, attrs)
    if rows is None:
        return x
    n = _F32(rows.shape[1])
    out = np.array([_F32(eigen_sum_reference(r, int(o)) / n) for r, o in zip(rows, offsets)],
                   _F32)
    return out.reshape(out_shape)


# --- shapes -------------------------------------------------------------------------------------

def _flatten(ins, attrs):
    x = _one(ins)
    axis = int(attrs.get("axis", 1))
    axis = axis % x.ndim if x.ndim and axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        raise FloatIslandError(f"Flatten axis {attrs.get('axis')} out of range for rank {x.ndim}")
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def reshape_target(shape: tuple[int, ...], spec, allowzero: bool) -> tuple[int, ...]:
    """ONNX Reshape's output shape (0 copies the input's dimension unless allowzero, -1 is
    inferred)."""
    dims = [int(d) for d in np.asarray(spec).reshape(-1)]
    if not allowzero:
        dims = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise FloatIslandError(f"Reshape: invalid target shape {dims}")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        total = int(np.prod(shape))
        if known == 0 or total % known:
            raise FloatIslandError(f"Reshape: cannot reshape {shape} to {dims}")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != int(np.prod(shape)):
        raise FloatIslandError(f"Reshape: cannot reshape {shape} to {dims}")
    return tuple(dims)


def _reshape(ins, attrs):
    x = _one(ins)
    if ins[1] is None:
        raise FloatIslandError("Reshape needs its shape input")
    return x.reshape(reshape_target(x.shape, ins[1], bool(attrs.get("allowzero", 0))))


def _identity(ins, attrs):
    return _one(ins)


# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FloatOpSpec:
    """One supported float op: how many inputs it takes (fewest, most), its fast and reference
    implementations ``(inputs, attrs) -> float32 array``, and which inputs must be constants."""

    fewest: int
    most: int
    fast: Callable[[list, dict], np.ndarray]
    reference: Callable[[list, dict], np.ndarray]
    constant_inputs: tuple[int, ...] = ()


def _spec(fewest, most, fast, ref=None, constant_inputs=()):
    return FloatOpSpec(fewest, most, fast, ref or fast, tuple(constant_inputs))


FLOAT_OPS: dict[str, FloatOpSpec] = {
    "Relu": _spec(1, 1, _relu, _relu_ref),
    "LeakyRelu": _spec(1, 1, _leaky, _leaky_ref),
    "Clip": _spec(1, 3, _clip, _clip_ref, (1, 2)),
    "HardSigmoid": _spec(1, 1, _hsig, _hsig_ref),
    "HardSwish": _spec(1, 1, _hswish, _hswish_ref),
    "Sigmoid": _spec(1, 1, _sigmoid, _sigmoid_ref),
    "Tanh": _spec(1, 1, _tanh, _tanh_ref),
    **{op: _spec(2, 2, *_binary(op)) for op in _BINARY},
    "BatchNormalization": _spec(5, 5, _bn, _bn_ref, (1, 2, 3, 4)),
    "GlobalAveragePool": _spec(1, 1, _gap, _gap_ref),
    "AveragePool": _spec(1, 1, _avgpool, _avgpool_ref),
    "ReduceMean": _spec(1, 2, _reduce_mean, _reduce_mean_ref, (1,)),
    "Flatten": _spec(1, 1, _flatten),
    "Reshape": _spec(2, 2, _reshape, constant_inputs=(1,)),
    "Identity": _spec(1, 1, _identity),
    **float_island_ops.ops(_spec),  # Transpose, Split, Squeeze, Unsqueeze, MaxPool, Sum
    # W and B are constants (QDQ: DequantizeLinear of constants); order: conv_transpose_f32
    "ConvTranspose": _spec(2, 3, onnx_conv_transpose, onnx_conv_transpose_reference, (1, 2)),
    "Resize": _spec(1, 4, onnx_resize, onnx_resize_reference, (1, 2, 3)),  # resize_linear_ort
    "LRN": _spec(1, 1, onnx_lrn, onnx_lrn_reference),  # lrn_f32 (Eigen's packet pow)
}


def evaluate(nodes: list[dict], values: dict[str, np.ndarray], output: str, *,
             reference: bool = False) -> np.ndarray:
    """Run the island's nodes ({"name", "op", "inputs", "outputs", "attrs"}, in topological
    order) on `values` (its dequantized inputs and constants, by ONNX tensor name); return the
    float32 value of tensor `output`. A failing node raises FloatIslandError naming it."""
    env = dict(values)
    for node in nodes:
        spec = FLOAT_OPS.get(node["op"])
        label = f"float-island node {node['name']!r} ({node['op']})"
        if spec is None:
            raise FloatIslandError(f"{label}: op not supported in float islands; supported: "
                                   f"{', '.join(sorted(FLOAT_OPS))}")
        try:
            ins = [env[name] if name else None for name in node["inputs"]]
        except KeyError as exc:
            raise FloatIslandError(f"{label}: input {exc.args[0]!r} is computed by no earlier "
                                   "node of the island") from None
        fn = spec.reference if reference else spec.fast
        try:
            env[node["outputs"][0]] = np.asarray(fn(ins, node["attrs"]), dtype=_F32)
        except FloatIslandError as exc:
            raise FloatIslandError(f"{label}: {exc}") from None
        except (ValueError, TypeError, IndexError) as exc:
            raise FloatIslandError(f"{label}: {type(exc).__name__}: {exc}") from None
    if output not in env:
        raise FloatIslandError(f"the island's output {output!r} is computed by none of its nodes")
    return np.asarray(env[output], dtype=_F32)


def float_island(codes: list[np.ndarray], *, nodes: list[dict], inputs: list[dict],
                 constants: dict[str, Any], output: str, y_scale, y_zero_point: int,
                 qmin: int, qmax: int, reference: bool = False) -> np.ndarray:
    """A whole island on integer codes: dequantize codes[i] with inputs[i] ({"tensor", "scale",
    "zero_point"}), evaluate, quantize the output; int64 codes."""
    deq = dequantize_reference if reference else dequantize
    q = quantize_reference if reference else quantize
    values = dict(constants)
    for c, spec in zip(codes, inputs):
        values[spec["tensor"]] = deq(c, _F32(spec["scale"]), int(spec["zero_point"]))
    y = evaluate(nodes, values, output, reference=reference)
    return q(y, _F32(y_scale), int(y_zero_point), int(qmin), int(qmax))
