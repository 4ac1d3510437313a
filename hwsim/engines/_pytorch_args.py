"""Operand checks for the PyTorch engine ops (`hwsim.engines.pytorch`). Every failure raises
EngineError naming the op, the argument and what was expected."""

from __future__ import annotations

import numpy as np

from hwsim.engines.errors import EngineError
from hwsim.engines.table import PYTORCH_ENGINES as ENGINES

QUINT8_RANGE = (0, 255)
QINT8_RANGE = (-128, 127)


def engine(op: str, name: object) -> str:
    """One of ENGINES."""
    if not isinstance(name, str) or name not in ENGINES:
        raise EngineError(f"{op}: 'engine' must be one of {ENGINES}; got {name!r}.")
    return name


def codes(op: str, name: str, arr: object, dtype: type, ndim: int | None = None, min_ndim: int = 1) -> np.ndarray:
    """A numpy array of exactly ``dtype`` with ``ndim`` dimensions (or at least ``min_ndim``)."""
    want = np.dtype(dtype)
    if not isinstance(arr, np.ndarray) or arr.dtype != want:
        got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')}".strip()
        raise EngineError(f"{op}: '{name}' must be a numpy {want} array of codes; got {got}.")
    if ndim is not None and arr.ndim != ndim:
        raise EngineError(f"{op}: '{name}' must have {ndim} dimensions; got shape {arr.shape}.")
    if arr.ndim < min_ndim:
        raise EngineError(f"{op}: '{name}' must have at least {min_ndim} dimensions; got shape {arr.shape}.")
    return arr


def _is_real(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def scale(op: str, name: str, v: object) -> float:
    """A positive finite real scalar, returned as a Python float (torch stores q_scale as double)."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if not _is_real(v) or not np.isfinite(float(v)) or float(v) <= 0:
        raise EngineError(f"{op}: '{name}' must be one positive finite number; got {v!r}.")
    return float(v)


def weight_scales(op: str, v: object, k: int) -> tuple[np.ndarray, bool]:
    """w_scale: a scalar (per-tensor) or a 1-D float array of K entries (per output channel).
    Returns (float64 (K,), per_channel)."""
    if isinstance(v, np.ndarray) and v.ndim >= 1:
        if v.ndim != 1 or v.shape[0] != k or v.dtype.kind != "f":
            raise EngineError(f"{op}: per-channel 'w_scale' must be a 1-D float array of {k} entries "
                              f"(one per output channel); got {v.dtype} {v.shape}.")
        s = v.astype(np.float64)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise EngineError(f"{op}: 'w_scale' entries must be positive and finite; got {s.tolist()[:4]}.")
        return s, True
    return np.full(k, scale(op, "w_scale", v)), False


def _int_scalar(v: object) -> int | None:
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    return None


def zero_point(op: str, name: str, v: object, lo: int, hi: int) -> int:
    """An integer scalar in [lo, hi]."""
    i = _int_scalar(v)
    if i is None or not lo <= i <= hi:
        raise EngineError(f"{op}: '{name}' must be one integer in [{lo}, {hi}]; got {v!r}.")
    return i


def weight_zero_points(op: str, v: object, k: int, per_channel: bool) -> np.ndarray:
    """w_zp: a qint8 integer scalar, or (per-channel weights only) a 1-D integer array of K entries.
    Returns int64 (K,)."""
    if isinstance(v, np.ndarray) and v.ndim >= 1:
        if not per_channel:
            raise EngineError(f"{op}: 'w_zp' must be one integer when 'w_scale' is per-tensor; got shape {v.shape}.")
        lo, hi = QINT8_RANGE
        if v.ndim != 1 or v.shape[0] != k or v.dtype.kind not in "iu":
            raise EngineError(f"{op}: per-channel 'w_zp' must be a 1-D integer array of {k} entries; "
                              f"got {v.dtype} {v.shape}.")
        z = v.astype(np.int64)
        if z.min() < lo or z.max() > hi:
            raise EngineError(f"{op}: 'w_zp' entries must lie in [{lo}, {hi}]; got {z.tolist()[:4]}.")
        return z
    return np.full(k, zero_point(op, "w_zp", v, *QINT8_RANGE), dtype=np.int64)


def bias(op: str, v: object, k: int) -> np.ndarray | None:
    """None, or a float bias of shape (K,) in real units -> float32 (K,) (torch's bias is float32)."""
    if v is None:
        return None
    if not isinstance(v, np.ndarray) or v.dtype.kind != "f" or v.shape != (k,):
        got = f"{getattr(v, 'dtype', type(v).__name__)} {getattr(v, 'shape', '')}"
        raise EngineError(f"{op}: 'bias_f32' must be None or a float array of shape ({k},); got {got}.")
    b = v.astype(np.float32)
    if not np.all(np.isfinite(b)):
        raise EngineError(f"{op}: 'bias_f32' must be finite in float32; got {v.tolist()[:4]}.")
    return b


def pair(op: str, name: str, v: object, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum -> (h, w)."""
    single = _int_scalar(v)
    if single is not None:
        vals = (single, single)
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(_int_scalar(e) is not None for e in v):
        vals = (_int_scalar(v[0]), _int_scalar(v[1]))
    else:
        raise EngineError(f"{op}: '{name}' must be an int or a pair of ints (h, w); got {v!r}.")
    if min(vals) < minimum:
        raise EngineError(f"{op}: '{name}' entries must be >= {minimum}; got {vals}.")
    return vals  # type: ignore[return-value]


def conv_geometry(op: str, x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups) -> tuple:
    """Checks a torch Conv2d geometry; returns (stride, padding, dilation, groups, (OH, OW))."""
    st = pair(op, "stride", stride, 1)
    pd = pair(op, "padding", padding, 0)
    dl = pair(op, "dilation", dilation, 1)
    g = _int_scalar(groups)
    n_k, c_g, r_n, s_n = w.shape
    if g is None or g < 1:
        raise EngineError(f"{op}: 'groups' must be an int >= 1; got {groups!r}.")
    if x.shape[1] != c_g * g or n_k % g:
        raise EngineError(f"{op}: 'w' of shape {w.shape} with groups={g} needs x with {c_g * g} channels and K "
                          f"divisible by groups; got x shape {x.shape}.")
    oh = (x.shape[2] + 2 * pd[0] - dl[0] * (r_n - 1) - 1) // st[0] + 1
    ow = (x.shape[3] + 2 * pd[1] - dl[1] * (s_n - 1) - 1) // st[1] + 1
    if oh < 1 or ow < 1 or r_n < 1 or s_n < 1:
        raise EngineError(f"{op}: kernel {r_n}x{s_n} (dilation {dl}) does not fit input {x.shape[2:]} "
                          f"padded by {pd}; output would be {oh}x{ow}.")
    return st, pd, dl, g, (oh, ow)
