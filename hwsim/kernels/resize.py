"""Nearest-neighbour resize of codes (ONNX Resize, mode "nearest"), as ONNX Runtime computes
the source index of every output position: a gather, so any integer codes pass unchanged.

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
