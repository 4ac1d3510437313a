"""Extra points over a network: each layer's greedy order, and one budget shared by layers.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  Within a layer the order of extra points is the paper's (and
``quant.formats.multipoint_points.allocate_points``'): a max-heap on the channels' output
errors ``e_k = mean_x (r_k . x)^2``; the worst channel gets the next point; a point that would
raise its channel's error closes the channel.  ``layer_steps`` replays that order on the
errors of every point count (from ``fit_multipoint_ladder``), so each step's error drop is known
before any budget is split.

Across layers the errors are not comparable (each is in its own output units), so a step's
benefit is its drop of the layer's noise-to-signal ratio, ``delta e_k / sum_k p_k`` with ``p_k
= mean_x (w_k . x)^2`` the channel's output power: the layer-local proxy of the output SQNR
(the noise-to-signal ratios of layers add, to first order, through a network).  ``share``
spends the budget greedily by benefit per cost: a knapsack greedy over the layers' sequences,
taking from one layer at a time the block of its next steps with the best ratio (so a step that
is free, e.g. a row that fills an array column already paid for, comes with the costly one
that opens it).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

# Steps looked ahead in one layer's sequence when choosing its next block.
WINDOW = 256


@dataclass(frozen=True)
class LayerSteps:
    """One layer's extra points in greedy order.

    Attributes:
        channel: int64 (S,), the channel that gets each extra point.
        benefit: float64 (S,), its drop of the layer's noise-to-signal ratio (>= 0).
        norm: ``sum_k p_k``, the layer's output power (1 when it is 0).
    """

    channel: np.ndarray
    benefit: np.ndarray
    norm: float


def layer_steps(errors: np.ndarray, power: np.ndarray, threshold: float | None) -> LayerSteps:
    """Replay the per-layer heap on ``errors`` float64 (K, P), ``errors[k, n - 1]`` = channel k's
    output error with n points, and ``power`` float64 (K,) the channels' output powers.

    ``threshold``: a channel is not given points once its error is at most ``threshold`` times
    the layer's mean channel power (None: 0).  Ties go to the lower channel index.
    """
    k, p = errors.shape
    norm = float(power.sum()) or 1.0
    stop = 0.0 if threshold is None else float(threshold) * norm / k
    current = errors[:, 0].copy()
    points = np.ones(k, dtype=np.int64)
    heap = [(-float(e), c) for c, e in enumerate(current)] if p > 1 else []
    heapq.heapify(heap)
    channel: list[int] = []
    benefit: list[float] = []
    while heap and -heap[0][0] > stop:
        _, c = heapq.heappop(heap)
        n = int(points[c])
        new = float(errors[c, n])
        if new > current[c]:   # the refit minimizes the weight error, not this one: close
            continue
        channel.append(c)
        benefit.append((current[c] - new) / norm)
        current[c], points[c] = new, n + 1
        if n + 1 < p:
            heapq.heappush(heap, (-new, c))
    return LayerSteps(np.array(channel, dtype=np.int64), np.array(benefit, dtype=np.float64),
                      norm)


def _best_block(benefit: np.ndarray, cost: np.ndarray, pos: int, remaining: float
                ) -> tuple[float, int, float] | None:
    """(ratio, length, cost) of the block of steps ``pos..pos+j-1`` with the largest benefit
    per cost that fits ``remaining`` (the longest on ties; a free step with a benefit has ratio
    inf); None when not even one step fits."""
    end = min(benefit.shape[0], pos + WINDOW)
    if end <= pos:
        return None
    b = np.cumsum(benefit[pos:end])
    c = np.cumsum(cost[pos:end])
    fits = c <= remaining
    if not fits[0]:
        return None
    n = int(np.argmin(fits)) if not fits.all() else fits.shape[0]   # costs are >= 0: a prefix
    b, c = b[:n], c[:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(c > 0, b / c, np.where(b > 0, np.inf, 0.0))
    best = n - 1 - int(np.argmax(ratio[::-1]))                      # the last of the maxima
    return float(ratio[best]), best + 1, float(c[best])


def share(steps: list[LayerSteps], costs: list[np.ndarray], budget: float) -> list[int]:
    """How many of its steps each layer gets: greedy by benefit per cost until ``budget`` (in
    the costs' unit) is spent or no step fits.  ``costs[l]`` float64 (S_l,) prices layer l's
    steps in order (finite, >= 0).  Ties go to the earlier layer."""
    counts = [0] * len(steps)
    remaining = float(budget)
    heap = []
    for i, (s, c) in enumerate(zip(steps, costs)):
        block = _best_block(s.benefit, c, 0, remaining)
        if block is not None:
            heap.append((-block[0], i))
    heapq.heapify(heap)
    while heap:
        neg, i = heapq.heappop(heap)
        block = _best_block(steps[i].benefit, costs[i], counts[i], remaining)
        if block is None:
            continue
        ratio, length, cost = block
        if ratio < -neg and heap and -heap[0][0] > ratio:   # worse now that less remains
            heapq.heappush(heap, (-ratio, i))
            continue
        counts[i] += length
        remaining = max(remaining - cost, 0.0)
        nxt = _best_block(steps[i].benefit, costs[i], counts[i], remaining)
        if nxt is not None:
            heapq.heappush(heap, (-nxt[0], i))
    return counts
