"""`solve_allocation`: choose one option per layer under hardware budgets.

Given per layer ``l`` and option ``k`` a sensitivity ``omega[l, k]`` (the predicted loss
increase; may be negative, since a measured one can be; ``inf`` = not allowed) and per resource
``r`` a cost ``costs[r][l, k]`` (``>= 0``; ``inf`` = the hardware cannot run it), choose
``choice[l]`` minimizing ``sum_l omega[l, choice[l]]`` subject to, for every budgeted resource,
``sum_l costs[r][l, choice[l]] <= budgets[r]``. This is the multiple-choice knapsack problem
(MCKP; with several budgets, its multi-dimensional form), the integer program of HAWQ-V3 (Yao et
al., ICML 2021) and of Hubara et al. (ICML 2021).

Methods:

* ``"milp"`` -- exact, any number of budgets: a 0-1 program solved by HiGHS
  (`quant.allocate.milp`).
* ``"greedy"`` -- one budget: the MCKP greedy on the lower convex hulls with its LP bound (Sinha &
  Zoltners, Operations Research 1979; Kellerer, Pferschy & Pisinger, "Knapsack Problems" ch. 11)
  (`quant.allocate.mckp`). Milliseconds; ``gap_bound`` bounds its distance to the optimum.
* ``"dp"`` -- one budget: dynamic program over the budget discretized at ``dp_resolution``
  (`quant.allocate.dp`); exact for integer costs at resolution 1.

Ties: groups of layers that must take the same option index (HAWQ-V3 ties the activation bits of
both inputs of a residual add). Groups that share a layer are merged. The MILP adds equality
constraints; the greedy and the DP treat a tied group as one layer whose omega and costs are the
members' sums. A pair ``(l, k)`` is feasible when ``omega[l, k]`` and every ``costs[r][l, k]``
are finite and, for a tied layer, when option ``k`` is feasible for every member of its group.
Keyed ties (``quant.allocate.ties.Tie(layers, key)``: equal ``key[choice]``, e.g. equal act_bits,
rather than equal index) are described in `quant.allocate.ties`; the greedy and the DP see a
component of keyed ties as one super-layer over its members' consistent joint choices.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from quant.allocate.allocation import Allocation, AllocationError
from quant.allocate.dp import solve_dp
from quant.allocate.mckp import greedy_mckp
from quant.allocate.milp import solve_milp
from quant.allocate.ties import Tie, joint_table, parse_ties, prune_keyed, union_groups

METHODS = ("milp", "greedy", "dp")
_REL_TOL = 1e-12  # a greedy/DP bound this close (relative) to the objective proves optimality


@dataclass(frozen=True)
class Problem:
    """A validated allocation problem (`validate_problem`)."""

    omega: np.ndarray  # (L, K) float64
    costs: dict[str, np.ndarray]  # resource -> (L, K) float64
    budgets: dict[str, float]
    layer_names: tuple[str, ...]
    option_labels: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]  # a partition of the layers; tied ones together
    feasible: np.ndarray  # (L, K) bool, ties applied
    keyed: tuple[Tie, ...] = ()  # keyed ties, integer members (`quant.allocate.ties`)
    index_groups: tuple[tuple[int, ...], ...] | None = None  # index ties merged; None: = groups

    @property
    def ties(self) -> tuple[tuple[int, ...], ...]:
        """Coupled layers: the components of all ties (index and keyed) with > 1 member."""
        return tuple(g for g in self.groups if len(g) > 1)

    @property
    def index_ties(self) -> tuple[tuple[int, ...], ...]:
        """Groups of layers tied to the same option index (merged), > 1 member."""
        groups = self.groups if self.index_groups is None else self.index_groups
        return tuple(g for g in groups if len(g) > 1)

    def _joint(self, g: tuple[int, ...], resource: str):
        cache = self.__dict__.setdefault("_joint_cache", {})
        if (g, resource) not in cache:
            ties = [t for t in self.keyed if t.layers[0] in g]
            ties += [Tie(ig) for ig in self.index_ties if ig[0] in g]
            cache[(g, resource)] = joint_table(list(g), ties, self.omega, self.costs[resource],
                                               self.feasible)
        return cache[(g, resource)]

    def _keyed_groups(self) -> set[tuple[int, ...]]:
        return {g for g in self.groups if any(t.layers[0] in g for t in self.keyed)}

    def collapsed(self, resource: str) -> tuple[np.ndarray, np.ndarray]:
        """(omega, cost) per group (G, K'): members summed, ``inf`` where infeasible. A group
        with keyed ties has its joint choices as options (K' >= K, padded with ``inf``; map a
        choice back with ``expand(..., resource)``)."""
        w = np.where(self.feasible, self.omega, np.inf)
        c = np.where(self.feasible, self.costs[resource], np.inf)
        if len(self.groups) == w.shape[0]:
            return w, c
        keyed = self._keyed_groups()
        if not keyed:
            return (np.stack([w[list(g)].sum(axis=0) for g in self.groups]),
                    np.stack([c[list(g)].sum(axis=0) for g in self.groups]))
        width = max([w.shape[1]] + [self._joint(g, resource).w.size for g in keyed])
        W = np.full((len(self.groups), width), np.inf)
        C = np.full((len(self.groups), width), np.inf)
        for i, g in enumerate(self.groups):
            if g in keyed:
                jt = self._joint(g, resource)
                W[i, :jt.w.size], C[i, :jt.c.size] = jt.w, jt.c
            else:
                W[i, :w.shape[1]] = w[list(g)].sum(axis=0)
                C[i, :w.shape[1]] = c[list(g)].sum(axis=0)
        return W, C

    def expand(self, group_choice: Sequence[int], resource: str | None = None) -> tuple[int, ...]:
        """Per-group choice -> per-layer choice (``resource``: the one `collapsed` was asked
        for, needed when there are keyed ties)."""
        out = [0] * self.omega.shape[0]
        keyed = self._keyed_groups() if self.keyed else set()
        for g, k in zip(self.groups, group_choice):
            if g in keyed:
                if resource is None:
                    raise AllocationError("Problem.expand: keyed ties need the resource the "
                                          "groups were collapsed for")
                for layer, kk in zip(g, self._joint(g, resource).choices[int(k)]):
                    out[layer] = int(kk)
                continue
            for layer in g:
                out[layer] = int(k)
        return tuple(out)

    def min_total(self, resource: str) -> float:
        """The least achievable total of ``resource``: every group at its cheapest feasible
        option (without ties: the sum over layers of the least feasible cost)."""
        _, c = self.collapsed(resource)
        return math.fsum(c.min(axis=1).tolist())

    def layer(self, l: int) -> str:
        return f"layer {l} ({self.layer_names[l]!r})"


def _as_table(x: Any, what: str, shape: tuple[int, ...] | None) -> np.ndarray:
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise AllocationError(f"{what}: not a numeric array ({err}); expected an (L, K) float array") from None
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise AllocationError(f"{what} has shape {a.shape}; expected (L, K) with L, K >= 1")
    if shape is not None and a.shape != shape:
        raise AllocationError(f"{what} has shape {a.shape}; expected {shape}, the shape of omega")
    return a


def validate_problem(omega: Any, costs: Mapping[str, Any], budgets: Mapping[str, float], *,
                     ties: Sequence[Sequence[int | str] | Tie] = (),
                     layer_names: Sequence[str] | None = None,
                     option_labels: Sequence[Any] | None = None) -> Problem:
    """Check every input (one-line `AllocationError`s naming the argument, the layer and what was
    expected) and return the `Problem`. Also rejects a layer without a feasible option and a
    budget below its least achievable total (`Problem.min_total`)."""
    w = _as_table(omega, "omega", None)
    L, K = w.shape
    names = tuple(f"layer{l}" for l in range(L)) if layer_names is None else tuple(layer_names)
    if len(names) != L:
        raise AllocationError(f"layer_names has {len(names)} entries; expected {L}, one per row of omega")
    if not all(isinstance(n, str) for n in names):
        raise AllocationError("layer_names: expected strings")
    if len(set(names)) != L:
        dup = next(n for n in names if names.count(n) > 1)
        raise AllocationError(f"layer_names: {dup!r} appears twice; expected unique names")
    lname = lambda l: f"layer {l} ({names[l]!r})"  # noqa: E731
    if option_labels is None:
        labels = tuple(f"option{k}" for k in range(K))
    else:
        labels = tuple(o if isinstance(o, str) else getattr(o, "label", None) for o in option_labels)
        if len(labels) != K:
            raise AllocationError(f"option_labels has {len(labels)} entries; expected {K}, one per column of omega")
        if not all(isinstance(o, str) for o in labels):
            raise AllocationError("option_labels: expected strings or quant.allocate.Option objects")
    bad = np.argwhere(np.isnan(w) | (w == -np.inf))
    if bad.size:
        l, k = (int(i) for i in bad[0])
        raise AllocationError(f"omega[{l}, {k}] is {w[l, k]} ({lname(l)}); expected a number or +inf")
    if not isinstance(costs, Mapping):
        raise AllocationError(f"costs is a {type(costs).__name__}; expected a dict resource -> (L, K) array")
    tables: dict[str, np.ndarray] = {}
    for r, raw in costs.items():
        if not isinstance(r, str):
            raise AllocationError(f"costs: key {r!r}; expected resource names (str)")
        a = _as_table(raw, f"costs[{r!r}]", (L, K))
        bad = np.argwhere(np.isnan(a) | (a < 0))
        if bad.size:
            l, k = (int(i) for i in bad[0])
            raise AllocationError(f"costs[{r!r}][{l}, {k}] is {a[l, k]} ({lname(l)}); expected >= 0 or +inf")
        tables[r] = a
    if not isinstance(budgets, Mapping):
        raise AllocationError(f"budgets is a {type(budgets).__name__}; expected a dict resource -> limit")
    limits: dict[str, float] = {}
    for r, b in budgets.items():
        if r not in tables:
            raise AllocationError(f"budgets: unknown resource {r!r}; expected one of the costs: {sorted(tables)}")
        try:
            limits[r] = float(b)
        except (TypeError, ValueError):
            raise AllocationError(f"budgets[{r!r}] is {b!r}; expected a number") from None
        if math.isnan(limits[r]):
            raise AllocationError(f"budgets[{r!r}] is NaN; expected a number (inf: unconstrained)")

    # ties -> index groups (merged, union-find) and keyed ties; components of both together
    plain, keyed = parse_ties(ties, names, K)
    index_groups = union_groups(L, plain)
    groups = union_groups(L, [list(g) for g in index_groups] + [list(t.layers) for t in keyed])

    feasible = np.isfinite(w)
    for a in tables.values():
        feasible &= np.isfinite(a)
    none = np.flatnonzero(~feasible.any(axis=1))
    if none.size:
        l = int(none[0])
        raise AllocationError(f"{lname(l)} has no feasible option: each of its {K} options has an inf "
                              f"omega or cost; expected at least one finite option")
    while True:  # index groups, then keyed ties, until nothing changes (overlapping ties)
        for g in index_groups:
            if len(g) > 1:
                common = feasible[list(g)].all(axis=0)
                if not common.any():
                    who = ", ".join(lname(l) for l in g)
                    raise AllocationError(f"ties: the tied {who} have no option feasible for all of "
                                          f"them; expected a shared finite option")
                feasible[list(g)] = common
        if not prune_keyed(feasible, keyed, lname):
            break
    p = Problem(omega=w, costs=tables, budgets=limits, layer_names=names, option_labels=labels,
                groups=groups, feasible=feasible, keyed=tuple(keyed),
                index_groups=index_groups if keyed else None)
    for r, b in limits.items():
        least = p.min_total(r)
        if least > b:
            raise AllocationError(f"budgets[{r!r}] = {b!r} is infeasible: the minimum achievable total "
                                  f"of {r!r} is {least!r} (every layer at its cheapest feasible option); "
                                  f"expected a budget >= {least!r}")
    return p


def _totals(p: Problem, choice: Sequence[int]) -> dict[str, float]:
    rows = range(len(choice))
    return {r: math.fsum(a[l, choice[l]] for l in rows) for r, a in p.costs.items()}


def _objective(p: Problem, choice: Sequence[int]) -> float:
    return math.fsum(p.omega[l, k] for l, k in enumerate(choice))


def _one_budget(p: Problem, method: str) -> tuple[str, float]:
    if len(p.budgets) != 1:
        raise AllocationError(f"method={method!r} takes exactly one budget; got {len(p.budgets)} "
                              f"({sorted(p.budgets)}); expected one, or method='milp'")
    return next(iter(p.budgets.items()))


def _bounded(objective: float, bound: float) -> tuple[str, float, float]:
    """(status, gap_bound, lp_bound) of a heuristic answer given a proven lower bound."""
    gap = max(0.0, objective - bound)
    if gap <= _REL_TOL * max(1.0, abs(objective), abs(bound)):
        return "optimal", 0.0, min(bound, objective)
    return "feasible", gap, bound


def solve_allocation(omega: Any, costs: Mapping[str, Any], budgets: Mapping[str, float],
                     method: str = "milp", *, ties: Sequence[Sequence[int | str] | Tie] = (),
                     layer_names: Sequence[str] | None = None,
                     option_labels: Sequence[Any] | None = None,
                     time_limit_s: float | None = None,
                     dp_resolution: float | None = None) -> Allocation:
    """Choose one option per layer minimizing the summed ``omega`` under ``budgets``.

    Args:
        omega: (L, K) sensitivities; ``inf`` = not allowed; may be negative.
        costs: resource name -> (L, K) costs, ``>= 0``; ``inf`` = infeasible pair. Every
            resource is totalled in the result; only the budgeted ones constrain.
        budgets: resource name (a key of ``costs``) -> limit on the sum over layers; ``inf`` =
            unconstrained. ``"greedy"`` and ``"dp"`` take exactly one.
        method: ``"milp"`` (exact), ``"greedy"`` (fast, bounded) or ``"dp"`` (discretized).
        ties: groups of layer indices or names that must take the same option index, or
            `quant.allocate.ties.Tie` objects (a ``key`` per option: equal keys, not indices).
        layer_names: one unique name per layer (default ``layer0``, ``layer1``, ...).
        option_labels: one label (or `quant.allocate.Option`) per option (default ``option0``...).
        time_limit_s: ``"milp"`` only: HiGHS's time limit; stopping early gives status
            ``"time_limit"`` and the gap HiGHS proved.
        dp_resolution: ``"dp"`` only: cost units of the DP (see `quant.allocate.dp`; default:
            1 for integer costs, else slack / 65536).

    Raises:
        AllocationError (a ValueError): bad input, a layer without a feasible option, a budget
            below its minimum achievable total (named, with that minimum), budgets that cannot
            be met together, or a MILP time limit reached before any feasible allocation.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise AllocationError(f"method={method!r}; expected one of {METHODS}")
    if time_limit_s is not None:
        if method != "milp":
            raise AllocationError(f"time_limit_s applies to method='milp'; got method={method!r}")
        if not (isinstance(time_limit_s, (int, float)) and time_limit_s > 0):
            raise AllocationError(f"time_limit_s is {time_limit_s!r}; expected a positive number of seconds")
    if dp_resolution is not None and method != "dp":
        raise AllocationError(f"dp_resolution applies to method='dp'; got method={method!r}")
    p = validate_problem(omega, costs, budgets, ties=ties, layer_names=layer_names,
                         option_labels=option_labels)

    if method == "milp":
        rows = [(p.costs[r], b) for r, b in p.budgets.items() if math.isfinite(b)]
        res = solve_milp(p.omega, p.feasible, rows, p.index_ties, time_limit_s,
                         keyed=[(t.layers, t.key) for t in p.keyed])
        if res.choice is None:
            if res.status == "infeasible":
                least = {r: p.min_total(r) for r in p.budgets}
                raise AllocationError(f"budgets {p.budgets} cannot all be met at once (each alone can: "
                                      f"minimum totals {least}); expected looser budgets")
            if res.status == "time_limit":
                raise AllocationError(f"time_limit_s={time_limit_s!r}: HiGHS stopped before finding a "
                                      f"feasible allocation; expected a longer time limit")
            raise AllocationError(f"method='milp': HiGHS failed ({res.message})")
        choice = tuple(int(k) for k in res.choice)
        objective = _objective(p, choice)
        if res.status == "optimal":
            status, gap = "optimal", 0.0
            lp = objective if res.dual_bound is None else min(res.dual_bound, objective)
        else:
            status = res.status
            lp = res.dual_bound
            gap = math.inf if lp is None else max(0.0, objective - lp)
    elif method == "greedy":
        r, b = _one_budget(p, method)
        w, c = p.collapsed(r)
        g = greedy_mckp(w, c, b)
        choice = p.expand(g.choice, r)
        objective = _objective(p, choice)
        status, gap, lp = _bounded(objective, g.lp_bound)
    else:
        r, b = _one_budget(p, method)
        w, c = p.collapsed(r)
        d = solve_dp(w, c, b, dp_resolution)
        choice = p.expand(d.choice, r)
        objective = _objective(p, choice)
        if d.exact:
            status, gap, lp = "optimal", 0.0, objective
        else:
            status, gap, lp = _bounded(objective, d.lower_bound)
    return Allocation(choice=choice, objective=objective, totals=_totals(p, choice),
                      budgets=p.budgets, method=method, status=status, gap_bound=gap,
                      lp_bound=lp, time_s=time.perf_counter() - t0, layer_names=p.layer_names,
                      option_labels=p.option_labels, ties=p.ties)
