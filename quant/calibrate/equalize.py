"""Cross-layer equalization of consecutive weighted layers (data-free).

Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction"
(ICCV 2019), section 4.1.  For a pair ``A -> B`` of weighted layers whose intermediate tensor
has one consumer, scaling output channel ``i`` of ``A`` (its weight row and bias) by ``1/s_i``
and input channel ``i`` of ``B`` by ``s_i`` leaves the float function unchanged, provided every
op between them commutes with a positive per-channel scale: no activation, ReLU
(clamp ``(0, inf)``), max / average pooling and a flatten into a linear layer.  With
``r1_i`` = max |weight| of output channel ``i`` of ``A`` and ``r2_i`` = max |weight| over the
input channel ``i`` of ``B``, the choice ``s_i = sqrt(r1_i · r2_i) / r2_i`` makes both ranges
``sqrt(r1_i · r2_i)``.  A layer in two pairs (the depthwise conv of a MobileNetV2 block) is
moved by both, so the pairs are swept in topological order until every scale of a sweep is
within ``tol`` of 1.

A clamp with a finite non-zero bound (ReLU6 = clamp ``(0, 6)``) does not commute with scaling:
``clamp(y / s, 0, 6) != clamp(y, 0, 6) / s``.  Such pairs are skipped unless ``relu6="relu"``,
which replaces the clamp ``(0, hi)`` of each equalized first layer by ReLU ``(0, inf)``: that
CHANGES THE FLOAT MODEL (outputs that reached ``hi`` are no longer clipped); the report lists
the layers so changed, and ``equalize`` logs a warning naming them.  Nagel et al. do the same
replacement for MobileNetV2.

Not done here: Nagel et al.'s high-bias absorption (it needs BatchNorm statistics or data, and
it is exact only where ``B`` has no zero padding).  A channel whose range is 0 in either layer
keeps ``s_i = 1``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from quant._validate import check_choice, check_float, check_int
from quant.calibrate.state import with_layer
from quant.errors import QuantError
from quant.graph import WEIGHTED_OPS, LayerGraph, LayerRecord

log = logging.getLogger(__name__)

RELU6_OPTIONS = ("skip", "relu")
# Ops between A and B that commute with a positive per-channel scale of their input.
_PASS_THROUGH = ("maxpool2d", "avgpool2d", "flatten", "clamp")


@dataclass(frozen=True)
class EqualizedPair:
    """One equalized pair ``first -> second`` (through ``via``, e.g. a pooling and a flatten).

    ``scale_min`` / ``scale_max``: the extreme total factors ``s_i`` applied to the input
    channels of ``second`` (the output channels of ``first`` were divided by them)."""

    first: str
    second: str
    via: tuple[str, ...]
    scale_min: float
    scale_max: float


@dataclass(frozen=True)
class EqualizationReport:
    """What ``equalize`` did.

    Attributes:
        pairs: the equalized pairs, in topological order.
        skipped: (first layer, reason) of each weighted layer that starts no pair.
        relu6_replaced: layers whose clamp ``(0, hi)`` became ReLU ``(0, inf)``; non-empty
            means the float model changed.
        sweeps: number of sweeps over the pairs.
        converged: whether the last sweep's scales were all within ``tol`` of 1.
    """

    pairs: tuple[EqualizedPair, ...]
    skipped: tuple[tuple[str, str], ...]
    relu6_replaced: tuple[str, ...]
    sweeps: int
    converged: bool

    @property
    def float_model_changed(self) -> bool:
        return bool(self.relu6_replaced)

    def summary(self) -> str:
        """One line: pairs, sweeps, convergence, and any change of the float model."""
        line = (f"cross-layer equalization: {len(self.pairs)} pairs, {len(self.skipped)} "
                f"layers skipped, {self.sweeps} sweeps, "
                f"{'converged' if self.converged else 'NOT converged'}")
        if self.relu6_replaced:
            line += (f"; FLOAT MODEL CHANGED: ReLU6 replaced by ReLU in "
                     f"{len(self.relu6_replaced)} layers")
        return line


@dataclass(frozen=True)
class Equalization:
    """The equalized graph and its report."""

    graph: LayerGraph
    report: EqualizationReport


def equalize(graph: LayerGraph, *, iterations: int = 100, tol: float = 1e-6,
             relu6: str = "skip") -> LayerGraph:
    """The graph with every qualifying pair of weighted layers equalized (see module docstring).

    Args:
        graph: float graph (BatchNorm folded).
        iterations: at most this many sweeps over the pairs, 1..10000.
        tol: stop when every scale of a sweep satisfies ``|log s_i| <= tol``.
        relu6: "skip" (default): pairs separated by a bounded clamp are left alone, the float
            function is unchanged; "relu": such clamps ``(0, hi)`` of the first layer are
            replaced by ReLU so the pair can be equalized (this changes the float model).
    Returns: a new graph; records that were not changed are shared with ``graph``.  The
        intermediate activations are rescaled per channel, so observe their ranges again:
        ``state.replace(graph=equalize(state.graph)).recalibrated(batches)``.
    """
    result = equalize_with_report(graph, iterations=iterations, tol=tol, relu6=relu6)
    log.info(result.report.summary())
    if result.report.float_model_changed:
        log.warning("equalize(relu6='relu') changed the float model: ReLU6 -> ReLU in %s",
                    ", ".join(result.report.relu6_replaced))
    return result.graph


def equalize_with_report(graph: LayerGraph, *, iterations: int = 100, tol: float = 1e-6,
                         relu6: str = "skip") -> Equalization:
    """``equalize`` that also returns what was done (same arguments)."""
    if not isinstance(graph, LayerGraph):
        raise QuantError(f"equalize expects a LayerGraph; got {type(graph).__name__}")
    check_int(iterations, "iterations", "equalize", 1, 10000)
    check_float(tol, "tol", "equalize", 0.0, 1.0, lo_open=True)
    check_choice(relu6, "relu6", "equalize", RELU6_OPTIONS)
    pairs, skipped = find_pairs(graph, relu6)
    weights = {}
    biases = {}
    for first, second, _ in pairs:
        for name in (first, second):
            rec = graph[name]
            weights[name] = rec.weight.astype(np.float64)
            if rec.bias is not None:
                biases[name] = rec.bias.astype(np.float64)
    total = [np.ones(graph[first].weight.shape[0]) for first, _, _ in pairs]
    sweeps, converged = 0, not pairs
    while pairs and sweeps < iterations and not converged:
        sweeps += 1
        worst = 0.0
        for k, (first, second, via) in enumerate(pairs):
            view = _InputChannels(graph[second], graph, via)
            s = pair_scales(weights[first], view.ranges(weights[second]))
            weights[first] /= s.reshape((-1,) + (1,) * (weights[first].ndim - 1))
            if first in biases:
                biases[first] /= s
            weights[second] = view.scaled(weights[second], s)
            total[k] *= s
            worst = max(worst, float(np.abs(np.log(s)).max()))
        converged = worst <= tol
    out = graph
    replaced = []
    for name, w in weights.items():
        out = with_layer(out, name, weight=w.astype(np.float32),
                         bias=biases[name].astype(np.float32) if name in biases else None)
    for first, _, _ in pairs:
        act = graph[first].activation
        if act is not None and not _commutes(act):
            out = _with_activation(out, first, (act[0], float("inf")))
            replaced.append(first)
    report = EqualizationReport(
        pairs=tuple(EqualizedPair(f, s, v, float(t.min()), float(t.max()))
                    for (f, s, v), t in zip(pairs, total)),
        skipped=tuple(skipped), relu6_replaced=tuple(replaced), sweeps=sweeps,
        converged=converged)
    return Equalization(out, report)


def pair_scales(w1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """``s_i = sqrt(r1_i · r2_i) / r2_i`` (float64, (K,)): ``w1`` the first layer's weight
    (K, ...), ``r2`` (K,) the second layer's per-input-channel max |weight|; 1 where either
    range is 0."""
    r1 = np.abs(w1.reshape(w1.shape[0], -1)).max(axis=1)
    ok = (r1 > 0) & (r2 > 0)
    return np.where(ok, np.sqrt(np.where(ok, r1 / np.where(ok, r2, 1.0), 1.0)), 1.0)


def find_pairs(graph: LayerGraph, relu6: str = "skip"
               ) -> tuple[list[tuple[str, str, tuple[str, ...]]], list[tuple[str, str]]]:
    """The pairs ``(first, second, via)`` that qualify, and ``(layer, reason)`` for every
    weighted layer that starts none.  ``via``: the pass-through records between them."""
    pairs, skipped = [], []
    for rec in graph:
        if rec.op not in WEIGHTED_OPS:
            continue
        found = _pair_from(graph, rec, relu6)
        if isinstance(found, str):
            skipped.append((rec.name, found))
        else:
            pairs.append(found)
    return pairs, skipped


def _pair_from(graph: LayerGraph, first: LayerRecord, relu6: str
               ) -> tuple[str, str, tuple[str, ...]] | str:
    """The pair starting at ``first``, or why there is none."""
    if first.activation is not None and not _commutes(first.activation):
        if not (relu6 == "relu" and _is_relu_n(first.activation)):
            return (f"its activation clamp {first.activation} does not commute with scaling "
                    "(relu6='relu' would replace a ReLU6 by ReLU)")
    via: list[str] = []
    name = first.name
    while True:
        if name == graph.output_name:
            return f"{name!r} is the model output"
        consumers = graph.consumers(name)
        if len(consumers) != 1 or graph[consumers[0]].inputs.count(name) != 1:
            return f"{name!r} has {len(consumers)} consumers (e.g. a residual add or a branch)"
        nxt = graph[consumers[0]]
        if nxt.op in WEIGHTED_OPS:
            break
        if nxt.op not in _PASS_THROUGH:
            return f"{name!r} feeds a {nxt.op} record {nxt.name!r}"
        if nxt.op == "clamp" and not _commutes((nxt.attrs["min"], nxt.attrs["max"])):
            return f"{nxt.name!r} clamps to ({nxt.attrs['min']}, {nxt.attrs['max']})"
        via.append(nxt.name)
        name = nxt.name
    problem = _InputChannels.problem(nxt, graph, first, tuple(via))
    if problem is not None:
        return problem
    return first.name, nxt.name, tuple(via)


def _commutes(act: tuple[float, float]) -> bool:
    """A clamp commutes with positive scaling iff each bound is 0 or infinite."""
    return all(b == 0 or np.isinf(b) for b in act)


def _is_relu_n(act: tuple[float, float]) -> bool:
    lo, hi = act
    return lo == 0 and np.isfinite(hi) and hi > 0


def _with_activation(graph: LayerGraph, name: str, act: tuple[float, float]) -> LayerGraph:
    records = dict(graph.records)
    records[name] = dataclasses.replace(graph[name], activation=act)
    return LayerGraph(records, graph.input_name, graph.output_name)


class _InputChannels:
    """The second layer's weight seen as (rows, C, cols), C its input channels (= the first
    layer's output channels): conv (K, C/g, R, S) with g groups -> (K/g, C, R·S); linear
    (out, C) -> (out, C, 1); linear after a flatten of (N, C, H, W) -> (out, C, H·W)."""

    def __init__(self, rec: LayerRecord, graph: LayerGraph, via: tuple[str, ...]) -> None:
        self.rec = rec
        self.groups = rec.attrs.get("groups", 1) if rec.op == "conv2d" else 1
        self.hw = 1
        flat = [v for v in via if graph[v].op == "flatten"]
        if rec.op == "linear" and flat:
            shape = graph[graph[flat[0]].inputs[0]].out_shape
            self.hw = int(np.prod(shape[2:]))

    @staticmethod
    def problem(rec: LayerRecord, graph: LayerGraph, first: LayerRecord,
                via: tuple[str, ...]) -> str | None:
        """Why ``rec`` cannot take per-channel input scales of ``first``'s output channels
        (None: it can)."""
        ops = [graph[v].op for v in via]
        channels = first.weight.shape[0]
        if first.op == "linear" and any(op != "clamp" for op in ops):
            return f"{first.name!r} is a linear layer followed by {ops}"
        if rec.op == "conv2d":
            if first.op != "conv2d" or "flatten" in ops:
                return f"{rec.name!r} is a conv whose input is not {first.name!r}'s NCHW output"
            c_in = rec.weight.shape[1] * rec.attrs.get("groups", 1)
        elif first.op == "linear":
            c_in = rec.weight.shape[1]
        else:
            if "flatten" not in ops:
                return f"{rec.name!r} is a linear layer on an unflattened NCHW tensor"
            flat = graph[via[ops.index("flatten")]]
            src = graph[flat.inputs[0]]
            if flat.attrs.get("start_dim") != 1 or len(src.out_shape) != 4:
                return f"{rec.name!r}: the flatten does not keep channels on axis 1"
            hw = src.out_shape[2] * src.out_shape[3]
            c_in = rec.weight.shape[1] // hw if rec.weight.shape[1] % hw == 0 else -1
        if c_in != channels:
            return (f"{rec.name!r} takes {c_in} input channels, not the {channels} output "
                    f"channels of {first.name!r}")
        return None

    def _view(self, w: np.ndarray) -> np.ndarray:
        if self.rec.op == "linear":
            return w.reshape(w.shape[0], -1, self.hw)
        k, cpg = w.shape[:2]
        g = self.groups
        v = w.reshape(g, k // g, cpg, -1).transpose(1, 0, 2, 3)
        return v.reshape(k // g, g * cpg, -1)

    def _unview(self, v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.rec.op == "linear":
            return v.reshape(shape)
        k, cpg = shape[:2]
        g = self.groups
        return v.reshape(k // g, g, cpg, -1).transpose(1, 0, 2, 3).reshape(shape)

    def ranges(self, w: np.ndarray) -> np.ndarray:
        """Max |weight| per input channel, (C,)."""
        return np.abs(self._view(w)).max(axis=(0, 2))

    def scaled(self, w: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``w`` with input channel ``i`` multiplied by ``s[i]``."""
        return self._unview(self._view(w) * s[None, :, None], w.shape)
