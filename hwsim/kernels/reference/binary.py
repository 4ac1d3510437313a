"""The definition of the XNOR/popcount binary kernels (`hwsim.kernels.binary`): slow, obviously
correct, plain int64 numpy dot products of unpacked ±1 / 0-1 values (no popcount), or Python
ints. Each ``f_reference`` here defines the fast ``f``; the tests compare them for exact equality.

Operands are validated by the same checks as the fast kernels (`hwsim.kernels._binary_checks`),
so both accept and reject exactly the same inputs.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels import _binary_checks as bc
from hwsim.kernels._binary_checks import WORD_BITS, BinaryLinearResult


def pack_signs_reference(b: np.ndarray) -> tuple[np.ndarray, int]:
    """Definition of pack_signs along the last axis of a 2-D (R, n_bits) array, Python ints."""
    b = bc.signs("pack_signs: b", b, 2, "(rows, n_bits)")
    n_bits = b.shape[1]
    out = np.zeros((b.shape[0], bc.words(n_bits)), dtype=np.uint64)
    for r in range(b.shape[0]):
        for w in range(out.shape[1]):
            word = 0
            for k in range(w * WORD_BITS, min((w + 1) * WORD_BITS, n_bits)):
                if b[r, k] > 0:
                    word |= 1 << (k - w * WORD_BITS)
            out[r, w] = word
    return out, n_bits


def _unpack_reference(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """(R, W) uint64 -> (R, n_bits) int64 of ±1, by shifting out every bit (padding dropped)."""
    shifts = np.arange(WORD_BITS, dtype=np.uint64)
    bits = (packed[:, :, None] >> shifts) & np.uint64(1)
    return 2 * bits.reshape(packed.shape[0], -1)[:, :n_bits].astype(np.int64) - 1


def xnor_popcount_matmul_reference(a_packed: np.ndarray, b_packed: np.ndarray, n_bits: int) -> np.ndarray:
    """Definition of xnor_popcount_matmul: unpack to ±1 int64 and take the int64 dot products."""
    n_bits = bc.bit_count("xnor_popcount_matmul: n_bits", n_bits, 1)
    a = _unpack_reference(bc.packed("xnor_popcount_matmul: a_packed", a_packed, n_bits), n_bits)
    b = _unpack_reference(bc.packed("xnor_popcount_matmul: b_packed", b_packed, n_bits), n_bits)
    return a @ b.T


def binary_linear_reference(x_planes: np.ndarray, x_scales: np.ndarray, w_planes: np.ndarray,
                            w_scales: np.ndarray) -> BinaryLinearResult:
    """Definition of binary_linear: int64 dot products of the ±1 planes, then one Python float
    sum per output element in the same grouping and order."""
    xp, xs, wp, ws = bc.binary_linear_operands(x_planes, x_scales, w_planes, w_scales)
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


def bitplane_matmul_reference(x_codes: np.ndarray, w_signs: np.ndarray, bits: int) -> np.ndarray:
    """Definition of bitplane_matmul: the bit-plane sum with int64 dot products of 0/1 planes."""
    x, w, bits = bc.bitplane_operands(x_codes, w_signs, bits)
    x64 = x.astype(np.uint64)
    w_plus = (w > 0).astype(np.int64)
    w_minus = (w < 0).astype(np.int64)
    out = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    for t in range(bits):
        plane = ((x64 >> np.uint64(t)) & np.uint64(1)).astype(np.int64)
        out += (plane @ w_plus.T - plane @ w_minus.T) << t
    return out


def binary_conv2d_reference(x_signs: np.ndarray, w_signs: np.ndarray,
                            stride: int | tuple[int, int] = 1,
                            padding: int | tuple[int, int] = 0, pad_value: int = 1) -> np.ndarray:
    """Definition of binary_conv2d: one int64 sum per output element, each input position
    checked against the borders (outside -> pad_value)."""
    x, w, (sh, sw), (ph, pw), pad, (oh_n, ow_n) = bc.conv_operands(x_signs, w_signs, stride,
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
