"""Fitting ``QuantParams`` of an ``IntFormat`` to data: min-max, percentile and MSE clipping.

All arithmetic is numpy float64.  Per-channel formats reduce over every axis except axis 0.

* min-max: the range is ``[min(x), max(x)]`` (widened to include 0).
* percentile: ``[P(100-p), P(p)]`` of the values (symmetric formats: ``P(p)`` of ``|x|``).
* mse: a grid search over clipping ratios ``r`` in ``{0.01, 0.02, ..., 1.00}`` of the min-max
  range ``[r·lo, r·hi]``, keeping per channel the ratio with the smallest
  ``mean((x - dequantize(quantize(x)))^2)``; ``r = 1`` (min-max) is a candidate and wins ties,
  so MSE clipping is never worse than min-max on the data it was fitted to.

Degenerate channels of per-channel weights (``settle_channel_scales``, applied by
``quant.QuantizedModel``; ``fit_int_params`` itself fits every channel on its own): an all-zero
channel gets the largest scale of the layer's other channels instead of the placeholder 1.0, and
a channel whose scale is below ``DEGENERATE_SCALE_RATIO`` (2^-16) of that largest scale is
raised to it.  ``with_channel_scales`` sets per-channel scales (rounded up to float32) and
refits asymmetric zero points.
"""

from __future__ import annotations

import numpy as np

from quant.errors import QuantError
from quant.formats.uniform import IntFormat, QuantParams

MSE_RATIOS = np.arange(100, 0, -1, dtype=np.float64) / 100.0  # 1.00 first: min-max wins ties
# A per-channel weight scale is at least this fraction of the layer's largest channel scale.
DEGENERATE_SCALE_RATIO = 2.0 ** -16
_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)


def _channels_first(x: np.ndarray, per_channel: bool) -> np.ndarray:
    """View ``x`` as (K, N) (per channel, axis 0) or (1, N) (per tensor)."""
    if per_channel:
        if x.ndim == 0:
            raise QuantError("a per-channel format needs a tensor with a channel axis 0")
        return x.reshape(x.shape[0], -1)
    return x.reshape(1, -1)


def _check_data(x: np.ndarray) -> np.ndarray:
    xf = np.asarray(x, dtype=np.float64)
    if xf.size == 0:
        raise QuantError("cannot fit quantization parameters to an empty tensor")
    if not np.all(np.isfinite(xf)):
        raise QuantError("cannot fit quantization parameters to a tensor with NaN or inf")
    if xf.ndim > 0 and xf.shape[0] == 0:
        raise QuantError("cannot fit per-channel parameters with 0 channels")
    return xf


def params_from_range(lo: np.ndarray, hi: np.ndarray, fmt: IntFormat,
                      axis: int | None = None) -> QuantParams:
    """QuantParams covering ``[lo, hi]`` (float arrays of shape () or (K,)).

    The range is first widened to include 0, so 0.0 is exactly representable.  Symmetric:
    ``scale = max|range| / qmax`` (unsigned symmetric: ``max(hi, 0) / qmax``), zero point 0.
    Asymmetric: ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = qmin - rint(lo / scale)``.
    The scale is rounded to the nearest float32; an empty or float32-subnormal range gets
    scale 1.0 (every value then maps to the zero point).
    """
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    if lo.shape != hi.shape:
        raise QuantError(f"range bounds have shapes {lo.shape} and {hi.shape}")
    if fmt.symmetric:
        amax = np.maximum(-lo, hi) if fmt.signed else hi
        scale = amax / fmt.qmax
    else:
        scale = (hi - lo) / (fmt.qmax - fmt.qmin)
    if np.any(scale > _F32_MAX):
        raise QuantError(f"range [{lo.min()}, {hi.max()}] is too wide for a float32 scale")
    scale = scale.astype(np.float32).astype(np.float64)
    scale = np.where(scale < _F32_TINY, 1.0, scale)
    if fmt.symmetric:
        zp = np.zeros(scale.shape, dtype=np.int64)
    else:
        zp = np.clip(fmt.qmin - np.rint(lo / scale), fmt.qmin, fmt.qmax).astype(np.int64)
    return QuantParams(scale=scale, zero_point=zp, axis=axis if scale.ndim else None, fmt=fmt)


def minmax_range(x: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (K,) or per tensor () min and max of ``x``."""
    xc = _channels_first(_check_data(x), per_channel)
    lo, hi = xc.min(axis=1), xc.max(axis=1)
    return (lo, hi) if per_channel else (lo[0], hi[0])


def percentile_range(x: np.ndarray, fmt: IntFormat) -> tuple[np.ndarray, np.ndarray]:
    """Range from the ``fmt.percentile``-th percentiles of ``x`` (see module docstring)."""
    xc = _channels_first(_check_data(x), fmt.per_channel)
    p = fmt.percentile
    if fmt.symmetric and fmt.signed:
        hi = np.percentile(np.abs(xc), p, axis=1)
        lo = -hi
    else:
        lo = np.percentile(xc, 100.0 - p, axis=1)
        hi = np.percentile(xc, p, axis=1)
    return (lo, hi) if fmt.per_channel else (lo[0], hi[0])


def quantization_mse(x: np.ndarray, params: QuantParams) -> np.ndarray:
    """``mean((x - dequantize(quantize(x)))^2)`` per channel (K,) or per tensor ()."""
    xf = np.asarray(x, dtype=np.float64)
    err = (xf - params.fake_quantize(xf)) ** 2
    return _channels_first(err, params.axis is not None).mean(axis=1).reshape(params.scale.shape)


def mse_params(x: np.ndarray, fmt: IntFormat, lo: np.ndarray, hi: np.ndarray,
               axis: int | None = None) -> QuantParams:
    """Grid search over clipping ratios of ``[lo, hi]`` minimizing the quantization MSE of ``x``.

    ``lo``/``hi`` (shape () or (K,)) are the min-max anchors; ratio 1 reproduces them exactly.
    """
    xf = _check_data(x)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    best_lo, best_hi = lo.copy(), hi.copy()
    best_err = quantization_mse(xf, params_from_range(lo, hi, fmt, axis))
    for ratio in MSE_RATIOS[1:]:
        cand_lo, cand_hi = lo * ratio, hi * ratio
        err = quantization_mse(xf, params_from_range(cand_lo, cand_hi, fmt, axis))
        better = err < best_err
        if np.any(better):
            best_err = np.where(better, err, best_err)
            best_lo = np.where(better, cand_lo, best_lo)
            best_hi = np.where(better, cand_hi, best_hi)
    return params_from_range(best_lo, best_hi, fmt, axis)


def fit_int_params(x: np.ndarray, fmt: IntFormat,
                   bounds: tuple[float, float] | None = None) -> QuantParams:
    """Fit QuantParams of ``fmt`` to ``x`` (per channel: axis 0, params shape (K,)).

    ``bounds`` (per tensor only) gives the exact (min, max) when ``x`` is a sample of a larger
    set (calibration reservoirs): min-max uses them directly and MSE uses them as the ratio-1
    anchor; percentile ignores them.
    """
    if bounds is not None and fmt.per_channel:
        raise QuantError("bounds can only be given for a per-tensor format")
    axis = 0 if fmt.per_channel else None
    if fmt.clipping == "percentile":
        lo, hi = percentile_range(x, fmt)
        return params_from_range(lo, hi, fmt, axis)
    if bounds is not None:
        lo, hi = np.float64(bounds[0]), np.float64(bounds[1])
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise QuantError(f"bounds must be finite with min <= max; got {bounds}")
    else:
        lo, hi = minmax_range(x, fmt.per_channel)
    if fmt.clipping == "minmax":
        return params_from_range(lo, hi, fmt, axis)
    return mse_params(x, fmt, lo, hi, axis)


def float32_at_least(value: np.ndarray) -> np.ndarray:
    """The smallest float32 values >= ``value`` (float64 array), as float64."""
    v = np.asarray(value, dtype=np.float64)
    if np.any(v > _F32_MAX):
        raise QuantError(f"scale {v.max():.4g} is too large for float32")
    f = v.astype(np.float32)
    f = np.where(f.astype(np.float64) < v, np.nextafter(f, np.float32(np.inf)), f)
    return f.astype(np.float64)


def with_channel_scales(params: QuantParams, scale: np.ndarray) -> QuantParams:
    """Per-channel ``params`` with the channel scales ``scale`` (K,), each rounded up to the
    nearest float32.  Symmetric formats keep zero point 0; an asymmetric channel's zero point
    is refitted as ``params_from_range`` fits it, from the lowest value of its former grid
    (``(qmin - zp) · old scale``), so a channel with a larger scale covers at least its former
    range, up to half a step at the low end."""
    if params.axis is None:
        raise QuantError("with_channel_scales needs per-channel parameters")
    new = float32_at_least(scale)
    if new.shape != params.scale.shape or np.any(new <= 0):
        raise QuantError(f"channel scales must be {params.scale.shape[0]} positive values; got "
                         f"shape {new.shape}")
    fmt = params.fmt
    zp = params.zero_point
    if not fmt.symmetric:
        lo = (fmt.qmin - zp).astype(np.float64) * params.scale
        zp = np.clip(fmt.qmin - np.rint(lo / new), fmt.qmin, fmt.qmax).astype(np.int64)
    return QuantParams(scale=new, zero_point=zp, axis=params.axis, fmt=fmt)


def settle_channel_scales(x: np.ndarray, params: QuantParams
                          ) -> tuple[QuantParams, np.ndarray, np.ndarray]:
    """Per-channel ``params`` fitted to ``x`` (axis 0) with degenerate channels given usable
    scales: an all-zero channel takes the largest scale ``S`` of the other channels (not the
    placeholder 1.0 an empty range gets), and a scale below ``DEGENERATE_SCALE_RATIO · S`` is
    raised to it (its weights then use fewer codes; they are that small beside the layer's).
    Other channels are untouched; when every channel is zero nothing changes.

    Returns (params, zero (K,) bool: all-zero channels, floored (K,) bool: channels raised to
    the floor).  The scales stay ordinary per-channel ``QuantParams`` scales.
    """
    if params.axis is None:
        raise QuantError("settle_channel_scales needs per-channel parameters")
    xc = _channels_first(_check_data(x), True)
    zero = ~np.any(xc != 0.0, axis=1)
    none = np.zeros(zero.shape, dtype=bool)
    if zero.all():
        return params, none, none
    largest = float(params.scale[~zero].max())
    floor = float(float32_at_least(np.float64(largest * DEGENERATE_SCALE_RATIO)))
    floored = ~zero & (params.scale < floor)
    if not (zero.any() or floored.any()):
        return params, none, none
    scale = np.where(zero, largest, np.where(floored, floor, params.scale))
    return with_channel_scales(params, scale), zero, floored
