"""The co-design loop (hwsim.codesign.loop) end to end on a tiny CNN: sensitivity x accelerator
cost -> allocation -> quantize -> lower -> verify -> simulate. Predicted == simulated, budgets
hold, units are reported, the program is bit-accurate, act_bits ties hold, bad budgets are
named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hwsim import execute  # noqa: E402
from hwsim.codesign import CodesignError, codesign, prepare  # noqa: E402
from hwsim.errors import HwsimError  # noqa: E402
from hwsim.workloads.plan import plan_from_dict  # noqa: E402
from quant.allocate import Allocation, AllocationError, Option  # noqa: E402
from quant.allocate.ties import satisfied  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BITFUSION = REPO / "hw_configs" / "bitfusion.yaml"
HETERO = REPO / "hw_configs" / "hetero_int8_apot.yaml"
HETERO3 = REPO / "hw_configs" / "hetero_int8_xnor_apot.yaml"
INT_OPTIONS = [Option(8, 8), Option(4, 8), Option(8, 4), Option(4, 4), Option(2, 2)]
APOT_OPTIONS = [Option(8, 8), Option(4, 8), Option(4, 8, "apot"), Option(5, 8, "apot")]
# int, APoT and least-squares binary weights (1 and 2 sign planes, inputs as 4 bit planes)
JOINT_OPTIONS = [Option(8, 8), Option(4, 8), Option(4, 4), Option(4, 8, "apot"),
                 Option(1, 4, "binary"), Option(2, 4, "binary")]


class TinyNet(nn.Module):
    """conv -> (conv 3x3 s2 | conv 1x1 s2) -> add -> conv -> conv 1x1 -> pool -> fc. c2 and c3
    read the same tensor (c1's output): their act_bits are tied."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 3, padding=1)
        self.b1 = nn.BatchNorm2d(32)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1, stride=2)
        self.c3 = nn.Conv2d(32, 64, 1, stride=2)
        self.c4 = nn.Conv2d(64, 64, 3, padding=1)
        self.c5 = nn.Conv2d(64, 64, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.c2(x)) + self.c3(x)
        y = torch.relu(self.c5(torch.relu(self.c4(y))))
        return self.fc(torch.flatten(self.pool(y), 1))


def _net_and_images():
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():  # a non-trivial BatchNorm to fold
        net.b1.running_mean.uniform_(-0.2, 0.2)
        net.b1.running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(8, 3, 16, 16, generator=g), torch.randn(6, 3, 16, 16, generator=g)


@pytest.fixture(scope="module")
def bitfusion():
    net, calib, evals = _net_and_images()
    return prepare(net, BITFUSION, INT_OPTIONS, calib=calib, eval_images=evals)


@pytest.fixture(scope="module")
def hetero():
    net, calib, evals = _net_and_images()
    return prepare(net, HETERO, APOT_OPTIONS, calib=calib, eval_images=evals)


def _check_result(r, problem):
    # the budget is respected, by the prediction and by the simulation
    for res, limit in r.budgets.items():
        assert r.predicted[res] <= limit
    pvs = r.predicted_vs_simulated()
    for res in ("latency_cycles", "energy_pj"):
        assert pvs[res]["equal"], (res, pvs[res])
        assert pvs[res]["max_layer_diff"] == 0.0
    assert r.predicted["latency_cycles"] == r.simulated.total_cycles
    assert r.predicted["energy_pj"] == pytest.approx(r.simulated.energy_total_pj, rel=1e-12)
    # the units the allocator routed to are the simulated ones, for every layer
    sim_units = dict(zip(r.simulated.per_layer["name"], r.simulated.per_layer["unit"]))
    assert r.units == {n: sim_units[n] for n in r.layers}
    # the program runs every layer at its chosen widths and formats
    for layer in r.realization.workload:
        o = r.chosen[layer.name]
        assert (layer.weight_bits, layer.act_bits, layer.weight_format) == \
            (o.weight_bits, o.act_bits, o.weight_format)
    # keyed act_bits ties hold: c2 and c3 read c1's output
    assert r.chosen["c2"].act_bits == r.chosen["c3"].act_bits
    assert satisfied(r.allocation.choice, r.ties)
    assert problem.act_source["c2"] == problem.act_source["c3"] == "c1"
    # bit-accurate: the fast backend equals the reference one
    x = r.realization.quantized.quantize_input(problem.eval_images[:2])
    fast = execute(r.program, x)
    ref = execute(r.program, x, backend="reference")
    np.testing.assert_array_equal(fast.output, ref.output)
    # fidelity against float is reported
    fid = r.fidelity
    assert fid["images"] == len(problem.eval_images)
    assert np.isfinite(fid["sqnr_db"]) and 0.0 <= fid["top1_agreement"] <= 1.0
    # the plan file: JSON, and hwsim's precision-plan loader reads it
    doc = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert set(doc["layers"]) == set(r.layers)
    assert doc["layers"]["c2"] == r.chosen["c2"].to_dict()
    plan = plan_from_dict(doc)
    applied = plan.apply(problem.base_realization.workload)
    assert [(l.weight_bits, l.act_bits, l.weight_format) for l in applied] == \
        [(l.weight_bits, l.act_bits, l.weight_format) for l in r.realization.workload]
    alloc = dict(doc["allocation"])
    alloc.pop("codesign")
    assert Allocation.from_json(json.dumps(alloc)) == r.allocation


def test_bitfusion_loop_latency_budget(bitfusion):
    p = bitfusion
    lo = p.min_total("latency_cycles") / p.base_totals["latency_cycles"]
    ratio = (1.0 + lo) / 2
    budgets = {"latency_cycles": ("x", ratio)}
    r = p.solve(budgets)
    assert r.ratios == {"latency_cycles": ratio}
    assert r.budgets["latency_cycles"] == pytest.approx(ratio * p.base_totals["latency_cycles"])
    assert r.predicted["latency_cycles"] < p.base_totals["latency_cycles"]
    assert set(r.units.values()) == {"bit_fusion"}
    _check_result(r, p)


def test_bitfusion_loop_two_budgets_string_ratios(bitfusion):
    budgets = {"latency_cycles": "0.8x", "energy_pj": "0.9x"}
    r = bitfusion.solve(budgets)
    assert r.ratios == {"latency_cycles": 0.8, "energy_pj": 0.9}
    _check_result(r, bitfusion)


def test_hetero_loop_int_and_apot(hetero):
    p = hetero
    assert p.units[0].tolist() == ["int8_array"] * len(APOT_OPTIONS)  # first layer: int8 array
    apot = [k for k, o in enumerate(APOT_OPTIONS) if o.weight_format == "apot"]
    assert set(p.units[1, apot].tolist()) == {"shift_add"}
    lo = p.min_total("energy_pj")
    budget = lo + 0.1 * (p.base_totals["energy_pj"] - lo)  # absolute; tight enough for APoT
    r = p.solve({"energy_pj": budget})
    assert r.predicted["energy_pj"] <= budget
    assert any(o.weight_format == "apot" for o in r.chosen.values())  # the shift-add path runs
    for n, o in r.chosen.items():
        first_or_last = n in (r.layers[0], r.layers[-1])
        assert r.units[n] == ("shift_add" if o.weight_format == "apot" and not first_or_last
                              else "int8_array")
    _check_result(r, p)


@pytest.fixture(scope="module")
def joint():
    net, calib, evals = _net_and_images()
    return prepare(net, HETERO3, JOINT_OPTIONS, calib=calib, eval_images=evals)


def test_joint_format_choice_int_apot_binary(joint):
    """One accelerator with an int8 array, a shift-add unit and an XNOR unit: the format an
    option gives a layer decides its unit, and the allocator picks formats across all three."""
    p = joint
    unit_of = {"int": "int8_array", "apot": "shift_add", "binary": "binary"}
    for l, name in enumerate(p.layers):
        edge = l in (0, len(p.layers) - 1)
        assert p.units[l].tolist() == ["int8_array" if edge else unit_of[o.weight_format]
                                       for o in JOINT_OPTIONS]
    # a tight model size needs 1-2-bit binary weights; a tight latency, the shift-add unit
    # (the int8 array gains nothing below 8 bits; APoT W4 is the fastest option there)
    size_lo, lat_lo = p.min_total("size_bits"), p.min_total("latency_cycles")
    cases = {"binary": {"size_bits": size_lo + 0.2 * (p.base_totals["size_bits"] - size_lo)},
             "apot": {"latency_cycles": lat_lo + 0.1 * (p.base_totals["latency_cycles"] - lat_lo)}}
    for family, budgets in cases.items():
        r = p.solve(budgets)
        for n, o in r.chosen.items():
            edge = n in (r.layers[0], r.layers[-1])
            assert r.units[n] == ("int8_array" if edge else unit_of[o.weight_format])
        inner = {o.weight_format for n, o in r.chosen.items()
                 if n not in (r.layers[0], r.layers[-1])}
        assert family in inner, (family, inner)
        _check_result(r, p)
        # binary layers read at most 4-bit inputs (the XNOR unit's planes), through the ties
        for layer in r.realization.workload:
            if layer.weight_format == "binary":
                assert layer.act_bits == 4


def test_uniform_baseline_equals_base_totals(bitfusion):
    r = bitfusion.uniform(Option(8, 8), verify=False)
    assert r.predicted["latency_cycles"] == bitfusion.base_totals["latency_cycles"]
    assert r.predicted_vs_simulated()["energy_pj"]["equal"]
    assert r.fidelity["sqnr_db"] is None  # not verified


def test_infeasible_budget_names_budget_and_minimum(bitfusion):
    with pytest.raises(AllocationError, match=r"budgets\['latency_cycles'\] = .* is infeasible: the "
                                              r"minimum achievable total of 'latency_cycles' is "
                                              r".*budget 0\.1x, minimum 0\.\d+x of uniform int w8a8"):
        bitfusion.solve({"latency_cycles": "0.1x"})


def test_bad_budgets(bitfusion):
    with pytest.raises(HwsimError, match="unknown resource 'cycles'"):
        bitfusion.solve({"cycles": 1.0})
    with pytest.raises(HwsimError, match=r"budgets\['energy_pj'\] = 'half'"):
        bitfusion.solve({"energy_pj": "half"})
    with pytest.raises(HwsimError, match="ratio -1"):
        bitfusion.solve({"energy_pj": ("x", -1)})


def test_greedy_solver_respects_ties(bitfusion):
    p = bitfusion
    a, _, _ = p.allocate({"energy_pj": "0.85x"}, "greedy")
    chosen = dict(zip(p.layers, (p.options[k] for k in a.choice)))
    assert chosen["c2"].act_bits == chosen["c3"].act_bits
    assert a.totals["energy_pj"] <= 0.85 * p.base_totals["energy_pj"]


def test_codesign_entry_point_and_errors():
    net, calib, evals = _net_and_images()
    r = codesign(net, BITFUSION, INT_OPTIONS[:3], {"energy_pj": "0.95x"}, calib=calib,
                 eval_images=evals[:2], sensitivity="fisher")
    assert r.predicted_vs_simulated()["latency_cycles"]["equal"]
    assert r.chosen["c2"].act_bits == r.chosen["c3"].act_bits
    with pytest.raises(CodesignError, match="needs calib images"):
        codesign(net, BITFUSION, INT_OPTIONS, {})
    with pytest.raises(CodesignError, match="act_format 'int' only"):
        codesign(net, BITFUSION, [Option(8, 8), Option(1, 1, "binary", "binary")], {},
                 calib=calib)
