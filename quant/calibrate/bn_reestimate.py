"""BatchNorm re-estimation on a graph whose BatchNorm is already folded.

Hubara et al., "Improving Post Training Neural Quantization: Layer-wise Calibration and Integer
Programming" re-insert a BatchNorm after each quantized conv, re-estimate its mean and variance
on the calibration set and fold it back.  With BN folded at capture that amounts to a
per-output-channel affine map of the quantized layer's output before its activation clamp:

    y' = a · y_q + c,   a = σ_f / σ_q,   c = μ_f - a · μ_q   (per channel, a > 0)

where ``μ_q, σ_q`` are the mean and standard deviation of the fake-quant layer's output ``y_q``
on the calibration data (with its actual quantized inputs, the layers before already
re-estimated) and ``μ_f, σ_f`` the float model's.  Why this is the same thing: the folded layer
is ``y = (γ/σ_B)(W∗x) + β - γ μ_B/σ_B``, so re-normalizing the quantized pre-BN output with its
own statistics and then applying ``γ, β`` yields an output with per-channel mean ``β`` and std
``|γ|`` — exactly the float layer's output statistics when BN's running statistics describe the
data.  Without ``γ, β`` in the folded graph, the float model's measured statistics on the same
data are the target (which also corrects for BN statistics that do not quite fit the data).

Since ``a > 0`` multiplies a whole output channel, ``a · (W_q∗x + b_q) + c`` is absorbed as
per-channel weight scale ``a · s_w`` (the integer codes unchanged) and bias ``a · b_q + c``:
the integer program stays a plain per-channel int program.  The float weight is scaled by
``a`` as well (it is the re-folded weight, and re-fitting per-channel min-max parameters to it
gives the same codes).  So the float graph of the returned state is the re-estimated one, no
longer the original float model: keep the original graph as the reference for later steps.

A layer whose weights are not per-channel uniform (per-tensor int, binary, APoT) gets the mean
correction only (``a = 1``).  A channel with ``σ_q`` or ``σ_f`` of 0 (a dead channel) keeps
``a = 1``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from quant.calibrate.bias_correction import (ChannelStats, LayerQuant, LayerUpdate,
                                             sequential_pass)
from quant.calibrate.state import CalibrationState
from quant.formats import QuantParams
from quant.graph import LayerGraph

log = logging.getLogger(__name__)

# Channels whose std is below this fraction of the layer's largest std keep a = 1.
DEAD_STD = 1e-6


def reestimate_bn(state: CalibrationState, data: Any, *,
                  reference: LayerGraph | None = None) -> CalibrationState:
    """Match the per-channel mean and std of every conv2d / linear layer's fake-quant output
    (before its activation clamp) to the float model's, on ``data``.

    Args:
        state: the state to adjust (activation ranges kept).
        data: calibration inputs: a float tensor (N, ...) or an iterable of such batches.
        reference: the float graph to match; default ``state.graph``.  Pass the original graph
            when ``state.graph`` was already moved by a step (bias correction, this one).
    Returns: the state with re-estimated float weights and biases and, for per-channel int
        layers, fixed weight parameters ``a · s_w`` whose codes equal the previous ones.
    Raises: CalibrationError for empty data; QuantError if a new bias leaves the bias code range.
    """
    return sequential_pass(state, data, _reestimate, reference=reference, step="reestimate_bn")


def _reestimate(layer: LayerQuant, stats: ChannelStats) -> LayerUpdate:
    gain = _gain(stats)
    params = layer.params
    weight = None
    if _per_channel_int(params):
        scale = (params.scale * gain).astype(np.float32).astype(np.float64)
        gain = scale / params.scale  # the gain the float32 scale realizes
        params = QuantParams(scale, params.zero_point, 0, params.fmt)
        weight = _scaled_weight(layer, params, gain)
    else:
        log.info("reestimate_bn: layer %r has %s weights that are not per-channel int: mean "
                 "correction only", layer.record.name, layer.entry.name)
        gain = np.ones_like(gain)
        params = None
    b_q = np.zeros_like(gain) if layer.bias is None else layer.bias
    bias = gain * b_q + (stats.float_mean - gain * stats.quant_mean)
    return LayerUpdate(weight=weight, bias=bias, weight_params=params)


def _gain(stats: ChannelStats) -> np.ndarray:
    """``σ_f / σ_q`` per channel; 1 where either is (near) 0."""
    q, f = stats.quant_std, stats.float_std
    ok = (q > DEAD_STD * max(q.max(), 0.0)) & (f > DEAD_STD * max(f.max(), 0.0)) & (q > 0)
    return np.where(ok, f / np.where(ok, q, 1.0), 1.0)


def _per_channel_int(params: Any) -> bool:
    return isinstance(params, QuantParams) and params.axis == 0


def _scaled_weight(layer: LayerQuant, params: QuantParams, gain: np.ndarray) -> np.ndarray:
    """``gain · w`` (float32), with any weight whose code would change under ``params`` (a
    float rounding at a tie) replaced by its code's value, so the codes are unchanged."""
    w = layer.record.weight
    shape = (-1,) + (1,) * (w.ndim - 1)
    new = (w.astype(np.float64) * gain.reshape(shape)).astype(np.float32)
    moved = params.quantize(new) != layer.codes
    if moved.any():
        exact = params.dequantize(layer.codes).astype(np.float32)
        new = np.where(moved, exact, new)
    return new
