"""quant.allocate: the solve_allocation API, its errors, ties, Allocation JSON and pareto_sweep.
(The solvers against brute force: tests/test_allocate_exact.py.)"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from quant.allocate import (Allocation, AllocationError, Option, pareto_sweep, solve_allocation,
                            validate_problem)

NAMES = ["conv1", "conv2", "fc"]
OPTS = [Option(8, 8), Option(4, 8), Option(2, 8)]


def _inst():
    omega = np.array([[0.0, 1.0, 5.0],
                      [0.0, 2.0, 3.5],
                      [0.0, 0.5, 4.0]])
    costs = {"lat": np.array([[8.0, 4.0, 2.0],
                              [16.0, 8.0, 4.0],
                              [4.0, 2.0, 1.0]]),
             "energy": np.array([[80.0, 40.0, 20.0],
                                 [10.0, 5.0, 2.5],
                                 [40.0, 20.0, 10.0]])}
    return omega, costs


def _err(match, *args, **kw):
    with pytest.raises(AllocationError, match=match) as info:
        solve_allocation(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, ValueError)
    return msg


# --- basics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["milp", "greedy", "dp"])
def test_small_known_optimum(method):
    omega, costs = _inst()
    a = solve_allocation(omega, costs, {"lat": 17.0}, method, layer_names=NAMES, option_labels=OPTS)
    # the unique optimum within 17 cycles: (1, 1, 0), 16 cycles, 3.0 (next: 3.5, e.g. (1, 1, 1))
    assert a.choice == (1, 1, 0) and a.objective == 3.0
    assert a.totals == {"lat": 16.0, "energy": 85.0}  # every resource, budgeted or not
    assert a.budgets == {"lat": 17.0}
    assert a.lp_bound <= a.objective and a.gap_bound == a.objective - a.lp_bound
    if method == "greedy":  # optimal here, but its LP bound does not prove it
        assert a.status == "feasible" and a.gap_bound > 0
    else:
        assert a.status == "optimal" and a.gap_bound == 0.0
    assert a.method == method and a.time_s >= 0
    assert a.layer_names == tuple(NAMES)
    assert a.choice_labels() == ("int w4a8", "int w4a8", "int w8a8")
    assert a.as_dict() == {"conv1": "int w4a8", "conv2": "int w4a8", "fc": "int w8a8"}


def test_default_names_and_unconstrained():
    omega, costs = _inst()
    a = solve_allocation(omega, costs, {})
    assert a.choice == (0, 0, 0) and a.objective == 0.0
    assert a.layer_names == ("layer0", "layer1", "layer2")
    assert a.option_labels == ("option0", "option1", "option2")
    b = solve_allocation(omega, costs, {"lat": math.inf}, "greedy")
    assert b.choice == (0, 0, 0) and b.status == "optimal"
    assert solve_allocation(omega, costs, {"lat": math.inf}, "dp").choice == (0, 0, 0)


def test_negative_omega_and_inf_omega():
    omega, costs = _inst()
    omega = omega - 10.0  # measured ΔL can be negative
    omega[0, 0] = np.inf  # not allowed
    for m in ("milp", "greedy", "dp"):
        a = solve_allocation(omega, costs, {"lat": 100.0}, m)
        assert a.choice == (1, 0, 0) and a.objective == pytest.approx(-29.0)


def test_two_budgets_both_respected():
    omega, costs = _inst()
    one = solve_allocation(omega, costs, {"lat": 17.0})
    assert one.totals["energy"] == 85.0
    both = solve_allocation(omega, costs, {"lat": 17.0, "energy": 60.0})
    assert both.totals["lat"] <= 17.0 and both.totals["energy"] <= 60.0
    assert both.objective > one.objective
    # brute force over the 27 choices
    best = min(sum(omega[l, c[l]] for l in range(3))
               for c in np.ndindex(3, 3, 3)
               if sum(costs["lat"][l, c[l]] for l in range(3)) <= 17.0
               and sum(costs["energy"][l, c[l]] for l in range(3)) <= 60.0)
    assert both.objective == best


def test_infeasible_pairs_are_never_chosen():
    omega, costs = _inst()
    costs["lat"][1, 0] = np.inf  # conv2 cannot run w8a8
    for m in ("milp", "greedy", "dp"):
        a = solve_allocation(omega, costs, {"lat": 1e9}, m)
        assert a.choice[1] != 0 and math.isfinite(a.totals["lat"])


# --- errors ----------------------------------------------------------------------------------
def test_infeasible_budget_names_budget_and_minimum():
    omega, costs = _inst()
    costs["lat"][2, 2] = np.inf  # the minimum is over *feasible* options: 2 + 4 + 2
    msg = _err(r"budgets\['lat'\]", omega, costs, {"lat": 7.5, "energy": 1e9})
    assert "minimum achievable total of 'lat' is 8.0" in msg and "7.5" in msg
    msg = _err(r"budgets\['energy'\]", omega, costs, {"lat": 1e9, "energy": 10.0})
    assert "is 42.5" in msg  # 20 + 2.5 + 20 (fc's cheapest feasible energy: option 1)


def test_jointly_infeasible_budgets():
    # each budget alone is achievable (option 0 for "a", option 1 for "b"), both together not
    costs = {"a": np.array([[0.0, 1.0]]), "b": np.array([[1.0, 0.0]])}
    msg = _err("cannot all be met at once", np.zeros((1, 2)), costs, {"a": 0.0, "b": 0.0})
    assert "'a'" in msg and "'b'" in msg


def test_layer_without_feasible_option_is_named():
    omega, costs = _inst()
    omega[1, 0] = np.inf
    costs["energy"][1, 1:] = np.inf
    msg = _err("layer 1", omega, costs, {"lat": 100.0}, layer_names=NAMES)
    assert "'conv2'" in msg and "no feasible option" in msg


@pytest.mark.parametrize("mutate, match", [
    (lambda o, c, b: (o[:, :2], c, b), r"costs\['lat'\] has shape \(3, 3\); expected \(3, 2\)"),
    (lambda o, c, b: (o[0], c, b), r"omega has shape \(3,\)"),
    (lambda o, c, b: (np.where(o == 2.0, np.nan, o), c, b), r"omega\[1, 1\] is nan \(layer 1"),
    (lambda o, c, b: (np.where(o == 2.0, -np.inf, o), c, b), r"omega\[1, 1\] is -inf"),
    (lambda o, c, b: (o, {**c, "lat": -c["lat"]}, b), r"costs\['lat'\]\[0, 0\] is -8.0 .*expected >= 0"),
    (lambda o, c, b: (o, {**c, "lat": c["lat"] * np.nan}, b), r"costs\['lat'\]\[0, 0\] is nan"),
    (lambda o, c, b: (o, c, {"latency": 3.0}), r"budgets: unknown resource 'latency'"),
    (lambda o, c, b: (o, c, {"lat": float("nan")}), r"budgets\['lat'\] is NaN"),
    (lambda o, c, b: (o, c, {"lat": "x"}), r"budgets\['lat'\] is 'x'"),
])
def test_bad_inputs(mutate, match):
    omega, costs = _inst()
    o, c, b = mutate(omega, costs, {"lat": 20.0})
    _err(match, o, c, b)


def test_bad_arguments():
    omega, costs = _inst()
    _err("method='ilp'", omega, costs, {"lat": 20.0}, "ilp")
    _err("takes exactly one budget", omega, costs, {"lat": 20.0, "energy": 100.0}, "greedy")
    _err("takes exactly one budget", omega, costs, {}, "dp")
    _err("time_limit_s applies to method='milp'", omega, costs, {"lat": 20.0}, "greedy", time_limit_s=1.0)
    _err("time_limit_s is -1", omega, costs, {"lat": 20.0}, time_limit_s=-1)
    _err("dp_resolution applies", omega, costs, {"lat": 20.0}, dp_resolution=1.0)
    _err("dp_resolution is 0", omega, costs, {"lat": 20.0}, "dp", dp_resolution=0.0)
    _err("layer_names has 2 entries; expected 3", omega, costs, {}, layer_names=["a", "b"])
    _err("'a' appears twice", omega, costs, {}, layer_names=["a", "b", "a"])
    _err("option_labels has 1 entries; expected 3", omega, costs, {}, option_labels=["x"])
    _err(r"ties\[0\]: unknown layer name 'nope'", omega, costs, {}, ties=[["nope", 1]], layer_names=NAMES)
    _err(r"ties\[1\]: layer index 7 out of range", omega, costs, {}, ties=[[0, 1], [2, 7]])
    _err(r"ties\[0\]: True", omega, costs, {}, ties=[[True, 1]])


# --- ties ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["milp", "greedy", "dp"])
def test_ties_respected(method):
    omega, costs = _inst()
    free = solve_allocation(omega, costs, {"lat": 17.0}, method)
    assert free.choice[0] != free.choice[2]
    a = solve_allocation(omega, costs, {"lat": 17.0}, method, ties=[["conv1", "fc"]], layer_names=NAMES)
    assert a.choice[0] == a.choice[2] and a.totals["lat"] <= 17.0
    assert a.ties == ((0, 2),)
    # brute force over tie-respecting choices
    best = min(omega[0, k] + omega[1, j] + omega[2, k] for k in range(3) for j in range(3)
               if costs["lat"][0, k] + costs["lat"][1, j] + costs["lat"][2, k] <= 17.0)
    if method != "greedy":
        assert a.objective == best
    else:
        assert best <= a.objective <= best + a.gap_bound + 1e-12


def test_overlapping_ties_merge_and_common_feasibility():
    omega, costs = _inst()
    p = validate_problem(omega, costs, {}, ties=[[0, 1], [1, 2]])
    assert p.ties == ((0, 1, 2),)
    costs["lat"][0, 0] = np.inf
    a = solve_allocation(omega, costs, {}, ties=[[0, 2]])
    assert a.choice[0] == a.choice[2] == 1  # option 0 is out for the whole group
    costs["lat"][2, 1:] = np.inf
    msg = _err("no option feasible for all of them", omega, costs, {}, ties=[[0, 2]], layer_names=NAMES)
    assert "'conv1'" in msg and "'fc'" in msg


# --- JSON ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["milp", "greedy", "dp"])
def test_json_round_trip(method, tmp_path):
    rng = np.random.default_rng(3)
    omega = rng.normal(size=(6, 4)) * 1e-3
    costs = {"lat": rng.random((6, 4)) * 1e5, "size_bits": rng.random((6, 4)) * 1e7}
    costs["size_bits"][2, 3] = np.inf
    b = float(costs["lat"].min(axis=1).sum() + 0.3 * np.ptp(costs["lat"].sum(axis=0)))
    a = solve_allocation(omega, costs, {"lat": b}, method, ties=[[0, 5]],
                         option_labels=[Option(8, 8), Option(4, 8), Option(4, 4, "apot", "int"), "bin"])
    text = a.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    back = Allocation.from_json(text)
    assert back == a
    assert back.objective.hex() == a.objective.hex()
    path = tmp_path / "alloc.json"
    a.save(path)
    assert Allocation.load(path) == a


def test_json_non_finite_and_none():
    a = Allocation(choice=(0, 1), objective=-1.5, totals={"lat": 3.0, "e": 0.1},
                   budgets={"lat": math.inf}, method="milp", status="time_limit",
                   gap_bound=math.inf, lp_bound=None, time_s=0.25, layer_names=("a", "b"),
                   option_labels=("w8", "w4"))
    doc = json.loads(a.to_json())
    assert doc["budgets"] == {"lat": "inf"} and doc["gap_bound"] == "inf" and doc["lp_bound"] is None
    assert Allocation.from_json(a.to_json()) == a
    with pytest.raises(AllocationError, match="format"):
        Allocation.from_json("{}")
    with pytest.raises(AllocationError, match="out of range"):
        Allocation(choice=(0, 2), objective=0, totals={}, budgets={}, method="milp",
                   status="optimal", gap_bound=0, lp_bound=0, time_s=0,
                   layer_names=("a", "b"), option_labels=("w8", "w4"))


# --- MILP time limit -------------------------------------------------------------------------
def test_time_limit_passes_through():
    rng = np.random.default_rng(0)
    L, K = 54, 16
    omega = rng.random((L, K))
    costs = {"lat": rng.random((L, K)), "energy": rng.random((L, K))}
    budgets = {r: float(a.min(axis=1).sum() + 0.4 * (a.max(axis=1) - a.min(axis=1)).sum())
               for r, a in costs.items()}
    try:
        a = solve_allocation(omega, costs, budgets, time_limit_s=1e-3)
    except AllocationError as err:  # stopped before any incumbent: said so
        assert "time_limit_s=0.001" in str(err)
        return
    assert a.status in ("optimal", "time_limit")
    assert a.gap_bound >= 0
    if a.status == "optimal":
        assert a.gap_bound == 0.0
    for r, b in budgets.items():
        assert a.totals[r] <= b * (1 + 1e-9)


# --- pareto ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["milp", "dp", "greedy"])
def test_pareto_sweep(method):
    rng = np.random.default_rng(7)
    L, K = 6, 4
    omega = np.sort(rng.random((L, K)), axis=1)  # wider = more costly, less sensitive
    costs = {"lat": np.sort(rng.integers(1, 50, size=(L, K)), axis=1)[:, ::-1].astype(float)}
    pts = pareto_sweep(omega, costs, "lat", n_points=12, method=method)
    lo = float(costs["lat"].min(axis=1).sum())
    top = solve_allocation(omega, costs, {})
    assert len({p.choice for p in pts}) == len(pts) >= 2
    tot = [p.totals["lat"] for p in pts]
    assert tot == sorted(tot)
    assert tot[0] == lo
    if method != "greedy":
        objs = [p.objective for p in pts]
        assert objs == sorted(objs, reverse=True)
        assert objs[-1] == top.objective
    assert all(p.method == method for p in pts)


def test_pareto_sweep_with_other_budget():
    omega, costs = _inst()
    pts = pareto_sweep(omega, costs, "lat", n_points=8, other_budgets={"energy": 90.0})
    assert pts and all(p.totals["energy"] <= 90.0 and set(p.budgets) == {"lat", "energy"} for p in pts)
    with pytest.raises(AllocationError, match="n_points"):
        pareto_sweep(omega, costs, "lat", n_points=1)
    with pytest.raises(AllocationError, match="budget_resource='x'"):
        pareto_sweep(omega, costs, "x")


# --- layering --------------------------------------------------------------------------------
def test_quant_allocate_imports_neither_torch_nor_hwsim():
    code = ("import sys, quant.allocate; "
            "bad = [m for m in ('torch', 'hwsim') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
