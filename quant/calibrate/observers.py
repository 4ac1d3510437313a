"""Activation observers and the calibration pass over a captured float graph.

An observer sees every batch of one record's output (after its fused activation).  It keeps the
exact running min and max; for percentile or MSE clipping it also keeps a uniform random sample
(reservoir sampling, Algorithm R, seeded) of at most ``reservoir_size`` values, on which the
percentile or the MSE search is computed (the MSE search is anchored at the exact min/max).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from quant.binary_input import BinaryInput
from quant.calibrate.constant_grid import exact_grid_params
from quant.errors import CalibrationError, QuantError
from quant.execute import float_params, run_graph
from quant.formats import IntFormat, QuantParams, fit_binary, fit_int_params
from quant.graph import REQUANTIZING_OPS, LayerGraph, LayerRecord

# REQUANTIZING_OPS (defined beside the ops in quant.graph): ops whose output gets its own
# calibrated activation parameters; the others (maxpool2d, flatten, reshape, transpose, resize)
# reuse their input's parameters: they only move or select values.


class ActivationObserver:
    """Running statistics of one activation tensor, for a per-tensor ``IntFormat``."""

    def __init__(self, fmt: IntFormat, reservoir_size: int = 65536, seed: int = 0) -> None:
        self.fmt = fmt
        self.lo = np.inf
        self.hi = -np.inf
        self.count = 0
        self._keep_sample = fmt.clipping != "minmax"
        self._sample = np.empty(reservoir_size if self._keep_sample else 0, dtype=np.float32)
        self._rng = np.random.default_rng(seed)

    def update(self, t: torch.Tensor) -> None:
        """Observe one batch (any shape, float)."""
        if t.numel() == 0:
            return
        lo, hi = (float(v) for v in torch.aminmax(t.detach()))
        if not (math.isfinite(lo) and math.isfinite(hi)):  # min/max propagate NaN
            raise CalibrationError("activation contains NaN or inf")
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)
        if self._keep_sample:
            self._reservoir(t.detach().reshape(-1).cpu().numpy().astype(np.float32))
        self.count += t.numel()

    def _reservoir(self, vals: np.ndarray) -> None:
        cap, n = self._sample.size, self.count
        if n < cap:
            take = min(cap - n, vals.size)
            self._sample[n:n + take] = vals[:take]
            vals, n = vals[take:], n + take
        if vals.size:
            # Element with global index i replaces slot j ~ U{0..i} when j < cap.
            slots = self._rng.integers(0, np.arange(n, n + vals.size) + 1)
            keep = slots < cap
            self._sample[slots[keep]] = vals[keep]

    def params(self) -> QuantParams:
        """Fitted per-tensor parameters; CalibrationError if nothing was observed."""
        if self.count == 0:
            raise CalibrationError("no values were observed")
        sample = self._sample[:min(self.count, self._sample.size)]
        data = sample if self._keep_sample else np.array([self.lo, self.hi])
        return fit_int_params(data, self.fmt, bounds=(self.lo, self.hi))


class BinaryScaleObserver:
    """Running mean of the per-sample least-squares fits of one binary layer's input (real
    units): the static scales of ``BinaryInput(scaling="running")``."""

    def __init__(self, binarizer: BinaryInput) -> None:
        self.binarizer = binarizer
        self._sum = np.zeros(binarizer.k, dtype=np.float64)
        self.count = 0

    def update(self, t: torch.Tensor) -> None:
        """Observe one batch (N, ...) of the layer's float input."""
        if t.shape[0] == 0:
            return
        x = t.detach().cpu().to(torch.float64).numpy()
        v = fit_binary(x, self.binarizer.fmt).v  # (N, k); raises on NaN / inf
        self._sum += v.sum(axis=0)
        self.count += v.shape[0]

    def scales(self) -> np.ndarray:
        """(k,) float64, the mean per-sample scales; CalibrationError if nothing was seen."""
        if self.count == 0:
            raise CalibrationError("no samples were observed")
        return self._sum / self.count


def calibrate_activations(graph: LayerGraph, batches: Iterable[torch.Tensor], fmt: IntFormat,
                          reservoir_size: int = 65536, seed: int = 0) -> dict[str, QuantParams]:
    """Run the float graph on every batch; return per-tensor params of every requantizing record.

    Args:
        batches: float tensors shaped like the graph input (N, ...); at least one.
    Returns: record name -> QuantParams for records whose op is in ``REQUANTIZING_OPS``.
    """
    return calibrate(graph, batches, fmt, reservoir_size, seed)[0]


def calibrate(graph: LayerGraph, batches: Iterable[torch.Tensor], fmt: IntFormat,
              reservoir_size: int = 65536, seed: int = 0,
              binary_inputs: Mapping[str, BinaryInput] | None = None,
              layer_formats: Mapping[str, IntFormat] | None = None
              ) -> tuple[dict[str, QuantParams], dict[str, np.ndarray]]:
    """``calibrate_activations`` plus, for every layer whose input binarizer uses running
    scales, those scales (k,) in real units: (act params, layer name -> scales).
    ``layer_formats`` overrides ``fmt`` for the outputs of the named records.  A ``constant``
    record whose values lie on a grid its format can hold gets the parameters that store it
    exactly (``quant.calibrate.constant_grid``) instead of its observer's fit."""
    names = [r.name for r in graph if r.op in REQUANTIZING_OPS]
    formats = layer_formats or {}
    observers = {name: ActivationObserver(formats.get(name, fmt), reservoir_size, seed + i)
                 for i, name in enumerate(names)}
    running = {name: BinaryScaleObserver(b) for name, b in (binary_inputs or {}).items()
               if b.scaling == "running"}
    # producer record -> the binary layers whose input it is
    fed: dict[str, list[str]] = {}
    for name in running:
        fed.setdefault(graph[name].inputs[0], []).append(name)
    weights = float_params(graph)

    def observe(rec: LayerRecord, y: torch.Tensor) -> torch.Tensor:
        targets = [(rec.name, observers[rec.name])] if rec.name in observers else []
        targets += [(layer, running[layer]) for layer in fed.get(rec.name, ())]
        for layer, obs in targets:
            try:
                obs.update(y)
            except (CalibrationError, QuantError) as exc:
                raise CalibrationError(f"layer {layer!r}: {exc}") from None
        return y

    n_batches = 0
    for i, batch in enumerate(batches):
        if not isinstance(batch, torch.Tensor):
            raise CalibrationError(f"calibration batch {i} is a {type(batch).__name__}; "
                                   "expected a torch.Tensor")
        run_graph(graph, batch, weights, post=observe, keep=False)
        n_batches += 1
    if n_batches == 0:
        raise CalibrationError("calibration_data is empty; pass at least one batch")
    params = {name: obs.params() for name, obs in observers.items()}
    for name in params:
        rec = graph[name]
        if rec.op == "constant" and rec.weight is not None:
            exact = exact_grid_params(rec.weight, formats.get(name, fmt))
            params[name] = params[name] if exact is None else exact
    return params, {name: obs.scales() for name, obs in running.items()}
