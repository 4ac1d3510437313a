"""Per-layer precision plans (hwsim.workloads.plan) and the simulate/cost precision flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim.cli import main
from hwsim.cost import cost_network
from hwsim.arch import load_accelerator
from hwsim.errors import WorkloadError
from hwsim.workloads import builtin_workload
from hwsim.workloads.plan import load_plan, plan_from_dict

REPO = Path(__file__).resolve().parents[1]
HW = str(REPO / "hw_configs" / "int8_systolic.yaml")


def test_first_matching_entry_wins_and_the_default_covers_the_rest():
    layers = builtin_workload("resnet18")
    plan = plan_from_dict({"default": {"weight_bits": 4, "act_bits": 4},
                           "layers": {"conv1": {"weight_bits": 8, "act_bits": 8},
                                      "layer4.1.conv2": {"weight_bits": 6},
                                      "layer4.*": {"weight_bits": 2},
                                      "fc": {"weight_format": "apot", "weight_bits": 5}}})
    out = {l.name: l for l in plan.apply(layers)}
    assert (out["conv1"].weight_bits, out["conv1"].act_bits) == (8, 8)
    assert (out["layer2.0.conv1"].weight_bits, out["layer2.0.conv1"].act_bits) == (4, 4)
    assert out["layer4.1.conv2"].weight_bits == 6 and out["layer4.1.conv2"].act_bits == 8
    assert out["layer4.0.conv1"].weight_bits == 2
    assert (out["fc"].weight_format, out["fc"].weight_bits, out["fc"].act_bits) == ("apot", 5, 8)
    assert [l.name for l in plan.apply(layers)] == [l.name for l in layers]
    shadowing = plan_from_dict({"layers": {"layer4.*": {"weight_bits": 2},
                                           "layer4.1.conv2": {"weight_bits": 6}}})
    with pytest.raises(WorkloadError, match=r"\['layer4.1.conv2'\]: every layer they match is "
                                            r"taken by an earlier entry"):
        shadowing.apply(layers)


def test_an_entry_matching_nothing_and_bad_fields_are_clear_errors(tmp_path):
    layers = builtin_workload("resnet18")
    with pytest.raises(WorkloadError, match=r"<plan>: layers: \['conv_1'\] match no layer"):
        plan_from_dict({"layers": {"conv_1": {"weight_bits": 4}}}).apply(layers)
    with pytest.raises(WorkloadError) as err:
        plan_from_dict({"layers": {"conv1": {"weight_bit": 4, "act_bits": 0,
                                             "weight_format": "posit"}}})
    msg = str(err.value)
    assert "3 problems" in msg and "layers.conv1.act_bits: expected a positive integer" in msg
    assert "did you mean 'weight_bits'" in msg and "layers.conv1.weight_format: expected a " \
        "registered number format" in msg
    with pytest.raises(WorkloadError, match="the plan changes nothing"):
        plan_from_dict({})
    with pytest.raises(WorkloadError, match="layers.fc: empty"):
        plan_from_dict({"layers": {"fc": {}}})
    bad = tmp_path / "plan.yaml"
    bad.write_text("layers: {conv1: [")
    with pytest.raises(WorkloadError, match=f"{bad}: not valid YAML/JSON: line 1"):
        load_plan(bad)


def test_simulate_prices_the_plan_and_the_uniform_flags(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"default": {"weight_bits": 4, "act_bits": 4},
                                "layers": {"conv1": {"weight_bits": 8, "act_bits": 8}}}))
    out = tmp_path / "cost.json"
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--plan", str(plan),
                 "--json", str(out), "-q"]) == 0
    rows = {r["name"]: r for r in json.loads(out.read_text())["per_layer"]}
    assert (rows["conv1"]["weight_bits"], rows["layer1.0.conv1"]["act_bits"]) == (8, 4)
    layers = plan_from_dict(json.loads(plan.read_text())).apply(builtin_workload("resnet18"))
    expected = cost_network(load_accelerator(HW), layers)
    assert json.loads(out.read_text())["summary"]["total_cycles"] == expected.total_cycles
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--bits", "2", "--act-bits",
                 "16", "--json", str(out), "-q"]) == 0
    rows = json.loads(out.read_text())["per_layer"]
    assert {(r["weight_bits"], r["act_bits"], r["passes"]) for r in rows} == {(2, 16, 2)}
    capsys.readouterr()
    plan.write_text(json.dumps({"layers": {"conv9": {"weight_bits": 4}}}))
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--plan", str(plan)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{plan}: layers: ['conv9'] match no layer" in err[0]
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--plan",
                 str(tmp_path / "none.yaml")]) == 2
    assert "--plan" in capsys.readouterr().err


def test_an_allocation_plan_for_another_model_names_the_missing_and_extra_layers():
    layers = builtin_workload("resnet18")
    names = [l.name for l in layers]
    full = {"layers": {n: {"weight_bits": 4, "act_bits": 8} for n in names},
            "allocation": {"objective": 0.0}}
    assert [l.weight_bits for l in plan_from_dict(full).apply(layers)] == [4] * len(names)
    partial = {"layers": {n: {"weight_bits": 4} for n in names[:-2]},
               "allocation": {"objective": 0.0}}
    with pytest.raises(WorkloadError, match=r"no entry for layers \['layer4.1.conv2', 'fc'\] "
                                            r"\(2 of 21\)"):
        plan_from_dict(partial, "plan.json").apply(layers)
    extra = {"layers": {**full["layers"], "features.0.0": {"weight_bits": 4}},
             "allocation": {"objective": 0.0}}
    with pytest.raises(WorkloadError, match=r"\['features.0.0'\] match no layer"):
        plan_from_dict(extra, "plan.json").apply(layers)
