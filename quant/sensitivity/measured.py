"""Measured sensitivity: the loss change of switching one layer, on held-out data.

As in CalibTIP (Hubara et al., "Accurate Post Training Quantization With Small Calibration
Sets", ICML 2021), which measures each layer's loss change per bit width and then allocates
with an integer program:

    ΔL[l, k] = L(base config with only layer l switched to option k) − L(base config),

both quantized models calibrated (activation ranges fitted) on the *calibration* split and
``L`` evaluated on the disjoint *held-out* split only.  The split is per sample: a seeded
permutation of all samples, ``round(holdout_fraction · N)`` of them held out (at least one on
each side); both splits are rebatched with the first batch's size.  ``details`` lists the
indices of each split (positions in the concatenated data).

``L``: ``loss=None`` is cross-entropy with labels if the data has them, else
KL(softmax(float logits) ‖ softmax(quantized logits)) per sample; averaged over held-out samples
(a callable gets (quantized logits, target) -> (N,) losses).  Negative ΔL (a switch that helps on
held-out data) is kept as it is.

Switching layer l to option k: ``QuantConfig.layer_weight[l]`` = the option's weight format and
``layer_activation[s]`` = its activation format, where ``s`` is the record whose output is layer
l's input (followed up through maxpool2d / flatten / reshape / transpose, which do not
requantize).  That record's output may also feed other layers (a residual stream, a branch
point): the measurement includes their change too.

Each model is the one ``quant.quantize(model, config_lk, calibration split)`` builds (the test
suite checks an entry against it); the graph is captured once and calibration is cached per
distinct (record, activation format), since a switch changes only that record's observer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from quant.allocate.protocol import Option
from quant.calibrate import calibrate
from quant.errors import QuantError
from quant.graph import LayerGraph
from quant.model import QuantizedModel
from quant.sensitivity.graphrun import Data, resolve_loss
from quant.sensitivity.options import OptionPlan


def split_data(data: Data, holdout_fraction: float, seed: int
               ) -> tuple[Data, Data, np.ndarray, np.ndarray]:
    """(calibration, held-out, calibration indices, held-out indices); see module docstring."""
    n = data.n
    if not 0.0 < holdout_fraction < 1.0:
        raise QuantError(f"sensitivity_table: holdout_fraction must be in (0, 1); "
                         f"got {holdout_fraction!r}")
    if n < 2:
        raise QuantError(f"sensitivity_table: method='measured' needs >= 2 samples to split "
                         f"into calibration and held-out; got {n}")
    n_hold = min(max(int(round(holdout_fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    hold_idx, calib_idx = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    x_all = torch.cat(list(data.xs))
    y_all = None if data.ys is None else torch.cat(list(data.ys))
    bs = data.batch_size

    def take(idx: np.ndarray) -> Data:
        t = torch.from_numpy(idx)
        xs = tuple(x_all[t[i:i + bs]] for i in range(0, len(idx), bs))
        ys = None if y_all is None else tuple(y_all[t[i:i + bs]] for i in range(0, len(idx), bs))
        return Data(xs, ys)

    return take(calib_idx), take(hold_idx), calib_idx, hold_idx


def measured_table(graph: LayerGraph, data: Data, config: Any, loss: Any,
                   layers: Sequence[str], options: Sequence[Option], plan: OptionPlan, *,
                   seed: int = 0, holdout_fraction: float = 0.25
                   ) -> tuple[np.ndarray, dict[str, Any]]:
    """(ΔL, details) of the "measured" method (see module docstring)."""
    calib, hold, calib_idx, hold_idx = split_data(data, holdout_fraction, seed)
    loss_name, loss_fn = resolve_loss(loss, data.ys is not None)
    cache: dict[Any, tuple[dict, dict]] = {}

    def calibration(src: str | None, fmt: Any) -> tuple[dict, dict]:
        key = None if src is None else (src, fmt)
        if key not in cache:
            formats = dict(config.layer_activation)
            if src is not None:
                formats[src] = fmt
            cache[key] = calibrate(graph, calib.xs, config.activation, config.reservoir_size,
                                   config.seed, config.binary_inputs, formats)
        return cache[key]

    try:
        base_qm = QuantizedModel(graph, config, *calibration(None, None))
    except QuantError as exc:
        raise QuantError(f"sensitivity_table(method='measured'): the base config cannot "
                         f"quantize the model: {exc}") from None
    if hold.ys is not None and loss_name != "kl":
        hold_targets = list(hold.ys)
    else:
        hold_targets = [base_qm.float_forward(x) for x in hold.xs]

    def held_out_loss(qm: QuantizedModel) -> float:
        total = 0.0
        for x, t in zip(hold.xs, hold_targets):
            total += float(loss_fn(qm.forward(x), t).to(torch.float64).sum())
        return total / hold.n

    base_loss = held_out_loss(base_qm)
    L, K = len(layers), len(options)
    delta = np.full((L, K), np.inf)
    layer_loss = np.full((L, K), np.inf)
    for l, name in enumerate(layers):
        src = plan.source[l]
        base_act = config.layer_activation.get(src, config.activation)
        for k in range(K):
            if not plan.feasible(l, k):
                continue
            act_fmt = plan.act_fmt[l][k]
            try:
                cal = calibration(None, None) if act_fmt == base_act else calibration(src, act_fmt)
                fixed = plan.weight_params.get((l, k))
                qm = QuantizedModel(graph, plan.configs[l][k], *cal,
                                    weight_params=None if fixed is None else {name: fixed})
            except QuantError as exc:
                plan.reasons[(l, k)] = str(exc).splitlines()[0]
                continue
            layer_loss[l, k] = held_out_loss(qm)
            delta[l, k] = layer_loss[l, k] - base_loss
    details = {
        "reference": "base",
        "loss": loss_name,
        "holdout_fraction": holdout_fraction,
        "split_seed": seed,
        "n_calibration": calib.n,
        "n_holdout": hold.n,
        "calibration_indices": calib_idx,
        "holdout_indices": hold_idx,
        "base_loss": base_loss,
        "layer_loss": layer_loss,
        "act_source": list(plan.source),
        "calibrations": len(cache),
        "infeasible": plan.infeasible_details(layers, options),
    }
    return delta, details
