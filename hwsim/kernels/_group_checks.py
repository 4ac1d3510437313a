"""Validation shared by the group-wise weight kernels and their reference: the weight codes,
the group size, the per-(channel, group) zero points, and the map from (group, channel) rows to
output channels that the multipoint requantization takes."""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck


def group_weight(fn: str, w: object, w_zp: object, group_size: object, ndim: int
                 ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``w``: integer codes (K, C) (``ndim`` 2) or (K, C, R, S) (``ndim`` 4); ``group_size``
    dividing C; ``w_zp``: None (zeros) or integers (K, G) in the range of ``w``'s dtype.
    Returns (w, w_zp int64 (K, G), group_size, G)."""
    layout = "(K, C)" if ndim == 2 else "(K, C, R, S)"
    w = ck.int_array(f"{fn}: w", w, ndim, layout)
    gs = ck.scalar_int(f"{fn}: group_size", group_size)
    k, c = w.shape[:2]
    if min(w.shape) < 1 or gs < 1 or c % gs:
        raise KernelError(f"{fn}: group_size must be >= 1 and divide the {c} input features of "
                          f"w (shape {w.shape}, non-empty); got group_size={gs}.")
    groups = c // gs
    if w_zp is None:
        return w, np.zeros((k, groups), dtype=np.int64), gs, groups
    zp = np.asarray(w_zp)
    if zp.dtype.kind not in "iu" or zp.shape != (k, groups):
        raise KernelError(f"{fn}: w_zp must be None or integers of shape ({k}, {groups}) (one "
                          f"per output channel and group); got {zp.dtype} of shape {zp.shape}.")
    ck.channel_zero_points(f"{fn}: w_zp", zp.reshape(-1), k * groups, w.dtype)  # range check
    return w, zp.astype(np.int64), gs, groups


def group_rows_map(fn: str, m: object, shift: object) -> tuple[np.ndarray, np.ndarray]:
    """Per-(channel, group) multipliers ``m`` (K, G) as the per-row multipliers of the
    accumulator rows (G·K,), row ``g·K + k`` for (k, g), and the output channel of each row."""
    mv = np.asarray(m)
    k = np.shape(shift)[0] if np.ndim(shift) == 1 else -1
    if mv.dtype.kind not in "iu" or mv.ndim != 2 or mv.shape[0] != k or mv.shape[1] < 1:
        raise KernelError(f"{fn}: m must be integers of shape (K, G) with K = {k} (the length of "
                          f"shift); got {mv.dtype} of shape {mv.shape}.")
    return (np.ascontiguousarray(mv.T).reshape(-1),
            np.tile(np.arange(k, dtype=np.int64), mv.shape[1]))
