"""Keyed ties (`quant.allocate.ties.Tie`): tied layers choose options with equal key (e.g. equal
act_bits), not equal index. MILP == brute force; greedy / DP respect them; index ties still work
beside them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant.allocate import AllocationError, Option, solve_allocation, validate_problem
from quant.allocate.ties import Tie, satisfied


def _tol(x: float) -> float:
    return 1e-9 * (1.0 + abs(x))


def brute_force(omega, costs, budgets, ties):
    """Best objective over every choice satisfying budgets and ties (None: none does)."""
    L, K = omega.shape
    best = None
    for ch in itertools.product(range(K), repeat=L):
        obj = math.fsum(omega[l, k] for l, k in enumerate(ch))
        if not math.isfinite(obj):
            continue
        tot = {r: math.fsum(a[l, k] for l, k in enumerate(ch)) for r, a in costs.items()}
        if not all(math.isfinite(v) for v in tot.values()):
            continue
        if any(tot[r] > b for r, b in budgets.items()):
            continue
        if not satisfied(ch, ties):
            continue
        best = obj if best is None else min(best, obj)
    return best


@st.composite
def keyed_instances(draw, n_budgets=1, integer_omega=False):
    L = draw(st.integers(2, 5))
    K = draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    om = st.integers(-20, 60).map(float) if integer_omega else st.floats(-5, 10, allow_nan=False)
    omega = np.array(draw(st.lists(om, min_size=L * K, max_size=L * K))).reshape(L, K)
    inf_p = draw(st.sampled_from([0.0, 0.1]))
    omega[rng.random((L, K)) < inf_p] = np.inf
    costs = {}
    for r in ("lat", "energy")[:max(n_budgets, 1)]:
        a = rng.integers(0, 400, size=(L, K)) / 4.0
        a[rng.random((L, K)) < inf_p] = np.inf
        costs[r] = a
    key = draw(st.lists(st.integers(0, 2), min_size=K, max_size=K))
    ties = []
    for _ in range(draw(st.integers(1, 2))):
        members = draw(st.lists(st.integers(0, L - 1), min_size=2, max_size=L, unique=True))
        k2 = key if draw(st.booleans()) else draw(st.lists(st.integers(0, 1), min_size=K, max_size=K))
        ties.append(Tie(members, k2))
    if draw(st.booleans()):  # an index tie beside the keyed ones
        ties.append(Tie(draw(st.lists(st.integers(0, L - 1), min_size=2, max_size=L, unique=True))))
    budgets = {}
    for r in list(costs)[:n_budgets]:
        fin = np.where(np.isfinite(costs[r]), costs[r], np.nan)
        lo = float(np.nansum(np.nanmin(fin, axis=1))) if np.isfinite(fin).any(axis=1).all() else 0.0
        hi = float(np.nansum(np.nanmax(fin, axis=1))) if np.isfinite(fin).any(axis=1).all() else 100.0
        budgets[r] = lo + draw(st.floats(0.2, 1)) * (hi - lo)
    return omega, costs, budgets, ties


def _solve(omega, costs, budgets, ties, method):
    try:
        return solve_allocation(omega, costs, budgets, method, ties=ties)
    except AllocationError as err:
        assert "\n" not in str(err)
        return None


@settings(max_examples=150, deadline=None)
@given(keyed_instances(n_budgets=2))
def test_milp_matches_brute_force_with_keyed_ties(inst):
    omega, costs, budgets, ties = inst
    best = brute_force(omega, costs, budgets, ties)
    a = _solve(omega, costs, budgets, ties, "milp")
    if best is None:
        assert a is None
        return
    assert a is not None and a.status == "optimal"
    assert abs(a.objective - best) <= _tol(best)
    assert satisfied(a.choice, ties)
    assert all(a.totals[r] <= b for r, b in budgets.items())


@settings(max_examples=120, deadline=None)
@given(keyed_instances(n_budgets=1, integer_omega=True))
def test_dp_exact_and_greedy_bounded_with_keyed_ties(inst):
    omega, costs, budgets, ties = inst
    best = brute_force(omega, costs, budgets, ties)
    for method in ("dp", "greedy"):
        a = _solve(omega, costs, budgets, ties, method)
        if best is None:
            assert a is None
            continue
        assert a is not None, method
        assert satisfied(a.choice, ties), method
        assert all(a.totals[r] <= b for r, b in budgets.items()), method
        if method == "dp":  # costs are multiples of 1/4: the DP at resolution 1/4 is exact
            d = solve_allocation(omega, costs, budgets, "dp", ties=ties, dp_resolution=0.25)
            assert d.status == "optimal" and abs(d.objective - best) <= _tol(best)
        else:
            assert best - _tol(best) <= a.objective <= best + a.gap_bound + _tol(best)


OPTS = [Option(8, 8), Option(4, 8), Option(8, 4), Option(4, 4)]


def _inst():
    # three layers; 0 and 2 read the same tensor: their act_bits must agree
    omega = np.array([[0.0, 1.0, 5.0, 6.0],
                      [0.0, 2.0, 2.0, 4.0],
                      [0.0, 0.5, 0.1, 0.6]])
    lat = np.array([[8.0, 4.0, 4.0, 2.0]] * 3)
    return omega, {"lat": lat}


@pytest.mark.parametrize("method", ["milp", "greedy", "dp"])
@pytest.mark.parametrize("attr", ["act_bits", lambda o: (o.act_format, o.act_bits)])
def test_keyed_tie_on_act_bits(method, attr):
    omega, costs = _inst()
    budget = 16.0
    free = solve_allocation(omega, costs, {"lat": budget}, method, option_labels=OPTS)
    tie = Tie.by([0, 2], OPTS, attr)
    assert tie.key in ((8, 8, 4, 4), (("int", 8), ("int", 8), ("int", 4), ("int", 4)))
    a = solve_allocation(omega, costs, {"lat": budget}, method, ties=[tie], option_labels=OPTS)
    assert OPTS[a.choice[0]].act_bits == OPTS[a.choice[2]].act_bits
    assert a.totals["lat"] <= budget
    assert a.ties == ((0, 2),)
    assert a.objective == brute_force(omega, costs, {"lat": budget}, [tie])
    # unconstrained by the tie, layer 2 alone would drop to a4 (its cheapest good option)
    assert OPTS[free.choice[2]].act_bits != OPTS[free.choice[0]].act_bits


def test_keyed_tie_options_may_differ_and_index_ties_coexist():
    omega, costs = _inst()
    tie = Tie.by(["a", "c"], OPTS, "act_bits")
    # w4a8 for a and w8a8 for c share act_bits 8 but differ in index: allowed
    omega2 = omega.copy()
    omega2[0] = [9.0, 0.0, 9.0, 9.0]
    omega2[2] = [0.0, 9.0, 9.0, 9.0]
    a = solve_allocation(omega2, costs, {}, ties=[tie], layer_names=["a", "b", "c"], option_labels=OPTS)
    assert a.choice[0] == 1 and a.choice[2] == 0
    b = solve_allocation(omega2, costs, {}, ties=[tie, ["a", "b"]], layer_names=["a", "b", "c"])
    assert b.choice[0] == b.choice[1] and satisfied(b.choice, [Tie((0, 2), tie.key), Tie((0, 1))])


def test_keyed_tie_feasibility_and_errors():
    omega, costs = _inst()
    costs["lat"][0, :2] = np.inf  # layer 0 cannot take act_bits 8 ...
    p = validate_problem(omega, costs, {}, ties=[Tie.by([0, 2], OPTS, "act_bits")])
    assert not p.feasible[2, :2].any() and p.feasible[2, 2:].all()  # ... so neither can layer 2
    costs["lat"][2, 2:] = np.inf  # ... and layer 2 cannot take act_bits 4: no shared key
    with pytest.raises(AllocationError, match="no key value feasible for all"):
        validate_problem(omega, costs, {}, ties=[Tie.by([0, 2], OPTS, "act_bits")])
    with pytest.raises(AllocationError, match=r"ties\[0\]: key has 3 values; expected 4"):
        validate_problem(omega, _inst()[1], {}, ties=[Tie([0, 1], (1, 2, 3))])
    # the minimum-total check respects keyed ties: layer 0 at a8 forces layer 2 to a8 as well
    omega, costs = _inst()
    costs["lat"][0, 2:] = np.inf
    msg = None
    try:
        solve_allocation(omega, costs, {"lat": 9.0}, ties=[Tie.by([0, 2], OPTS, "act_bits")])
    except AllocationError as err:
        msg = str(err)
    assert msg is not None and "minimum achievable total of 'lat' is 10.0" in msg
