"""The "light" and "advanced" post-training pipelines (``PipelineConfig``), as steps on a
``CalibrationState``.

Hubara et al., "Improving Post Training Neural Quantization: Layer-wise Calibration and Integer
Programming" (2020), Section 5:

1. **ranges**: activation ranges calibrated on all the calibration data (``PipelineConfig.
   ranges``; "auto" tries the percentile policy and the config's own ranges on the reference
   option -- after AdaQuant in "advanced" -- and keeps the one with the lower held-out KL),
   one state per candidate option (every allocated layer at that option);
2. **AdaQuant** ("advanced" only): each of those states calibrated layer by layer
   (``quant.calibrate.adaquant``);
3. **ΔL**: for every allocated layer l and option k, the loss increase when only layer l is
   taken from option k's state and every other layer from the state of the option with the
   most bits (the reference): mean KL(float softmax || quantized softmax) of the model output
   over the held-out samples, the same samples AdaQuant and bias tuning never train on.  A
   negative ΔL is kept, not clipped;
4. **integer program**: ``quant.solve_allocation`` minimizing the summed ΔL under the budgets,
   with keyed ties so that layers reading the same tensor agree on its activation width;
5. **BN re-estimation** (``quant.calibrate.bn_reestimate``) of the composed state, its
   statistics taken on the samples that are not held out;
6. **bias tuning** ("advanced" only, ``quant.calibrate.bias_tuning``).

Steps 3-4 need two or more options; otherwise the report says they were skipped.  Every step
produces ordinary weights, biases and ranges, so the result lowers to an ordinary integer
program.  The float graph captured at the start is the target of every step.

Unlike the paper, AdaQuant (per option state), BN re-estimation and bias tuning each replace
the state only if they lower the mean KL(float || quantized) on the held-out samples; the
report says "kept" or "not kept" with both values.  With a small calibration set these steps
can fit it and still hurt unseen inputs: on MobileNetV2 with 28 calibration images, BN
re-estimation matched every channel's mean and std on them and lowered the logit SQNR on the
evaluation images, so the pipeline asks the held-out samples (a quarter of the sample groups,
the same ones AdaQuant and bias tuning never train on) instead of trusting the step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from quant.allocate import Allocation, solve_allocation
from quant.allocate.protocol import Option
from quant.allocate.ties import Tie
from quant.calibrate.adaquant import adaquant_with_report
from quant.calibrate.bias_tuning import tune_biases_with_report
from quant.calibrate.bn_reestimate import reestimate_bn
from quant.calibrate.kl import kl_per_sample, log_probs
from quant.calibrate.pipeline_config import (RANGE_CHOICES, RANGE_PERCENTILE, PipelineConfig,
                                             parse_limit)
from quant.calibrate.samples import (check_groups, held_out_samples, stack_batches,
                                      training_samples)
from quant.calibrate.state import CalibrationState, with_layer
from quant.capture import capture
from quant.errors import CalibrationError, QuantError
from quant.execute import float_params, run_graph
from quant.graph import WEIGHTED_OPS, LayerGraph
from quant.sensitivity.options import act_source, resolve_format


@dataclass(frozen=True)
class StepReport:
    """One step of a pipeline: its name, wall time (s) and a line of what it did."""

    name: str
    seconds: float
    text: str


@dataclass(frozen=True)
class PipelineReport:
    """What a pipeline did.

    Attributes:
        pipeline: the ``PipelineConfig`` it ran.
        steps: one ``StepReport`` per step, in order.
        layers: the allocated conv2d / linear layers (graph order); ``omega`` rows.
        options: the candidate options; ``omega`` columns.
        omega: (layers, options) ΔL in nats per sample (None when not measured).
        allocation: the integer program's result (None with fewer than two options).
        held_out: indices of the held-out calibration samples (ΔL, AdaQuant, bias tuning).
        kl_held_out: mean KL(float || quantized) on the held-out samples of the returned
            model, nats per sample.
        seconds: wall time of the whole pipeline.
    """

    pipeline: PipelineConfig
    steps: tuple[StepReport, ...]
    layers: tuple[str, ...]
    options: tuple[Option, ...]
    omega: np.ndarray | None
    allocation: Allocation | None
    held_out: tuple[int, ...]
    kl_held_out: float
    seconds: float

    def to_text(self) -> str:
        lines = [f"{self.pipeline.name} pipeline: {self.seconds:.1f} s, held-out KL "
                 f"{self.kl_held_out:.4g} nats/sample on {len(self.held_out)} samples"]
        lines += [f"  {s.name:<18} {s.seconds:7.1f} s  {s.text}" for s in self.steps]
        return "\n".join(lines)


@dataclass(frozen=True)
class PipelineResult:
    """The calibrated state, the chosen option per allocated layer, and the report."""

    state: CalibrationState
    choice: Mapping[str, Option] = field(default_factory=dict)
    report: PipelineReport | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choice", MappingProxyType(dict(self.choice)))


def run_pipeline(model: nn.Module, config: Any, data: torch.Tensor | Iterable[torch.Tensor],
                 example_input: torch.Tensor | None = None) -> PipelineResult:
    """Run ``config.calibration`` (a ``PipelineConfig``, or "light" / "advanced") on ``model``.

    Args:
        model: float ``torch.nn.Module`` (eval mode), as ``quant.quantize`` takes.
        config: the ``QuantConfig``: formats of the layers and activations (its weight format
            is the format family template of the options), pinned layers
            (``layer_weight``), and ``calibration``.
        data: calibration inputs: a float tensor (N, ...) or batches of them; at least 4
            samples (sample groups) when ΔL is measured, so that a quarter can be held out.
        example_input: capture input; default the first calibration sample.
    Returns: a ``PipelineResult``; ``result.state.model()`` is the quantized model.
    Raises:
        QuantError: a bad config (named); CalibrationError: empty, non-finite or too little
            data; AllocationError: budgets no allocation meets (with the minimum).
    """
    from quant.model import QuantConfig, initial_state

    if not isinstance(config, QuantConfig):
        raise QuantError(f"run_pipeline: config must be a QuantConfig; got "
                         f"{type(config).__name__}")
    pipe = PipelineConfig.of(config.calibration)
    if pipe is None:
        raise QuantError("run_pipeline: config.calibration is 'none'; set 'light', 'advanced' "
                         "or a PipelineConfig")
    start = time.perf_counter()
    x = stack_batches(data, f"{pipe.name} pipeline")
    groups = check_groups(pipe.groups, x.shape[0], "PipelineConfig")
    held = held_out_samples(x.shape[0], pipe.seed, groups)
    options = pipe.options
    if len(options) >= 2 and held is None:
        raise CalibrationError(f"{pipe.name} pipeline: measuring ΔL needs at least 4 "
                               f"calibration samples (sample groups) to hold out a quarter; got "
                               f"{len(set(groups)) if groups else x.shape[0]}")
    example = x[:1] if example_input is None else example_input
    graph = capture(model, example)
    layers = tuple(r.name for r in graph if r.op in WEIGHTED_OPS
                   and r.name not in config.layer_weight)
    steps: list[StepReport] = []
    # one option: every allocated layer takes it, nothing to choose; none: the config's formats
    only = options[0] if len(options) == 1 else None
    if len(options) < 2:
        options = ()
    target = _log_probs(run_graph(graph, x, float_params(graph), keep=False)[graph.output_name])
    held_idx = held if held is not None else torch.arange(x.shape[0])
    guard = _HeldOut(x[held_idx], target[held_idx], held is not None)
    ref = _reference_option(options) if options else 0
    seconds = {"ranges": 0.0, "adaquant": 0.0}

    def calibrated(policy: str, opt: Option | None) -> tuple[CalibrationState, str]:
        """Ranges under ``policy`` with every allocated layer at ``opt`` (None: the config's
        formats), then AdaQuant ("advanced"; kept only if the held-out KL falls)."""
        t0 = time.perf_counter()
        base = _range_policy(config, graph, policy)
        cfg = base if opt is None else _option_config(base, graph, layers, opt)
        st = initial_state(model, cfg, [x], example)
        seconds["ranges"] += time.perf_counter() - t0
        if pipe.name != "advanced":
            return st, ""
        t0 = time.perf_counter()
        res = adaquant_with_report(st, x, mode=pipe.adaquant_mode, iters=pipe.adaquant_iters,
                                   seed=pipe.seed, reference=graph, groups=groups)
        st, verdict = guard.better(st, res.state)
        seconds["adaquant"] += time.perf_counter() - t0
        kept = sum(r.kept for r in res.report.layers)
        return st, (f"{opt.label if opt else 'config'} ({policy} ranges): {kept}/"
                    f"{len(res.report.layers)} layers improved, {verdict}")

    policies = RANGE_CHOICES if pipe.ranges == "auto" else (pipe.ranges,)
    tried = {p: calibrated(p, options[ref] if options else only) for p in policies}
    kls = {p: guard.kl(tried[p][0]) for p in policies}
    policy = min(policies, key=lambda p: (kls[p], policies.index(p)))
    states: list[CalibrationState] = [tried[policy][0]] * max(len(options), 1)
    texts = [tried[p][1] for p in policies]
    for k, opt in enumerate(options):
        if k != ref:
            states[k], text = calibrated(policy, opt)
            texts.append(text)
    steps.append(StepReport("ranges", seconds["ranges"], _ranges_text(policy, kls, guard)))
    if pipe.name == "advanced":
        steps.append(StepReport("adaquant", seconds["adaquant"],
                                f"{pipe.adaquant_mode}, {pipe.adaquant_iters} steps; "
                                + "; ".join(texts)))
    omega, allocation, choice = None, None, {}
    if options:
        t0 = time.perf_counter()
        omega = _measure_delta_loss(states, ref, layers, options, graph, x[held], target[held])
        steps.append(StepReport("delta_loss", time.perf_counter() - t0,
                                f"{len(layers)} layers x {len(options)} options on "
                                f"{len(held)} held-out samples; reference "
                                f"{options[ref].label}"))
        t0 = time.perf_counter()
        allocation = _allocate(omega, graph, layers, options, ref, pipe)
        choice = {name: options[k] for name, k in zip(layers, allocation.choice)}
        state = _compose(states, ref, graph, layers, allocation.choice)
        counts = {o.label: allocation.choice.count(k) for k, o in enumerate(options)}
        steps.append(StepReport("integer_program", time.perf_counter() - t0,
                                f"{allocation.method} {allocation.status}; "
                                + ", ".join(f"{n} x {lab}" for lab, n in counts.items() if n)
                                + "; " + ", ".join(f"{r} {allocation.totals[r]:.4g} <= "
                                                   f"{allocation.budgets[r]:.4g}"
                                                   for r in pipe.budgets)))
    else:
        state = states[0]
        steps.append(StepReport("integer_program", 0.0,
                                "skipped: nothing to choose ("
                                + (f"every layer {only.label})" if only else
                                   "the config's formats)")))

    t0 = time.perf_counter()
    fit_on = x if held is None else x[training_samples(x.shape[0], held)]
    state, verdict = guard.better(state, reestimate_bn(state, fit_on, reference=graph))
    steps.append(StepReport("bn_reestimate", time.perf_counter() - t0,
                            f"per-channel mean and std matched to the float model; {verdict}"))
    if pipe.name == "advanced":
        t0 = time.perf_counter()
        res = tune_biases_with_report(state, x, iters=pipe.bias_tuning_iters, seed=pipe.seed,
                                      reference=graph, groups=groups)
        state = res.state
        steps.append(StepReport("bias_tuning", time.perf_counter() - t0, res.report.to_text()))

    kl = guard.kl(state)
    report = PipelineReport(pipe, tuple(steps), layers if options else (), options, omega,
                            allocation, tuple(int(i) for i in held_idx), kl,
                            time.perf_counter() - start)
    return PipelineResult(state, choice, report)


class _HeldOut:
    """The held-out samples every step is judged on: a step's result replaces the state before
    it only if it lowers the mean KL(float || quantized) there."""

    def __init__(self, x: torch.Tensor, target: torch.Tensor, held: bool) -> None:
        self.x, self.target = x, target
        self.where = "held-out" if held else "calibration (too few samples to hold out)"

    def kl(self, state: CalibrationState) -> float:
        return _kl(state, self.x, self.target)

    def better(self, before: CalibrationState, after: CalibrationState
               ) -> tuple[CalibrationState, str]:
        """(the better state, "kept"/"not kept" with both KLs)."""
        a, b = self.kl(before), self.kl(after)
        if b < a:
            return after, f"kept ({self.where} KL {a:.4g} -> {b:.4g})"
        return before, f"not kept ({self.where} KL {a:.4g} -> {b:.4g})"


def _range_policy(config: Any, graph: LayerGraph, policy: str) -> Any:
    """``config`` with activation range ``policy`` and no calibration left to run."""
    if policy == "config":
        return dataclasses.replace(config, calibration="none")
    act = dataclasses.replace(config.activation, clipping="percentile",
                              percentile=RANGE_PERCENTILE)
    layer_act = dict(config.layer_activation)
    for name in (graph.input_name, graph.output_name):
        layer_act.setdefault(name, dataclasses.replace(config.activation, clipping="minmax"))
    return dataclasses.replace(config, activation=act, layer_activation=layer_act,
                               calibration="none")


def _ranges_text(policy: str, kls: Mapping[str, float], guard: _HeldOut) -> str:
    what = {"percentile": "inner activations at the 99.99th percentile, model input and "
                          "output min-max",
            "config": "the QuantConfig's activation formats"}[policy]
    text = f"{policy}: {what}"
    if len(kls) > 1:
        text += (f" (chosen on {guard.where} KL: "
                 + ", ".join(f"{p} {v:.4g}" for p, v in kls.items()) + ")")
    return text


def _option_config(base: Any, graph: LayerGraph, layers: tuple[str, ...], opt: Option) -> Any:
    """``base`` with every allocated layer at ``opt`` (weights and input activations)."""
    layer_weight = dict(base.layer_weight)
    layer_act = dict(base.layer_activation)
    for name in layers:
        try:
            layer_weight[name] = resolve_format(opt.weight_format, opt.weight_bits,
                                                base.weight_format(name), None)
            src = act_source(graph, name)
            layer_act[src] = resolve_format(opt.act_format, opt.act_bits,
                                            base.layer_activation.get(src, base.activation),
                                            None)
        except QuantError as exc:
            raise QuantError(f"PipelineConfig option {opt.label} on layer {name!r}: "
                             f"{str(exc).splitlines()[0]}") from None
    return dataclasses.replace(base, layer_weight=layer_weight, layer_activation=layer_act)


def _reference_option(options: tuple[Option, ...]) -> int:
    """The option with the most weight bits, then activation bits (the first of equals)."""
    return max(range(len(options)),
               key=lambda k: (options[k].weight_bits, options[k].act_bits, -k))


def _measure_delta_loss(states: list[CalibrationState], ref: int, layers: tuple[str, ...],
                        options: tuple[Option, ...], graph: LayerGraph, x: torch.Tensor,
                        target: torch.Tensor) -> np.ndarray:
    """(L, K) ΔL: held-out KL with only layer l from option k's state, minus the reference's."""
    base = _kl(states[ref], x, target)
    omega = np.zeros((len(layers), len(options)))
    for l, name in enumerate(layers):
        for k in range(len(options)):
            if k != ref:
                mixed = _compose(states, ref, graph, layers,
                                 [k if i == l else ref for i in range(len(layers))])
                omega[l, k] = _kl(mixed, x, target) - base
    return omega


def _allocate(omega: np.ndarray, graph: LayerGraph, layers: tuple[str, ...],
              options: tuple[Option, ...], ref: int, pipe: PipelineConfig) -> Allocation:
    costs = _builtin_costs(graph, layers, options)
    if pipe.cost_model is not None:
        priced = pipe.cost_model.price(layers, options)
        for resource, table in priced.items():
            table = np.asarray(table, dtype=np.float64)
            if table.shape != omega.shape:
                raise QuantError(f"PipelineConfig.cost_model priced {resource!r} as "
                                 f"{table.shape}; expected {omega.shape} (layers, options)")
            costs[resource] = table
    budgets = {}
    for resource, limit in pipe.budgets.items():
        if resource not in costs:
            raise QuantError(f"PipelineConfig.budgets[{resource!r}]: the cost model prices "
                             f"{sorted(costs)}")
        value, relative = parse_limit(resource, limit)
        budgets[resource] = value * float(costs[resource][:, ref].sum()) if relative else value
    ties = _act_ties(graph, layers, options)
    return solve_allocation(omega, costs, budgets, method=pipe.solver, ties=ties,
                            layer_names=layers, option_labels=list(options))


def _builtin_costs(graph: LayerGraph, layers: tuple[str, ...],
                   options: tuple[Option, ...]) -> dict[str, np.ndarray]:
    """size_bits (weight elements x weight bits) and bops (MACs per sample x w bits x a bits)."""
    size = np.zeros((len(layers), len(options)))
    bops = np.zeros_like(size)
    for l, name in enumerate(layers):
        rec = graph[name]
        macs = int(np.prod(rec.out_shape[1:])) * (rec.weight.size // rec.weight.shape[0])
        for k, opt in enumerate(options):
            size[l, k] = rec.weight.size * opt.weight_bits
            bops[l, k] = macs * opt.weight_bits * opt.act_bits
    return {"size_bits": size, "bops": bops}


def _act_ties(graph: LayerGraph, layers: tuple[str, ...], options: tuple[Option, ...]
              ) -> list[Tie]:
    """Layers that read the same tensor take options of the same activation format."""
    by_source: dict[str, list[str]] = {}
    for name in layers:
        by_source.setdefault(act_source(graph, name), []).append(name)
    key = [(o.act_format, o.act_bits) for o in options]
    return [Tie(tuple(members), key) for members in by_source.values() if len(members) > 1]


def _compose(states: list[CalibrationState], ref: int, graph: LayerGraph,
             layers: tuple[str, ...], choice: Iterable[int]) -> CalibrationState:
    """The reference state with layer l (its weights, bias, weight parameters, format, and its
    input activation's format and range) taken from ``states[choice[l]]``."""
    base = states[ref]
    new_graph = base.graph
    weight_params = dict(base.weight_params)
    layer_weight = dict(base.config.layer_weight)
    layer_act = dict(base.config.layer_activation)
    act_params = dict(base.act_params)
    for name, k in zip(layers, choice):
        if k == ref:
            continue
        st, rec = states[k], states[k].graph[name]
        new_graph = with_layer(new_graph, name, weight=rec.weight, bias=rec.bias)
        weight_params.pop(name, None)
        if name in st.weight_params:
            weight_params[name] = st.weight_params[name]
        layer_weight[name] = st.config.layer_weight[name]
        src = act_source(graph, name)
        layer_act[src] = st.config.layer_activation[src]
        act_params[src] = st.act_params[src]
    config = dataclasses.replace(base.config, layer_weight=layer_weight,
                                 layer_activation=layer_act)
    return base.replace(graph=new_graph, config=config, weight_params=weight_params,
                        act_params=act_params)


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return log_probs(logits, "calibration pipeline")


def _kl(state: CalibrationState, x: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over samples of KL(float || fake-quant) of the output softmax (nats)."""
    with torch.no_grad():
        return float(kl_per_sample(target, _log_probs(state.model().forward(x))).mean())
