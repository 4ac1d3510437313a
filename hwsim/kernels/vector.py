"""Float ops of a vector unit beside the integer arrays: layer norm, GELU, softmax.

Transformers keep these in floating point (common int8 flows, e.g. ONNX Runtime's, quantize
only the matrix products). Semantics of the integer program's ``vector_op`` node:

1. x = float32((codes - zp_x) · s_x)   (the product in float64, one rounding to float32);
2. y = fn(x) in float32 numpy arithmetic (below; deterministic, but not torch's kernels, so
   results can differ from a torch float32 model in the last bits);
3. out = clamp(rint_half_even(float64(y) / s_y) + zp_y, lo, hi).

The fake-quant model runs the same fn with torch; the two agree to within 1 LSB of the output
(tests state the measured figures).
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from hwsim.errors import KernelError

VECTOR_FNS = ("layernorm", "gelu", "softmax")
_F32 = np.float32


def layer_norm_f32(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """Layer norm over the last dim: (x - mean) / sqrt(var + eps) · gamma + beta, float32,
    biased variance (as torch.nn.LayerNorm). x (..., C); gamma, beta (C,)."""
    mean = x.mean(axis=-1, keepdims=True, dtype=_F32)
    xc = x - mean
    var = (xc * xc).mean(axis=-1, keepdims=True, dtype=_F32)
    return (xc / np.sqrt(var + _F32(eps))) * gamma.astype(_F32) + beta.astype(_F32)


def gelu_f32(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU in float32: exact 0.5 x (1 + erf(x / sqrt 2)), or the tanh approximation."""
    if approximate == "tanh":
        inner = _F32(np.sqrt(2.0 / np.pi)) * (x + _F32(0.044715) * x * x * x)
        return _F32(0.5) * x * (_F32(1.0) + np.tanh(inner))
    return _F32(0.5) * x * (_F32(1.0) + erf(x * _F32(1.0 / np.sqrt(2.0))).astype(_F32))


def softmax_f32(x: np.ndarray, axis: int) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along ``axis``, float32."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True, dtype=_F32)


def vector_op(codes: np.ndarray, fn: str, *, input_zero_point: int, input_scale: float,
              output_scale: float, output_zero_point: int, clamp: tuple[int, int],
              params: dict, gamma: np.ndarray | None = None,
              beta: np.ndarray | None = None) -> np.ndarray:
    """Steps 1-3 of the module docstring. ``params``: layernorm {"eps"}, gelu
    {"approximate"}, softmax {"dim"}. Returns int64 codes of the input's shape."""
    if fn not in VECTOR_FNS:
        raise KernelError(f"vector_op: fn must be one of {VECTOR_FNS}; got {fn!r}")
    x = ((np.asarray(codes, dtype=np.float64) - input_zero_point) * input_scale).astype(_F32)
    if fn == "layernorm":
        if gamma is None or beta is None:
            raise KernelError("vector_op layernorm needs gamma and beta")
        y = layer_norm_f32(x, gamma, beta, float(params["eps"]))
    elif fn == "gelu":
        y = gelu_f32(x, str(params.get("approximate", "none")))
    else:
        y = softmax_f32(x, int(params["dim"]))
    lo, hi = clamp
    out = np.rint(y.astype(np.float64) / output_scale) + output_zero_point
    return np.clip(out, lo, hi).astype(np.int64)
