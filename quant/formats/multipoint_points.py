"""How many points each channel gets: the output error on calibration inputs, a max-heap.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  The output error of channel ``k`` with residual ``r_k`` is
``e_k = mean_x (r_k · x)^2`` over the calibration inputs ``x`` of the layer (conv: the unfolded
patches of its group; linear: the input rows).  Every channel starts with one point; the
channel with the largest ``e_k`` gets the next one, its error is recomputed, and so on, until
the largest error is at most ``threshold`` or the budget is spent.  The points' scales are
refitted to the weights, not to this error, so a new point can (rarely) raise it: such a point
is not kept and its channel gets no more, so every channel's error only falls.

A channel's next point is fitted only when the channel is chosen, so a small budget costs
little more than one point per channel; except with the search "best", which picks each
channel's ladder by its residual with all ``max_points`` points, so every point of every
channel is fitted first (``multipoint_fit.best_ladder``) and the allocation reads from it.

Budget: with no ``cost``, the number of extra points.  With ``cost``, the ``m``-th extra point
of the layer (m = 1, 2, ...; whichever channel gets it) costs ``cost[m - 1]`` (an array) or
``cost(m)`` (a callable), and the total may not exceed ``budget``: a caller prices one extra
point as one more row of the layer's weight matrix, e.g. the cycles, energy or bytes of the
layer with ``K + m`` rows minus those with ``K + m - 1`` (a step function when rows fill a
processing array).  The cost is paid in order, so a larger budget never changes the points the
smaller one gave: the errors are non-increasing in the budget.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from quant.errors import QuantError
from quant.formats.multipoint import (MultipointFormat, MultipointLadder, MultipointParams,
                                      assemble_params, weight_rows)
from quant.formats.multipoint_fit import greedy_ladder, greedy_step

# Input rows converted to float64 at a time when accumulating second moments.
_CHUNK_VALUES = 1 << 22


@dataclass(frozen=True, eq=False)
class CalibrationStats:
    """Second moments of a layer's calibration inputs, per group: what an output error needs.

    Exactly one of the two is set, whichever is smaller:

    Attributes:
        inputs: float64 (G, M, d), group g's M input rows scaled by ``1/sqrt(M)``, when
            ``M <= d``; else None.
        gram: float64 (G, d, d), ``mean_x x_g x_g^T``, when ``M > d``; else None.
        samples: number of input rows ``M`` the means are over.

    The output error ``mean_x (r · x_g)^2`` of a residual r (d,) costs ``O(min(M, d) · d)``.
    Output channel ``k`` of a layer with K channels reads group ``k // (K / G)``.
    """

    inputs: np.ndarray | None
    gram: np.ndarray | None
    samples: int

    @classmethod
    def from_inputs(cls, x: np.ndarray, groups: int = 1) -> CalibrationStats:
        """From inputs (M, G·d): conv: unfolded patches (N·P, C·R·S) in ``(c, r, s)`` order,
        the channels of group g being columns ``g·d .. (g+1)·d - 1`` (``groups = G`` of the
        conv, C for depthwise); linear: (N, in).  float64 arithmetic, in chunks of rows."""
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise QuantError(f"The 'groups' parameter of CalibrationStats must be an int >= 1. "
                             f"Got {groups!r} instead.")
        try:
            xa = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise QuantError(f"calibration inputs must be a real array; got "
                             f"{type(x).__name__}") from exc
        if xa.ndim != 2 or xa.shape[0] == 0 or xa.shape[1] == 0 or xa.shape[1] % groups:
            raise QuantError(f"calibration inputs must have shape (M >= 1, G·d) with G = {groups}"
                             f" groups; got shape {xa.shape}")
        if not np.issubdtype(xa.dtype, np.number) or np.iscomplexobj(xa):
            raise QuantError(f"calibration inputs must be real numbers; got dtype {xa.dtype}")
        m, cols = xa.shape
        d = cols // groups
        if m > d:
            gram = _second_moments(xa, groups, d)
            gram.setflags(write=False)
            return cls(inputs=None, gram=gram, samples=m)
        xf = xa.astype(np.float64)
        _check_finite(xf)
        scaled = np.ascontiguousarray(xf.reshape(m, groups, d).transpose(1, 0, 2)) / np.sqrt(m)
        scaled.setflags(write=False)
        return cls(inputs=scaled, gram=None, samples=m)

    @property
    def _moments(self) -> np.ndarray:
        return self.gram if self.gram is not None else self.inputs  # type: ignore[return-value]

    @property
    def groups(self) -> int:
        return self._moments.shape[0]

    @property
    def width(self) -> int:
        """Inputs per group, d."""
        return self._moments.shape[2]

    def check_layer(self, channels: int, d: int) -> None:
        """Raise QuantError unless a weight of ``channels`` x ``d`` values reads these inputs."""
        if self.width != d or channels % self.groups:
            raise QuantError(f"calibration inputs of {self.groups} group(s) x {self.width} "
                             f"values do not match a weight of {channels} channels x {d} values "
                             "per channel")

    def mean_square(self, rows: np.ndarray) -> np.ndarray:
        """``mean_x (rows_k · x)^2`` per channel, float64 (K,), for rows (K, d): the output
        error of residuals, the output power of weights."""
        k, d = rows.shape
        self.check_layer(k, d)
        group = np.arange(k) // (k // self.groups)
        if self.gram is not None:
            if self.groups == 1:
                return np.einsum("kd,kd->k", rows @ self.gram[0], rows)
            return np.einsum("kd,kde,ke->k", rows, self.gram[group], rows)
        if self.groups == 1:
            y = rows @ self.inputs[0].T                              # type: ignore[index]
        else:
            y = np.einsum("kmd,kd->km", self.inputs[group], rows)    # type: ignore[index]
        return np.einsum("km,km->k", y, y)

    def channel_mean_square(self, row: np.ndarray, channel: int, channels: int) -> float:
        """``mean_x (row · x)^2`` for one channel's row (d,) of a layer of ``channels``."""
        g = channel // (channels // self.groups)
        if self.gram is not None:
            return float(row @ self.gram[g] @ row)
        y = self.inputs[g] @ row                                     # type: ignore[index]
        return float(y @ y)


def _check_finite(chunk: np.ndarray) -> None:
    if not np.all(np.isfinite(chunk)):
        raise QuantError("calibration inputs contain NaN or inf; expected finite values")


def _second_moments(xa: np.ndarray, groups: int, d: int) -> np.ndarray:
    """``mean_x x_g x_g^T`` per group, float64 (G, d, d), accumulated in chunks of rows."""
    m, cols = xa.shape
    gram = np.zeros((groups, d, d), dtype=np.float64)
    step = max(1, _CHUNK_VALUES // cols)
    for lo in range(0, m, step):
        chunk = xa[lo:lo + step].astype(np.float64)
        _check_finite(chunk)
        per_group = chunk.reshape(-1, groups, d).transpose(1, 0, 2)  # (G, rows, d)
        gram += np.matmul(per_group.transpose(0, 2, 1), per_group)
    return gram / m


@dataclass(frozen=True, eq=False)
class PointAllocation:
    """The result of ``allocate_points``.

    Attributes:
        params: the multipoint parameters with the chosen points per channel.
        base_params: the parameters with one point per channel (before any extra point).
        order: int64 (M,), the channel that got each extra point, in order.
        base_errors: float64 (K,), each channel's output error with one point.
        errors: float64 (K,), the output errors with the chosen points.
        spent: the cost of the M extra points (with no cost given: M).
    """

    params: MultipointParams
    base_params: MultipointParams
    order: np.ndarray
    base_errors: np.ndarray
    errors: np.ndarray
    spent: float


CostSpec = np.ndarray | Callable[[int], float] | None


def _point_costs(cost: CostSpec, capacity: int) -> np.ndarray:
    """The cost of the 1st .. ``capacity``-th extra point, float64 (capacity,), finite, >= 0."""
    if cost is None:
        return np.ones(capacity)
    if callable(cost):
        try:
            values = np.array([cost(m) for m in range(1, capacity + 1)], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise QuantError(f"the cost callable must map an extra point's number m (1.."
                             f"{capacity}) to a real number: {exc}") from exc
    else:
        values = np.asarray(cost, dtype=np.float64)
        if values.shape != (capacity,):
            raise QuantError(f"the 'cost' array must have shape ({capacity},), one cost per "
                             f"extra point the layer can take; got shape {values.shape}")
    if values.shape != (capacity,) or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise QuantError("every extra point's cost must be a finite number >= 0")
    return values


def _affordable(budget: object, costs: np.ndarray, priced: bool) -> int:
    """How many extra points ``budget`` pays for (the cost is paid in order)."""
    cum = np.cumsum(costs)
    total = float(cum[-1]) if cum.size else 0.0
    if priced:
        ok = isinstance(budget, (int, float, np.integer, np.floating)) and not isinstance(
            budget, bool) and np.isfinite(budget) and 0 <= budget <= total
        expected = f"a number in [0, {total:g}] (the cost of every extra point the layer can take)"
    else:
        ok = isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and (
            0 <= budget <= costs.size)
        expected = f"an int in [0, {costs.size}] (the extra points the layer can take)"
    if not ok:
        raise QuantError(f"The 'budget' parameter of allocate_points must be {expected}. "
                         f"Got {budget!r} instead.")
    return int(np.searchsorted(cum, budget, side="right"))


def allocate_points(w: np.ndarray, fmt: MultipointFormat, inputs: CalibrationStats, *,
                    budget: object = None, cost: CostSpec = None,
                    threshold: float | None = None,
                    ladder: MultipointLadder | None = None) -> PointAllocation:
    """Fit ``w`` (K, ...) with one point per channel, then give extra points (at most
    ``fmt.max_points`` per channel) to the channels with the largest output error.

    Args:
        w: the layer's weight, axis 0 the output channels (d values each), finite.
        fmt: the multipoint format.
        inputs: the layer's calibration statistics (``CalibrationStats``, d values per group).
        budget: with no ``cost``, the number of extra points (an int in
            ``[0, K · (max_points - 1)]``); with ``cost``, the total cost they may reach (a
            number in ``[0, total cost of every extra point]``).  None: no budget (then
            ``threshold`` is required).
        cost: per extra point, in the order they are given: an array (K · (max_points - 1),)
            or a callable ``m -> cost`` (m = 1, 2, ...), finite and >= 0.
        threshold: stop once the largest channel error is at most this (>= 0).  None: 0, i.e.
            spend the budget unless every channel is exact.
        ladder: with the search "best", ``fit_multipoint_ladder(w, fmt)`` if the caller has it
            already (it is then not fitted again); ignored by the other searches.
    Ties go to the lower channel index.  A channel's next point is fitted only when it is
    chosen (the greedy step of ``multipoint_fit`` on that row), so the cost is one point per
    channel plus one single-row step per extra point (with the search "best": the whole ladder
    of every channel, fitted first); the result equals selecting from
    ``fit_multipoint_ladder(w, fmt)``.
    """
    if not isinstance(fmt, MultipointFormat):
        raise QuantError(f"allocate_points needs a MultipointFormat; got {type(fmt).__name__}")
    if not isinstance(inputs, CalibrationStats):
        raise QuantError("allocate_points needs the layer's CalibrationStats; got "
                         f"{type(inputs).__name__}")
    if budget is None and threshold is None:
        raise QuantError("allocate_points needs a budget, a threshold, or both")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(
            threshold, (int, float)) or not 0 <= threshold < np.inf):
        raise QuantError(f"The 'threshold' parameter of allocate_points must be a finite "
                         f"number >= 0. Got {threshold!r} instead.")
    rows, shape = weight_rows(w, "allocate_points")
    k, d = rows.shape
    inputs.check_layer(k, d)
    p = fmt.max_points
    capacity = k * (p - 1)
    costs = _point_costs(cost, capacity)
    limit = capacity if budget is None else _affordable(budget, costs, cost is not None)
    stop = 0.0 if threshold is None else float(threshold)

    def step(sel: slice | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if ladder is not None:     # "best": point n of the rows' ladders, as the step gives it
            q, sc = ladder[0][sel, n], ladder[1][sel, n, :n + 1]
            fitted = np.einsum("kj,kjd->kd", sc, ladder[0][sel, :n + 1].astype(np.float64))
            return q, sc, rows[sel] - fitted
        return greedy_step(rows[sel], codes[sel, :n], scales[sel, :n], residual[sel],
                           fmt.levels, fmt.search, fmt.refit, fmt.grid_points, fmt.kernel)

    if fmt.search != "best":
        ladder = None
    elif ladder is None:
        ladder = greedy_ladder(rows, fmt.levels, p, fmt.search, fmt.refit, fmt.grid_points,
                               fmt.kernel)
    elif not isinstance(ladder, MultipointLadder) or ladder.fmt != fmt or (
            ladder.weight.shape != rows.shape or not np.array_equal(ladder.weight, rows)):
        raise QuantError("allocate_points: 'ladder' must be fit_multipoint_ladder of this weight "
                         "and format")
    else:
        ladder = (ladder.codes, ladder.scales)

    codes = np.zeros((k, p, d), dtype=np.int8)
    scales = np.zeros((k, p), dtype=np.float64)
    residual = rows.copy()
    codes[:, 0], scales[:, :1], residual = step(slice(None), 0)
    points = np.ones(k, dtype=np.int64)
    base_params = assemble_params(points.copy(), scales.copy(), codes, fmt, shape)
    errors = inputs.mean_square(residual)
    base = errors.copy()
    heap = [(-float(e), c) for c, e in enumerate(errors)] if p > 1 else []
    heapq.heapify(heap)
    order: list[int] = []
    while heap and len(order) < limit and -heap[0][0] > stop:
        _, c = heapq.heappop(heap)
        n = int(points[c])
        q, sc, res = step(slice(c, c + 1), n)
        error = inputs.channel_mean_square(res[0], c, k)
        if error > errors[c]:      # the refit minimizes the weight error, not this one: close
            continue
        codes[c, n], scales[c, :n + 1], residual[c] = q[0], sc[0], res[0]
        points[c] = n + 1
        errors[c] = error
        order.append(c)
        if n + 1 < p:
            heapq.heappush(heap, (-error, c))
    base.setflags(write=False)
    errors.setflags(write=False)
    spent = float(np.cumsum(costs)[len(order) - 1]) if order else 0.0
    return PointAllocation(params=assemble_params(points, scales, codes, fmt, shape),
                           base_params=base_params, order=np.array(order, dtype=np.int64),
                           base_errors=base, errors=errors, spent=spent)
