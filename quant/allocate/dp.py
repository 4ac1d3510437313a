"""Dynamic program over a discretized budget (one budget): an exact cross-check of the MILP.

The multiple-choice knapsack DP (Kellerer, Pferschy & Pisinger, "Knapsack Problems", Springer
2004, ch. 11): ``f_g[b]`` = the least sum of sensitivities of groups ``0..g`` whose summed cost,
in units, is at most ``b``; ``f_g[b] = min_k f_{g-1}[b - u[g,k]] + w[g,k]``. O(G K cap) time,
O(G cap) memory for the back-pointers.

Discretization. Per group the cheapest feasible cost is subtracted (a constant: every group takes
one option), leaving a slack ``S = budget - sum_g min_k c[g,k]``; with resolution ``r`` a cost
step ``c' = c - min`` is ``ceil(c' / r)`` units and the capacity is ``floor(S / r)`` units.
Rounding steps up and capacity down makes every answer feasible for the real budget (checked
in exact arithmetic, ``math.fsum``: should float rounding of ``c - min`` put the total a hair
over, the DP is rerun with one unit less); with
integer costs and ``r = 1`` (more generally, every ``c'`` a multiple of ``r``) the DP is exact.
Otherwise a second DP with steps rounded *down* (a relaxation) gives a lower bound on the optimum,
reported as ``lower_bound``.

Default resolution (``resolution=None``): 1 when every feasible cost step is an integer and the
slack is at most 2**20; else ``S / 2**16`` (65536 capacity units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quant.allocate.allocation import AllocationError

_AUTO_INT_CAP = 2 ** 20
_AUTO_UNITS = 2 ** 16
_MAX_CELLS = 2 ** 27  # groups x capacity (int16 back-pointers: 256 MiB)


@dataclass(frozen=True)
class DpResult:
    choice: np.ndarray  # (G,)
    lower_bound: float  # == the objective when exact
    exact: bool
    resolution: float


def _run(w: np.ndarray, u: np.ndarray, cap: int) -> tuple[np.ndarray | None, float]:
    """Min-sum DP; ``u`` (G, K) int units, -1 = unusable. Returns (choice, value)."""
    G, K = w.shape
    f = np.zeros(cap + 1)
    arg = np.zeros((G, cap + 1), dtype=np.int16)
    for g in range(G):
        new = np.full(cap + 1, np.inf)
        a = arg[g]
        for k in np.flatnonzero(u[g] >= 0).tolist():
            uk = int(u[g, k])
            cand = f[:cap + 1 - uk] + w[g, k]
            seg = new[uk:]
            better = cand < seg
            seg[better] = cand[better]
            a[uk:][better] = k
        f = new
    value = float(f[cap])
    if not math.isfinite(value):
        return None, value
    choice = np.empty(G, dtype=np.int64)
    b = cap
    for g in range(G - 1, -1, -1):
        k = int(arg[g, b])
        choice[g] = k
        b -= int(u[g, k])
    return choice, value


def solve_dp(w: np.ndarray, c: np.ndarray, budget: float, resolution: float | None) -> DpResult:
    """DP on ``w``, ``c`` (G, K) (``inf`` = infeasible; every group has a feasible option and the
    all-cheapest choice fits ``budget``); ``resolution`` as in the module docstring."""
    feas = np.isfinite(w) & np.isfinite(c)
    G, K = w.shape
    if K > np.iinfo(np.int16).max:
        raise AllocationError(f"method='dp': {K} options; expected at most {np.iinfo(np.int16).max}")
    cm = np.where(feas, c, np.inf)
    c_min = cm.min(axis=1)
    step = np.where(feas, c - c_min[:, None], 0.0)
    slack = budget - math.fsum(c_min.tolist())
    if slack >= float(step.max(axis=1).sum()):  # the budget cannot bind: per group, best w
        wm = np.where(feas, w, np.inf)
        best = wm.min(axis=1)
        choice = np.array([np.flatnonzero(wm[g] == best[g])[np.argmin(step[g, wm[g] == best[g]])]
                           for g in range(G)], dtype=np.int64)
        return DpResult(choice, float(np.sum(best)), True, 1.0 if resolution is None else resolution)
    if resolution is None:
        integral = bool(np.all(step == np.round(step)))
        resolution = 1.0 if integral and slack <= _AUTO_INT_CAP else slack / _AUTO_UNITS
        if resolution <= 0:
            resolution = 1.0
    if not (resolution > 0 and math.isfinite(resolution)):
        raise AllocationError(f"dp_resolution is {resolution!r}; expected a positive finite number")
    cap = int(math.floor(slack / resolution))
    if G * (cap + 1) > _MAX_CELLS:
        raise AllocationError(
            f"dp_resolution={resolution!r}: the budget's slack {slack!r} is {cap} units for {G} "
            f"layers; expected at most {_MAX_CELLS} layer-units: pass dp_resolution >= "
            f"{slack * G / _MAX_CELLS:.6g}")
    q = step / resolution
    up = np.where(feas, np.ceil(q), -1)
    dn = np.where(feas, np.floor(q), -1)
    exact = bool(np.array_equal(up, dn))
    rows = np.arange(G)
    for cap_up in range(cap, max(cap - 4, -1), -1):
        u_up = np.where(up <= cap_up, up, -1).astype(np.int64)
        choice, value = _run(w, u_up, cap_up)
        if choice is None or math.fsum(c[rows, choice].tolist()) <= budget:
            break
        # rounding in c - min put the exact total a hair over the budget: one unit less
    else:
        choice = None
    if choice is None:
        raise AllocationError(
            f"dp_resolution={resolution!r}: with costs rounded up to it, no allocation fits the "
            f"budget (slack {slack!r} above the minimum); expected a finer dp_resolution")
    if exact:
        return DpResult(choice, value, True, resolution)
    u_dn = np.where(dn <= cap, dn, -1).astype(np.int64)
    _, lower = _run(w, u_dn, cap)
    return DpResult(choice, min(lower, value), False, resolution)
