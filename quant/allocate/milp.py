"""Exact allocation as a 0-1 integer program, solved by HiGHS through `scipy.optimize.milp`.

The mixed-precision integer program of HAWQ-V3 (Yao et al., "HAWQ-V3: Dyadic Neural Network
Quantization", ICML 2021) and of Hubara et al. ("Improving Post Training Neural Quantization:
Layer-wise Calibration and Integer Programming", ICML 2021), with any number of budgets:

    minimize    sum_{l,k} omega[l,k] x[l,k]
    subject to  sum_k x[l,k] = 1                        for every layer l
                sum_{l,k} cost_r[l,k] x[l,k] <= B_r      for every finite budget r
                x[a,k] = x[b,k]                         for tied layers a, b and every option k
                sum_{k: key[k]=v} x[a,k] = sum_{k: key[k]=v} x[b,k]
                                                        for keyed-tied a, b and every key value v
                x[l,k] in {0, 1}

A variable exists only for a feasible pair (finite omega and every cost finite; for a tied layer,
feasible for the whole group): infeasible pairs are left out, never priced high.

Numerics. HiGHS's tolerances are absolute (dual feasibility 1e-7, MIP absolute gap 1e-6), so
rows are conditioned before solving, which changes no solution: per layer, the smallest
feasible omega and cost are subtracted (a constant, since exactly one option is taken), the
objective is scaled so its largest coefficient is 1e6, and each budget row is scaled so its
largest coefficient (or its remaining slack) is 1. ``mip_rel_gap = 0`` (HiGHS's default is 1e-4)
and ``mip_abs_gap = 0`` make the search exact; the objective and totals reported are recomputed
from the chosen options. HiGHS's feasibility tolerance (set to 1e-9 on the scaled rows) can
accept a choice whose exact total (``math.fsum``) exceeds a budget by a rounding error; such a
choice is then cut off (a no-good cut: the sum of its L variables <= L - 1) and the program
solved again, so budgets hold exactly. ``time_limit_s`` bounds all the solves together.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

_OBJ_SCALE = 1e6
_TOL = 1e-9
_MAX_CUTS = 50  # re-solves after answers over a budget within HiGHS's tolerance


@dataclass(frozen=True)
class MilpResult:
    choice: np.ndarray | None  # (L,) option per layer; None if no feasible point was found
    status: str  # "optimal", "time_limit", "infeasible", or "error: <HiGHS message>"
    dual_bound: float | None  # proven lower bound on the objective (original units)
    message: str


@contextlib.contextmanager
def native_stdout_silenced():
    """File descriptor 1 sent to /dev/null while HiGHS runs: its MIP solver prints debugging
    lines (``HighsMipSolverData::transformNewIntegerFeasibleSolution ...``) from compiled code
    with ``disp`` off, which no option silences. Python's own ``sys.stdout`` is flushed first;
    where stdout has no file descriptor (an embedding host), nothing is redirected."""
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def solve_milp(omega: np.ndarray, feasible: np.ndarray, rows: Sequence[tuple[np.ndarray, float]],
               groups: Sequence[Sequence[int]], time_limit_s: float | None,
               keyed: Sequence[tuple[Sequence[int], Sequence[Hashable]]] = ()) -> MilpResult:
    """Solve the program above. ``omega`` (L, K); ``feasible`` (L, K) bool, at least one True
    per layer; ``rows``: (cost (L, K), finite budget) per constraint; ``groups``: tied layers
    (same option index); ``keyed``: (members, key per option) of keyed ties (same key)."""
    L, K = omega.shape
    ls, ks = np.nonzero(feasible)
    n = ls.size
    var = np.full((L, K), -1, dtype=np.int64)
    var[ls, ks] = np.arange(n)

    w = np.where(feasible, omega, np.inf)
    w_off = w.min(axis=1)
    obj = omega[ls, ks] - w_off[ls]
    span = float(obj.max()) if n else 0.0
    scale = _OBJ_SCALE / span if span > 0 else 1.0
    if not math.isfinite(scale):  # span subnormal: the options are equally good anyway
        scale = 1.0
    obj = obj * scale

    r_idx: list[np.ndarray] = [ls]  # one-hot rows: row l
    c_idx: list[np.ndarray] = [np.arange(n)]
    vals: list[np.ndarray] = [np.ones(n)]
    lo: list[float] = [1.0] * L
    hi: list[float] = [1.0] * L
    row = L
    for cost, budget in rows:
        cm = np.where(feasible, cost, np.inf)
        c_off = cm.min(axis=1)
        coef = cost[ls, ks] - c_off[ls]
        slack = budget - math.fsum(c_off.tolist())
        s = max(float(coef.max()) if n else 0.0, slack)
        c_max = np.where(feasible, cost, -np.inf).max(axis=1)
        if not coef.any() or slack >= math.fsum((c_max - c_off).tolist()):
            continue  # the row cannot bind
        s = s if s > 0 else 1.0
        nz = np.flatnonzero(coef)
        r_idx.append(np.full(nz.size, row))
        c_idx.append(nz)
        vals.append(coef[nz] / s)
        lo.append(-np.inf)
        hi.append(slack / s)
        row += 1
    for group in groups:  # x[a,k] - x[b,k] = 0 for consecutive members
        for a, b in zip(group[:-1], group[1:]):
            for k in np.flatnonzero(feasible[a]).tolist():
                r_idx.append(np.array([row, row]))
                c_idx.append(np.array([var[a, k], var[b, k]]))
                vals.append(np.array([1.0, -1.0]))
                lo.append(0.0)
                hi.append(0.0)
                row += 1
    for members, key in keyed:  # per key value v: sum_{key=v} x[a,.] - sum_{key=v} x[b,.] = 0
        values = list(dict.fromkeys(key))
        for a, b in zip(members[:-1], members[1:]):
            for v in values:
                ka = [k for k in np.flatnonzero(feasible[a]).tolist() if key[k] == v]
                kb = [k for k in np.flatnonzero(feasible[b]).tolist() if key[k] == v]
                if not ka and not kb:
                    continue
                r_idx.append(np.full(len(ka) + len(kb), row))
                c_idx.append(np.array([var[a, k] for k in ka] + [var[b, k] for k in kb], dtype=np.int64))
                vals.append(np.array([1.0] * len(ka) + [-1.0] * len(kb)))
                lo.append(0.0)
                hi.append(0.0)
                row += 1
    options: dict[str, object] = {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0,
                                  "primal_feasibility_tolerance": _TOL,
                                  "mip_feasibility_tolerance": _TOL}
    offset = math.fsum(w_off.tolist())
    t_end = None if time_limit_s is None else time.perf_counter() + float(time_limit_s)
    for _ in range(_MAX_CUTS + 1):
        if t_end is not None:
            options["time_limit"] = max(t_end - time.perf_counter(), 1e-3)
        A = sparse.csr_array((np.concatenate(vals), (np.concatenate(r_idx), np.concatenate(c_idx))),
                             shape=(row, n))
        with warnings.catch_warnings(), native_stdout_silenced():
            # mip_abs_gap & co. reach HiGHS verbatim, with a warning
            warnings.filterwarnings("ignore", message="Unrecognized options", category=RuntimeWarning)
            res = milp(obj, integrality=np.ones(n), bounds=Bounds(0, 1),
                       constraints=LinearConstraint(A, np.asarray(lo), np.asarray(hi)),
                       options=options)
        dual = getattr(res, "mip_dual_bound", None)
        dual_bound = None if dual is None or not np.isfinite(dual) else float(dual) / scale + offset
        if res.x is None:
            status = {1: "time_limit", 2: "infeasible"}.get(res.status, f"error: {res.message}")
            return MilpResult(None, status, dual_bound, str(res.message))
        x = np.asarray(res.x)
        vmat = np.where(var >= 0, x[np.maximum(var, 0)], -np.inf)
        choice = vmat.argmax(axis=1)
        status = "optimal" if res.status == 0 else ("time_limit" if res.status == 1
                                                     else f"error: {res.message}")
        over = any(math.fsum(cost[np.arange(L), choice].tolist()) > budget for cost, budget in rows)
        if not over:
            return MilpResult(choice, status, dual_bound, str(res.message))
        # within HiGHS's tolerance but over a budget in exact terms: cut exactly this choice off
        # (sum of its L variables <= L - 1) and solve again
        r_idx.append(np.full(L, row))
        c_idx.append(var[np.arange(L), choice])
        vals.append(np.ones(L))
        lo.append(-np.inf)
        hi.append(L - 1.0)
        row += 1
    return MilpResult(None, f"error: still over a budget after {_MAX_CUTS} cuts", None,
                      "HiGHS answers keep exceeding a budget by its feasibility tolerance")
