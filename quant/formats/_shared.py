"""Helpers the format families share: the tensor a fit accepts, per-channel parameters applied
along one axis."""

from __future__ import annotations

import numpy as np

from quant.errors import QuantError


def finite_tensor(x, what: str, label: str) -> np.ndarray:
    """``x`` as float64, non-empty and finite; ``what`` names the caller ("fit_binary") and
    ``label`` what it fits ("ls1 binary parameters") in the error."""
    try:
        xf = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QuantError(f"{what} expects a real-valued array; got {type(x).__name__}") from exc
    if xf.size == 0:
        raise QuantError(f"cannot fit {label} to an empty tensor of shape {xf.shape}; expected "
                         "at least one value")
    bad = int(np.count_nonzero(~np.isfinite(xf)))
    if bad:
        raise QuantError(f"cannot fit {label} to a tensor with NaN or inf ({bad} of {xf.size} "
                         "values); expected finite values")
    return xf


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
