"""Quantized difference of two tensors, integer-only (dyadic requantization).

    y = clamp(floor(((a - zp_a) m_a - (b - zp_b) m_b + 2^(shift-1)) / 2^shift) + zp_y, qmin, qmax)

with m_a 2^-shift ~ s_a / s_y and m_b 2^-shift ~ s_b / s_y (``dyadic_multiplier_pair``): the
residual add's arithmetic with the second term subtracted, rounding half up. Codes of at most 17
bits and multipliers below 2^31 keep every term exact in int64.

`sub_requantize_dyadic` forms the difference with numpy int64 and requantizes with
``requantize_dyadic``; `sub_requantize_dyadic_reference` is the element-by-element definition in
Python integers.
"""
from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError

_CODE_LIMIT = 1 << 17
_M_LIMIT = 1 << 31


def _operands(fn: str, a, b, m_a: int, m_b: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    for name, v in (("a", a), ("b", b)):
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "iu" or v.dtype == np.uint64:
            raise KernelError(f"{fn}: {name} must be a numpy array of integer codes; got "
                              f"{type(v).__name__} {getattr(v, 'dtype', '')}.")
        if v.size and max(abs(int(v.min())), abs(int(v.max()))) >= _CODE_LIMIT:
            raise KernelError(f"{fn}: {name} codes must be at most 17-bit integers.")
    if a.shape != b.shape:
        raise KernelError(f"{fn}: a and b must have the same shape; got {a.shape} and {b.shape}.")
    if not (0 <= int(m_a) < _M_LIMIT and 0 <= int(m_b) < _M_LIMIT and 0 <= int(shift) <= 63):
        raise KernelError(f"{fn}: m_a, m_b must lie in [0, 2^31) and shift in [0, 63]; got "
                          f"m_a={m_a}, m_b={m_b}, shift={shift}.")
    return a.astype(np.int64), b.astype(np.int64)


def sub_requantize_dyadic(a: np.ndarray, a_zp: int, m_a: int, b: np.ndarray, b_zp: int,
                          m_b: int, shift: int, out_zp: int, qmin: int, qmax: int) -> np.ndarray:
    """Codes of a - b (module docstring); a, b integer codes of one shape. Returns the codes in
    the smallest dtype holding [qmin, qmax], of that shape."""
    from hwsim.kernels.requant import requantize_dyadic

    a64, b64 = _operands("sub_requantize_dyadic", a, b, m_a, m_b, shift)
    acc = (a64 - int(a_zp)) * int(m_a) - (b64 - int(b_zp)) * int(m_b)
    return requantize_dyadic(acc, 1, int(shift), int(out_zp), int(qmin), int(qmax))


def sub_requantize_dyadic_reference(a: np.ndarray, a_zp: int, m_a: int, b: np.ndarray,
                                    b_zp: int, m_b: int, shift: int, out_zp: int, qmin: int,
                                    qmax: int) -> np.ndarray:
    """`sub_requantize_dyadic`, element by element in Python integers (int64 result)."""
    from hwsim.kernels.requant import output_dtype

    a64, b64 = _operands("sub_requantize_dyadic_reference", a, b, m_a, m_b, shift)
    half = (1 << (int(shift) - 1)) if shift else 0
    out = np.empty(a64.shape, dtype=np.int64)
    for i, (x, y) in enumerate(zip(a64.reshape(-1).tolist(), b64.reshape(-1).tolist())):
        acc = (x - int(a_zp)) * int(m_a) - (y - int(b_zp)) * int(m_b)
        q = ((acc + half) >> int(shift)) + int(out_zp)
        out.reshape(-1)[i] = min(max(q, int(qmin)), int(qmax))
    return out.astype(output_dtype(int(qmin), int(qmax)))
