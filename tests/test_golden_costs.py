"""Golden totals of every hw_config on ResNet-18 and MobileNetV2 (ZigZag-style golden tests):
a change of the cost model changes tests/data/golden_costs.json, visibly. Regenerate with
``python scripts/golden_costs.py`` when a change is intended, and say why in the commit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("golden_costs", REPO / "scripts" / "golden_costs.py")
golden_costs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(golden_costs)
GOLDEN = json.loads(golden_costs.GOLDEN.read_text())
CONFIGS = sorted(p.stem for p in (REPO / "hw_configs").glob("*.yaml"))


def test_every_config_and_network_is_pinned():
    expected = {f"{c}/{n}" for c in CONFIGS for n in golden_costs.NETWORKS}
    assert set(GOLDEN) == expected


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("network", golden_costs.NETWORKS)
def test_totals_equal_the_golden_figures(config, network):
    from hwsim.arch import load_accelerator
    from hwsim.cost import cost_network

    accel = load_accelerator(REPO / "hw_configs" / f"{config}.yaml")
    cost = cost_network(accel, golden_costs.layers_for(config, network))
    pinned = GOLDEN[f"{config}/{network}"]
    for field in golden_costs.FIELDS:
        value = getattr(cost, field)
        if isinstance(value, int):
            assert value == pinned[field], field  # counts: exact
        else:  # energies: float64 sums of exact products; equal up to summation order
            assert value == pytest.approx(pinned[field], rel=1e-12), field
