"""ONNX LRN (float32, N x C x H x W) as ONNX Runtime 1.32's CPU kernel computes it (lrn.cc;
measured against onnxruntime 1.32 on x86-64, tests/test_onnx_lrn.py), for float islands.

Scale, per image n, every op rounded to float32 (Axpy is a multiply then an add, no fma):
a = f32(alpha / size), pre = (size - 1) // 2, sq = x² placed at channels pre .. pre + C - 1 of a
zero buffer of C + size - 1 channels; s[0] = bias, then s[0] = s[0] + a·sq[j] for j = 0 .. size-1;
s[c] = (s[c-1] + a·sq[c + size - 1]) + (-a)·sq[c - 1] for c = 1 .. C - 1.

Output y = x · pow(s, -beta), over the flattened tensor of T values: Eigen (SSE build, 4-float
packets) computes pow on the first T - T mod 4 values (its output buffer is 16-byte aligned, so
no scalar prologue) and the C library's powf on the last T mod 4. This is one call over the whole
tensor, as with one intra-op thread (hwsim runs ONNX Runtime so); more threads would split it.

Eigen's packet pow for a non-integer exponent b < 0 and 0 < s < inf (`pow_f32`), each step
float32, round half to even, no fma; (h, l) pairs are double-float values h + l:

- s = m · 2^e, m in [0.5, 1) (subnormals too); if m < f32(√½): m = 2m, e = e - 1; r = m - 1.
- p = Horner(LOG2_POLY, r); log2(m) = r · (C0 + r · (C1 + r · p)) in double-float:
  (q) = C1 + two_prod(r, p), (v) = C0 + q·r, (L) = v·r.
- f = two_prod(e, b) + L·b; n = rha(f_h); t = (f_h - n) + f_l; k = rha(t); t = t - k;
  n = n + k (rha: round half away from zero).
- t = clamp(t, -151, 129); (g_h, g_l) = two_prod(t, f32(ln 2)); E = exp(g_h) (Cephes-style
  float exp below); pow = ldexp(f32((g_l + 1) · E), n).

two_prod(x, y) is Dekker's product with Veltkamp's 4097 split; "(q) = C + (h, l)" and "·r" are
fast two-sums as `_add_dw` / `_mul_dw` spell out. Special scales: pow(0) = inf, pow(s < 0) =
pow(NaN) = NaN, pow(inf) = 0. An integer beta takes another Eigen path (repeated squaring),
not reproduced: refused.

`onnx_lrn` is vectorized numpy; `onnx_lrn_reference` recomputes every value element by element
in Python floats, each operation rounded to float32 (exact: a double holds the exact result of
one float32 operation before its one rounding). Both return float32 arrays of x's shape.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import struct

import numpy as np

from hwsim.kernels.float_island_errors import FloatIslandError

_F32 = np.float32
PACKET = 4  # Eigen's float packet in ONNX Runtime's SSE build

SPLIT = 4097.0                                     # Veltkamp split constant for float32
SQRT_HALF = 0.70710677                             # f32(√½), 0x3f3504f3
LOG2_POLY = (0.09701083, -0.16896486, 0.17200837, -0.17892273, 0.20505345, -0.24046677,
             0.28857553, -0.36067414, 0.4808979)   # highest degree first
LOG2_C1 = (-0.7213475, -5.06802e-09)               # -1 / (2 ln 2) as a double-float
LOG2_C0 = (1.442695, 2.0112777e-08)                # 1 / ln 2 as a double-float
LN2 = 0.6931472                                    # f32(ln 2) = LN2_SPLIT[0] + LN2_SPLIT[1]
LN2_SPLIT = (0.69311523, 3.194809e-05)
EXP_RANGE = (-151.0, 129.0)                        # clamp of the fractional power of 2
EXP_HI, EXP_FAST, EXP_ZERO = 88.723, 87.0, -104.0
LOG2E = 1.442695
EXP_CODY_WAITE = (-0.6933594, 0.00021219444)
EXP_POLY_EVEN = (0.0013744964, 0.041669652, 0.49999988)
EXP_POLY_ODD = (0.008368945, 0.16666518)
LDEXP_FAST, LDEXP_CLAMP = 126.0, 278.0


def _f(v) -> float:
    """Python float v rounded to float32 (round half to even; inf past the largest float32)."""
    try:
        return struct.unpack("<f", struct.pack("<f", v))[0]
    except OverflowError:  # raised only when the rounded value is infinite
        return math.copysign(math.inf, v)


_K = {name: tuple(_f(v) for v in val) if isinstance(val, tuple) else _f(val)
      for name, val in dict(SPLIT=SPLIT, SQRT_HALF=SQRT_HALF, LOG2_POLY=LOG2_POLY,
                            LOG2_C1=LOG2_C1, LOG2_C0=LOG2_C0, LN2=LN2, LN2_SPLIT=LN2_SPLIT,
                            LOG2E=LOG2E, EXP_CODY_WAITE=EXP_CODY_WAITE,
                            EXP_POLY_EVEN=EXP_POLY_EVEN, EXP_POLY_ODD=EXP_POLY_ODD).items()}


# ------------------------------------------------------------------------------------------------
# Double-float arithmetic, written once for both numpy float32 arrays (fast) and Python floats
# rounded by `r` (reference): `r` rounds the result of one operation to float32.

def _split(a, r):
    g = r(a * _K["SPLIT"])
    hi = r(r(a - g) + g)
    return hi, r(a - hi)


def _two_prod(x, y, r):
    """(p, err): p = f32(x·y), p + err = x·y exactly."""
    p = r(x * y)
    xh, xl = _split(x, r)
    yh, yl = _split(y, r)
    return p, r(r(r(r(r(xh * yh) - p) + r(xh * yl)) + r(xl * yh)) + r(xl * yl))


def _fast_two_sum(a, b, r):
    s = r(a + b)
    return s, r(b - r(s - a))


def _add_dw(xh, xl, yh, yl, r):
    """(xh, xl) + (yh, yl), |xh| >= |yh| assumed."""
    sh, sl = _fast_two_sum(xh, yh, r)
    return _fast_two_sum(sh, r(r(yl + sl) + xl), r)


def _mul_dw(xh, xl, y, r):
    """(xh, xl) · y."""
    ch, cl1 = _two_prod(xh, y, r)
    th, tl1 = _fast_two_sum(ch, r(xl * y), r)
    return _fast_two_sum(th, r(cl1 + tl1), r)


def _log2_times(m, e, b, r):
    """(f_h, f_l) ≈ b · (e + log2(m)), m in [√½, √2) reduced, e its exponent."""
    x = r(m - 1.0)
    p = _K["LOG2_POLY"][0]
    for c in _K["LOG2_POLY"][1:]:
        p = r(r(p * x) + c)
    ph, pl = _two_prod(x, p, r)
    qh, ql = _add_dw(*_K["LOG2_C1"], ph, pl, r)
    uh, ul = _mul_dw(qh, ql, x, r)
    vh, vl = _add_dw(*_K["LOG2_C0"], uh, ul, r)
    lh, ll = _mul_dw(vh, vl, x, r)
    f1h, f1l = _two_prod(e, b, r)
    f2h, f2l = _mul_dw(lh, ll, b, r)
    return _add_dw(f1h, f1l, f2h, f2l, r)


def _exp_poly(t, r):
    """(y, m): exp(t) = y · 2^m for t <= 88.723 (m = floor(t·log2(e) + 0.5))."""
    m = _floor(r(r(t * _K["LOG2E"]) + 0.5), r)
    c1, c2 = _K["EXP_CODY_WAITE"]
    x = r(r(r(m * c1) + t) + r(m * c2))
    x2 = r(x * x)
    e2, e1, e0 = _K["EXP_POLY_EVEN"]
    o1, o0 = _K["EXP_POLY_ODD"]
    even = r(r(r(r(e2 * x2) + e1) * x2) + e0)
    odd = r(r(r(o1 * x2) + o0) * x)
    return r(r(r(even + odd) * x2) + r(x + 1.0)), m


# ------------------------------------------------------------------------------------------------
# Fast (numpy float32) pow

def _r32(v):
    return v  # numpy float32 operands: every operation already rounds to float32


def _floor(v, r):
    """floor of a float32 array (fast) or Python float (reference, r = `_f`); Eigen's SSE2
    floor (round by ±2^23, step down where that went up) is exact, so equal to it."""
    if r is _r32:
        return np.floor(v).astype(_F32)
    return float(math.floor(v))


def _rha(v):
    """Round half away from zero, float32 array (exact: floor, then up where the dropped
    fraction is >= 0.5)."""
    a = np.abs(v)
    t = np.floor(a)
    t = t + np.where(a - t >= _F32(0.5), _F32(1), _F32(0))
    return np.copysign(t, v).astype(_F32)


def _pow2(n):
    """2^n as float32 for integer-valued float32 n in [-126, 127]."""
    return np.ldexp(_F32(1), n.astype(np.int32)).astype(_F32)


def _ldexp_split(v, n):
    """Eigen's generic ldexp: n clamped to [-278, 278], i = int(n), b = i >> 2;
    v · 2^b · 2^b · 2^b · 2^(i - 3b), each product rounded."""
    i = np.clip(n, _F32(-LDEXP_CLAMP), _F32(LDEXP_CLAMP)).astype(np.int32)
    b = i >> 2
    c = _pow2(b.astype(_F32))
    return (((v * c) * c) * c * _pow2((i - 3 * b).astype(_F32))).astype(_F32)


def pow_f32(s: np.ndarray, b) -> np.ndarray:
    """Eigen's packet pow(s, b) (module docstring), float32 array s of any shape, float32
    scalar b < 0 not an integer; float32 array of s's shape."""
    with np.errstate(over="ignore", invalid="ignore"):  # clamped lanes overflow, then are fixed
        return _pow_f32(np.asarray(s, _F32), _F32(b))


def _pow_f32(s: np.ndarray, b: np.float32) -> np.ndarray:
    pos = (s > 0) & np.isfinite(s)
    sv = np.where(pos, s, _F32(1))
    m, e = np.frexp(sv)
    m = m.astype(_F32)
    e = e.astype(_F32)
    low = m < _K["SQRT_HALF"]
    m = np.where(low, m + m, m)
    e = np.where(low, e + _F32(-1), e)
    fh, fl = _log2_times(m, e, b, _r32)
    n = _rha(fh)
    t = (fh - n) + fl
    k = _rha(t)
    t = t - k
    n = n + k
    t = np.maximum(np.minimum(t, _F32(EXP_RANGE[1])), _F32(EXP_RANGE[0]))
    gh, gl = _two_prod_ln2(t, _r32)
    y = _exp_f32(gh)
    v = ((gl + _F32(1)) * y).astype(_F32)
    big = np.abs(n) > _F32(LDEXP_FAST)
    out = np.where(big, _ldexp_split(v, n),
                   v * _pow2(np.where(big, _F32(0), n)))
    out = np.where(pos, out, _F32(0)).astype(_F32)
    out[s == 0] = np.inf
    out[(s < 0) | np.isnan(s)] = np.nan
    return out


def _two_prod_ln2(t, r):
    """(g_h, g_l) = t · f32(ln 2) as a double-float, ln 2 pre-split."""
    gh = r(t * _K["LN2"])
    th, tl = _split(t, r)
    lh, ll = _K["LN2_SPLIT"]
    return gh, r(r(r(r(r(th * lh) - gh) + r(tl * lh)) + r(th * ll)) + r(tl * ll))


def _exp_f32(g):
    """Eigen's float exp of g (numpy float32), g <= 104.7."""
    t = np.minimum(g, _F32(EXP_HI))
    y, m = _exp_poly(t, _r32)
    big = np.abs(t) > _F32(EXP_FAST)
    e = np.where(big, _ldexp_split(y, m), y * _pow2(np.where(big, _F32(0), m)))
    e = np.maximum(e, g)
    return np.where(big & (g < _F32(EXP_ZERO)), _F32(0), e).astype(_F32)


# ------------------------------------------------------------------------------------------------
# Reference (one value at a time, Python floats rounded to float32 after every operation)

def _ldexp_split_ref(v: float, n: float) -> float:
    i = int(min(max(n, -LDEXP_CLAMP), LDEXP_CLAMP))
    b = i >> 2
    for _ in range(3):
        v = _f(v * 2.0 ** b)
    return _f(v * 2.0 ** (i - 3 * b))


def _rha_ref(v: float) -> float:
    return math.copysign(math.floor(abs(v) + 0.5), v)


def pow_f32_reference(s: float, b: float) -> float:
    """`pow_f32` of one float32 value s (a Python float), exponent b; a Python float."""
    if math.isnan(s) or s < 0:
        return math.nan
    if s == 0:
        return math.inf
    if math.isinf(s):
        return 0.0
    m, e = math.frexp(s)
    if m < _K["SQRT_HALF"]:
        m, e = 2.0 * m, e - 1
    fh, fl = _log2_times(m, float(e), _f(b), _f)
    n = _rha_ref(fh)
    t = _f(_f(fh - n) + fl)
    k = _rha_ref(t)
    t, n = _f(t - k), n + k
    t = min(max(t, EXP_RANGE[0]), EXP_RANGE[1])
    gh, gl = _two_prod_ln2(t, _f)
    tt = min(gh, _f(EXP_HI))
    y, mm = _exp_poly(tt, _f)
    if abs(tt) > EXP_FAST:
        ey = 0.0 if gh < EXP_ZERO else max(_ldexp_split_ref(y, mm), gh)
    else:
        ey = max(_f(y * 2.0 ** mm), gh)
    v = _f(_f(gl + 1.0) * ey)
    return _ldexp_split_ref(v, n) if abs(n) > LDEXP_FAST else _f(v * 2.0 ** n)



# ------------------------------------------------------------------------------------------------
# The C library's powf (ONNX Runtime's scalar path for the last T mod 4 values)

_LIBM = None


def libm_powf(s: float, b: float) -> float:
    """powf(s, b) of the C library this process (and ONNX Runtime) links."""
    global _LIBM
    if _LIBM is None:
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        lib.powf.restype = ctypes.c_float
        lib.powf.argtypes = [ctypes.c_float, ctypes.c_float]
        _LIBM = lib
    return float(_LIBM.powf(s, b))


# ------------------------------------------------------------------------------------------------
# LRN

def _attrs(x: np.ndarray, attrs) -> tuple[int, np.float32, np.float32, np.float32]:
    if x.ndim != 4:
        raise FloatIslandError(f"LRN: input must be (N, C, H, W); got shape {x.shape}")
    size = int(attrs["size"]) if "size" in attrs else 0
    alpha = _F32(attrs.get("alpha", 1e-4))
    beta = _F32(attrs.get("beta", 0.75))
    bias = _F32(attrs.get("bias", 1.0))
    if size < 1 or size % 2 == 0:
        raise FloatIslandError(f"LRN: size must be an odd int >= 1; got {attrs.get('size')!r}")
    if not (alpha > 0 and beta > 0 and np.isfinite(alpha) and np.isfinite(beta)
            and np.isfinite(bias)):
        raise FloatIslandError(f"LRN: need finite alpha > 0, beta > 0, bias; got alpha={alpha}, "
                               f"beta={beta}, bias={bias}")
    if float(beta) == math.floor(float(beta)):
        raise FloatIslandError(f"LRN: integer beta {beta} is not supported (ONNX Runtime's "
                               "integer-exponent pow is not reproduced)")
    return size, alpha, beta, bias


def lrn_scale(x: np.ndarray, size: int, alpha, bias) -> np.ndarray:
    """The float32 scale s (module docstring) of x (N, C, H, W), vectorized over N, H, W."""
    n, c = x.shape[:2]
    a = _F32(_F32(alpha) / _F32(size))
    pre = (size - 1) // 2
    sq = np.zeros((n, c + size - 1) + x.shape[2:], _F32)
    sq[:, pre:pre + c] = x * x
    s = np.full(x.shape, _F32(bias), _F32)
    for j in range(size):
        s[:, 0] = s[:, 0] + a * sq[:, j]
    for k in range(1, c):
        s[:, k] = (s[:, k - 1] + a * sq[:, k + size - 1]) + (-a) * sq[:, k - 1]
    return s


def onnx_lrn(ins, attrs) -> np.ndarray:
    """ONNX LRN (module docstring): ins[0] float32 (N, C, H, W); float32 array, same shape."""
    x = np.asarray(ins[0], _F32)
    size, alpha, beta, bias = _attrs(x, attrs)
    s = lrn_scale(x, size, alpha, bias).reshape(-1)
    b = _F32(-beta)
    body = s.size - s.size % PACKET
    p = np.empty_like(s)
    p[:body] = pow_f32(s[:body], b)
    p[body:] = [libm_powf(float(v), float(b)) for v in s[body:]]
    with np.errstate(invalid="ignore"):  # 0 · inf (a zero scale under a zero x) is NaN
        return (x.reshape(-1) * p).reshape(x.shape).astype(_F32)


def onnx_lrn_reference(ins, attrs) -> np.ndarray:
    """`onnx_lrn` value by value, in Python floats rounded to float32 after each operation."""
    x = np.asarray(ins[0], _F32)
    size, alpha, beta, bias = _attrs(x, attrs)
    n_, c_, h_, w_ = x.shape
    a = _f(float(alpha) / size)
    pre = (size - 1) // 2
    b = -float(beta)
    xs = x.astype(np.float64)
    out = np.empty(x.shape, _F32)
    total = x.size
    body = total - total % PACKET
    for n in range(n_):
        for h in range(h_):
            for w in range(w_):
                sq = [0.0] * (c_ + size - 1)
                for c in range(c_):
                    sq[pre + c] = _f(xs[n, c, h, w] * xs[n, c, h, w])
                s = float(bias)
                for j in range(size):
                    s = _f(s + _f(a * sq[j]))
                for c in range(c_):
                    if c:
                        s = _f(_f(s + _f(a * sq[c + size - 1])) + _f(-a * sq[c - 1]))
                    flat = ((n * c_ + c) * h_ + h) * w_ + w
                    p = pow_f32_reference(s, b) if flat < body else libm_powf(s, b)
                    out[n, c, h, w] = _f(xs[n, c, h, w] * p)
    return out
