"""quant.allocate solvers against brute force (every one of the K**L choices), with hypothesis.

Costs are multiples of 1/4 so every total is exact in float64: a budget is respected or not,
with no rounding in between, and budgets are often drawn *equal* to some choice's total.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant.allocate import AllocationError, hull_path, solve_allocation


def _tol(x: float) -> float:
    return 1e-9 * (1.0 + abs(x))


def brute_force(omega, costs, budgets, ties=()):
    """(best objective, set of optimal choices) or (None, empty) when nothing is feasible."""
    L, K = omega.shape
    ch = np.array(list(itertools.product(range(K), repeat=L)), dtype=np.int64)  # (K**L, L)
    rows = np.arange(L)
    obj = omega[rows, ch].sum(axis=1)
    ok = np.isfinite(obj)
    for r, a in costs.items():
        tot = a[rows, ch].sum(axis=1)
        ok &= np.isfinite(tot)
        if r in budgets:
            ok &= tot <= budgets[r]
    for g in ties:
        for m in g[1:]:
            ok &= ch[:, m] == ch[:, g[0]]
    if not ok.any():
        return None, set()
    best = obj[ok].min()
    opt = {tuple(c) for c in ch[ok & (obj <= best + _tol(best))].tolist()}
    return float(best), opt


@st.composite
def instances(draw, n_budgets=1, integer_omega=False, with_ties=True, with_inf=True):
    L = draw(st.integers(1, 5))
    K = draw(st.integers(1, 4))
    if integer_omega:
        om = st.integers(-20, 60).map(float)
    else:
        om = st.floats(-5, 10, allow_nan=False, allow_infinity=False)
    inf_p = draw(st.sampled_from([0.0, 0.15])) if with_inf else 0.0
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    omega = np.array(draw(st.lists(om, min_size=L * K, max_size=L * K))).reshape(L, K)
    omega[rng.random((L, K)) < inf_p / 2] = np.inf
    names = ["lat", "energy", "size"][:max(n_budgets, 2)]
    costs = {}
    for r in names:
        a = rng.integers(0, 400, size=(L, K)) / 4.0
        a[rng.random((L, K)) < inf_p / 2] = np.inf
        costs[r] = a
    ties: list[list[int]] = []
    if with_ties and L > 1 and (with_ties == "always" or draw(st.booleans())):
        labels = draw(st.lists(st.integers(0, L - 1), min_size=L, max_size=L))
        by: dict[int, list[int]] = {}
        for l, g in enumerate(labels):
            by.setdefault(g, []).append(l)
        ties = [g for g in by.values() if len(g) > 1]
    budgets = {}
    feas = np.isfinite(omega) & np.all([np.isfinite(a) for a in costs.values()], axis=0)
    groups = [g for g in ties] + [[l] for l in range(L) if not any(l in g for g in ties)]
    gfeas = np.array([feas[g].all(axis=0) for g in groups])  # (G, K)
    for r in names[:n_budgets]:
        gc = np.array([costs[r][g].sum(axis=0) for g in groups])
        if gfeas.any(axis=1).all():
            lo = float(np.sum(np.where(gfeas, gc, np.inf).min(axis=1)))
            hi = float(np.sum(np.where(gfeas, gc, -np.inf).max(axis=1)))
        else:
            lo, hi = 0.0, 100.0
        how = draw(st.sampled_from(["frac", "frac", "exact", "exact", "below"]))
        if how == "exact":  # exactly the total of some tie-respecting choice: the boundary case
            gk = [int(rng.choice(np.flatnonzero(f))) if f.any() else 0 for f in gfeas]
            b = float(sum(gc[i, k] for i, k in enumerate(gk)))
            b = b if math.isfinite(b) else lo
        elif how == "below":
            b = lo - 0.25
        else:
            b = lo + draw(st.floats(0, 1)) * (hi - lo)
        budgets[r] = b if math.isfinite(b) else 0.0
    return omega, costs, budgets, ties


def _solve_or_none(omega, costs, budgets, ties, method, **kw):
    try:
        return solve_allocation(omega, costs, budgets, method, ties=ties, **kw)
    except AllocationError as err:
        assert "\n" not in str(err)
        return None


def _check_exact(omega, costs, budgets, ties, method, **kw):
    best, opt = brute_force(omega, costs, budgets, ties)
    a = _solve_or_none(omega, costs, budgets, ties, method, **kw)
    if best is None:
        assert a is None
        return None
    assert a is not None, "solver raised on a feasible instance"
    assert a.status == "optimal" and a.gap_bound == 0.0
    assert abs(a.objective - best) <= _tol(best)
    for r, b in budgets.items():
        assert a.totals[r] <= b
    for g in ties:
        assert len({a.choice[l] for l in g}) == 1
    assert a.lp_bound is not None and a.lp_bound <= a.objective + _tol(best)
    return a


@settings(max_examples=150)
@given(instances(n_budgets=1))
def test_milp_matches_brute_force_one_budget(inst):
    _check_exact(*inst, "milp")


@settings(max_examples=150)
@given(instances(n_budgets=2))
def test_milp_matches_brute_force_two_budgets(inst):
    _check_exact(*inst, "milp")


@settings(max_examples=100)
@given(instances(n_budgets=2, with_ties="always"))
def test_milp_matches_brute_force_with_ties(inst):
    """Tied layers (equality constraints) take the same option; optimum as brute force."""
    _check_exact(*inst, "milp")


@settings(max_examples=60)
@given(instances(n_budgets=2, integer_omega=True))
def test_milp_matches_brute_force_integer_omega(inst):
    """Integer omegas: many optimal ties; the objective must still be the least one."""
    _check_exact(*inst, "milp")


@settings(max_examples=150)
@given(instances(n_budgets=1, with_ties="always"))
def test_dp_matches_milp_and_brute_force(inst):
    """Costs are multiples of 1/4: resolution 0.25 is exact; so is the automatic one when the
    costs happen to be integers. DP and MILP agree on the optimum."""
    omega, costs, budgets, ties = inst
    a = _check_exact(omega, costs, budgets, ties, "dp", dp_resolution=0.25)
    m = _solve_or_none(omega, costs, budgets, ties, "milp")
    assert (a is None) == (m is None)
    if a is not None:
        assert abs(a.objective - m.objective) <= _tol(m.objective)
        int_costs = {r: np.where(np.isfinite(c), np.ceil(c), c) for r, c in costs.items()}
        _check_exact(omega, int_costs, budgets, ties, "dp")  # auto resolution: 1, exact


@settings(max_examples=200)
@given(instances(n_budgets=1, with_ties="always"))
def test_greedy_bounded_by_milp(inst):
    omega, costs, budgets, ties = inst
    m = _solve_or_none(omega, costs, budgets, ties, "milp")
    g = _solve_or_none(omega, costs, budgets, ties, "greedy")
    assert (m is None) == (g is None)
    if m is None:
        return
    (r, b), = budgets.items()
    assert g.totals[r] <= b
    for grp in ties:
        assert len({g.choice[l] for l in grp}) == 1
    assert g.objective >= m.objective - _tol(m.objective)
    assert g.gap_bound >= 0
    assert g.objective - m.objective <= g.gap_bound + _tol(m.objective)
    assert g.lp_bound <= m.objective + _tol(m.objective)
    assert g.status in ("optimal", "feasible")
    if g.status == "optimal":
        assert abs(g.objective - m.objective) <= _tol(m.objective)


@settings(max_examples=100)
@given(instances(n_budgets=1, with_ties=False), st.data())
def test_greedy_optimal_at_hull_breakpoints(inst, data):
    """With the budget exactly at a breakpoint of the greedy's path, the LP bound meets the
    greedy answer: it is optimal (== MILP == brute force) and gap_bound is 0."""
    omega, costs, _, _ = inst
    (r, cost), = [(k, v) for k, v in costs.items() if k == "lat"]
    feas = np.isfinite(omega) & np.isfinite(costs["lat"]) & np.isfinite(costs["energy"])
    if not feas.any(axis=1).all():
        return
    w = np.where(feas, omega, np.inf)
    c = np.where(feas, cost, np.inf)
    totals, objs = hull_path(w, c)
    assert np.all(np.diff(totals) > 0) and np.all(np.diff(objs) <= 0)
    i = data.draw(st.integers(0, totals.size - 1))
    budgets = {"lat": float(totals[i])}
    g = solve_allocation(omega, costs, budgets, "greedy")
    assert g.status == "optimal" and g.gap_bound == 0.0
    assert g.totals["lat"] == totals[i]
    assert abs(g.objective - objs[i]) <= _tol(objs[i])
    best, _ = brute_force(omega, costs, budgets)
    assert abs(g.objective - best) <= _tol(best)
    m = solve_allocation(omega, costs, budgets, "milp")
    assert abs(g.objective - m.objective) <= _tol(best)


@settings(max_examples=60)
@given(instances(n_budgets=1, with_ties=False), st.floats(0.3, 7.0))
def test_dp_discretized_is_feasible_and_bounded(inst, resolution):
    """At a resolution that does not divide the costs, the DP answer still fits the budget and
    its lower bound brackets the optimum."""
    omega, costs, budgets, _ = inst
    m = _solve_or_none(omega, costs, budgets, (), "milp")
    if m is None:
        return
    try:
        d = solve_allocation(omega, costs, budgets, "dp", dp_resolution=resolution)
    except AllocationError as err:  # too coarse to fit anything: said so
        assert "finer dp_resolution" in str(err)
        return
    (r, b), = budgets.items()
    assert d.totals[r] <= b
    assert d.objective >= m.objective - _tol(m.objective)
    assert d.lp_bound <= m.objective + _tol(m.objective)
    assert d.objective - m.objective <= d.gap_bound + _tol(m.objective)


def test_milp_float_costs_against_brute_force():
    """Arbitrary float costs (sums not exact) over a fixed batch of seeds: the MILP equals brute
    force within rounding; every method's exact total (math.fsum) respects its budget."""
    for seed in range(40):
        rng = np.random.default_rng(seed)
        L, K = int(rng.integers(2, 6)), int(rng.integers(2, 5))
        omega = rng.normal(size=(L, K)) * 1e-3  # ΔL-sized: small and of either sign
        costs = {"lat": rng.random((L, K)) * 1e6, "energy": rng.random((L, K)) * 1e-6}
        lo = {r: float(a.min(axis=1).sum()) for r, a in costs.items()}
        hi = {r: float(a.max(axis=1).sum()) for r, a in costs.items()}
        budgets = {r: lo[r] + rng.random() * (hi[r] - lo[r]) for r in costs}
        best, _ = brute_force(omega, costs, budgets)
        if best is None:
            continue
        a = solve_allocation(omega, costs, budgets)
        assert a.objective == pytest.approx(best, rel=1e-9, abs=1e-15)
        for r, b in budgets.items():
            assert a.totals[r] <= b  # exact: answers over by HiGHS's tolerance are cut off
        one = {"lat": budgets["lat"]}
        best1, _ = brute_force(omega, costs, one)
        for method in ("milp", "greedy", "dp"):
            g = solve_allocation(omega, costs, one, method)
            assert g.totals["lat"] <= one["lat"]
            assert g.objective >= best1 - 1e-15
            assert g.objective - best1 <= g.gap_bound + 1e-15
