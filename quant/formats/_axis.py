"""Per-channel parameters applied along one axis of a tensor (shared by the format families)."""

from __future__ import annotations

import numpy as np

from quant.errors import QuantError


def broadcast_along(arr: np.ndarray, x: np.ndarray, axis: int | None, owner: str) -> np.ndarray:
    """Reshape per-channel ``arr`` (K,) so it broadcasts along ``axis`` of ``x`` (``axis`` None:
    ``arr`` is per tensor and returned as is). ``owner`` names the parameters in the error."""
    if axis is None:
        return arr
    if x.ndim <= axis or x.shape[axis] != arr.shape[0]:
        raise QuantError(f"per-channel {owner} with {arr.shape[0]} channels on axis {axis} "
                         f"cannot apply to a tensor of shape {x.shape}")
    shape = [1] * x.ndim
    shape[axis] = arr.shape[0]
    return arr.reshape(shape)
