"""PyTorch fbgemm's quantized linear (per-tensor, u8 activations x s8 weights), reproduced
from the raw codes, with or without the int16 pair saturation of CPUs without VNNI.

What fbgemm does, established by running torch 2.13's fbgemm with
FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (tests/test_fbgemm_pairs.py, tests/test_engine_pytorch.py)
and from the x86 instruction semantics (`vpmaddubsw`, `vpmaddwd`; Intel's instruction set
reference):
- The GEMM runs on the raw codes: sum_i x_i w_i with x the u8 codes as stored (the activation
  zero point is NOT subtracted first) and w the s8 codes. `vpmaddubsw` adds the products of
  reduction elements (2j, 2j+1), in natural order, into int16 with saturation; K is packed in
  groups of 4 (two pairs, summed by `vpmaddwd`), zero-padded, so an odd K pairs its last element
  with 0. The zero points are corrected afterwards in int32 from row/column sums:
  acc = sum x w - x_zp sum w - w_zp sum x + K x_zp w_zp = exact + pair excess, mod 2^32.
- Requantization in float32 with a float bias:
  s = f32(f32(s_x) f32(s_w)); xf = fma(b_f, f32(1/s), f32(acc)); q = rint_half_even(xf * f32(s / s_y))
  + y_zp, clamped to [0, 255].
"""

from __future__ import annotations

import numpy as np

from hwsim.engines.errors import EngineError
from hwsim.engines._pairs import pair_saturation_excess
from hwsim.kernels.fma import fma_f32

_F32 = np.float32


def _per_tensor(name: str, v) -> float:
    a = np.asarray(v, dtype=np.float64)
    if a.size != 1 or not np.isfinite(a).all() or float(a.reshape(())) <= 0:
        raise EngineError(f"fbgemm_linear: {name} must be one positive finite float (per-tensor); got {v!r}")
    return float(a.reshape(()))


def _zero_point(name: str, v, lo: int, hi: int) -> int:
    a = np.asarray(v)
    if a.size != 1 or not np.issubdtype(a.dtype, np.integer) or not lo <= int(a.reshape(())) <= hi:
        raise EngineError(f"fbgemm_linear: {name} must be one integer in [{lo}, {hi}] (per-tensor); got {v!r}")
    return int(a.reshape(()))


def fbgemm_accumulators(x: np.ndarray, x_zp: int, w: np.ndarray, w_zp: int, *,
                        int16_pairs: bool = True) -> np.ndarray:
    """int32 accumulators (M, N) as int64 of fbgemm's u8 x s8 GEMM with zero-point correction.

    x: uint8 codes (M, K); w: int8 codes (N, K) (torch's (out, in) layout); int16_pairs: add the
    saturation of adjacent raw product pairs to int16 (AVX2 without VNNI), else exact math.
    The result wraps to int32 as fbgemm's int32 arithmetic does.
    """
    from hwsim.kernels import AccumulatorSpec, linear_int

    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.uint8 or x.ndim != 2:
        raise EngineError(f"fbgemm_linear: x must be uint8 codes (M, K); got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise EngineError(f"fbgemm_linear: w must be int8 codes (N, K={x.shape[1]}); got {w.dtype} {w.shape}")
    acc = linear_int(x, x_zp, w, w_zp, None, acc=AccumulatorSpec(bits=32, mode="wrap")).values
    if int16_pairs:
        acc = acc + pair_saturation_excess(x, np.ascontiguousarray(w.T))
    return acc.astype(np.int32).astype(np.int64)  # wrap to int32


def fbgemm_linear(x: np.ndarray, x_scale: float, x_zp: int, w: np.ndarray, w_scale: float,
                  w_zp: int, bias: np.ndarray | None, y_scale: float, y_zp: int, *,
                  int16_pairs: bool = True) -> np.ndarray:
    """Output codes (M, N) uint8 of torch.ops.quantized.linear on the fbgemm engine, per-tensor.

    x: uint8 (M, K) with x_scale, x_zp in [0, 255]; w: int8 (N, K) with w_scale, w_zp in
    [-128, 127]; bias: None or float (N,) in real units; y_scale, y_zp in [0, 255].
    int16_pairs: True models AVX2 without VNNI (vpmaddubsw), False exact int32 accumulation.
    """
    sx, sw, sy = (_per_tensor(n, v) for n, v in (("x_scale", x_scale), ("w_scale", w_scale), ("y_scale", y_scale)))
    xzp = _zero_point("x_zp", x_zp, 0, 255)
    wzp = _zero_point("w_zp", w_zp, -128, 127)
    yzp = _zero_point("y_zp", y_zp, 0, 255)
    acc = fbgemm_accumulators(x, xzp, w, wzp, int16_pairs=int16_pairs)
    act_times_w = _F32(_F32(sx) * _F32(sw))
    xf = acc.astype(_F32)
    if bias is not None:
        b = np.asarray(bias, dtype=_F32).reshape(-1)
        if b.size != acc.shape[1]:
            raise EngineError(f"fbgemm_linear: bias must have {acc.shape[1]} entries (N); got {b.size}")
        xf = fma_f32(np.broadcast_to(b, acc.shape), _F32(_F32(1) / act_times_w), xf)
    multiplier = _F32(act_times_w / _F32(sy))
    q = np.rint(xf * multiplier).astype(np.int64) + yzp
    return np.clip(q, 0, 255).astype(np.uint8)
