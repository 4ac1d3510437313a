"""hwsim's accelerator model satisfies quant's cost-model protocol, and an allocation's predicted
totals equal what cost_network simulates for the chosen precisions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwsim.arch import load_accelerator
from hwsim.codesign import AcceleratorCosts
from hwsim.cost import cost_network
from hwsim.errors import WorkloadError
from hwsim.workloads import builtin_workload
from quant.allocate import CostModel, Option, solve_allocation

REPO = Path(__file__).resolve().parents[1]
OPTIONS = [Option(w, a) for w, a in ((8, 8), (4, 8), (4, 4), (2, 2))]


@pytest.mark.parametrize("config", ["bitfusion.yaml", "int8_systolic.yaml", "eyeriss_like.yaml"])
def test_predicted_totals_equal_the_simulated_network(config):
    accel = load_accelerator(REPO / "hw_configs" / config)
    layers = builtin_workload("resnet18")
    model = AcceleratorCosts(accel, layers)
    assert isinstance(model, CostModel)
    names = [l.name for l in layers]
    costs = model.price(names, OPTIONS)
    uniform8 = costs["energy_pj"][:, 0].sum()
    budget = (costs["energy_pj"].min(axis=1).sum() + uniform8) / 2
    rng = np.random.default_rng(0)
    omega = rng.random((len(names), len(OPTIONS))) * np.array([0, 1, 2, 4])
    plan = solve_allocation(omega, costs, {"energy_pj": budget}, layer_names=names,
                            option_labels=OPTIONS)
    chosen = [OPTIONS[k] for k in plan.choice]
    simulated = cost_network(accel, [replace(l, weight_bits=o.weight_bits, act_bits=o.act_bits)
                                     for l, o in zip(layers, chosen)])
    assert plan.totals["latency_cycles"] == simulated.total_cycles
    assert plan.totals["energy_pj"] == pytest.approx(simulated.energy_total_pj, rel=1e-12)
    assert plan.totals["energy_pj"] <= budget < uniform8


def test_unknown_layers_are_named():
    model = AcceleratorCosts(load_accelerator(REPO / "hw_configs" / "int8_systolic.yaml"),
                             builtin_workload("resnet18"))
    with pytest.raises(WorkloadError, match=r"\['conv9'\] are not in the workload"):
        model.price(["conv1", "conv9"], OPTIONS)
