"""Nearest-neighbour resize of codes (ONNX Resize, mode "nearest"), as ONNX Runtime computes
the source index of every output position: a gather, so any integer codes pass unchanged. And
a bilinear resize of codes in integer arithmetic (torch's ``mode="bilinear"``; at the end).

Per axis with input length L_in, output length L_out and scale s (float32; given, or
f32(L_out) / f32(L_in) when sizes are given), the output index x maps to a source coordinate
in float32 (ONNX Resize, coordinate_transformation_mode):

    half_pixel            (x + 0.5) / s - 0.5
    pytorch_half_pixel    (x + 0.5) / s - 0.5 if L_out > 1 else 0
    align_corners         x · (L_in - 1) / (L_out - 1)   (0 if L_out == 1)
    asymmetric            x / s
    tf_half_pixel_for_nn  (x + 0.5) / s

rounded by nearest_mode (round_prefer_floor: halves go down, round_prefer_ceil: up, floor,
ceil) and clamped to [0, L_in - 1].
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError

_F32 = np.float32
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def source_coordinates(length_in: int, length_out: int, scale, mode: str) -> np.ndarray:
    """The float32 source coordinate of every output index (module docstring)."""
    if mode not in COORDINATE_MODES:
        raise KernelError(f"resize: coordinate_transformation_mode must be one of "
                          f"{COORDINATE_MODES}; got {mode!r}.")
    x, s = np.arange(length_out, dtype=_F32), _F32(scale)
    half = _F32(0.5)
    if mode == "half_pixel" or (mode == "pytorch_half_pixel" and length_out > 1):
        return ((x + half) / s - half).astype(_F32)
    if mode == "pytorch_half_pixel":
        return np.zeros(length_out, dtype=_F32)
    if mode == "align_corners":
        if length_out == 1:
            return np.zeros(1, dtype=_F32)
        return (x * _F32(length_in - 1) / _F32(length_out - 1)).astype(_F32)
    if mode == "asymmetric":
        return (x / s).astype(_F32)
    return ((x + half) / s).astype(_F32)


def nearest_indices(length_in: int, length_out: int, scale, coordinate_mode: str,
                    nearest_mode: str) -> np.ndarray:
    """int64 source index (length_out,) of every output position along one axis."""
    if nearest_mode not in NEAREST_MODES:
        raise KernelError(f"resize: nearest_mode must be one of {NEAREST_MODES}; got "
                          f"{nearest_mode!r}.")
    c = source_coordinates(length_in, length_out, scale, coordinate_mode).astype(np.float64)
    if nearest_mode == "floor":
        i = np.floor(c)
    elif nearest_mode == "ceil":
        i = np.ceil(c)
    else:
        halfway = c - np.floor(c) == 0.5
        rounded = np.floor(c + 0.5)
        i = np.where(halfway, np.floor(c) if nearest_mode == "round_prefer_floor" else np.ceil(c),
                     rounded)
    return np.clip(i, 0, length_in - 1).astype(np.int64)


def gather_hw(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) -> x[:, :, rows][:, :, :, cols] (codes unchanged)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise KernelError(f"resize: x must be (N, C, H, W); got shape {x.shape}.")
    if rows.size and (rows.min() < 0 or rows.max() >= x.shape[2] or cols.min() < 0
                      or cols.max() >= x.shape[3]):
        raise KernelError(f"resize: source indices out of range for input {x.shape}.")
    return np.ascontiguousarray(x[:, :, rows][:, :, :, cols])


# --- linear (bilinear) resize of codes ----------------------------------------------------------
#
# torch's F.interpolate(mode="bilinear") on codes, in integers. Per axis with input length
# L_in, output length L_out and scale s (the scale factor, or L_out / L_in), output index i reads
# the source coordinate (exact rational arithmetic on the float64 scale)
#
#     half_pixel     c = max((i + 1/2) / s - 1/2, 0)                (torch, align_corners=False)
#     align_corners  c = i · (L_in - 1) / (L_out - 1)   (0 if L_out == 1)
#
# from the taps i0 = floor(c), i1 = min(i0 + 1, L_in - 1) with integer weights
# w1 = round_half_up((c - i0) · 2^F), w0 = 2^F - w1 (F = ``LINEAR_FRAC_BITS``). An output is
#
#     y = clamp(round_half_even(Σ_ab w_a(row) w_b(col) (x[r_a, c_b] - zp) / 2^(2F)) + zp)
#
# exact in int64 for codes of up to 16 bits (|sum| < 2^(2F + 18)); the codes keep their scale and
# zero point. Against torch's float32 interpolation of the dequantized codes, rounded half to
# even onto the same grid (quant's fake-quant model), the weights differ by at most 2^-(F+1) each
# plus float32 rounding, a few 1e-6 of an LSB per 8-bit code, so outputs differ by at most 1 LSB
# (only where torch's float32 value lies within that of a rounding tie).

LINEAR_FRAC_BITS = 20
LINEAR_MODES = ("half_pixel", "align_corners")


def _linear_tap(i: int, length_in: int, length_out: int, scale, mode: str,
                frac_bits: int) -> tuple[int, int, int, int]:
    from fractions import Fraction

    if mode == "align_corners":
        c = Fraction(0) if length_out == 1 else Fraction(i * (length_in - 1), length_out - 1)
    else:
        c = max((Fraction(2 * i + 1, 2)) / Fraction(float(scale)) - Fraction(1, 2), Fraction(0))
    i0 = min(int(c), length_in - 1)  # c >= 0: int() is floor
    i1 = min(i0 + 1, length_in - 1)
    one = 1 << frac_bits
    w1 = min(int((c - i0) * one + Fraction(1, 2)), one)  # round half up, floor of c + 1/2
    return i0, i1, one - w1, w1


def linear_taps(length_in: int, length_out: int, scale, mode: str,
                frac_bits: int = LINEAR_FRAC_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(indices (L_out, 2), weights (L_out, 2)) int64 of every output position along one axis
    (the comment above); the weights of a position sum to 2^frac_bits."""
    if mode not in LINEAR_MODES:
        raise KernelError(f"resize_linear: coordinate mode must be one of {LINEAR_MODES}; got "
                          f"{mode!r}.")
    if length_in < 1 or length_out < 1 or not (np.isfinite(float(scale)) and float(scale) > 0):
        raise KernelError(f"resize_linear: lengths must be >= 1 and the scale > 0; got "
                          f"{length_in} -> {length_out}, scale {scale}.")
    taps = [_linear_tap(i, length_in, length_out, scale, mode, frac_bits)
            for i in range(length_out)]
    t = np.array(taps, dtype=np.int64).reshape(length_out, 4)
    return np.ascontiguousarray(t[:, :2]), np.ascontiguousarray(t[:, 2:])


def _round_half_even_shift(acc: np.ndarray, k: int) -> np.ndarray:
    q = acc >> k
    r = acc - (q << k)
    half = np.int64(1) << (k - 1)
    return q + ((r > half) | ((r == half) & (q & 1 == 1))).astype(np.int64)


def resize_linear(x: np.ndarray, zero_point: int, rows: np.ndarray, row_weights: np.ndarray,
                  cols: np.ndarray, col_weights: np.ndarray, frac_bits: int, qmin: int,
                  qmax: int) -> np.ndarray:
    """Bilinear resize of codes x (N, C, H, W) with the taps of `linear_taps` along H (rows)
    and W (cols): int64 codes (N, C, len(rows), len(cols)) on x's grid (comment above)."""
    x = np.asarray(x)
    if x.ndim != 4 or x.dtype.kind not in "iu":
        raise KernelError(f"resize_linear: x must be integer codes (N, C, H, W); got {x.dtype} "
                          f"{x.shape}.")
    for name, idx, n in (("rows", rows, x.shape[2]), ("cols", cols, x.shape[3])):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise KernelError(f"resize_linear: {name} indices out of range for input {x.shape}.")
    if x.size and max(abs(int(x.min())), abs(int(x.max()))) >= 1 << 17:
        raise KernelError("resize_linear: codes of at most 16 bits.")
    xc = x.astype(np.int64) - int(zero_point)
    t = (row_weights[:, 0].astype(np.int64)[:, None] * xc[:, :, rows[:, 0], :]
         + row_weights[:, 1].astype(np.int64)[:, None] * xc[:, :, rows[:, 1], :])
    acc = (col_weights[:, 0].astype(np.int64) * t[..., cols[:, 0]]
           + col_weights[:, 1].astype(np.int64) * t[..., cols[:, 1]])
    y = _round_half_even_shift(acc, 2 * int(frac_bits)) + int(zero_point)
    return np.clip(y, qmin, qmax)
