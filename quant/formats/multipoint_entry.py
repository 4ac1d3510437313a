"""The multipoint family's entry in the format table (``quant.formats.registry``).

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.

- **fit** (no calibration data): every output channel gets ``fmt.max_points`` points, each the
  greedy step on what the earlier ones left (weight error); ``MultipointFormat(4, 2)`` is a
  layer of two 4-bit points per channel.  How many points each channel needs is a question for
  calibration data: the calibration step ``quant.calibrate.multipoint.assign_points`` gives
  channels 1..max_points points by their output error under a budget and fixes the layer's
  parameters (``CalibrationState.weight_params``).
- **encode**: the codes carry the point dimension: int8 (K, max_points, *channel_shape), zero
  for unused points (``MultipointParams.codes``).
- **decode**: ``sum_j scales[:, j] codes[:, j]``, float64 of the weight's shape.
- **storage bits**: ``bits`` per code, per point used (a layer stores ``sum(points) x d``
  codes).
- **code scale**: None.  The points of a channel have different scales, so there is no one
  code step to hold a bias in integer codes: the bias stays float, as for binary weights, and
  the integer program adds it in the requantization stage, where the points' rows are summed.
- **fake quant**: the decoded weights, straight-through.
"""

from __future__ import annotations

import numpy as np

from quant.errors import QuantError
from quant.formats.multipoint import (MultipointFormat, MultipointParams, decode_multipoint,
                                      fit_multipoint)


def fit_multipoint_weight(w: np.ndarray, fmt: MultipointFormat) -> MultipointParams:
    """``fmt.max_points`` points on every output channel of ``w`` (K, ...) (the entry's fit)."""
    return fit_multipoint(w, fmt)


def encode_multipoint(params: MultipointParams, x: np.ndarray) -> np.ndarray:
    """The int8 codes (K, max_points, *channel_shape) of ``params``, fitted to ``x`` (K, ...)."""
    if not isinstance(params, MultipointParams):
        raise QuantError(f"encode_multipoint expects MultipointParams; got "
                         f"{type(params).__name__}")
    if tuple(np.shape(x)) != params.shape:
        raise QuantError(f"multipoint parameters of a weight of shape {params.shape} cannot "
                         f"encode a tensor of shape {tuple(np.shape(x))}")
    return params.codes


def decode_multipoint_codes(params: MultipointParams, codes: np.ndarray) -> np.ndarray:
    """float64 (K, *channel_shape): ``sum_j params.scales[:, j] codes[:, j]`` for int codes
    (K, max_points, *channel_shape)."""
    c = np.asarray(codes)
    if c.shape != params.codes.shape or not np.issubdtype(c.dtype, np.integer):
        raise QuantError(f"multipoint codes must be integers of shape {params.codes.shape}; got "
                         f"{c.dtype} of shape {c.shape}")
    if c is params.codes:
        return decode_multipoint(params)
    k, p = params.scales.shape
    flat = np.einsum("kj,kjd->kd", params.scales, c.reshape(k, p, -1).astype(np.float64))
    return flat.reshape(params.shape)


def multipoint_storage_bits(fmt: MultipointFormat) -> int:
    """Bits of one code of one point: ``fmt.bits``."""
    return int(fmt.bits)


def multipoint_code_scale(params: MultipointParams) -> None:
    """None: a channel's points have different scales (the bias stays float)."""
    return None


def multipoint_weight_problem(fmt: MultipointFormat) -> str | None:
    """Any ``MultipointFormat`` quantizes a weight (per output channel, axis 0)."""
    return None
