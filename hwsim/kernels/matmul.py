"""Exact integer matmul of two activation tensors (attention's Q·K^T and P·V).

acc[..., m, n] = sum_k (a[..., m, k] - zp_a) (b[..., k, n] - zp_b), int64, equal leading dims.
Fast: float64 BLAS when K · max|a - zp_a| · max|b - zp_b| < 2^53 (every partial sum is then an
integer below 2^53 in magnitude, which float64 represents exactly, so the float sum is exact in
any order); otherwise int64 numpy. Reference: int64.
"""
from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError

_EXACT_F64 = 1 << 53


def _centred(name: str, x: np.ndarray, zp: int) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise KernelError(f"matmul_int: {name} must hold integer codes; got dtype {x.dtype}")
    return x.astype(np.int64) - int(zp)


def _operands(a, a_zp, b, b_zp) -> tuple[np.ndarray, np.ndarray]:
    ac, bc = _centred("a", a, a_zp), _centred("b", b, b_zp)
    if ac.ndim < 2 or ac.ndim != bc.ndim or ac.shape[:-2] != bc.shape[:-2] or ac.shape[-1] != bc.shape[-2]:
        raise KernelError(f"matmul_int: expected (..., M, K) @ (..., K, N) with equal leading dims; "
                          f"got {ac.shape} @ {bc.shape}")
    return ac, bc


def matmul_int(a: np.ndarray, a_zp: int, b: np.ndarray, b_zp: int) -> np.ndarray:
    """Exact int64 accumulators (..., M, N) of (a - a_zp) @ (b - b_zp)."""
    ac, bc = _operands(a, a_zp, b, b_zp)
    if ac.size == 0 or bc.size == 0:
        return np.zeros((*ac.shape[:-1], bc.shape[-1]), dtype=np.int64)
    bound = ac.shape[-1] * int(np.abs(ac).max()) * int(np.abs(bc).max())
    if bound < _EXACT_F64:
        return np.matmul(ac.astype(np.float64), bc.astype(np.float64)).astype(np.int64)
    return np.matmul(ac, bc)


def matmul_int_reference(a: np.ndarray, a_zp: int, b: np.ndarray, b_zp: int) -> np.ndarray:
    """Definition of matmul_int: one int64 sum per output element."""
    ac, bc = _operands(a, a_zp, b, b_zp)
    return np.einsum("...mk,...kn->...mn", ac, bc)
