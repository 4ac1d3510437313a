"""Adaptive multipoint: how many points each output channel gets, as a calibration step.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  Every channel of a multipoint layer starts with one point; extra
points (extra rows of the layer's b-bit GEMM) go to the channels whose output error on the
calibration inputs is largest, until a budget is spent:

    state = assign_points(state, calibration_batches, budget=0.1)    # 10% extra rows
    qm = state.model()

    planner = plan_points(state, calibration_batches)                 # steps 1-2 once,
    states = [planner.assign(b) for b in (0.05, 0.1, 0.2)]            # then any budget

1. The float inputs of every multipoint layer (conv: unfolded patches) are collected as second
   moments (``multipoint_inputs``).
2. Per layer, ``fit_multipoint_ladder`` gives every channel's residual at every point count,
   hence its output error ``e_k(n)``; the per-layer greedy order of the extra points (the
   paper's max-heap) and each step's drop of the layer's noise-to-signal ratio follow
   (``multipoint_budget.layer_steps``).
3. The budget is shared by the layers greedily, by that drop per cost
   (``multipoint_budget.share``).
4. Each layer's parameters come from ``allocate_points`` with its share of the points, and are
   fixed in ``CalibrationState.weight_params``.

Budget (layers with a ``MultipointFormat`` weight only; the others are left as they are):

- a float: a fraction of extra rows, ``floor(budget x sum_l K_l)`` extra points over the
  multipoint layers' K_l output channels (0.1: 10% more rows), at most ``max_points - 1``;
- an int: a number of extra points;
- with ``cost``, a callable ``cost(layer_name, m) -> float`` pricing the m-th extra row of that
  layer (m = 1, 2, ...; e.g. hwsim's ``ExtraRowCost``: cycles or energy of the layer with one
  more row): the total the extra points may cost.

A given number of extra points per layer instead of a shared budget (what a per-layer choice
such as hwsim's allocator option ``multipoint W4 x1.25`` means): ``points_for_count`` (one
layer) and ``LayerPointFits`` (many layers on one set of calibration statistics, cached).

A budget below zero or beyond what the layers can take (every channel at ``max_points``) is a
``QuantError``.  ``threshold`` (>= 0): no more points for a channel whose output error is at
most ``threshold`` times its layer's mean channel output power; with ``budget=None`` the
threshold alone decides.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from quant.calibrate.multipoint_budget import LayerSteps, layer_steps, share
from quant.calibrate.multipoint_inputs import layer_input_stats
from quant.calibrate.state import CalibrationState
from quant.errors import QuantError
from quant.formats.multipoint import (MultipointFormat, MultipointLadder, MultipointParams,
                                      fit_multipoint_ladder, weight_rows)
from quant.formats.multipoint_points import CalibrationStats, allocate_points
from quant.graph import WEIGHTED_OPS

RowCost = Callable[[str, int], float]


def multipoint_layers(state: CalibrationState) -> list[str]:
    """Names of the conv2d / linear layers whose weight format is a ``MultipointFormat`` (of a
    ``CalibrationState`` or anything with its ``graph`` and ``config``, e.g. a
    ``QuantizedModel``)."""
    return [r.name for r in state.graph if r.op in WEIGHTED_OPS
            and isinstance(state.config.weight_format(r.name), MultipointFormat)]


def _is_real(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)) and math.isfinite(float(v))


def _layer_costs(cost: RowCost, name: str, capacity: int) -> np.ndarray:
    """``cost(name, m)`` for m = 1..capacity, float64, checked finite and >= 0."""
    try:
        values = np.array([cost(name, m) for m in range(1, capacity + 1)], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QuantError(f"the cost callable must map (layer name, m) to a real number; layer "
                         f"{name!r}: {exc}") from None
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise QuantError(f"the cost of every extra row must be a finite number >= 0; layer "
                         f"{name!r} has {values[~np.isfinite(values) | (values < 0)][:3]}")
    return values


def _budget_total(budget: object, channels: int, capacity: int, priced: float | None) -> float:
    """The budget in the costs' unit (points when unpriced); QuantError when out of range."""
    owner = "The 'budget' parameter of assign_points"
    if priced is not None:
        if not _is_real(budget) or not 0 <= float(budget) <= priced:
            raise QuantError(f"{owner} must be a number in [0, {priced:g}] (the cost of every "
                             f"extra row the layers can take). Got {budget!r} instead.")
        return float(budget)
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, (bool, np.bool_)):
        if not 0 <= int(budget) <= capacity:
            raise QuantError(f"{owner} must be a count in [0, {capacity}] (the extra rows the "
                             f"multipoint layers can take). Got {budget!r} instead.")
        return float(budget)
    top = capacity / channels
    if not _is_real(budget) or not 0 <= float(budget) <= top:
        raise QuantError(f"{owner} must be an extra-row fraction in [0, {top:g}] (a float; "
                         f"{top:g} = every channel at max_points) or a count (an int). Got "
                         f"{budget!r} instead.")
    return float(math.floor(float(budget) * channels + 1e-9))


def assign_points(state: CalibrationState, data: Iterable[torch.Tensor], *,
                  budget: object = None, cost: RowCost | None = None,
                  threshold: float | None = None) -> CalibrationState:
    """Give the channels of every multipoint layer 1..max_points points on calibration data
    (module docstring) and fix the layers' weight parameters.

    Args:
        state: a calibration state whose config has ``MultipointFormat`` weights somewhere.
        data: calibration batches, float tensors (N, ...) shaped like the model input.
        budget: float: extra-row fraction; int: extra points; with ``cost``: the total cost.
        cost: ``cost(layer_name, m)``, the price of layer's m-th extra row (finite, >= 0).
        threshold: see the module docstring (relative output error, >= 0).
    Returns: the state with ``weight_params`` set for every multipoint layer
    (``MultipointParams``; 1 point per channel where no extra point went).
    ``plan_points(state, data).assign(budget)`` is the same, with the calibration statistics
    and fits kept for other budgets.
    """
    _check_request(budget, cost, threshold)
    planner = PointPlanner.empty(state, threshold)
    planner.budget_total(budget, cost)          # a bad budget fails before any work
    return planner.with_data(data).assign(budget, cost)


def plan_points(state: CalibrationState, data: Iterable[torch.Tensor], *,
                threshold: float | None = None) -> PointPlanner:
    """Steps 1-2 of ``assign_points`` (calibration statistics, every layer's greedy order), done
    once; ``PointPlanner.assign(budget, cost)`` then costs one ``allocate_points`` per layer."""
    _check_request(0, None, threshold)
    return PointPlanner.empty(state, threshold).with_data(data)


def _check_request(budget: object, cost: object, threshold: object) -> None:
    if budget is None and threshold is None:
        raise QuantError("assign_points needs a budget, a threshold, or both")
    if threshold is not None and (not _is_real(threshold) or float(threshold) < 0):
        raise QuantError(f"The 'threshold' parameter of assign_points must be a finite number "
                         f">= 0. Got {threshold!r} instead.")
    if cost is not None and not callable(cost):
        raise QuantError(f"The 'cost' parameter of assign_points must be a callable "
                         f"(layer name, m) -> cost. Got {cost!r} instead.")


@dataclass(frozen=True)
class PointPlanner:
    """The multipoint layers of a state with their calibration statistics and greedy orders.

    Attributes:
        state: the calibration state.
        names: the multipoint layers, in graph order.
        threshold: the relative threshold (see the module docstring) or None.
        stats: layer -> ``CalibrationStats`` of its float inputs (empty before ``with_data``).
        steps: layer -> ``LayerSteps``, its extra points in greedy order with their benefits.
        ladders: layer -> its ``MultipointLadder`` (kept so ``assign`` does not fit it again).
    """

    state: CalibrationState
    names: tuple[str, ...]
    threshold: float | None
    stats: Mapping[str, CalibrationStats] = field(default_factory=dict)
    steps: Mapping[str, LayerSteps] = field(default_factory=dict)
    ladders: Mapping[str, MultipointLadder] = field(default_factory=dict)

    @classmethod
    def empty(cls, state: CalibrationState, threshold: float | None) -> PointPlanner:
        if not isinstance(state, CalibrationState):
            raise QuantError(f"assign_points expects a CalibrationState; got "
                             f"{type(state).__name__}")
        names = multipoint_layers(state)
        if not names:
            raise QuantError("assign_points: no layer has multipoint weights (QuantConfig.weight "
                             "or layer_weight with a MultipointFormat)")
        return cls(state, tuple(names), None if threshold is None else float(threshold))

    def with_data(self, data: Iterable[torch.Tensor]) -> PointPlanner:
        """Steps 1-2 on the calibration batches ``data``."""
        stats = layer_input_stats(self.state.graph, self.names, data)
        ladders = {n: fit_multipoint_ladder(self.state.graph[n].weight, self.fmt(n))
                   for n in self.names if self.fmt(n).max_points > 1}
        steps = {n: _steps(self.state.graph[n].weight, self.fmt(n), stats[n], self.threshold,
                           ladders.get(n)) for n in self.names}
        return dataclasses.replace(self, stats=stats, steps=steps, ladders=ladders)

    def fmt(self, name: str) -> MultipointFormat:
        return self.state.config.weight_format(name)

    def channels(self, name: str) -> int:
        return int(self.state.graph[name].weight.shape[0])

    def capacity(self, name: str) -> int:
        """Extra points layer ``name`` can take: K (max_points - 1)."""
        return self.channels(name) * (self.fmt(name).max_points - 1)

    def budget_total(self, budget: object, cost: RowCost | None
                     ) -> tuple[float | None, dict[str, np.ndarray] | None]:
        """(the budget in the costs' unit -- points when unpriced -- or None, each layer's row
        prices or None); QuantError for a budget out of range."""
        costs = None if cost is None else {n: _layer_costs(cost, n, self.capacity(n))
                                           for n in self.names}
        priced = None if costs is None else math.fsum(float(c.sum()) for c in costs.values())
        total = None if budget is None else _budget_total(
            budget, sum(map(self.channels, self.names)), sum(map(self.capacity, self.names)),
            priced)
        return total, costs

    def assign(self, budget: object = None, cost: RowCost | None = None) -> CalibrationState:
        """Steps 3-4 of ``assign_points`` for ``budget`` (and ``cost``)."""
        if not self.steps:
            raise QuantError("PointPlanner.assign needs the calibration data first (with_data)")
        _check_request(budget, cost, self.threshold)
        total, costs = self.budget_total(budget, cost)
        steps = self.steps
        if total is None:
            counts = {n: len(steps[n].channel) for n in self.names}
        else:
            unit = costs or {n: np.ones(self.capacity(n)) for n in self.names}
            shares = share([steps[n] for n in self.names],
                           [unit[n][:len(steps[n].channel)] for n in self.names], total)
            counts = dict(zip(self.names, shares))
        fixed = dict(self.state.weight_params)
        for n in self.names:
            limit = None if self.threshold is None else (
                self.threshold * steps[n].norm / self.channels(n))
            fixed[n] = allocate_points(self.state.graph[n].weight, self.fmt(n), self.stats[n],
                                       budget=counts[n], threshold=limit,
                                       ladder=self.ladders.get(n)).params
        return self.state.replace(weight_params=fixed)


def _steps(w: np.ndarray, fmt: MultipointFormat, stats: CalibrationStats,
           threshold: float | None, ladder: MultipointLadder | None) -> LayerSteps:
    """The layer's greedy order of extra points and their benefits (``layer_steps``), from
    its ladder (``fit_multipoint_ladder(w, fmt)``; None when max_points is 1)."""
    rows = w.reshape(w.shape[0], -1).astype(np.float64)
    power = stats.mean_square(rows)
    if ladder is None:
        return layer_steps(np.zeros((rows.shape[0], 1)), power, threshold)
    errors = np.stack([stats.mean_square(ladder.residual(n))
                       for n in range(1, fmt.max_points + 1)], axis=1)
    return layer_steps(errors, power, threshold)


# ---- a given number of extra points per layer (the allocator's multipoint options) ---------

def points_for_count(w: np.ndarray, fmt: MultipointFormat, stats: CalibrationStats,
                     extra: int) -> MultipointParams:
    """Multipoint parameters of one layer's weight ``w`` (K, ...) with exactly ``extra`` extra
    points (unless the greedy stops early, below), given to its channels by output error on the
    calibration inputs ``stats`` (``allocate_points`` with ``budget=extra``).

    A grouped conv whose groups hold several output channels each (not depthwise) runs its
    groups as equal GEMMs, so the busiest group sets its cost: the extra points are shared
    evenly over the groups first (group g gets ``extra // G``, plus one for the first
    ``extra % G`` groups) and given by output error within each group, so the busiest group has
    ``K / G + ceil(extra / G)`` rows, the shape hwsim's cost model prices
    (``hwsim.workloads.multipoint.rows_layer_shape``).  Depthwise convs (one channel per group)
    and linear layers take the points over the whole layer.

    ``allocate_points`` stops before ``extra`` when no channel can take another point: every
    channel at ``fmt.max_points``, or closed because its next point would have raised its output
    error (the refit minimizes the weight error), or at output error 0.  ``params.extra_points``
    says how many were given.
    """
    rows, shape = weight_rows(w, "points_for_count")
    k = rows.shape[0]
    capacity = k * (fmt.max_points - 1)
    if isinstance(extra, (bool, np.bool_)) or not isinstance(extra, (int, np.integer)) \
            or not 0 <= int(extra) <= capacity:
        raise QuantError(f"points_for_count: extra must be an int in [0, {capacity}] (K = {k} "
                         f"channels at most {fmt.max_points} points each); got {extra!r}")
    g = stats.groups
    if g == 1 or k == g:
        return allocate_points(w, fmt, stats, budget=int(extra)).params
    stats.check_layer(k, rows.shape[1])
    per = k // g
    parts = []
    for i in range(g):
        share_i = int(extra) // g + (1 if i < int(extra) % g else 0)
        sub = CalibrationStats(
            inputs=None if stats.inputs is None else stats.inputs[i:i + 1],
            gram=None if stats.gram is None else stats.gram[i:i + 1], samples=stats.samples)
        parts.append(allocate_points(w[i * per:(i + 1) * per], fmt, sub, budget=share_i).params)
    return MultipointParams(points=np.concatenate([p.points for p in parts]),
                            scales=np.concatenate([p.scales for p in parts]),
                            codes=np.concatenate([p.codes for p in parts]), fmt=fmt)


class LayerPointFits:
    """Multipoint weights of chosen conv2d / linear layers at any number of extra points per
    layer, on the same calibration statistics, cached: what a per-layer multipoint choice
    (e.g. the allocator's ``Option(b, a, "multipoint", weight_points=p)``, with
    ``option.rows(K) - K`` extra points) realizes, and what its sensitivity is scored on.

        fits = LayerPointFits(state.graph, [calib], names, max_points=4)
        params = fits.params("conv1", bits=4, extra=16)     # MultipointParams
        state = state.replace(weight_params={**state.weight_params, "conv1": params})

    Args:
        graph: the captured (BN-folded) float graph; its weights are the ones fitted.
        data: calibration batches (float tensors (N, ...)), read once (float inputs of the
            layers, ``multipoint_inputs.layer_input_stats``).
        names: the layers (default: every conv2d / linear layer).
        max_points: most points a channel may take (``MultipointFormat.max_points``).
    """

    def __init__(self, graph, data: Iterable[torch.Tensor], names: Iterable[str] | None = None,
                 *, max_points: int = 4) -> None:
        self.graph = graph
        self.names = tuple(r.name for r in graph if r.op in WEIGHTED_OPS) if names is None \
            else tuple(names)
        self.max_points = int(max_points)
        MultipointFormat(2, self.max_points)   # checks max_points
        self.stats = layer_input_stats(graph, self.names, data) if self.names else {}
        self._cache: dict[tuple[str, int, int], MultipointParams] = {}

    def fmt(self, bits: int) -> MultipointFormat:
        """The layers' format at ``bits``: ``MultipointFormat(bits, max_points)``."""
        return MultipointFormat(int(bits), self.max_points)

    def channels(self, name: str) -> int:
        return int(self.graph[name].weight.shape[0])

    def params(self, name: str, bits: int, extra: int) -> MultipointParams:
        """Layer ``name`` at ``bits``-bit points with ``extra`` extra points
        (``points_for_count``); cached per (layer, bits, extra)."""
        if name not in self.stats:
            raise QuantError(f"LayerPointFits: layer {name!r} was not collected; its layers: "
                             f"{list(self.names)[:6]}")
        key = (name, int(bits), int(extra))
        if key not in self._cache:
            self._cache[key] = points_for_count(self.graph[name].weight, self.fmt(bits),
                                                self.stats[name], extra)
        return self._cache[key]
