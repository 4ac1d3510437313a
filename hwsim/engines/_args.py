"""Operand checks for the engine ops; every failure raises EngineError naming the op, the input
(by its ONNX name) and what was expected."""

from __future__ import annotations

import numpy as np

from hwsim.engines.errors import EngineError

_CODE_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))


def codes(op: str, name: str, arr: object, ndim: int) -> np.ndarray:
    """A u8/s8 numpy array with ``ndim`` dimensions."""
    if not isinstance(arr, np.ndarray) or arr.dtype not in _CODE_DTYPES:
        got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')}".strip()
        raise EngineError(f"{op}: input '{name}' must be a numpy uint8 or int8 array; got {got}.")
    if arr.ndim != ndim:
        raise EngineError(f"{op}: input '{name}' must have {ndim} dimensions; got shape {arr.shape}.")
    return arr


def matmul_operands(op: str, a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    """a (..., M, K) and b (K, N) as u8/s8 arrays with matching K."""
    if isinstance(a, np.ndarray) and a.ndim < 2:
        raise EngineError(f"{op}: input 'a' must have shape (..., M, K); got shape {a.shape}.")
    a = codes(op, "a", a, a.ndim if isinstance(a, np.ndarray) else 2)
    b = codes(op, "b", b, 2)
    if a.shape[-1] != b.shape[0]:
        raise EngineError(f"{op}: 'a' has K={a.shape[-1]} columns but 'b' has {b.shape[0]} rows; shapes {a.shape} and {b.shape}.")
    return a, b


def _vector(op: str, name: str, v: object, n: int) -> np.ndarray:
    arr = np.asarray(v)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] not in (1, n)):
        allowed = "a scalar" if n == 1 else f"a scalar or shape ({n},)"
        raise EngineError(f"{op}: '{name}' must be {allowed}; got shape {arr.shape}.")
    return arr.reshape(-1)


def zero_point(op: str, name: str, v: object, dtype: np.dtype, n: int) -> np.ndarray:
    """A zero point of the codes' dtype: None (0), a scalar, or (n,) when n > 1 -> int64 (n,)
    (a scalar is repeated)."""
    if v is None:
        return np.zeros(n, dtype=np.int64)
    arr = _vector(op, name, v, n)
    if isinstance(v, (np.ndarray, np.generic)) and arr.dtype != dtype:
        raise EngineError(f"{op}: '{name}' must have the dtype of its tensor ({dtype}); got {arr.dtype}.")
    if arr.dtype.kind not in "iu":
        raise EngineError(f"{op}: '{name}' must be an integer; got {arr.dtype}.")
    info = np.iinfo(dtype)
    wide = arr.astype(np.int64)
    if wide.size and (wide.min() < info.min or wide.max() > info.max):
        raise EngineError(f"{op}: '{name}' must lie in [{info.min}, {info.max}] ({dtype}); got {wide.tolist()[:4]}.")
    return np.broadcast_to(wide, (n,)).copy()


def output_zero_point(op: str, v: object) -> tuple[int, np.dtype]:
    """y_zero_point: a uint8 or int8 numpy scalar (its dtype is the output's) -> (value, dtype)."""
    arr = np.asarray(v)
    if not isinstance(v, (np.ndarray, np.generic)) or arr.dtype not in _CODE_DTYPES or arr.size != 1 or arr.ndim > 1:
        raise EngineError(f"{op}: 'y_zero_point' must be a uint8 or int8 numpy scalar (it sets the output type); got {v!r}.")
    return int(arr.reshape(-1)[0]), arr.dtype


def scale(op: str, name: str, v: object, n: int) -> np.ndarray:
    """A positive finite float32 scale: scalar, or (n,) when n > 1 -> float32 (1,)/(n,)."""
    arr = _vector(op, name, v, n)
    if arr.dtype.kind != "f":
        raise EngineError(f"{op}: '{name}' must be a float scale; got dtype {arr.dtype}.")
    arr = arr.astype(np.float32)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise EngineError(f"{op}: '{name}' must be finite and > 0 in float32; got {arr.tolist()[:4]}.")
    return arr


def bias(op: str, v: object, k: int) -> np.ndarray | None:
    """None, or an int32 bias of shape (k,) -> int64 (k,)."""
    if v is None:
        return None
    if not isinstance(v, np.ndarray) or v.dtype != np.int32 or v.shape != (k,):
        got = f"{getattr(v, 'dtype', type(v).__name__)} {getattr(v, 'shape', '')}"
        raise EngineError(f"{op}: 'B' (bias) must be an int32 array of shape ({k},); got {got}.")
    return v.astype(np.int64)
