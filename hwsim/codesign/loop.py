"""The co-design loop: sensitivity x accelerator cost -> per-layer precisions -> integer program
-> verified and simulated.

    result = codesign("mobilenet_v2", accel, options, {"latency_cycles": "0.5x"})

Steps (`prepare` does 1-4 once; `CodesignProblem.solve` does 5-7 per budget):

1. quantize the model uniformly at the ``base`` option, lower it, and take
   `program_workload(program)`: the priced layers (conv / linear nodes; their names are the quant
   record names);
2. omega (L, K) from `quant.sensitivity.sensitivity_table` over those layers and the options;
3. costs (per resource, (L, K); ``inf`` = the accelerator cannot run the pair) from
   `AcceleratorCosts(accel, workload).price`, and the unit every pair is routed to;
4. keyed ties: layers whose input is the same record (``details["act_source"]``) must choose
   options with equal ``(act_format, act_bits)`` -- one record has one activation format
   (HAWQ-V3 ties the activation bits at residual adds the same way);
5. budgets (absolute, or relative to the uniform-base network: ``"0.5x"`` / ``("x", 0.5)``; see
   `hwsim.codesign.budgets`) -> `quant.allocate.solve_allocation` (an infeasible budget is its
   `AllocationError`, naming the budget and the minimum achievable total, plus the ratios here);
6. the chosen options -> QuantConfig (`hwsim.codesign.realize`) -> quantize -> lower -> verify on
   the evaluation images -> `cost_network(accel, program_workload(program))`;
7. `CodesignResult`: predicted totals (the allocation's) beside the simulated ones.

Multipoint options (``Option(b, a, "multipoint", weight_points=p)``) sit beside the uniform ones:
a layer of K channels at such an option has ``R = option.rows(K)`` weight rows, ``R - K`` extra
b-bit points given to its channels by output error on the calibration images; step 2 scores
exactly those weights (`quant.calibrate.multipoint.LayerPointFits`, shared by the sensitivity
table and the realization), step 3 prices the layer's integer form with R rows on the unit its
b-bit int weights go to (`hwsim.codesign.costs`), step 6 realizes the same points. See
`hwsim.codesign.realize` for when a layer could end with fewer rows than priced
(``CodesignResult.short_rows``; then its simulated cost is below the prediction).

Predicted == simulated. The allocator's tables and `cost_network` are the same analytical model
of the same layer shapes at the same widths, so per layer and in total the figures are equal
(latency in cycles exactly; energy in pJ exactly when both are summed with ``math.fsum`` --
``NetworkCost.energy_total_pj`` is numpy's sum and may differ in the last bits).
Nodes the cost model does not price (adds, pooling, flatten, the input: `uncosted_ops`) are in
neither figure; ``CodesignResult.uncosted`` lists them. Every priced layer of the program is an
allocated layer (both come from `program_workload`); a priced node that is not a conv / linear
record (e.g. a matmul of activations) is a `CodesignError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hwsim.codesign.budgets import absolute_budgets
from hwsim.codesign.costs import AcceleratorCosts
from hwsim.codesign.realize import (MULTIPOINT_MAX_POINTS, CodesignError, Realization, act_fmt,
                                    base_config, option_params, point_fits, realize,
                                    weight_fmt,
                                    sensitivity_formats)
from quant.allocate import Allocation, AllocationError, Option, solve_allocation, validate_problem
from quant.allocate.ties import Tie
from quant.errors import QuantError


def _act_key(o: Option) -> tuple[str, int]:
    """The tie key: one record has one activation format (family and width)."""
    return (o.act_format, o.act_bits)


@dataclass
class CodesignResult:
    """One co-designed network.

    Attributes:
        allocation: the solver's `Allocation` (choice per layer, predicted totals, status).
        options: the K options offered.
        layers: the allocated (= priced) layers, program order.
        chosen: layer -> chosen `Option`.
        units: layer -> the accelerator unit it runs on (the allocator's routing; equal to the
            simulated ``per_layer["unit"]``).
        budgets: resource -> absolute limit solved under; ``ratios``: the relative ones given.
        base_totals: resource -> the uniform-base network's total (the reference of ratios).
        predicted: resource -> the allocation's total (cycles, pJ, bytes, bits, bit-ops).
        realization: the quantized model, program, workload, `NetworkCost` and verification.
        ties: the keyed ties the allocation obeyed.
        uncosted: op -> why the cost model leaves it out (in neither predicted nor simulated).
        costs: the allocator's tables, resource -> (L, K).
    """

    allocation: Allocation
    options: tuple[Option, ...]
    layers: tuple[str, ...]
    chosen: dict[str, Option]
    units: dict[str, str]
    budgets: dict[str, float]
    ratios: dict[str, float]
    base: Option
    base_totals: dict[str, float]
    predicted: dict[str, float]
    realization: Realization
    ties: tuple[Tie, ...] = ()
    uncosted: dict[str, str] = field(default_factory=dict)
    accelerator: str = ""
    costs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def simulated(self) -> Any:
        """The simulated `hwsim.cost.NetworkCost` of the realized program."""
        return self.realization.cost

    @property
    def program(self) -> Any:
        return self.realization.program

    @property
    def fidelity(self) -> dict[str, float | None]:
        """SQNR (dB) and top-1 agreement of the integer program with the float model."""
        return self.realization.fidelity

    @property
    def rows(self) -> dict[str, tuple[int, int]]:
        """Per multipoint layer, (priced, realized) weight rows (`Realization.rows`)."""
        return dict(self.realization.rows)

    @property
    def short_rows(self) -> dict[str, tuple[int, int]]:
        """Multipoint layers realized with fewer rows than priced (their simulated cost is not
        the predicted one); empty in the usual case."""
        return self.realization.short_rows

    def predicted_vs_simulated(self) -> dict[str, dict[str, float | bool]]:
        """Per resource: ``predicted`` (the allocation's total), ``simulated`` (the realized
        program's, `Realization.totals`), ``equal`` (exactly) and ``max_layer_diff`` (largest
        per-layer absolute difference)."""
        sim = self.realization.per_layer()
        order = {n: i for i, n in enumerate(self.allocation.layer_names)}
        choice = self.allocation.choice
        out: dict[str, dict[str, float | bool]] = {}
        for r, pred in self.predicted.items():
            if r not in sim:
                continue
            diffs = [abs(sim[r][i] - float(self.costs[r][order[l.name], choice[order[l.name]]]))
                     for i, l in enumerate(self.realization.workload)] if r in self.costs else []
            s = math.fsum(sim[r])
            out[r] = {"predicted": pred, "simulated": s, "equal": pred == s,
                      "max_layer_diff": max(diffs) if diffs else float("nan")}
        return out

    def plan(self) -> dict[str, dict[str, Any]]:
        """Layer -> option fields (the ``layers`` section of a hwsim precision plan)."""
        return {n: o.to_dict() for n, o in self.chosen.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able plan: ``{"layers": {name: {weight_bits, act_bits, weight_format,
        act_format[, weight_points]}}, "allocation": {...}}`` (``weight_points`` for multipoint
        options: `Option.to_dict`); ``allocation`` is the
        `Allocation` JSON plus a ``codesign`` section (accelerator, units, budgets, base totals,
        predicted vs simulated, fidelity, multipoint rows priced and realized), informative
        only."""
        alloc = json.loads(self.allocation.to_json())
        pvs = {r: {k: (v if not isinstance(v, float) or math.isfinite(v) else repr(v))
                   for k, v in d.items()} for r, d in self.predicted_vs_simulated().items()}
        fid = {k: (v if not isinstance(v, float) or math.isfinite(v) else repr(v))
               for k, v in self.fidelity.items()}
        alloc["codesign"] = {
            "accelerator": self.accelerator, "base": self.base.to_dict(),
            "units": dict(self.units), "ratios": dict(self.ratios),
            "base_totals": dict(self.base_totals), "predicted_vs_simulated": pvs,
            "fidelity": fid, "uncosted": dict(self.uncosted),
            "multipoint_rows": {n: {"priced": r[0], "realized": r[1]}
                                for n, r in self.rows.items()},
            "ties": [{"layers": [self.layers[i] for i in t.layers], "key": "(act_format, act_bits)"}
                     for t in self.ties],
        }
        return {"layers": self.plan(), "allocation": alloc}

    def save(self, path: str | Path) -> None:
        """Write `to_dict` as JSON (a precision plan hwsim's ``--plan`` can read)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n",
                              encoding="utf-8")


@dataclass
class CodesignProblem:
    """Steps 1-4 of the loop, done once; `solve` per budget. See the module docstring."""

    model: Any
    accel: Any
    options: tuple[Option, ...]
    base: Option
    calib: Any
    eval_images: Any
    layers: tuple[str, ...]
    act_source: dict[str, str]
    sensitivity: Any  # quant.sensitivity.SensitivityTable
    costs: dict[str, np.ndarray]
    units: np.ndarray  # (L, K) unit names
    base_costs: dict[str, np.ndarray]  # resource -> (L,) at the base option
    base_realization: Realization
    ties: tuple[Tie, ...]
    seed: int = 0
    #: the multipoint fits (`quant.calibrate.multipoint.LayerPointFits`) the sensitivity table
    #: scored and the realizations use; None without multipoint options
    points: Any = None

    @property
    def omega(self) -> np.ndarray:
        return np.asarray(self.sensitivity.omega)

    @property
    def base_totals(self) -> dict[str, float]:
        """Resource -> the uniform-base network's total, as the allocator prices it."""
        return {r: math.fsum(v.tolist()) for r, v in self.base_costs.items()}

    def subset(self, options: Sequence[Option]) -> "CodesignProblem":
        """The same problem offering only ``options`` (some of its options, any order; the base
        need not be among them): sensitivity columns, costs, units and ties of those options.
        The sensitivity table's ``details`` stay those of the full table (informative)."""
        from quant.sensitivity import SensitivityTable

        options = tuple(options)
        missing = [o.label for o in options if o not in self.options]
        if not options or missing:
            raise CodesignError(f"subset: options {missing or '[]'} are not among the problem's "
                                f"options {[o.label for o in self.options]}")
        idx = [self.options.index(o) for o in options]
        t = self.sensitivity
        table = SensitivityTable(np.asarray(t.omega)[:, idx], tuple(t.layer_names), options,
                                 t.method, dict(t.details))
        ties = tuple(Tie.by(tie.layers, options, _act_key) for tie in self.ties)
        return dataclasses.replace(self, options=options, sensitivity=table,
                                   costs={r: v[:, idx] for r, v in self.costs.items()},
                                   units=self.units[:, idx], ties=ties)

    def retarget(self, accel: Any) -> "CodesignProblem":
        """The same problem (model, options, sensitivity, multipoint fits) priced on another
        accelerator (an `Accelerator` or a config path): steps 3-4 again, no new sensitivity."""
        from hwsim.arch import load_accelerator
        from hwsim.cost import cost_network

        if isinstance(accel, (str, Path)):
            accel = load_accelerator(accel)
        real = self.base_realization
        model_costs = AcceleratorCosts(accel, real.workload)
        costs = {r: np.asarray(v, dtype=np.float64)
                 for r, v in model_costs.price(self.layers, self.options).items()}
        units = np.asarray(model_costs.last.unit)
        base_costs = {r: np.asarray(v, dtype=np.float64)[:, 0]
                      for r, v in model_costs.price(self.layers, [self.base]).items()}
        base_real = dataclasses.replace(real, cost=cost_network(accel, real.workload))
        return dataclasses.replace(self, accel=accel, costs=costs, units=units,
                                   base_costs=base_costs, base_realization=base_real)

    def min_total(self, resource: str) -> float:
        """The least achievable total of ``resource`` under the ties (every layer cheapest)."""
        p = validate_problem(self.omega, self.costs, {}, ties=self.ties, layer_names=self.layers)
        return p.min_total(resource)

    def allocate(self, budgets: Mapping[str, Any], solver: str = "milp",
                 **solver_options: Any) -> tuple[Allocation, dict[str, float], dict[str, float]]:
        """(allocation, absolute budgets, ratios) without realizing it."""
        limits, ratios = absolute_budgets(budgets, self.base_totals)
        try:
            a = solve_allocation(self.omega, self.costs, limits, solver, ties=self.ties,
                                 layer_names=self.layers, option_labels=self.options,
                                 **solver_options)
        except AllocationError as err:
            base = self.base_totals
            rel = "; ".join(f"{r}: budget {limits[r] / base[r]:.4g}x, minimum "
                            f"{self.min_total(r) / base[r]:.4g}x of uniform {self.base.label}"
                            for r in limits if base.get(r))
            raise AllocationError(f"{err} ({rel})" if rel else str(err)) from None
        return a, limits, ratios

    def solve(self, budgets: Mapping[str, Any], solver: str = "milp", *, verify: bool = True,
              **solver_options: Any) -> CodesignResult:
        """Steps 5-7: allocate under ``budgets``, realize, verify (on ``eval_images`` unless
        ``verify=False``) and simulate."""
        a, limits, ratios = self.allocate(budgets, solver, **solver_options)
        chosen = {n: self.options[k] for n, k in zip(self.layers, a.choice)}
        return self._result(a, chosen, limits, ratios, verify)

    def _result(self, a: Allocation, chosen: dict[str, Option], limits: dict[str, float],
                ratios: dict[str, float], verify: bool) -> CodesignResult:
        from hwsim.workloads.program import uncosted_ops

        real = realize(self.model, self.accel, chosen, self.act_source,
                       base_config(self.base, self.seed), self.calib,
                       self.eval_images if verify else None, points=self.points)
        units = {n: str(self.units[l, k]) for l, (n, k) in enumerate(zip(self.layers, a.choice))}
        sim_units = dict(zip(real.cost.per_layer["name"], real.cost.per_layer["unit"]))
        bad = [n for n in units if sim_units.get(n) != units[n]]
        if bad:
            raise CodesignError(f"layer {bad[0]!r}: the allocator routed it to {units[bad[0]]!r}, "
                                f"the simulation to {sim_units.get(bad[0])!r}")
        return CodesignResult(
            allocation=a, options=self.options, layers=self.layers, chosen=chosen, units=units,
            budgets=limits, ratios=ratios, base=self.base, base_totals=self.base_totals,
            predicted=dict(a.totals), realization=real, ties=self.ties,
            uncosted=uncosted_ops(real.program), accelerator=str(self.accel.name),
            costs=self.costs)

    def uniform(self, option: Option, *, verify: bool = True) -> CodesignResult:
        """Every layer at ``option`` (one of the options), realized like a solved plan: a
        baseline with the same table entries (its budgets: none)."""
        if option not in self.options:
            raise CodesignError(f"uniform: {option.label} is not among the options "
                                f"{[o.label for o in self.options]}")
        k = self.options.index(option)
        L = len(self.layers)
        a = Allocation(choice=(k,) * L, objective=math.fsum(self.omega[:, k].tolist()),
                       totals={r: math.fsum(v[:, k].tolist()) for r, v in self.costs.items()},
                       budgets={}, method="uniform", status="fixed", gap_bound=0.0,
                       lp_bound=None, time_s=0.0, layer_names=self.layers,
                       option_labels=tuple(o.label for o in self.options))
        return self._result(a, {n: option for n in self.layers}, {}, {}, verify)


def _load_model(model: Any, calib: Any, eval_images: Any) -> tuple[Any, Any, Any]:
    if isinstance(model, str):
        from hwsim import zoo
        from hwsim.flows import ZOO_MODELS

        if model not in ZOO_MODELS:
            raise CodesignError(f"unknown model {model!r}; built-in models: {', '.join(ZOO_MODELS)}")
        net = getattr(zoo, model)()
        calib = zoo.sample_images("calib") if calib is None else calib
        eval_images = zoo.sample_images("eval") if eval_images is None else eval_images
        model = net
    elif calib is None:
        raise CodesignError("codesign: a torch.nn.Module needs calib images (float (N, C, H, W))")
    model.eval()
    return model, calib, eval_images


def prepare(model: Any, accel: Any, options: Sequence[Option], *,
            sensitivity: str = "empirical_fisher", base: Option = Option(8, 8), calib: Any = None,
            eval_images: Any = None, seed: int = 0,
            sensitivity_options: Mapping[str, Any] | None = None) -> CodesignProblem:
    """Steps 1-4 (see the module docstring). ``model``: a built-in model name (its calibration
    and evaluation images by default) or a float ``torch.nn.Module`` (``calib`` required);
    ``accel``: an `Accelerator` or a config path."""
    from hwsim.arch import load_accelerator
    from quant.sensitivity import sensitivity_table

    if isinstance(accel, (str, Path)):
        accel = load_accelerator(accel)
    options = tuple(options)
    if not options or not all(isinstance(o, Option) for o in options):
        raise CodesignError("codesign: options must be a non-empty sequence of quant.allocate.Option")
    for o in options + (base,):
        act_fmt(o.act_format, o.act_bits)  # int activations only
        if o.weight_format not in ("int", "apot", "binary", "multipoint"):
            raise CodesignError(f"option {o.label}: weight_format {o.weight_format!r}; the loop "
                                f"realizes 'int', 'apot', 'binary' and 'multipoint' weights")
        if o.weight_format == "multipoint":
            if o.weight_points > MULTIPOINT_MAX_POINTS:
                raise CodesignError(f"option {o.label}: weight_points {o.weight_points:g}; a "
                                    f"channel takes at most {MULTIPOINT_MAX_POINTS} points")
            try:
                weight_fmt(o.weight_format, o.weight_bits)
            except QuantError as exc:
                raise CodesignError(f"option {o.label}: {exc}") from None
    if base.weight_format == "multipoint":
        raise CodesignError(f"base {base.label}: the base is a uniform int, apot or binary option "
                            f"(its workload, one row per channel, is what every option is priced "
                            f"on); put a multipoint option after it")
    model, calib, eval_images = _load_model(model, calib, eval_images)
    cfg = base_config(base, seed)
    base_real = realize(model, accel, {}, {}, cfg, calib, None)
    workload = base_real.workload
    names = tuple(l.name for l in workload)
    weighted = {r.name for r in base_real.quantized.graph if r.op in ("conv2d", "linear")}
    stray = [n for n in names if n not in weighted]
    if stray:
        raise CodesignError(f"priced nodes {stray[:4]} are not conv2d / linear records; the loop "
                            f"allocates conv / linear layers only")
    fits = None
    extra: dict[str, Any] = {}
    if any(o.weight_format == "multipoint" for o in options):
        fits = point_fits(base_real.quantized.graph, calib, names)

        def multipoint_params(layer: str, option: Option) -> Any:
            return option_params(fits, layer, option) if option.weight_format == "multipoint" \
                else None

        extra["weight_params"] = multipoint_params
    table = sensitivity_table(model, options, [calib], method=sensitivity, config=cfg,
                              layers=list(names), seed=seed,
                              **{"formats": sensitivity_formats(options), **extra,
                                 **(sensitivity_options or {})})
    if tuple(table.layer_names) != names:
        raise CodesignError(f"sensitivity layers {table.layer_names[:4]}... differ from the priced "
                            f"layers {names[:4]}...")
    act_source = dict(zip(names, table.details["act_source"]))
    model_costs = AcceleratorCosts(accel, workload)
    costs = {r: np.asarray(v, dtype=np.float64) for r, v in model_costs.price(names, options).items()}
    units = np.asarray(model_costs.last.unit)
    base_costs = {r: np.asarray(v, dtype=np.float64)[:, 0]
                  for r, v in model_costs.price(names, [base]).items()}
    readers: dict[str, list[str]] = {}
    for n in names:
        readers.setdefault(act_source[n], []).append(n)
    ties = tuple(Tie.by([names.index(n) for n in g], options, _act_key)
                 for g in readers.values() if len(g) > 1)
    return CodesignProblem(model=model, accel=accel, options=options, base=base, calib=calib,
                           eval_images=eval_images, layers=names, act_source=act_source,
                           sensitivity=table, costs=costs, units=units, base_costs=base_costs,
                           base_realization=base_real, ties=ties, seed=seed, points=fits)


def codesign(model: Any, accel: Any, options: Sequence[Option], budgets: Mapping[str, Any], *,
             sensitivity: str = "empirical_fisher", solver: str = "milp", base: Option = Option(8, 8),
             calib: Any = None, eval_images: Any = None, seed: int = 0) -> CodesignResult:
    """The whole loop: `prepare` then `CodesignProblem.solve` (see the module docstring).

    Args:
        model: a built-in model name ("mobilenet_v2", ...) or a float ``torch.nn.Module``.
        accel: an `hwsim.arch.Accelerator` or the path of its config.
        options: the per-layer choices (`quant.allocate.Option`; act_format "int").
        budgets: resource -> limit: absolute (cycles, pJ, bytes, bits, bit-ops) or relative to
            the uniform-``base`` network ("0.5x" or ("x", 0.5)).
        sensitivity: the `sensitivity_table` method.
        solver: "milp" (exact; any number of budgets), "greedy" or "dp" (one budget).
        base: the uniform option the workload is read from and ratios refer to.
        calib, eval_images: float images (N, C, H, W); a built-in model has its own defaults.
        seed: seeds the sensitivity estimate and calibration reservoirs.
    Raises:
        AllocationError: an infeasible budget (named, with the minimum achievable total).
        CodesignError: bad input, or a realized program that does not run at the plan's widths.
    """
    problem = prepare(model, accel, options, sensitivity=sensitivity, base=base, calib=calib,
                      eval_images=eval_images, seed=seed)
    return problem.solve(budgets, solver)
