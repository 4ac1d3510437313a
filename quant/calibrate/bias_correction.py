"""Empirical bias correction, and the layer-by-layer pass it shares with BN re-estimation.

Bias correction (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019, section 4.2, its empirical variant): quantization shifts the mean of a
layer's output, and the shift is a per-output-channel constant that the bias can take back.
Layers are visited in topological order; for layer ``L`` the fake-quant model runs the
calibration data with every earlier layer already corrected, so ``L`` sees its actual quantized
inputs, and the float reference model runs the same data.  With ``y_q`` the fake-quant output of
``L`` before its activation clamp and ``y_f`` the float model's,
``b' = b_q - (E[y_q] - E[y_f])`` per output channel (``b_q`` the bias ``L`` realizes from its
integer codes), so afterwards the two means agree up to half a bias code.

``sequential_pass`` is that visit in general: at each conv2d / linear layer it hands the
per-channel statistics of both pre-activation outputs to a callback, which may give the layer a
new float weight, bias and weight parameters; the rest of the pass then sees the changed layer.
It keeps every live activation of all of ``data`` in memory, for both models (MobileNetV2 at
224×224 and 28 images: well under 1 GB).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quant.calibrate.observers import REQUANTIZING_OPS
from quant.calibrate.state import CalibrationState, with_layer
from quant.errors import CalibrationError, QuantError
from quant.execute import OP_TABLE, apply_activation, float_params
from quant.formats import QuantParams
from quant.formats.registry import FormatEntry
from quant.graph import WEIGHTED_OPS, LayerGraph, LayerRecord


@dataclass(frozen=True)
class ChannelStats:
    """Per-output-channel statistics of one layer's output before its activation clamp, over
    all positions of all calibration samples; float64 (K,), population std (ddof 0)."""

    quant_mean: np.ndarray
    quant_std: np.ndarray
    float_mean: np.ndarray
    float_std: np.ndarray


@dataclass(frozen=True)
class LayerQuant:
    """One weighted layer as the fake-quant model realizes it.

    Attributes:
        record: the layer's record in the state's graph (float weight and bias).
        entry: its weight format family.
        params: its weight parameters; codes: its weight codes.
        bias: float64 (K,) the bias the model adds (integer codes times ``s_x · s_w``, or the
            float bias of a family without integer biases); None if the layer has none.
        int_bias: whether ``bias`` comes from integer codes.
    """

    record: LayerRecord
    entry: FormatEntry
    params: Any
    codes: np.ndarray
    bias: np.ndarray | None
    int_bias: bool


@dataclass(frozen=True)
class LayerUpdate:
    """What a step changes in one layer: a new float weight (same shape), float bias (K,),
    and/or weight parameters to fix (None: unchanged)."""

    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    weight_params: Any = None


Adjust = Callable[[LayerQuant, ChannelStats], "LayerUpdate | None"]


def correct_biases(state: CalibrationState, data: Any, *,
                   reference: LayerGraph | None = None) -> CalibrationState:
    """Empirical bias correction of every conv2d / linear layer with an integer bias.

    Args:
        state: the state to correct (its activation ranges and weight parameters are kept).
        data: calibration inputs: a float tensor (N, ...) or an iterable of such batches.
        reference: the float graph whose outputs the quantized model should match; default
            ``state.graph``.  Pass the original graph when ``state.graph`` was already changed
            by a step that moves float biases away from the float model (e.g. this one).
    Returns: the state with new float biases (weights, ranges and weight parameters unchanged).
    Raises: CalibrationError for empty data; QuantError if a new bias leaves the bias code range.
    """
    def adjust(layer: LayerQuant, stats: ChannelStats) -> LayerUpdate | None:
        if not layer.int_bias:
            return None
        return LayerUpdate(bias=layer.bias - (stats.quant_mean - stats.float_mean))

    return sequential_pass(state, data, adjust, reference=reference, step="correct_biases")


# ---- the layer-by-layer pass ----------------------------------------------------------------
def as_batches(data: Any, step: str) -> list[torch.Tensor]:
    """``data`` (a tensor (N, ...) or an iterable of them) as a list of float32 batches."""
    if isinstance(data, torch.Tensor):
        data = [data]
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise CalibrationError(f"{step}: data must be a tensor (N, ...) or an iterable of tensors; "
                               f"got {type(data).__name__}")
    batches = []
    for i, b in enumerate(data):
        if not isinstance(b, torch.Tensor) or not b.is_floating_point() or b.dim() == 0:
            raise CalibrationError(f"{step}: batch {i} is a {type(b).__name__}; expected a "
                                   "floating-point torch.Tensor (N, ...)")
        if b.shape[0] == 0:
            continue
        batches.append(b.detach().cpu().to(torch.float32))
    if not batches:
        raise CalibrationError(f"{step}: data is empty; pass at least one batch (N, ...)")
    return batches


def sequential_pass(state: CalibrationState, data: Any, adjust: Adjust, *,
                    reference: LayerGraph | None = None,
                    step: str = "sequential_pass") -> CalibrationState:
    """Visit the weighted layers in topological order, letting ``adjust`` change each one.

    Both the fake-quant model of ``state`` (with the layers already adjusted) and the float
    ``reference`` graph (default ``state.graph``) run all of ``data``; at each conv2d / linear
    layer ``adjust(layer, stats)`` sees the layer and the statistics of both outputs before the
    activation clamp, and returns a ``LayerUpdate`` or None.  Weight parameters not given by an
    update are those of ``state`` (fixed ones kept, the others fitted again to a new weight).
    Returns the state with the updated graph and weight parameters; activation ranges are kept.
    """
    if not isinstance(state, CalibrationState):
        raise QuantError(f"{step}: expected a CalibrationState; got {type(state).__name__}")
    batches = as_batches(data, step)
    reference = state.graph if reference is None else reference
    _check_reference(state.graph, reference, step)
    walk = _Walk(state, reference, step)
    for rec in state.graph:
        walk.visit(rec, batches, adjust)
    return state.replace(graph=walk.graph, weight_params=walk.weight_params)


def _check_reference(graph: LayerGraph, reference: LayerGraph, step: str) -> None:
    if not isinstance(reference, LayerGraph):
        raise QuantError(f"{step}: reference must be a LayerGraph; got {type(reference).__name__}")
    if list(graph.records) != list(reference.records):
        raise QuantError(f"{step}: the reference graph's records differ from the state's")
    for rec in graph:
        ref = reference[rec.name]
        shapes = [None if w is None else w.shape for w in (rec.weight, ref.weight)]
        if ref.op != rec.op or ref.inputs != rec.inputs or shapes[0] != shapes[1]:
            raise QuantError(f"{step}: reference layer {rec.name!r} differs from the state's "
                             "in op, inputs or weight shape")


def _check_input(rec: LayerRecord, batches: list[torch.Tensor], step: str) -> None:
    expected = rec.out_shape
    for b in batches:
        if b.dim() != len(expected) or tuple(b.shape[1:]) != tuple(expected[1:]):
            raise QuantError(f"{step}: input of shape {tuple(b.shape)} does not match the "
                             f"captured input shape (N, {', '.join(map(str, expected[1:]))})")


def _fake_quant(t: torch.Tensor, p: QuantParams) -> torch.Tensor:
    """Per-tensor fake quantization as ``quant.model`` defines it (float64 math, float32)."""
    s, zp = float(p.scale), int(p.zero_point)
    q = t.to(torch.float64).div(s).round_().clamp_(p.fmt.qmin - zp, p.fmt.qmax - zp)
    return q.mul_(s).to(torch.float32)


def channel_stats(quant: list[torch.Tensor], flo: list[torch.Tensor], axis: int) -> ChannelStats:
    """Mean and std per channel (``axis``) over every other axis of all batches: each batch's
    moments by torch (float32, pairwise sums), combined over batches in float64 (Chan et al.'s
    parallel formula)."""
    def moments(ts: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        dims = [d for d in range(ts[0].dim()) if d != axis % ts[0].dim()]
        n = mean = m2 = None
        for t in ts:
            var_b, mean_b = torch.var_mean(t, dim=dims, correction=0)
            n_b = t.numel() // t.shape[axis]
            mean_b, m2_b = mean_b.double().numpy(), var_b.double().numpy() * n_b
            if n is None:
                n, mean, m2 = n_b, mean_b, m2_b
                continue
            delta = mean_b - mean
            total = n + n_b
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (n * n_b / total)
            n = total
        return mean, np.sqrt(m2 / n)

    qm, qs = moments(quant)
    fm, fs = moments(flo)
    return ChannelStats(qm, qs, fm, fs)


class _Walk:
    """State of one sequential pass: live outputs of both models and the changed layers."""

    def __init__(self, state: CalibrationState, reference: LayerGraph, step: str) -> None:
        self.state = state
        self.step = step
        self.model = state.model()
        self.reference = reference
        self.graph = state.graph
        self.weight_params = dict(state.weight_params)
        self.float_params = float_params(reference)
        self.quant_params = float_params(state.graph)  # float ops (layernorm) keep theirs
        self.layers: dict[str, LayerQuant] = {}
        for rec in state.graph:
            if rec.op in WEIGHTED_OPS:
                layer = _layer_of(self.model, rec.name)
                self.layers[rec.name] = layer
                self.quant_params[rec.name] = _torch_weights(layer)
        self.quant: dict[str, list[torch.Tensor]] = {}
        self.flo: dict[str, list[torch.Tensor]] = {}
        self.remaining: dict[str, int] = {}
        for rec in state.graph:
            for src in rec.inputs:
                self.remaining[src] = self.remaining.get(src, 0) + 1

    def _pre(self, rec: LayerRecord, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """An input binarizer, as the fake-quant model applies it."""
        if rec.op not in WEIGHTED_OPS or self.model.binary_input(rec.name) is None:
            return xs
        p = self.model.act_params(rec.inputs[0])
        s_x, zp = float(p.scale), int(np.asarray(p.zero_point))
        codes = torch.round(xs[0].to(torch.float64) / s_x).numpy() + zp
        planes = self.model.binarize_input(rec.name, codes)
        return [torch.from_numpy((planes.dequantize() * s_x).astype(np.float32))]

    def _post(self, rec: LayerRecord, y: torch.Tensor) -> torch.Tensor:
        if rec.op in REQUANTIZING_OPS:
            return _fake_quant(y, self.model.act_params(rec.name))
        return y

    def visit(self, rec: LayerRecord, batches: list[torch.Tensor], adjust: Adjust) -> None:
        if rec.op == "input":
            _check_input(rec, batches, self.step)
            self.quant[rec.name] = [self._post(rec, x) for x in batches]
            self.flo[rec.name] = list(batches)
            return
        ref = self.reference[rec.name]
        n = len(batches)
        q_in = [[self.quant[s][i] for s in rec.inputs] for i in range(n)]
        f_in = [[self.flo[s][i] for s in rec.inputs] for i in range(n)]
        fw, fb = self.float_params.get(rec.name, (None, None))
        with torch.no_grad():
            y_f = [OP_TABLE[rec.op](ref, xs, fw, fb) for xs in f_in]
            q_in = [self._pre(rec, xs) for xs in q_in]
            y_q = self._run_quant(rec, q_in)
            if rec.op in WEIGHTED_OPS:
                axis = 1 if rec.op == "conv2d" else -1
                update = adjust(self.layers[rec.name], channel_stats(y_q, y_f, axis))
                if update is not None:
                    self._apply(rec.name, update)
                    y_q = self._run_quant(rec, q_in)
            self.quant[rec.name] = [self._post(rec, apply_activation(rec, y)) for y in y_q]
            self.flo[rec.name] = [apply_activation(ref, y) for y in y_f]
        for src in rec.inputs:
            self.remaining[src] -= 1
            if self.remaining[src] == 0:
                del self.quant[src], self.flo[src]

    def _run_quant(self, rec: LayerRecord, q_in: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        w, b = self.quant_params.get(rec.name, (None, None))
        return [OP_TABLE[rec.op](rec, xs, w, b) for xs in q_in]

    def _apply(self, name: str, update: LayerUpdate) -> None:
        if not isinstance(update, LayerUpdate):
            raise QuantError(f"{self.step}: the layer callback returned a "
                             f"{type(update).__name__}; expected a LayerUpdate or None")
        self.graph = with_layer(self.graph, name, weight=update.weight, bias=update.bias)
        if update.weight_params is not None:
            self.weight_params[name] = update.weight_params
        try:
            layer = _layer_of(self._layer_model(name), name)
        except QuantError as exc:
            raise QuantError(f"{self.step}: {exc}") from None
        self.layers[name] = layer
        self.quant_params[name] = _torch_weights(layer)

    def _layer_model(self, name: str):
        """A ``QuantizedModel`` of layer ``name`` alone (its input as the graph input), so the
        layer's weight parameters, codes and bias codes are exactly those the model of the
        returned state will have (fitting, degenerate-channel and bias-range policy included)."""
        from quant.model import QuantizedModel

        rec = self.graph[name]
        src = rec.inputs[0]
        inp = LayerRecord(src, "input", (), out_shape=self.graph[src].out_shape)
        sub = LayerGraph({src: inp, name: rec}, src, name)
        cfg = self.state.config
        binary = {name: cfg.binary_inputs[name]} if name in cfg.binary_inputs else {}
        cfg = dataclasses.replace(cfg, weight=cfg.weight_format(name), layer_weight={},
                                  binary_inputs=binary, layer_activation={})
        act = {src: self.model.act_params(src), name: self.model.act_params(name)}
        scales = {k: v for k, v in self.state.binary_scales.items() if k == name}
        fixed = {name: self.weight_params[name]} if name in self.weight_params else {}
        return QuantizedModel(sub, cfg, act, scales, fixed)


def _layer_of(model, name: str) -> LayerQuant:
    """Layer ``name`` as ``model`` (a ``QuantizedModel``) realizes it."""
    rec = model.graph[name]
    entry = model.weight_entry(name)
    params = model.weight_params(name)
    b_codes = model.bias_codes(name)
    if b_codes is not None:
        s_x = float(model.act_params(rec.inputs[0]).scale)
        step = s_x * np.broadcast_to(np.asarray(entry.code_scale(params), np.float64),
                                     b_codes.shape)
        bias = b_codes.astype(np.float64) * step
    else:
        bias = None if rec.bias is None else rec.bias.astype(np.float64)
    return LayerQuant(rec, entry, params, np.asarray(model.weight_codes(name)), bias,
                      b_codes is not None)


def _torch_weights(layer: LayerQuant) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fake-quant weight and bias tensors (float32) as ``quant.model`` builds them."""
    w = layer.entry.decode(layer.params, layer.codes)
    w_t = torch.from_numpy(np.asarray(w, dtype=np.float64).astype(np.float32))
    b_t = None if layer.bias is None else torch.from_numpy(layer.bias.astype(np.float32))
    return w_t, b_t
