"""Bit layout, result type and operand validation shared by the XNOR/popcount kernels
(`hwsim.kernels.binary`) and their definitions (`hwsim.kernels.reference.binary`), so both accept
exactly the same operands and raise the same KernelError messages.

Bit layout: element k of a packed row is bit k % 64 of word k // 64 (least significant first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError

WORD_BITS = 64
MAX_PLANE_BITS = 32


@dataclass(frozen=True)
class BinaryLinearResult:
    """values: float64 (M, N), the scaled product; dots: int64 (k_a, k_w, M, N), the exact ±1 dot
    products b_i^x · b_j^w that the values combine."""

    values: np.ndarray
    dots: np.ndarray


def array(name: str, a: object, ndim: int | None, layout: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise KernelError(f"{name} must be a numpy array of shape {layout}; got {type(a).__name__}.")
    if ndim is not None and a.ndim != ndim:
        raise KernelError(f"{name} must have shape {layout} ({ndim} dims); got shape {a.shape}.")
    return a


def signs(name: str, a: object, ndim: int | None, layout: str) -> np.ndarray:
    """A signed-integer array holding only -1 and +1."""
    a = array(name, a, ndim, layout)
    if a.dtype.kind != "i":
        raise KernelError(f"{name} must be a signed integer array of -1/+1 values (e.g. int8); "
                          f"got dtype {a.dtype}.")
    bad = np.abs(a) != 1
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise KernelError(f"{name} must hold only -1 and +1; got {int(a[idx])} at index {idx}.")
    return a


def bit_count(name: str, n_bits: object, lo: int, hi: int | None = None) -> int:
    if not isinstance(n_bits, (int, np.integer)) or isinstance(n_bits, (bool, np.bool_)):
        raise KernelError(f"{name} must be an int; got {n_bits!r}.")
    v = int(n_bits)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise KernelError(f"{name} must be an int {rng}; got {v}.")
    return v


def words(n_bits: int) -> int:
    """ceil(n_bits / 64): uint64 words per packed row."""
    return -(-n_bits // WORD_BITS)


def packed(name: str, a: object, n_bits: int) -> np.ndarray:
    """A 2-D uint64 array of packed rows with ceil(n_bits / 64) words each (C-contiguous)."""
    a = array(name, a, 2, "(rows, words)")
    if a.dtype != np.uint64:
        raise KernelError(f"{name} must be uint64 words from pack_signs; got dtype {a.dtype}.")
    if a.shape[1] != words(n_bits):
        raise KernelError(f"{name} has {a.shape[1]} words per row, but n_bits={n_bits} needs "
                          f"ceil({n_bits}/64) = {words(n_bits)}; got shape {a.shape}.")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# binary_linear


def planes_and_scales(fn: str, side: str, planes: object,
                      scales: object) -> tuple[np.ndarray, np.ndarray]:
    rows, k_name = ("M", "k_a") if side == "x" else ("N", "k_w")
    p = signs(f"{fn}: {side}_planes", planes, 3, f"({k_name}, {rows}, K)")
    if p.shape[0] < 1 or p.shape[2] < 1:
        raise KernelError(f"{fn}: {side}_planes needs at least one plane and K >= 1; got shape {p.shape}.")
    s = array(f"{fn}: {side}_scales", scales, 2, f"({k_name}, {rows}) = {p.shape[:2]}")
    if s.shape != p.shape[:2] or s.dtype.kind not in "iuf":
        raise KernelError(f"{fn}: {side}_scales must be a real array of shape {p.shape[:2]} (one scale "
                          f"per plane and row); got shape {s.shape}, dtype {s.dtype}.")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise KernelError(f"{fn}: {side}_scales must be finite; got a NaN or inf.")
    return p, s


def binary_linear_operands(x_planes, x_scales, w_planes, w_scales):
    """(x_planes, x_scales float64, w_planes, w_scales float64), validated."""
    fn = "binary_linear"
    xp, xs = planes_and_scales(fn, "x", x_planes, x_scales)
    wp, ws = planes_and_scales(fn, "w", w_planes, w_scales)
    if xp.shape[2] != wp.shape[2]:
        raise KernelError(f"{fn}: x_planes has K={xp.shape[2]} but w_planes has K={wp.shape[2]}; "
                          f"shapes {xp.shape} and {wp.shape}.")
    return xp, xs, wp, ws


# ---------------------------------------------------------------------------------------------
# bitplane_matmul


def bitplane_operands(x_codes, w_signs, bits):
    """(x_codes, w_signs, bits), validated: unsigned (M, K) codes < 2**bits, ±1 (N, K)."""
    fn = "bitplane_matmul"
    bits = bit_count(f"{fn}: bits", bits, 1, MAX_PLANE_BITS)
    x = array(f"{fn}: x_codes", x_codes, 2, "(M, K)")
    if x.dtype.kind != "u":
        raise KernelError(f"{fn}: x_codes must be an unsigned integer array (uint8..uint64); "
                          f"got dtype {x.dtype}.")
    w = signs(f"{fn}: w_signs", w_signs, 2, "(N, K)")
    if x.shape[1] != w.shape[1] or x.shape[1] < 1:
        raise KernelError(f"{fn}: x_codes (M, K) and w_signs (N, K) need the same K >= 1; got "
                          f"shapes {x.shape} and {w.shape}.")
    if x.size and int(x.max()) >= (1 << bits):
        idx = tuple(int(i) for i in np.argwhere(x >= (1 << bits))[0])
        raise KernelError(f"{fn}: x_codes must be < 2**bits = {1 << bits} for bits={bits}; got "
                          f"{int(x[idx])} at index {idx}.")
    return x, w, bits


# ---------------------------------------------------------------------------------------------
# binary_conv2d


def _pair(fn: str, name: str, v: object, lo: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else v
    ok = (isinstance(pair, tuple) and len(pair) == 2
          and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= lo for p in pair))
    if not ok:
        raise KernelError(f"{fn}: {name} must be an int >= {lo} or a pair (h, w) of them; got {v!r}.")
    return int(pair[0]), int(pair[1])


def conv_operands(x_signs, w_signs, stride, padding, pad_value):
    """(x, w, stride (h, w), padding (h, w), pad_value, (OH, OW)), validated."""
    fn = "binary_conv2d"
    x = signs(f"{fn}: x_signs", x_signs, 4, "(N, C, H, W)")
    w = signs(f"{fn}: w_signs", w_signs, 4, "(K, C, R, S)")
    if x.shape[1] != w.shape[1] or x.shape[1] < 1 or min(w.shape) < 1:
        raise KernelError(f"{fn}: w_signs must have shape (K, C, R, S) with C = {x.shape[1]} (from "
                          f"x_signs) and K, R, S >= 1; got {w.shape}.")
    st = _pair(fn, "stride", stride, 1)
    pd = _pair(fn, "padding", padding, 0)
    if pad_value not in (-1, 1) or isinstance(pad_value, bool):
        raise KernelError(f"{fn}: pad_value must be -1 or +1 (padded positions take this sign); "
                          f"got {pad_value!r}.")
    out_hw = []
    for axis, name in ((0, "height"), (1, "width")):
        size, ext = x.shape[2 + axis] + 2 * pd[axis], w.shape[2 + axis]
        if size < ext:
            raise KernelError(f"{fn} ({name}): the padded input ({size}) is smaller than the "
                              f"kernel ({ext}).")
        out_hw.append((size - ext) // st[axis] + 1)
    return x, w, st, pd, int(pad_value), tuple(out_hw)
