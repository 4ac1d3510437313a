"""Exact XNOR/popcount kernels for ±1 (binary) operands.

Packing: a ±1 vector of n_bits elements becomes ceil(n_bits / 64) uint64 words; element k is bit
k % 64 of word k // 64 (least significant first), bit 1 = +1, bit 0 = -1. The padding bits of the
last word are written as 0 and masked out by every kernel, so their contents never matter.

For ±1 vectors a, b of length n: a · b = n - 2 popcount(a XOR b) (the integer form of the binary
dot product in Pouransari, Tu, Tuzel, "Least squares binary quantization of neural networks",
CVPR Workshops 2020). A k_a-bit x k_w-bit least-squares binary product is k_a k_w such dot
products combined with the scales; unsigned multi-bit activations against binary weights run as
bit planes.

Each fast function ``f`` here has a slow definition ``f_reference`` in
`hwsim.kernels.reference.binary`, computed with plain int64 numpy dot products of unpacked ±1 /
0-1 values (no popcount), that the tests compare with exactly. Both validate their operands with
`hwsim.kernels._binary_checks`.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _binary_checks as bc
from hwsim.kernels import _nb_binary as _nb
from hwsim.kernels._binary_checks import WORD_BITS, BinaryLinearResult


def _last_mask(n_bits: int) -> np.uint64:
    rem = n_bits % WORD_BITS
    return np.uint64((1 << rem) - 1 if rem else (1 << WORD_BITS) - 1)


# ---------------------------------------------------------------------------------------------
# packing


def _pack_rows(bits01: np.ndarray) -> np.ndarray:
    """(R, K) of 0/1 -> (R, ceil(K/64)) uint64."""
    out = np.empty((bits01.shape[0], bc.words(bits01.shape[1])), dtype=np.uint64)
    _nb.pack_bits(np.ascontiguousarray(bits01), out)
    return out


def pack_signs(b: np.ndarray, axis: int = -1) -> tuple[np.ndarray, int]:
    """Pack ±1 values 64 per uint64 word along ``axis``.

    b: signed integer array (e.g. int8) of -1/+1 with at least one element along ``axis``.
    Returns (packed, n_bits): packed is uint64 of b's shape with ``axis`` moved last and replaced
    by ceil(n_bits / 64) words; n_bits = b.shape[axis]. Padding bits are 0.
    """
    b = bc.signs("pack_signs: b", b, None, "(..., n_bits)")
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
    n_bits = bc.bit_count("unpack_signs: n_bits", n_bits, 1)
    packed = bc.array("unpack_signs: packed", packed, None, "(..., words)")
    if packed.ndim == 0:
        raise KernelError("unpack_signs: packed must have at least one dimension; got a scalar.")
    if packed.shape[-1] != bc.words(n_bits):
        raise KernelError(f"unpack_signs: packed has {packed.shape[-1]} words per row, but "
                          f"n_bits={n_bits} needs ceil({n_bits}/64) = {bc.words(n_bits)}; got shape "
                          f"{packed.shape}.")
    lead = packed.shape[:-1]
    rows = bc.packed("unpack_signs: packed", packed.reshape(-1, packed.shape[-1]), n_bits)
    out = np.empty((rows.shape[0], n_bits), dtype=np.int8)
    _nb.unpack_signs(rows, n_bits, out)
    return out.reshape(*lead, n_bits)


# ---------------------------------------------------------------------------------------------
# XNOR-popcount matmul


def xnor_popcount_matmul(a_packed: np.ndarray, b_packed: np.ndarray, n_bits: int) -> np.ndarray:
    """±1 dot products of packed rows: out[i, j] = n_bits - 2 popcount(a_i XOR b_j).

    a_packed: uint64 (M, W); b_packed: uint64 (N, W); W = ceil(n_bits / 64), both from pack_signs
    along the reduction axis. Padding bits are ignored whatever they hold. Returns int64 (M, N),
    equal to unpacked a @ b.T.
    """
    n_bits = bc.bit_count("xnor_popcount_matmul: n_bits", n_bits, 1)
    a = bc.packed("xnor_popcount_matmul: a_packed", a_packed, n_bits)
    b = bc.packed("xnor_popcount_matmul: b_packed", b_packed, n_bits)
    diff = np.empty((a.shape[0], b.shape[0]), dtype=np.int64)
    if diff.size:
        _nb.xnor_matmul(a, b, _last_mask(n_bits), diff)
    return n_bits - 2 * diff


# ---------------------------------------------------------------------------------------------
# k_a-bit x k_w-bit least-squares binary product


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
    xp, xs, wp, ws = bc.binary_linear_operands(x_planes, x_scales, w_planes, w_scales)
    (k_a, m, k), (k_w, n, _) = xp.shape, wp.shape
    xb, _ = pack_signs(xp.reshape(k_a * m, k))
    wb, _ = pack_signs(wp.reshape(k_w * n, k))
    flat = xnor_popcount_matmul(xb, wb, k)  # (k_a*M, k_w*N)
    dots = np.ascontiguousarray(flat.reshape(k_a, m, k_w, n).transpose(0, 2, 1, 3))
    return BinaryLinearResult(_combine(xs, ws, dots), dots)


# ---------------------------------------------------------------------------------------------
# bit-plane execution: unsigned multi-bit activations x binary weights


def bitplane_matmul(x_codes: np.ndarray, w_signs: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-bit activations times ±1 weights, one bit plane at a time.

    x_codes: unsigned integers (M, K), each < 2**bits (bits in 1..32); w_signs: ±1 (N, K).
    out[m, n] = Σ_t 2^t (popcount(plane_t[m] AND w_plus[n]) - popcount(plane_t[m] AND
    w_minus[n])), where plane_t = bit t of x and w_plus / w_minus mark the +1 / -1 weights.
    Returns int64 (M, N), equal to x @ w.T.
    """
    x, w, bits = bc.bitplane_operands(x_codes, w_signs, bits)
    m, k = x.shape
    planes = np.empty((m, bits, bc.words(k)), dtype=np.uint64)
    _nb.pack_planes(np.ascontiguousarray(x), planes)
    w_plus = _pack_rows((w > 0).view(np.uint8))
    out = np.empty((m, w.shape[0]), dtype=np.int64)
    if out.size:
        _nb.bitplane_matmul(planes, w_plus, out)
    return out


# ---------------------------------------------------------------------------------------------
# binary conv2d: im2col of signs + xnor_popcount_matmul


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
    x, w, (sh, sw), (ph, pw), pad, (oh, ow) = bc.conv_operands(x_signs, w_signs, stride,
                                                                padding, pad_value)
    n = x.shape[0]
    k, _, r, s = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad)
    xb, n_bits = pack_signs(sign_columns(xp, (r, s), (sh, sw)))
    wb, _ = pack_signs(w.reshape(k, -1))
    out = xnor_popcount_matmul(xb, wb, n_bits)  # (N*OH*OW, K)
    return np.ascontiguousarray(out.reshape(n, oh, ow, k).transpose(0, 3, 1, 2))
