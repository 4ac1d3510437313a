"""`pareto_sweep`: allocations along a sweep of one budget (the sensitivity / cost trade-off)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from quant.allocate.allocation import Allocation, AllocationError
from quant.allocate.solvers import solve_allocation, validate_problem


def pareto_sweep(omega: Any, costs: Mapping[str, Any], budget_resource: str, n_points: int = 16,
                 method: str = "milp", other_budgets: Mapping[str, float] | None = None, *,
                 ties: Sequence[Sequence[int | str]] = (),
                 layer_names: Sequence[str] | None = None,
                 option_labels: Sequence[Any] | None = None,
                 time_limit_s: float | None = None,
                 dp_resolution: float | None = None) -> list[Allocation]:
    """Solve with ``budgets = {budget_resource: B, **other_budgets}`` for ``n_points`` values of
    ``B`` evenly spaced (``numpy.linspace``, both ends included) from the minimum achievable total
    of ``budget_resource`` (every layer at its cheapest feasible option) to that total in the
    optimum without a ``budget_resource`` budget (where the budget stops binding).

    Budgets that ``other_budgets`` make infeasible are skipped. The answer is deduplicated (one
    allocation per distinct ``choice``, the one found at the smallest ``B``) and sorted by
    increasing ``totals[budget_resource]``, then objective. With an exact method the objective
    is then non-increasing along the list. Other arguments as `solve_allocation`
    (``method="greedy"``/``"dp"`` need ``other_budgets`` empty).
    """
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise AllocationError(f"n_points is {n_points!r}; expected an int >= 2")
    other = dict(other_budgets or {})
    if budget_resource in other:
        raise AllocationError(f"other_budgets: {budget_resource!r} is the swept resource; expected it "
                              f"only as budget_resource")
    if not isinstance(costs, Mapping) or budget_resource not in costs:
        raise AllocationError(f"budget_resource={budget_resource!r}; expected one of the costs: "
                              f"{sorted(costs) if isinstance(costs, Mapping) else costs!r}")
    kw: dict[str, Any] = dict(method=method, ties=ties, layer_names=layer_names,
                              option_labels=option_labels, time_limit_s=time_limit_s,
                              dp_resolution=dp_resolution)
    p = validate_problem(omega, costs, other, ties=ties, layer_names=layer_names,
                         option_labels=option_labels)
    lo = p.min_total(budget_resource)
    top = solve_allocation(omega, costs, {**other, budget_resource: math.inf}, **kw)
    hi = max(lo, top.totals[budget_resource])
    found: dict[tuple[int, ...], Allocation] = {}
    for b in np.linspace(lo, hi, int(n_points)).tolist():
        try:
            a = solve_allocation(omega, costs, {**other, budget_resource: b}, **kw)
        except AllocationError:
            if not other:
                raise
            continue  # jointly infeasible with the other budgets at this point
        found.setdefault(a.choice, a)
    return sorted(found.values(), key=lambda a: (a.totals[budget_resource], a.objective))
