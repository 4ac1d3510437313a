"""Greedy for the multiple-choice knapsack (one budget) and its LP-relaxation bound.

Each layer (group) has K options with a sensitivity ``w`` and a cost ``c``; choose one per group,
minimizing ``sum w`` subject to ``sum c <= budget``. The classical greedy (Sinha & Zoltners,
"The multiple-choice knapsack problem", Operations Research 27(3), 1979; Kellerer, Pferschy &
Pisinger, "Knapsack Problems", Springer 2004, ch. 11):

1. per group, drop dominated options (another is no costlier and strictly better, or equally
   good and strictly cheaper) and keep the lower convex hull of the rest in the (cost, w)
   plane, from the cheapest option to the best one (collinear points are kept: they are extra
   integer stopping points at the same efficiency);
2. start every group at its cheapest option; the hull steps ("upgrades") have efficiency
   ``-dw / dc`` (sensitivity removed per unit of cost), non-increasing along each hull;
3. take upgrades in order of decreasing efficiency while they fit. The first that does not fit,
   taken fractionally, gives the optimum of the LP relaxation -- a lower bound on the integer
   optimum (`GreedyResult.lp_bound`);
4. keep going down the list taking every upgrade that still fits (a group whose upgrade did not
   fit stops there), then, while some single change of one group's option (any option, not
   only hull ones) lowers ``w`` and fits the remaining budget, make the one that lowers it most.

The integer answer is feasible (its exact total, by ``math.fsum``, is checked: should the
running sums have rounded below it, the integer steps are redone aiming that much lower) and ``objective - lp_bound >= 0`` bounds its distance to the
optimum; when the budget sits exactly at a breakpoint of the path of step 3 (`hull_path`), the
bound is 0 and the greedy answer is optimal. Cost: sorting the ``<= G*K`` upgrades, O(GK log GK).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GreedyResult:
    choice: np.ndarray  # (G,) option index per group
    lp_bound: float  # optimum of the LP relaxation (inf budget: the unconstrained optimum)


@dataclass(frozen=True)
class _Path:
    start: np.ndarray  # (G,) cheapest option per group
    start_cost: float  # sum of the start options' costs
    start_w: float  # sum of their w
    grp: np.ndarray  # (n,) group of each upgrade, in greedy order
    to_k: np.ndarray  # (n,) option an upgrade moves its group to
    dc: np.ndarray  # (n,) cost increase (> 0)
    dw: np.ndarray  # (n,) w change (< 0)
    totals: np.ndarray  # (n,) start_cost + cumulative dc: the budget at which upgrade i is done
    objs: np.ndarray  # (n,) start_w + cumulative dw


def _hull(cs: list[float], ws: list[float], ks: list[int]) -> list[int]:
    """Lower-left convex hull (collinear points kept) of one group's feasible options."""
    order = sorted(range(len(ks)), key=lambda i: (cs[i], ws[i]))
    pts: list[tuple[float, float, int]] = []
    best = np.inf
    for i in order:  # Pareto filter: w strictly decreasing as cost increases
        if ws[i] < best:
            best = ws[i]
            pts.append((cs[i], ws[i], ks[i]))
    hull: list[tuple[float, float, int]] = []
    for p in pts:
        while len(hull) >= 2:
            (ox, oy, _), (ax, ay, _) = hull[-2], hull[-1]
            if (ax - ox) * (p[1] - oy) - (ay - oy) * (p[0] - ox) < 0:  # a strictly above o->p
                hull.pop()
            else:
                break
        hull.append(p)
    return [k for _, _, k in hull]


def _path(w: np.ndarray, c: np.ndarray) -> _Path:
    feas = np.isfinite(w) & np.isfinite(c)
    G = w.shape[0]
    start = np.empty(G, dtype=np.int64)
    grp: list[int] = []
    to_k: list[int] = []
    dcs: list[float] = []
    dws: list[float] = []
    keys: list[float] = []
    steps: list[int] = []
    wl, cl = w.tolist(), c.tolist()
    for g in range(G):
        ks = np.flatnonzero(feas[g]).tolist()
        hull = _hull([cl[g][k] for k in ks], [wl[g][k] for k in ks], ks)
        start[g] = hull[0]
        key = np.inf
        for s in range(1, len(hull)):
            a, b = hull[s - 1], hull[s]
            dc, dw = cl[g][b] - cl[g][a], wl[g][b] - wl[g][a]
            key = min(key, -dw / dc)  # non-increasing along the hull, even under rounding
            grp.append(g)
            to_k.append(b)
            dcs.append(dc)
            dws.append(dw)
            keys.append(key)
            steps.append(s)
    rows = np.arange(G)
    start_cost = float(np.sum(c[rows, start]))
    start_w = float(np.sum(w[rows, start]))
    if grp:
        order = np.lexsort((np.asarray(steps), -np.asarray(keys)))
    else:
        order = np.zeros(0, dtype=np.int64)
    dc_a = np.asarray(dcs, dtype=np.float64)[order]
    dw_a = np.asarray(dws, dtype=np.float64)[order]
    return _Path(start=start, start_cost=start_cost, start_w=start_w,
                 grp=np.asarray(grp, dtype=np.int64)[order],
                 to_k=np.asarray(to_k, dtype=np.int64)[order], dc=dc_a, dw=dw_a,
                 totals=start_cost + np.cumsum(dc_a), objs=start_w + np.cumsum(dw_a))


def hull_path(w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The breakpoints of the greedy's LP path: ``(totals, objectives)``, both of length n + 1
    (the all-cheapest start, then after each upgrade in greedy order). With the budget equal to
    ``totals[i]``, `greedy_mckp` returns an allocation of cost ``totals[i]`` and objective
    ``objectives[i]`` with ``lp_bound == objectives[i]``: provably optimal (exactly so when the
    running sums are exact, e.g. for integer costs; else up to their rounding)."""
    p = _path(np.asarray(w, dtype=np.float64), np.asarray(c, dtype=np.float64))
    return (np.concatenate([[p.start_cost], p.totals]), np.concatenate([[p.start_w], p.objs]))


def greedy_mckp(w: np.ndarray, c: np.ndarray, budget: float) -> GreedyResult:
    """The MCKP greedy (module docstring) on ``w``, ``c`` (G, K) (``inf`` = infeasible pair;
    every group must have a feasible option and the all-cheapest choice must fit ``budget``)."""
    w = np.asarray(w, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    p = _path(w, c)
    lp_bound = _lp_bound(p, budget)
    rows = np.arange(w.shape[0])
    target = budget
    for _ in range(4):
        cur = _integer(p, w, c, target)
        over = math.fsum(c[rows, cur].tolist()) - budget
        if over <= 0:
            return GreedyResult(choice=cur, lp_bound=lp_bound)
        target -= 2 * over  # the running sums rounded below the exact total: aim lower
    return GreedyResult(choice=p.start.copy(), lp_bound=lp_bound)


def _lp_bound(p: _Path, budget: float) -> float:
    """Optimum of the LP relaxation: the path up to the budget, the next upgrade fractionally."""
    s = int(np.searchsorted(p.totals, budget, side="right"))
    if s == p.dc.size:
        return float(p.objs[-1]) if s else p.start_w
    base_cost = p.totals[s - 1] if s else p.start_cost
    base_w = float(p.objs[s - 1]) if s else p.start_w
    return base_w + float(p.dw[s]) * ((budget - base_cost) / float(p.dc[s]))


def _integer(p: _Path, w: np.ndarray, c: np.ndarray, budget: float) -> np.ndarray:
    """Steps 3 and 4 of the module docstring: the integer greedy choice per group."""
    G = w.shape[0]
    n = p.dc.size
    s = int(np.searchsorted(p.totals, budget, side="right"))  # upgrades 0..s-1 fit
    # choice after the prefix: the count of taken steps of a group indexes its hull
    cur = p.start.copy()
    if s:
        taken = np.arange(s)
        last = np.full(G, -1, dtype=np.int64)
        np.maximum.at(last, p.grp[taken], taken)
        has = last >= 0
        cur[has] = p.to_k[last[has]]
    if s == n:
        return cur
    rem = budget - (p.totals[s - 1] if s else p.start_cost)
    # continue down the list: upgrades that still fit, a group stops at its first misfit
    blocked = np.zeros(G, dtype=bool)
    blocked[p.grp[s]] = True
    grp_l, to_l, dc_l = p.grp.tolist(), p.to_k.tolist(), p.dc.tolist()
    for i in range(s + 1, n):
        g = grp_l[i]
        if blocked[g]:
            continue
        if dc_l[i] <= rem:
            rem -= dc_l[i]
            cur[g] = to_l[i]
        else:
            blocked[g] = True
    # fill: single-group changes to any option that lowers w and fits
    rows = np.arange(G)
    feas = np.isfinite(w) & np.isfinite(c)
    while True:
        dW = w - w[rows, cur][:, None]
        dC = c - c[rows, cur][:, None]
        ok = feas & (dW < 0) & (dC <= rem)
        if not ok.any():
            break
        gain = np.where(ok, -dW, -np.inf)
        best = gain.max()
        cand = np.flatnonzero(gain.ravel() == best)
        pick = cand[np.argmin(dC.ravel()[cand])]
        g, k = divmod(int(pick), w.shape[1])
        rem -= dC[g, k]
        cur[g] = k
    return cur
