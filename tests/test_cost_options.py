"""Options pricing (every (layer, option) pair in one call) and the typed cost result."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim import PrecisionOption, load_accelerator, price_options
from hwsim.cost import RESOURCES, LayerTable, cost_network, cost_table
from hwsim.errors import WorkloadError
from hwsim.workloads import builtin_workload
from tests._cost_helpers import accel_with, conv

REPO = Path(__file__).resolve().parents[1]
HETERO = load_accelerator(REPO / "hw_configs" / "hetero_int8_apot.yaml")
INT8 = load_accelerator(REPO / "hw_configs" / "int8_systolic.yaml")

OPTION = st.builds(PrecisionOption, weight_bits=st.sampled_from([2, 3, 4, 5, 8, 16]),
                   act_bits=st.sampled_from([2, 4, 8, 16]),
                   weight_format=st.sampled_from(["int", "apot"]))


def _network_cost_of(accel, layers, option):
    """Price `layers` at `option` through cost_network: the reference for one column."""
    changed = [replace(l, weight_bits=option.weight_bits, act_bits=option.act_bits,
                       weight_format=option.weight_format, act_format=option.act_format)
               for l in layers]
    return cost_network(accel, changed).per_layer


@settings(max_examples=30, deadline=None)
@given(options=st.lists(OPTION, min_size=1, max_size=6, unique=True))
def test_each_feasible_column_equals_cost_network_at_that_option(options):
    layers = builtin_workload("resnet18", input_hw=64)[:6]
    priced = price_options(HETERO, layers, options)
    assert priced.shape == (len(layers), len(options))
    for k, option in enumerate(options):
        column = priced.feasible[:, k]
        if column.all():
            frame = _network_cost_of(HETERO, layers, option)
            np.testing.assert_array_equal(priced["latency_cycles"][:, k], frame["total_cycles"])
            np.testing.assert_array_equal(priced["energy_pj"][:, k], frame["energy_total_pj"])
            np.testing.assert_array_equal(priced["compute_cycles"][:, k], frame["compute_cycles"])
            np.testing.assert_array_equal(priced.unit[:, k], frame["unit"])
        for resource in RESOURCES:
            values = priced[resource][:, k]
            assert np.isinf(values[~column]).all() and np.isfinite(values[column]).all()


def test_options_are_routed_by_format_and_infeasible_pairs_are_inf_not_errors():
    layers = builtin_workload("resnet18", input_hw=64)
    options = [PrecisionOption(4, 8, "apot"), PrecisionOption(2, 8, "apot"), PrecisionOption(8, 8)]
    priced = price_options(HETERO, layers, options)
    # APoT goes to the shift-add unit except first/last layers (the rules' positions); 2-bit APoT
    # has no shift-add form: infeasible there, with the unit's reason.
    assert list(priced.unit[1:-1, 0]) == ["shift_add"] * (len(layers) - 2)
    assert priced.unit[0, 0] == priced.unit[-1, 0] == "int8_array"
    assert priced.feasible[:, 0].all() and priced.feasible[:, 2].all()
    assert not priced.feasible[1:-1, 1].any() and np.isinf(priced["energy_pj"][1:-1, 1]).all()
    reason = priced.infeasible_reason(1, 1)
    assert "apot w2 / int a8" in reason and "3 <= weight_bits <= 7" in reason
    assert priced.infeasible_reason(1, 0) is None
    frame = priced.to_frame()
    assert len(frame) == len(layers) * 3 and frame["feasible"].sum() == priced.feasible.sum()


def test_size_and_bops_follow_the_option_widths():
    layers = [conv(in_channels=32, out_channels=16)]
    priced = price_options(INT8, layers, [PrecisionOption(4, 8), PrecisionOption(8, 2)])
    weights = 32 * 16 * 9
    assert list(priced["size_bits"][0]) == [weights * 4, weights * 8]
    macs = int(cost_network(INT8, layers).macs)
    assert list(priced["bops"][0]) == [macs * 32, macs * 16]


def test_bad_options_are_one_clear_error():
    layers = [conv()]
    with pytest.raises(WorkloadError, match="no options given"):
        price_options(INT8, layers, [])
    with pytest.raises(WorkloadError, match=r"option 1 \(int w0a8\): weight_bits must be an "
                                            r"integer from 1 to 256, got 0"):
        price_options(INT8, layers, [PrecisionOption(8, 8), PrecisionOption(0, 8)])
    with pytest.raises(WorkloadError, match="option 0 is tuple, expected a PrecisionOption"):
        price_options(INT8, layers, [(8, 8)])
    with pytest.raises(WorkloadError, match="weight_format must be a format family name"):
        price_options(INT8, layers, [PrecisionOption(8, 8, "")])
    with pytest.raises(KeyError, match="unknown resource 'cycles'"):
        price_options(INT8, layers, [PrecisionOption(8, 8)])["cycles"]


def test_layer_costs_are_consistent_and_name_their_estimators():
    layers = builtin_workload("resnet18", input_hw=64)
    apot = [replace(l, weight_format="apot", weight_bits=4) for l in layers]
    costs = cost_table(HETERO, LayerTable.from_layers(apot))
    levels = sum(level.energy_pj for level in costs.levels.values())
    np.testing.assert_allclose(costs.energy_total_pj, costs.energy_compute_pj + levels,
                               rtol=1e-12)
    np.testing.assert_allclose(sum(costs.action_energy_pj.values()), costs.energy_compute_pj,
                               rtol=1e-12)
    # actions of the other unit are 0 on a unit's rows
    on_array = costs.unit == "int8_array"
    assert on_array.sum() == 2 and (costs.actions["shift"][on_array] == 0).all()
    assert (costs.actions["mac"][~on_array] == 0).all()
    assert set(costs.provenance["compute_cycles"]) == {"int8_array", "shift_add"}
    assert "SCALE-Sim" in costs.provenance["compute_cycles"]["int8_array"]
    assert "hetero_int8_apot.yaml" in costs.provenance["energy_levels_pj"]["shift_add"]
    network = cost_network(HETERO, apot)
    assert network.energy_by_action_pj()["shift"] == pytest.approx(
        float(costs.action_energy_pj["shift"].sum()))
    assert set(network.energy_by_level_pj()) == {"compute", *(lvl.name for lvl in HETERO.levels)}
    np.testing.assert_array_equal(network.per_layer["energy_shift_pj"],
                                  costs.action_energy_pj["shift"])


def test_utilization_uses_the_units_peak_at_the_layer_widths():
    accel = accel_with(8, 8, "os")
    costs = cost_table(accel, LayerTable.from_layers([conv()]))
    assert costs.peak_macs_per_cycle[0] == 64.0
    assert costs.utilization[0] == pytest.approx(costs.macs[0] / (costs.compute_cycles[0] * 64))
