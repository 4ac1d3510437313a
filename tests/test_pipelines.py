"""The "light" and "advanced" calibration pipelines (quant.calibrate.pipeline): steps in order,
ΔL and the integer program under size budgets, activation-width ties, the held-out guard,
``quantize(calibration=...)``, the integer program of the result, and bad configs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import quant
from quant import CalibrationError, IntFormat, QuantConfig, QuantError
from quant.allocate import AllocationError, Option
from quant.calibrate import PipelineConfig, run_pipeline
from quant.calibrate import pipeline as pipeline_mod
from tests._calib_nets import images, seeded_with_bn_stats

W8A8, W4A8, W8A4 = Option(8, 8), Option(4, 8), Option(8, 4)


class Branchy(nn.Module):
    """conv-BN-ReLU6, then two 1x1 convs reading the same tensor, added; pool, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(8), nn.ReLU6())
        self.a = nn.Conv2d(8, 8, 1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.c1(x)
        y = torch.relu(self.a(y)) + self.b(y)
        return self.fc(torch.flatten(self.gap(y), 1))


def _model() -> nn.Module:
    return seeded_with_bn_stats(Branchy)


LAYERS = ("c1.0", "a", "b", "fc")


def _run(pipe: PipelineConfig, data=None, **config):
    return run_pipeline(_model(), QuantConfig(calibration=pipe, **config),
                        images(16) if data is None else data)


@pytest.fixture(scope="module")
def light_w8_w4():
    return _run(PipelineConfig("light", options=(W8A8, W4A8),
                               budgets={"size_bits": "0.7x"}))


def test_light_steps_allocation_and_budget(light_w8_w4):
    res = light_w8_w4
    rep = res.report
    assert [s.name for s in rep.steps] == ["ranges", "delta_loss", "integer_program",
                                          "bn_reestimate"]
    assert rep.layers == LAYERS and rep.options == (W8A8, W4A8)
    assert rep.omega.shape == (4, 2) and np.all(rep.omega[:, 0] == 0)
    alloc = rep.allocation
    full = sum(res.state.graph[n].weight.size * 8 for n in LAYERS)
    assert alloc.budgets["size_bits"] == pytest.approx(0.7 * full)
    assert alloc.totals["size_bits"] <= 0.7 * full
    assert alloc.status == "optimal"
    assert {n: o for n, o in res.choice.items()} == {
        n: rep.options[k] for n, k in zip(LAYERS, alloc.choice)}
    assert {o.weight_bits for o in res.choice.values()} == {4, 8}
    for name, opt in res.choice.items():
        fmt = res.state.config.layer_weight[name]
        assert fmt.bits == opt.weight_bits
        codes = np.asarray(res.state.model().weight_codes(name))
        assert codes.max() <= 2 ** (opt.weight_bits - 1) - 1
    # the objective is the sum of the chosen ΔL, and no cheaper-in-ΔL choice fits the budget
    chosen = sum(rep.omega[l, k] for l, k in enumerate(alloc.choice))
    assert alloc.objective == pytest.approx(chosen, abs=1e-12)


def test_light_result_lowers_within_one_lsb(light_w8_w4):
    from hwsim.lower import lower
    from hwsim.verify import verify

    qm = light_w8_w4.state.model()
    assert verify(qm, lower(qm, requant="dyadic"), images(4, seed=5)).summary[
        "max_lsb_diff_any_layer"] <= 1


def test_the_smallest_budget_takes_every_layer_to_four_bits():
    res = _run(PipelineConfig("light", options=(W8A8, W4A8), budgets={"size_bits": "0.5x"}))
    assert all(o == W4A8 for o in res.choice.values())


def test_pinned_layers_keep_their_format_and_are_not_allocated():
    int8 = IntFormat(8, per_channel=True)
    res = _run(PipelineConfig("light", options=(W8A8, W4A8), budgets={"size_bits": "0.5x"}),
               layer_weight={"c1.0": int8, "fc": int8})
    assert res.report.layers == ("a", "b")
    assert res.state.config.layer_weight["c1.0"] == int8
    assert res.state.config.layer_weight["a"].bits == 4


def test_layers_reading_one_tensor_agree_on_its_activation_width():
    """a and b both read c1's output: under a bit-ops budget they take one activation width."""
    res = _run(PipelineConfig("light", options=(W8A8, W8A4), budgets={"bops": "0.8x"}))
    assert res.choice["a"].act_bits == res.choice["b"].act_bits
    assert {o.act_bits for o in res.choice.values()} == {4, 8}  # the budget binds
    src_fmt = res.state.config.layer_activation["c1.0"]
    assert src_fmt.bits == res.choice["a"].act_bits
    alloc = res.report.allocation
    assert alloc.totals["bops"] <= alloc.budgets["bops"]
    assert len(res.report.allocation.ties) == 1


def test_advanced_steps_and_quantize_entry_point():
    pipe = PipelineConfig("advanced", adaquant_iters=20, bias_tuning_iters=8)
    x = images(16)
    res = run_pipeline(_model(), QuantConfig(weight=IntFormat(4, per_channel=True),
                                             calibration=pipe), x)
    names = [s.name for s in res.report.steps]
    assert names == ["ranges", "adaquant", "integer_program", "bn_reestimate", "bias_tuning"]
    assert res.report.steps[2].text.startswith("skipped")
    assert res.report.omega is None and res.report.allocation is None
    assert len(res.report.held_out) == 4
    qm = quant.quantize(_model(), QuantConfig(weight=IntFormat(4, per_channel=True),
                                              calibration=pipe), [x])
    probe = images(3, seed=9)
    np.testing.assert_array_equal(qm.forward(probe).detach().numpy(),
                                  res.state.model().forward(probe).detach().numpy())


def test_light_by_name_chooses_the_ranges_on_held_out_samples():
    """"auto" ranges: the percentile policy and the config's min-max ranges are both tried and
    the one with the lower held-out KL is kept (the report lists both)."""
    import re

    x = images(16)
    res = run_pipeline(_model(), QuantConfig(calibration="light"), [x])
    text = res.report.steps[0].text
    kls = dict((p, float(v)) for p, v in re.findall(r"(percentile|config) ([0-9.e+-]+)", text))
    assert set(kls) == {"percentile", "config"}
    chosen = text.split(":")[0]
    assert kls[chosen] == min(kls.values())
    qm = res.state.model()
    expected = "percentile" if chosen == "percentile" else "minmax"
    assert qm.act_params("a").fmt.clipping == expected
    assert qm.act_params(qm.graph.output_name).fmt.clipping == "minmax"


def test_percentile_ranges_clip_inner_activations_only():
    x = images(16)
    qm = quant.quantize(_model(), QuantConfig(calibration=PipelineConfig(
        "light", ranges="percentile")), [x])
    plain = quant.quantize(_model(), QuantConfig(), [x])
    assert qm.act_params(qm.graph.output_name).fmt.clipping == "minmax"
    assert qm.act_params(qm.graph.input_name).fmt.clipping == "minmax"
    assert qm.act_params("a").fmt.clipping == "percentile"
    assert plain.act_params("a").fmt.clipping == "minmax"


def test_a_step_that_does_not_help_on_held_out_samples_is_not_kept(monkeypatch):
    """BN re-estimation sabotaged (every weight negated): the guard keeps the state before."""
    real = pipeline_mod.reestimate_bn

    def sabotaged(state, data, reference=None):
        out = real(state, data, reference=reference)
        graph = out.graph
        for name in LAYERS:
            graph = quant.calibrate.with_layer(graph, name, weight=-graph[name].weight)
        return out.replace(graph=graph, weight_params={})

    monkeypatch.setattr(pipeline_mod, "reestimate_bn", sabotaged)
    res = _run(PipelineConfig("light"))
    step = res.report.steps[-1]
    assert step.name == "bn_reestimate" and "not kept" in step.text
    for name in LAYERS:
        assert np.all(np.sign(res.state.graph[name].weight) ==
                      np.sign(_model_graph()[name].weight))


def _model_graph():
    return quant.capture(_model(), images(1))


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "heavy"}, "'name' parameter of PipelineConfig"),
    ({"options": (W8A8, W4A8)}, "needs a budget"),
    ({"options": (W8A8, W4A8), "budgets": {"latency": 1.0}}, "other resources need a cost_model"),
    ({"options": (W8A8, W4A8), "budgets": {"size_bits": "half"}}, "expected a number or"),
    ({"options": (W8A8, W4A8), "budgets": {"size_bits": -1}}, "expected a number >= 0"),
    ({"options": (W8A8, Option(4, 8, "multipoint", weight_points=1.25))}, "multipoint"),
    ({"options": (W8A8, W8A8), "budgets": {"size_bits": 1}}, "same option twice"),
    ({"options": W8A8}, "'options' parameter of PipelineConfig"),
    ({"ranges": "entropy"}, "'ranges' parameter of PipelineConfig"),
])
def test_bad_pipeline_configs_are_one_line_errors(kwargs, match):
    with pytest.raises(QuantError, match=match) as info:
        PipelineConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_calibration_value_names_the_field():
    with pytest.raises(QuantError, match="'calibration' parameter of QuantConfig"):
        QuantConfig(calibration="heavy")


def test_too_few_samples_to_hold_out_is_an_error():
    with pytest.raises(CalibrationError, match="at least 4 calibration samples"):
        _run(PipelineConfig("light", options=(W8A8, W4A8), budgets={"size_bits": "0.6x"}),
             data=images(3))


def test_a_budget_below_the_minimum_names_it():
    with pytest.raises(AllocationError, match="size_bits"):
        _run(PipelineConfig("light", options=(W8A8, W4A8), budgets={"size_bits": "0.4x"}))


def test_deterministic():
    pipe = PipelineConfig("light", options=(W8A8, W4A8), budgets={"size_bits": "0.7x"})
    a, b = _run(pipe), _run(pipe)
    np.testing.assert_array_equal(a.report.omega, b.report.omega)
    assert a.report.allocation.choice == b.report.allocation.choice
    probe = images(2, seed=3)
    np.testing.assert_array_equal(a.state.model().forward(probe).numpy(),
                                  b.state.model().forward(probe).numpy())


def test_a_cost_model_adds_a_budgetable_resource():
    class Cycles:
        def price(self, layers, options):
            return {"cycles": np.array([[10.0 * o.weight_bits for o in options]
                                        for _ in layers])}

    pipe = PipelineConfig("light", options=(W8A8, W4A8), budgets={"cycles": 4 * 40.0},
                          cost_model=Cycles())
    res = _run(pipe)
    assert all(o == W4A8 for o in res.choice.values())
    assert res.report.allocation.totals["cycles"] == 160.0
    assert dataclasses.replace(pipe, budgets={"cycles": 1e9}).budgets["cycles"] == 1e9


def test_hwsim_accelerator_prices_the_integer_program():
    """hwsim's accelerator model as the pipeline's cost model (quant.allocate.CostModel): on
    the bit-serial Loom array, whose cycles fall with the weight width, a latency budget of
    0.7x the all-int8 cycles takes some layers to 4 bits, and the allocation is within it."""
    from hwsim.arch import load_accelerator
    from hwsim.codesign.costs import AcceleratorCosts
    from hwsim.lower import lower
    from hwsim.workloads.program import program_workload

    x = images(16)
    base = quant.quantize(_model(), QuantConfig(), [x])
    workload = program_workload(lower(base))
    costs = AcceleratorCosts(load_accelerator("hw_configs/loom.yaml"), workload)
    pipe = PipelineConfig("light", options=(W8A8, W4A8), cost_model=costs,
                          budgets={"latency_cycles": "0.7x"})
    res = run_pipeline(_model(), QuantConfig(calibration=pipe), [x])
    alloc = res.report.allocation
    assert alloc.totals["latency_cycles"] <= alloc.budgets["latency_cycles"]
    assert any(o == W4A8 for o in res.choice.values())
    full = costs.price(LAYERS, (W8A8,))["latency_cycles"].sum()
    assert alloc.budgets["latency_cycles"] == pytest.approx(0.7 * full)


def test_a_single_option_is_applied_not_ignored():
    res = _run(PipelineConfig("light", options=(W4A8,)))
    assert res.report.omega is None and res.report.allocation is None
    assert "every layer int w4a8" in res.report.steps[1].text
    qm = res.state.model()
    for name in LAYERS:
        assert qm.weight_format(name).bits == 4
        assert np.abs(np.asarray(qm.weight_codes(name))).max() <= 7
