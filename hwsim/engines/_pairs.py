"""u8 x s8 dot products summed in adjacent pairs with int16 saturation.

CPUs without VNNI multiply u8 by s8 with `vpmaddubsw`, which adds the two products of adjacent
reduction elements into int16 with saturation before widening to int32 (Intel's instruction
set reference); ONNX Runtime and PyTorch fbgemm/onednn show it (tests/test_engine_ort.py,
tests/test_engine_pytorch.py).
The engine runs on the raw codes (zero points are corrected afterwards), so the saturation acts
on raw products. Everything here is int32/int64 numpy: exact by construction.
"""

from __future__ import annotations

import numpy as np

_I16_MIN, _I16_MAX = -(1 << 15), (1 << 15) - 1
_CHUNK_ELEMENTS = 1 << 22  # products held at once (int32): 16 MB


def pair_saturation_excess(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_j (sat16(p_j) - p_j) with p_j = a[m, 2j] b[2j, n] + a[m, 2j+1] b[2j+1, n]: what
    int16 pair saturation adds to the exact raw dot product, as int64 (M, N).

    a: raw u8 codes (M, L); b: raw s8 codes (L, N). An odd L pairs the last element with 0.
    """
    m_n, l_n = a.shape
    n_n = b.shape[1]
    if l_n % 2:
        a = np.concatenate([a, np.zeros((m_n, 1), dtype=a.dtype)], axis=1)
        b = np.concatenate([b, np.zeros((1, n_n), dtype=b.dtype)], axis=0)
    ae, ao = a[:, 0::2].astype(np.int32), a[:, 1::2].astype(np.int32)
    be, bo = b[0::2].astype(np.int32), b[1::2].astype(np.int32)
    out = np.zeros((m_n, n_n), dtype=np.int64)
    # Only pairs that can leave int16 matter: skip the work when none can.
    if ae.size == 0 or out.size == 0:
        return out
    if 2 * int(max(np.abs(ae).max(), np.abs(ao).max())) * int(max(np.abs(be).max(), np.abs(bo).max())) <= _I16_MAX:
        return out
    rows = max(1, _CHUNK_ELEMENTS // max(1, ae.shape[1] * n_n))
    for r0 in range(0, m_n, rows):
        r1 = min(m_n, r0 + rows)
        pair = ae[r0:r1, :, None] * be[None] + ao[r0:r1, :, None] * bo[None]  # |.| < 2^17
        excess = np.clip(pair, _I16_MIN, _I16_MAX) - pair
        out[r0:r1] = excess.sum(axis=1, dtype=np.int64)
    return out
