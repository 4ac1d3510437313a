"""ONNX Runtime's QLinearMul and QLinearAdd (com.microsoft contrib ops) on 8-bit codes with
numpy broadcasting, vectorized numpy.

QLinearMul (MLAS SSE2 kernel): r = f32(f32(s_a · s_b) / s_c);
    v = f32(f32(f32((a - zp_a)(b - zp_b)) · r) + f32(zp_c))   (the product is exact in int32);
    y = saturate(round_half_even(v)).

QLinearAdd (MLAS AVX2 kernel; fma rounds once): r_a = f32(s_a / s_c), r_b = f32(s_b / s_c);
    F = f32(zp_c) - fma(r_a, zp_a, f32(r_b · zp_b)), and per element, depending on how the
    operands broadcast (`add_path`):
    - "vector" (both vary along the innermost dimension): v = fma(a, r_a, fma(b, r_b, F));
    - "scalar_b" (b constant along it):                   v = fma(a, r_a, fma(b, r_b, F)),
      the same formula: the kernel folds fma(b, r_b, F) into a constant first;
    - "scalar_a" (a constant along it): ONNX Runtime swaps the operands, so F and v are formed
      with a and b exchanged: F' = f32(zp_c) - fma(r_b, zp_b, f32(r_a · zp_a)),
      v = fma(b, r_b, fma(a, r_a, F')).
    y = saturate(round_half_even(v)).

In both, a value beyond int32 converts to INT32_MIN (x86 cvtps2dq), which saturates to qmin.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels.fma import fma_f32

_F32 = np.float32
ADD_PATHS = ("vector", "scalar_a", "scalar_b")


def _codes(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise KernelError(f"{name} must hold integer codes; got dtype {x.dtype}.")
    return x.astype(np.int64)


def _saturate(v: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    q = np.rint(np.asarray(v, dtype=np.float64))
    q = np.where(np.isfinite(q) & (np.abs(q) < 2.0 ** 31), q, -(2.0 ** 31))
    return np.clip(q, qmin, qmax).astype(np.int64)


def mul_ratio(s_a, s_b, s_c) -> np.float32:
    """QLinearMul's f32(f32(s_a · s_b) / s_c)."""
    return _F32(_F32(_F32(s_a) * _F32(s_b)) / _F32(s_c))


def qlinear_mul(a, a_zp: int, b, b_zp: int, ratio, out_zp: int, qmin: int,
                qmax: int) -> np.ndarray:
    """QLinearMul of codes a and b (shapes broadcast as numpy does): int64 codes of the
    broadcast shape. ``ratio`` from `mul_ratio`."""
    prod = (_codes("a", a) - int(a_zp)) * (_codes("b", b) - int(b_zp))
    v = (prod.astype(_F32) * _F32(ratio)).astype(_F32) + _F32(out_zp)
    return _saturate(v.astype(_F32), qmin, qmax)


def add_path(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> str:
    """Which kernel path ONNX Runtime's broadcasting takes for shapes a and b: the innermost
    dimension where they are not both 1 decides (b of size 1 there: "scalar_b"; a: "scalar_a";
    else "vector")."""
    rank = max(len(a_shape), len(b_shape))
    a = (1,) * (rank - len(a_shape)) + tuple(a_shape)
    b = (1,) * (rank - len(b_shape)) + tuple(b_shape)
    for da, db in zip(reversed(a), reversed(b)):
        if da == 1 and db == 1:
            continue
        if db == 1:
            return "scalar_b"
        if da == 1:
            return "scalar_a"
        return "vector"
    return "vector"


def qlinear_add(a, a_zp: int, ratio_a, b, b_zp: int, ratio_b, out_zp: int, qmin: int,
                qmax: int) -> np.ndarray:
    """QLinearAdd of codes a and b (shapes broadcast as numpy does) with ratios
    r_a = f32(s_a / s_c), r_b = f32(s_b / s_c): int64 codes of the broadcast shape."""
    a, b = _codes("a", a), _codes("b", b)
    ra, rb = _F32(ratio_a), _F32(ratio_b)
    if add_path(a.shape, b.shape) == "scalar_a":  # ONNX Runtime passes (b, a) to the kernel
        a, b, a_zp, b_zp, ra, rb = b, a, b_zp, a_zp, rb, ra
    fixed = _F32(_F32(out_zp) - fma_f32(ra, _F32(a_zp), _F32(rb * _F32(b_zp))))
    v = fma_f32(a.astype(_F32), ra, fma_f32(b.astype(_F32), rb, fixed))
    return _saturate(v, qmin, qmax)


def mul_requantize_dyadic(a, a_zp: int, b, b_zp: int, m: int, shift: int, out_zp: int,
                          qmin: int, qmax: int) -> np.ndarray:
    """Integer-only element-wise product of codes a and b (shapes broadcast as numpy does):
    y = clamp(floor(((a - a_zp)(b - b_zp) · m + 2^(shift-1)) / 2^shift) + out_zp, qmin, qmax),
    m · 2^-shift ~ s_a s_b / s_y (``dyadic_multiplier``), rounding half up. The product is exact
    in int64 (codes of at most 16 bits); the requantization is ``requantize_dyadic``'s. Returns
    the smallest dtype holding [qmin, qmax], of the broadcast shape."""
    from hwsim.kernels.requant import requantize_dyadic

    a, b = _codes("a", a), _codes("b", b)
    for name, x in (("a", a), ("b", b)):
        if x.size and max(abs(int(x.min())), abs(int(x.max()))) >= 1 << 17:
            raise KernelError(f"mul_requantize_dyadic: {name} codes must be at most 17-bit "
                              "integers (the product must stay exact in int64).")
    prod = (a - int(a_zp)) * (b - int(b_zp))
    return requantize_dyadic(prod, int(m), int(shift), int(out_zp), int(qmin), int(qmax))
