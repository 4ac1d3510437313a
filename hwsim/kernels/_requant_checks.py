"""Validation and dtype rules shared by the requantization kernels and their reference."""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.ir.tensor import smallest_int_dtype
from hwsim.kernels._checks import scalar_int



def output_dtype(qmin: int, qmax: int) -> np.dtype:
    """Smallest numpy integer dtype holding [qmin, qmax] (unsigned preferred when qmin >= 0)."""
    try:
        return smallest_int_dtype(int(qmin), int(qmax))
    except ValueError:
        raise KernelError(f"requantize: [qmin, qmax] = [{qmin}, {qmax}] does not fit in int64.") from None


def output_range(fn: str, out_zero_point: object, qmin: object, qmax: object) -> tuple[int, int, int]:
    """Validate (out_zero_point, qmin, qmax) as Python ints with qmin <= qmax, all in int64."""
    zp = scalar_int(f"{fn}: out_zero_point", out_zero_point)
    lo = scalar_int(f"{fn}: qmin", qmin)
    hi = scalar_int(f"{fn}: qmax", qmax)
    if lo > hi:
        raise KernelError(f"{fn}: qmin must be <= qmax; got qmin={lo}, qmax={hi}.")
    for name, v in (("qmin", lo), ("qmax", hi), ("out_zero_point", zp)):
        if not -(2**62) <= v < 2**62:
            raise KernelError(f"{fn}: {name} must lie in [-2^62, 2^62); got {v}.")
    return zp, lo, hi


def accumulator_array(fn: str, acc: object) -> np.ndarray:
    if not isinstance(acc, np.ndarray) or acc.dtype.kind not in "iu" or acc.dtype == np.uint64:
        raise KernelError(f"{fn}: acc must be a numpy integer array (int64 accumulators); got {type(acc).__name__} {getattr(acc, 'dtype', '')}.")
    return acc


def channel_param(fn: str, name: str, v: object, acc: np.ndarray, axis: int, kind: str) -> np.ndarray:
    """A per-tensor (scalar) or per-channel (length acc.shape[axis]) parameter, returned as a
    1-D array of length 1 or acc.shape[axis]. kind: "int" or "float32"."""
    arr = np.asarray(v)
    if kind == "int":
        if arr.dtype.kind not in "iu" or arr.dtype == np.uint64:
            raise KernelError(f"{fn}: {name} must be integer(s); got {arr.dtype}.")
        arr = arr.astype(np.int64)
    else:
        if arr.dtype != np.float32:
            raise KernelError(f"{fn}: {name} must be float32 (compute it with ort_output_scale); got dtype {arr.dtype}.")
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.ndim != 1:
        raise KernelError(f"{fn}: {name} must be a scalar or 1-D per-channel; got shape {arr.shape}.")
    if acc.ndim == 0 or not -acc.ndim <= axis < acc.ndim:
        raise KernelError(f"{fn}: axis {axis} is out of range for acc of shape {acc.shape}.")
    if arr.shape[0] != acc.shape[axis]:
        raise KernelError(f"{fn}: per-channel {name} has {arr.shape[0]} entries but acc has {acc.shape[axis]} channels along axis {axis} (shape {acc.shape}).")
    return arr


def broadcast_shape(acc: np.ndarray, axis: int, length: int) -> tuple[int, ...]:
    """Shape that broadcasts a length-``length`` channel vector along ``axis`` of acc."""
    if length == 1:
        return (1,) * max(acc.ndim, 1)
    shape = [1] * acc.ndim
    shape[axis] = length
    return tuple(shape)
