"""Precision plans with multipoint layers (``weight_points``, as ``hwsim allocate --out`` writes
them): validated one-line errors; ``simulate --plan`` prices them as the allocator does;
``verify --plan`` (`hwsim.flows.quantize_model`) gives them exactly the rows the co-design loop's
realization does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hwsim.cli import main
from hwsim.errors import HwsimError, WorkloadError
from hwsim.workloads.plan import plan_from_dict
from quant.allocate import Option

REPO = Path(__file__).resolve().parents[1]
SYSTOLIC = REPO / "hw_configs" / "int8_systolic.yaml"
MP = {"weight_bits": 4, "act_bits": 8, "weight_format": "multipoint", "act_format": "int"}


# ---- the plan file -------------------------------------------------------------------------

def test_weight_points_are_read():
    plan = plan_from_dict({"layers": {"a": {**MP, "weight_points": 1.25}, "b": {**MP,
                                      "weight_points": 2}, "c": {"weight_bits": 4}}}, "p.json")
    (_, a), (_, b), (_, c) = plan.entries
    assert a.weight_points == 1.25 and isinstance(b.weight_points, float) and c.weight_points is None
    assert a.weight_rows(32) == Option(4, 8, "multipoint", weight_points=1.25).rows(32) == 40
    assert c.weight_rows(32) is None
    # an Option's dict is a plan entry
    opt = Option(3, 8, "multipoint", weight_points=1.5)
    (_, p), = plan_from_dict({"layers": {"x": opt.to_dict()}}).entries
    assert (p.weight_bits, p.act_bits, p.weight_format, p.weight_points) == (3, 8, "multipoint", 1.5)


@pytest.mark.parametrize("spec, needle", [
    ({"weight_bits": 4, "weight_points": 1.5},
     "layers.conv1.weight_points: 1.5 points per channel apply to weight_format multipoint only"),
    ({"weight_format": "int", "weight_points": 2},
     "layers.conv1.weight_points: 2 points per channel apply to weight_format multipoint only"),
    ({**MP, "weight_points": 0.5}, "layers.conv1.weight_points: expected a number >= 1"),
    ({**MP, "weight_points": 0}, "layers.conv1.weight_points: expected a number >= 1"),
    ({**MP, "weight_points": float("nan")}, "layers.conv1.weight_points: expected a finite number"),
    ({**MP, "weight_points": float("inf")}, "layers.conv1.weight_points: expected a finite number"),
    ({**MP, "weight_points": "1.5"}, "layers.conv1.weight_points: expected a finite number >= 1"),
    ({**MP, "weight_points": True}, "layers.conv1.weight_points: expected a finite number >= 1"),
])
def test_bad_weight_points_are_one_line(spec, needle):
    with pytest.raises(WorkloadError) as err:
        plan_from_dict({"layers": {"conv1": spec}}, "plan.json")
    text = str(err.value)
    assert "\n" not in text and text.startswith("plan.json: ") and needle in text, text


def test_many_problems_name_the_first_and_the_count():
    raw = {"layers": {f"l{i}": {**MP, "weight_pts": 1.5} for i in range(40)}}
    with pytest.raises(WorkloadError) as err:
        plan_from_dict(raw, "plan.json")
    text = str(err.value)
    assert text.startswith("plan.json: 40 problems; the first: layers.l0.weight_pts: unknown "
                           "field; did you mean 'weight_points'?") and "(and 39 more)" in text
    assert "l1." not in text and len(text) < 400
    raw = {"layers": {f"l{i}": {"weight_bits": 0} for i in range(2)}}
    with pytest.raises(WorkloadError, match="2 problems: layers.l0.weight_bits.*; layers.l1"):
        plan_from_dict(raw, "plan.json")


# ---- simulate --plan: the allocator's prices ------------------------------------------------

def test_simulate_plan_equals_the_allocators_prediction(tmp_path):
    from hwsim.arch import load_accelerator
    from hwsim.codesign.costs import AcceleratorCosts
    from hwsim.workloads import builtin_workload

    accel = load_accelerator(str(SYSTOLIC))
    layers = builtin_workload("mobilenet_v2", batch=1)
    names = [layer.name for layer in layers]
    assert any(l.groups > 1 for l in layers) and any(l.groups == 1 for l in layers)
    options = [Option(8, 8), Option(4, 8, "multipoint", weight_points=1.25), Option(4, 8),
               Option(3, 8, "multipoint", weight_points=1.5), Option(4, 8, "multipoint")]
    prices = AcceleratorCosts(accel, layers).price(names, options)
    pick = [i % len(options) for i in range(len(names))]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"layers": {n: options[k].to_dict() for n, k in zip(names, pick)},
                                "allocation": {"solver": "test"}}))
    out = tmp_path / "s.json"
    assert main(["-q", "simulate", "--hw", str(SYSTOLIC), "--model", "mobilenet_v2", "--plan",
                 str(plan), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    per_layer = report["per_layer"]
    assert [r["name"] for r in per_layer] == names
    for i, (row, k) in enumerate(zip(per_layer, pick)):
        assert row["total_cycles"] == prices["latency_cycles"][i, k], row["name"]
        assert row["weight_bits"] == options[k].weight_bits
    predicted = math.fsum(prices["latency_cycles"][i, k] for i, k in enumerate(pick))
    assert report["summary"]["total_cycles"] == predicted


# ---- verify --plan: the realization's rows --------------------------------------------------

def test_verified_program_has_the_realized_rows():
    pytest.importorskip("torch")
    from hwsim.arch import load_accelerator
    from hwsim.codesign.realize import base_config, realize
    from hwsim.flows import quantize_model
    from hwsim.lower import lower
    from hwsim.workloads import program_workload
    from tests.test_codesign_multipoint import _net_and_images

    net, calib, _ = _net_and_images()
    options = {"c1": Option(8, 8), "dw": Option(4, 8, "multipoint", weight_points=1.5),
               "g": Option(4, 8, "multipoint", weight_points=1.25),
               "c2": Option(3, 8, "multipoint", weight_points=2.0),
               "fc": Option(4, 8, "multipoint")}
    from quant.model import initial_state
    from quant.sensitivity.options import act_source as source_of

    graph = initial_state(net, base_config(Option(8, 8)), [calib], example_input=calib[:1]).graph
    act_source = {name: source_of(graph, name) for name in options}
    real = realize(net, load_accelerator(str(SYSTOLIC)), options, act_source,
                   base_config(Option(8, 8)), calib, name="t")
    assert not real.short_rows
    plan = plan_from_dict({"layers": {n: o.to_dict() for n, o in options.items()},
                           "allocation": {}}, "plan.json")
    qm = quantize_model(net, calib, bits=8, plan=plan)
    program = lower(qm, name="t", requant="dyadic", accumulator_bits=32, accumulator_mode="wrap")
    for name, opt in options.items():
        ours, theirs = program.node(name), real.program.node(name)
        assert ours.op == theirs.op
        if opt.weight_format == "multipoint":
            k = int(qm.graph[name].weight.shape[0])
            assert ours.arrays["weight_rows"].shape[0] == opt.rows(k) == real.rows[name][1], name
            np.testing.assert_array_equal(ours.arrays["weight_rows"],
                                          theirs.arrays["weight_rows"])
    assert program_workload(program) == real.workload


def test_plan_points_checks():
    pytest.importorskip("torch")
    from hwsim.flows import quantize_model
    from tests.test_codesign_multipoint import _net_and_images

    net, calib, _ = _net_and_images()
    many = plan_from_dict({"layers": {"c2": {**MP, "weight_points": 4.5}}}, "plan.json")
    with pytest.raises(HwsimError, match="plan.json: layer 'c2': weight_points 4.5 exceeds 4"):
        quantize_model(net, calib, plan=many)
    ok = plan_from_dict({"layers": {"c2": {**MP, "weight_points": 1.5}}}, "plan.json")
    with pytest.raises(HwsimError, match="plan.json: the plan gives layers weight_points; a "
                                         "points budget"):
        quantize_model(net, calib, weight_family="multipoint", plan=ok, points_budget=0.1)


def test_simulate_refuses_multipoint_plans_on_saved_programs(tmp_path, capsys):
    """A saved program's weights are fixed: extra rows from a plan would count twice."""
    pytest.importorskip("torch")
    from hwsim.flows import quantize_model
    from hwsim.ir import save_program
    from hwsim.lower import lower
    from tests._cli_helpers import one_error_line
    from tests.test_codesign_multipoint import _net_and_images

    net, calib, _ = _net_and_images()
    program = lower(quantize_model(net, calib, bits=8), name="t")
    save_program(program, tmp_path / "p")
    plan = tmp_path / "plan.yaml"
    plan.write_text("layers:\n  dw: {weight_format: multipoint, weight_bits: 4, "
                    "weight_points: 1.5}\n")
    assert main(["simulate", "--hw", str(SYSTOLIC), "--model", str(tmp_path / "p.json"),
                 "--plan", str(plan), "-q"]) == 2
    assert "a saved program's weights are fixed" in one_error_line(capsys, command="simulate")
