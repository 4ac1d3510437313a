"""Exact XNOR/popcount kernels for ±1 (binary) operands, and their int64 references.

Packing: a ±1 vector of n_bits elements becomes ceil(n_bits / 64) uint64 words; element k is bit
k % 64 of word k // 64 (least significant first), bit 1 = +1, bit 0 = -1. The padding bits of the
last word are written as 0 and masked out by every kernel, so their contents never matter.

For ±1 vectors a, b of length n: a · b = n - 2 popcount(a XOR b) (ALGORITHMS.md §3, integer form).
A k_a-bit x k_w-bit least-squares binary product is k_a k_w such dot products combined with the
scales; unsigned multi-bit activations against binary weights run as bit planes.

Each fast function ``f`` has a slow definition ``f_reference`` here, computed with plain int64
numpy dot products of unpacked ±1 / 0-1 values (no popcount), that the tests compare with exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _nb_binary as _nb

_WORD_BITS = 64
_MAX_PLANE_BITS = 32


@dataclass(frozen=True)
class BinaryLinearResult:
    """values: float64 (M, N), the scaled product; dots: int64 (k_a, k_w, M, N), the exact ±1 dot
    products b_i^x · b_j^w that the values combine."""

    values: np.ndarray
    dots: np.ndarray


# ---------------------------------------------------------------------------------------------
# validation


def _array(name: str, a: object, ndim: int | None, layout: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise KernelError(f"{name} must be a numpy array of shape {layout}; got {type(a).__name__}.")
    if ndim is not None and a.ndim != ndim:
        raise KernelError(f"{name} must have shape {layout} ({ndim} dims); got shape {a.shape}.")
    return a


def _signs(name: str, a: object, ndim: int | None, layout: str) -> np.ndarray:
    """A signed-integer array holding only -1 and +1."""
    a = _array(name, a, ndim, layout)
    if a.dtype.kind != "i":
        raise KernelError(f"{name} must be a signed integer array of -1/+1 values (e.g. int8); "
                          f"got dtype {a.dtype}.")
    bad = np.abs(a) != 1
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise KernelError(f"{name} must hold only -1 and +1; got {int(a[idx])} at index {idx}.")
    return a


def _bit_count(name: str, n_bits: object, lo: int, hi: int | None = None) -> int:
    if not isinstance(n_bits, (int, np.integer)) or isinstance(n_bits, (bool, np.bool_)):
        raise KernelError(f"{name} must be an int; got {n_bits!r}.")
    v = int(n_bits)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise KernelError(f"{name} must be an int {rng}; got {v}.")
    return v


def _words(n_bits: int) -> int:
    return -(-n_bits // _WORD_BITS)


def _last_mask(n_bits: int) -> np.uint64:
    rem = n_bits % _WORD_BITS
    return np.uint64((1 << rem) - 1 if rem else (1 << _WORD_BITS) - 1)


def _packed(name: str, a: object, n_bits: int) -> np.ndarray:
    a = _array(name, a, 2, "(rows, words)")
    if a.dtype != np.uint64:
        raise KernelError(f"{name} must be uint64 words from pack_signs; got dtype {a.dtype}.")
    if a.shape[1] != _words(n_bits):
        raise KernelError(f"{name} has {a.shape[1]} words per row, but n_bits={n_bits} needs "
                          f"ceil({n_bits}/64) = {_words(n_bits)}; got shape {a.shape}.")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# packing


def _pack_rows(bits01: np.ndarray) -> np.ndarray:
    """(R, K) of 0/1 -> (R, ceil(K/64)) uint64."""
    out = np.empty((bits01.shape[0], _words(bits01.shape[1])), dtype=np.uint64)
    _nb.pack_bits(np.ascontiguousarray(bits01), out)
    return out


def pack_signs(b: np.ndarray, axis: int = -1) -> tuple[np.ndarray, int]:
    """Pack ±1 values 64 per uint64 word along ``axis``.

    b: signed integer array (e.g. int8) of -1/+1 with at least one element along ``axis``.
    Returns (packed, n_bits): packed is uint64 of b's shape with ``axis`` moved last and replaced
    by ceil(n_bits / 64) words; n_bits = b.shape[axis]. Padding bits are 0.
    """
    b = _signs("pack_signs: b", b, None, "(..., n_bits)")
    if b.ndim == 0:
        raise KernelError("pack_signs: b must have at least one dimension; got a scalar.")
    if not -b.ndim <= axis < b.ndim:
        raise KernelError(f"pack_signs: axis {axis} is out of range for b of shape {b.shape}.")
    moved = np.moveaxis(b, axis, -1)
    n_bits = moved.shape[-1]
    if n_bits < 1:
        raise KernelError(f"pack_signs: b must have at least one element along axis {axis}; "
                          f"got shape {b.shape}.")
    lead = moved.shape[:-1]
    packed = _pack_rows((moved.reshape(-1, n_bits) > 0).view(np.uint8))
    return packed.reshape(*lead, packed.shape[1]), n_bits


def unpack_signs(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of pack_signs: uint64 (..., ceil(n_bits/64)) -> int8 (..., n_bits) of ±1."""
    n_bits = _bit_count("unpack_signs: n_bits", n_bits, 1)
    packed = _array("unpack_signs: packed", packed, None, "(..., words)")
    if packed.ndim == 0:
        raise KernelError("unpack_signs: packed must have at least one dimension; got a scalar.")
    if packed.shape[-1] != _words(n_bits):
        raise KernelError(f"unpack_signs: packed has {packed.shape[-1]} words per row, but "
                          f"n_bits={n_bits} needs ceil({n_bits}/64) = {_words(n_bits)}; got shape "
                          f"{packed.shape}.")
    lead = packed.shape[:-1]
    rows = _packed("unpack_signs: packed", packed.reshape(-1, packed.shape[-1]), n_bits)
    out = np.empty((rows.shape[0], n_bits), dtype=np.int8)
    _nb.unpack_signs(rows, n_bits, out)
    return out.reshape(*lead, n_bits)


def pack_signs_reference(b: np.ndarray) -> tuple[np.ndarray, int]:
    """Definition of pack_signs along the last axis of a 2-D (R, n_bits) array, Python ints."""
    b = _signs("pack_signs: b", b, 2, "(rows, n_bits)")
    n_bits = b.shape[1]
    out = np.zeros((b.shape[0], _words(n_bits)), dtype=np.uint64)
    for r in range(b.shape[0]):
        for w in range(out.shape[1]):
            word = 0
            for k in range(w * _WORD_BITS, min((w + 1) * _WORD_BITS, n_bits)):
                if b[r, k] > 0:
                    word |= 1 << (k - w * _WORD_BITS)
            out[r, w] = word
    return out, n_bits


def _unpack_reference(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """(R, W) uint64 -> (R, n_bits) int64 of ±1, by shifting out every bit (padding dropped)."""
    shifts = np.arange(_WORD_BITS, dtype=np.uint64)
    bits = (packed[:, :, None] >> shifts) & np.uint64(1)
    return 2 * bits.reshape(packed.shape[0], -1)[:, :n_bits].astype(np.int64) - 1


# ---------------------------------------------------------------------------------------------
# XNOR-popcount matmul


def xnor_popcount_matmul(a_packed: np.ndarray, b_packed: np.ndarray, n_bits: int) -> np.ndarray:
    """±1 dot products of packed rows: out[i, j] = n_bits - 2 popcount(a_i XOR b_j).

    a_packed: uint64 (M, W); b_packed: uint64 (N, W); W = ceil(n_bits / 64), both from pack_signs
    along the reduction axis. Padding bits are ignored whatever they hold. Returns int64 (M, N),
    equal to unpacked a @ b.T.
    """
    n_bits = _bit_count("xnor_popcount_matmul: n_bits", n_bits, 1)
    a = _packed("xnor_popcount_matmul: a_packed", a_packed, n_bits)
    b = _packed("xnor_popcount_matmul: b_packed", b_packed, n_bits)
    diff = np.empty((a.shape[0], b.shape[0]), dtype=np.int64)
    if diff.size:
        _nb.xnor_matmul(a, b, _last_mask(n_bits), diff)
    return n_bits - 2 * diff


def xnor_popcount_matmul_reference(a_packed: np.ndarray, b_packed: np.ndarray, n_bits: int) -> np.ndarray:
    """Definition of xnor_popcount_matmul: unpack to ±1 int64 and take the int64 dot products."""
    n_bits = _bit_count("xnor_popcount_matmul: n_bits", n_bits, 1)
    a = _unpack_reference(_packed("xnor_popcount_matmul: a_packed", a_packed, n_bits), n_bits)
    b = _unpack_reference(_packed("xnor_popcount_matmul: b_packed", b_packed, n_bits), n_bits)
    return a @ b.T


# ---------------------------------------------------------------------------------------------
# k_a-bit x k_w-bit least-squares binary product


def _planes_and_scales(fn: str, side: str, planes: object, scales: object) -> tuple[np.ndarray, np.ndarray]:
    rows, k_name = ("M", "k_a") if side == "x" else ("N", "k_w")
    p = _signs(f"{fn}: {side}_planes", planes, 3, f"({k_name}, {rows}, K)")
    if p.shape[0] < 1 or p.shape[2] < 1:
        raise KernelError(f"{fn}: {side}_planes needs at least one plane and K >= 1; got shape {p.shape}.")
    s = _array(f"{fn}: {side}_scales", scales, 2, f"({k_name}, {rows}) = {p.shape[:2]}")
    if s.shape != p.shape[:2] or s.dtype.kind not in "iuf":
        raise KernelError(f"{fn}: {side}_scales must be a real array of shape {p.shape[:2]} (one scale "
                          f"per plane and row); got shape {s.shape}, dtype {s.dtype}.")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise KernelError(f"{fn}: {side}_scales must be finite; got a NaN or inf.")
    return p, s


def _binary_linear_operands(x_planes, x_scales, w_planes, w_scales):
    fn = "binary_linear"
    xp, xs = _planes_and_scales(fn, "x", x_planes, x_scales)
    wp, ws = _planes_and_scales(fn, "w", w_planes, w_scales)
    if xp.shape[2] != wp.shape[2]:
        raise KernelError(f"{fn}: x_planes has K={xp.shape[2]} but w_planes has K={wp.shape[2]}; "
                          f"shapes {xp.shape} and {wp.shape}.")
    return xp, xs, wp, ws


def _combine(xs: np.ndarray, ws: np.ndarray, dots: np.ndarray) -> np.ndarray:
    """sum_i sum_j (xs[i, m] * ws[j, n]) * dots[i, j, m, n] in float64, i then j ascending,
    starting from 0.0 — the order the reference uses, so results are bitwise equal."""
    values = np.zeros(dots.shape[2:], dtype=np.float64)
    for i in range(dots.shape[0]):
        for j in range(dots.shape[1]):
            values += np.multiply.outer(xs[i], ws[j]) * dots[i, j]
    return values


def binary_linear(x_planes: np.ndarray, x_scales: np.ndarray, w_planes: np.ndarray,
                  w_scales: np.ndarray) -> BinaryLinearResult:
    """x · w for least-squares binary operands x ≈ Σ_i v_i^x b_i^x, w ≈ Σ_j v_j^w b_j^w.

    x_planes: ±1 (k_a, M, K); x_scales: (k_a, M), v_i^x per sample. w_planes: ±1 (k_w, N, K);
    w_scales: (k_w, N), v_j^w per output channel. Computes the k_a k_w exact dot products
    dots[i, j] = b_i^x @ b_j^w.T with XNOR-popcount, then values[m, n] = Σ_i Σ_j
    (x_scales[i, m] * w_scales[j, n]) * dots[i, j, m, n] in float64 (that grouping and order).
    Returns BinaryLinearResult(values float64 (M, N), dots int64 (k_a, k_w, M, N)).
    """
    xp, xs, wp, ws = _binary_linear_operands(x_planes, x_scales, w_planes, w_scales)
    (k_a, m, k), (k_w, n, _) = xp.shape, wp.shape
    xb, _ = pack_signs(xp.reshape(k_a * m, k))
    wb, _ = pack_signs(wp.reshape(k_w * n, k))
    flat = xnor_popcount_matmul(xb, wb, k)  # (k_a*M, k_w*N)
    dots = np.ascontiguousarray(flat.reshape(k_a, m, k_w, n).transpose(0, 2, 1, 3))
    return BinaryLinearResult(_combine(xs, ws, dots), dots)


def binary_linear_reference(x_planes: np.ndarray, x_scales: np.ndarray, w_planes: np.ndarray,
                            w_scales: np.ndarray) -> BinaryLinearResult:
    """Definition of binary_linear: int64 dot products of the ±1 planes, then one Python float
    sum per output element in the same grouping and order."""
    xp, xs, wp, ws = _binary_linear_operands(x_planes, x_scales, w_planes, w_scales)
    k_a, k_w = xp.shape[0], wp.shape[0]
    dots = np.empty((k_a, k_w, xp.shape[1], wp.shape[1]), dtype=np.int64)
    for i in range(k_a):
        for j in range(k_w):
            dots[i, j] = xp[i].astype(np.int64) @ wp[j].astype(np.int64).T
    values = np.empty(dots.shape[2:], dtype=np.float64)
    for mi in range(values.shape[0]):
        for ni in range(values.shape[1]):
            s = 0.0
            for i in range(k_a):
                for j in range(k_w):
                    s += (float(xs[i, mi]) * float(ws[j, ni])) * int(dots[i, j, mi, ni])
            values[mi, ni] = s
    return BinaryLinearResult(values, dots)


# ---------------------------------------------------------------------------------------------
# bit-plane execution: unsigned multi-bit activations x binary weights


def _bitplane_operands(x_codes, w_signs, bits):
    fn = "bitplane_matmul"
    bits = _bit_count(f"{fn}: bits", bits, 1, _MAX_PLANE_BITS)
    x = _array(f"{fn}: x_codes", x_codes, 2, "(M, K)")
    if x.dtype.kind != "u":
        raise KernelError(f"{fn}: x_codes must be an unsigned integer array (uint8..uint64); "
                          f"got dtype {x.dtype}.")
    w = _signs(f"{fn}: w_signs", w_signs, 2, "(N, K)")
    if x.shape[1] != w.shape[1] or x.shape[1] < 1:
        raise KernelError(f"{fn}: x_codes (M, K) and w_signs (N, K) need the same K >= 1; got "
                          f"shapes {x.shape} and {w.shape}.")
    if x.size and int(x.max()) >= (1 << bits):
        idx = tuple(int(i) for i in np.argwhere(x >= (1 << bits))[0])
        raise KernelError(f"{fn}: x_codes must be < 2**bits = {1 << bits} for bits={bits}; got "
                          f"{int(x[idx])} at index {idx}.")
    return x, w, bits


def bitplane_matmul(x_codes: np.ndarray, w_signs: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-bit activations times ±1 weights, one bit plane at a time.

    x_codes: unsigned integers (M, K), each < 2**bits (bits in 1..32); w_signs: ±1 (N, K).
    out[m, n] = Σ_t 2^t (popcount(plane_t[m] AND w_plus[n]) - popcount(plane_t[m] AND
    w_minus[n])), where plane_t = bit t of x and w_plus / w_minus mark the +1 / -1 weights.
    Returns int64 (M, N), equal to x @ w.T.
    """
    x, w, bits = _bitplane_operands(x_codes, w_signs, bits)
    m, k = x.shape
    planes = np.empty((m, bits, _words(k)), dtype=np.uint64)
    _nb.pack_planes(np.ascontiguousarray(x), planes)
    w_plus = _pack_rows((w > 0).view(np.uint8))
    out = np.empty((m, w.shape[0]), dtype=np.int64)
    if out.size:
        _nb.bitplane_matmul(planes, w_plus, out)
    return out


def bitplane_matmul_reference(x_codes: np.ndarray, w_signs: np.ndarray, bits: int) -> np.ndarray:
    """Definition of bitplane_matmul: the bit-plane sum with int64 dot products of 0/1 planes."""
    x, w, bits = _bitplane_operands(x_codes, w_signs, bits)
    x64 = x.astype(np.uint64)
    w_plus = (w > 0).astype(np.int64)
    w_minus = (w < 0).astype(np.int64)
    out = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    for t in range(bits):
        plane = ((x64 >> np.uint64(t)) & np.uint64(1)).astype(np.int64)
        out += (plane @ w_plus.T - plane @ w_minus.T) << t
    return out


# ---------------------------------------------------------------------------------------------
# binary conv2d: im2col of signs + xnor_popcount_matmul


def _pair(fn: str, name: str, v: object, lo: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else v
    ok = (isinstance(pair, tuple) and len(pair) == 2
          and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= lo for p in pair))
    if not ok:
        raise KernelError(f"{fn}: {name} must be an int >= {lo} or a pair (h, w) of them; got {v!r}.")
    return int(pair[0]), int(pair[1])


def _conv_operands(x_signs, w_signs, stride, padding, pad_value):
    fn = "binary_conv2d"
    x = _signs(f"{fn}: x_signs", x_signs, 4, "(N, C, H, W)")
    w = _signs(f"{fn}: w_signs", w_signs, 4, "(K, C, R, S)")
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


def sign_columns(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """im2col of an (already padded) (N, C, H, W) array: (N*OH*OW, C*R*S), rows in (n, oh, ow)
    order, columns in (c, r, s) order, OH = (H - R) // sh + 1 (likewise OW)."""
    n, c, h, w = x.shape
    (r, s), (sh, sw) = kernel, stride
    oh, ow = (h - r) // sh + 1, (w - s) // sw + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (r, s), axis=(2, 3))
    win = win[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]  # (N, C, OH, OW, R, S)
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * r * s)


def binary_conv2d(x_signs: np.ndarray, w_signs: np.ndarray, stride: int | tuple[int, int] = 1,
                  padding: int | tuple[int, int] = 0, pad_value: int = 1) -> np.ndarray:
    """2-D convolution of ±1 activations with ±1 weights (groups = 1, no dilation).

    x_signs: ±1 (N, C, H, W); w_signs: ±1 (K, C, R, S); stride, padding: int or (h, w), padding
    symmetric. A padded position has no ±1 value of its own: it takes ``pad_value`` (+1 by
    default, matching sign(0) = +1 of a binarized zero), so it contributes ±w to the sum — unlike
    an integer conv, where padding contributes 0. Returns int64 (N, K, OH, OW):
    out[n, k, oh, ow] = Σ_{c, r, s} xpad[n, c, oh*sh + r, ow*sw + s] * w[k, c, r, s].
    """
    x, w, (sh, sw), (ph, pw), pad, (oh, ow) = _conv_operands(x_signs, w_signs, stride, padding,
                                                              pad_value)
    n = x.shape[0]
    k, _, r, s = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad)
    xb, n_bits = pack_signs(sign_columns(xp, (r, s), (sh, sw)))
    wb, _ = pack_signs(w.reshape(k, -1))
    out = xnor_popcount_matmul(xb, wb, n_bits)  # (N*OH*OW, K)
    return np.ascontiguousarray(out.reshape(n, oh, ow, k).transpose(0, 3, 1, 2))


def binary_conv2d_reference(x_signs: np.ndarray, w_signs: np.ndarray,
                            stride: int | tuple[int, int] = 1,
                            padding: int | tuple[int, int] = 0, pad_value: int = 1) -> np.ndarray:
    """Definition of binary_conv2d: one int64 sum per output element, each input position
    checked against the borders (outside -> pad_value)."""
    x, w, (sh, sw), (ph, pw), pad, (oh_n, ow_n) = _conv_operands(x_signs, w_signs, stride,
                                                                  padding, pad_value)
    n_b, c_n, h_n, w_n = x.shape
    k_n, _, r_n, s_n = w.shape
    x64, w64 = x.astype(np.int64), w.astype(np.int64)
    out = np.zeros((n_b, k_n, oh_n, ow_n), dtype=np.int64)
    for n in range(n_b):
        for oh in range(oh_n):
            for ow in range(ow_n):
                patch = np.full((c_n, r_n, s_n), pad, dtype=np.int64)
                for r in range(r_n):
                    for s in range(s_n):
                        ih, iw = oh * sh + r - ph, ow * sw + s - pw
                        if 0 <= ih < h_n and 0 <= iw < w_n:
                            patch[:, r, s] = x64[n, :, ih, iw]
                for k in range(k_n):
                    out[n, k, oh, ow] = int((patch * w64[k]).sum())
    return out
