"""What a post-training calibration step reads and returns.

Every step (equalization, AdaQuant, bias correction, BN re-estimation, bias tuning) maps one
``CalibrationState`` to another: ordinary float weights and biases (in ``graph``), activation
ranges, and any weight parameters a step fixed.  ``state.model()`` is then an ordinary
``QuantizedModel``, so a calibrated model lowers and runs like any other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from quant.calibrate.observers import calibrate
from quant.errors import QuantError
from quant.graph import LayerGraph, LayerRecord


@dataclass(frozen=True)
class CalibrationState:
    """A captured graph and the quantization decisions made on it so far.

    Attributes:
        graph: float graph (BatchNorm folded); steps may replace weights and biases.
        config: the ``QuantConfig`` (formats, overrides).
        act_params: record name -> per-tensor activation ``QuantParams``.
        binary_scales: layer name -> running input-binarizer scales (k,), real units.
        weight_params: layer name -> weight parameters fixed by a step (the others are fitted
            by ``QuantizedModel`` from the float weights).
    """

    graph: LayerGraph
    config: Any
    act_params: Mapping[str, Any]
    binary_scales: Mapping[str, np.ndarray] = field(default_factory=dict)
    weight_params: Mapping[str, Any] = field(default_factory=dict)

    def model(self):
        """The ``QuantizedModel`` of this state."""
        from quant.model import QuantizedModel
        return QuantizedModel(self.graph, self.config, self.act_params, self.binary_scales,
                              self.weight_params)

    def replace(self, **changes: Any) -> CalibrationState:
        return dataclasses.replace(self, **changes)

    def recalibrated(self, batches: Iterable[torch.Tensor]) -> CalibrationState:
        """Activation ranges (and running binarizer scales) observed again on the float graph,
        e.g. after a step changed the float weights."""
        cfg = self.config
        act, scales = calibrate(self.graph, batches, cfg.activation, cfg.reservoir_size,
                                cfg.seed, cfg.binary_inputs, cfg.layer_activation)
        return self.replace(act_params=act, binary_scales=scales)


def with_layer(graph: LayerGraph, name: str, *, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None) -> LayerGraph:
    """A new graph in which record ``name`` has the given weight and/or bias (float32, same
    shapes as before; a layer without a bias may be given one of shape (K,)).  The other
    records are shared, not copied."""
    rec = graph[name]
    changes: dict[str, Any] = {}
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        if rec.weight is None or weight.shape != rec.weight.shape:
            raise QuantError(f"layer {name!r}: new weight has shape {weight.shape}; expected "
                             f"{None if rec.weight is None else rec.weight.shape}")
        changes["weight"] = weight
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        k = rec.weight.shape[0] if rec.weight is not None else None
        if bias.shape != (k,):
            raise QuantError(f"layer {name!r}: new bias has shape {bias.shape}; expected ({k},)")
        changes["bias"] = bias
    records = dict(graph.records)
    records[name] = _replaced(rec, changes)
    return LayerGraph(records, graph.input_name, graph.output_name)


def _replaced(rec: LayerRecord, changes: Mapping[str, Any]) -> LayerRecord:
    return dataclasses.replace(rec, **changes) if changes else rec
