"""Compute cycles equal SCALE-Sim v3 CALC-mode compute cycles (reference data in tests/data/scalesim)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hwsim.cost import cost_network
from hwsim.workloads import LayerShape

from tests._cost_helpers import accel_with

DATA = Path(__file__).resolve().parent / "data" / "scalesim" / "scalesim_v3_compute_cycles.csv"
ROWS = list(csv.DictReader(DATA.open()))


def layer_of(row: dict) -> LayerShape:
    channels, filters = int(row["channels"]), int(row["num_filter"])
    depthwise = "DP" in row["layer"]
    return LayerShape(
        name=row["layer"], kind="conv", in_h=int(row["ifmap_h"]), in_w=int(row["ifmap_w"]),
        in_channels=channels, out_channels=channels * filters if depthwise else filters,
        kernel_h=int(row["filter_h"]), kernel_w=int(row["filter_w"]),
        stride_h=int(row["stride"]), stride_w=int(row["stride"]),
        groups=channels if depthwise else 1)


def test_reference_covers_enough_cases():
    assert {r["scalesim_version"] for r in ROWS} == {"3.0.0"}
    cases = {(r["layer"], r["rows"], r["cols"]) for r in ROWS}
    assert len(cases) >= 8
    assert {r["dataflow"] for r in ROWS} == {"os", "ws", "is"}
    assert any(r["rows"] != r["cols"] for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['layer']}-{r['rows']}x{r['cols']}-{r['dataflow']}")
def test_compute_cycles_equal_scalesim(row):
    accel = accel_with(int(row["rows"]), int(row["cols"]), row["dataflow"])
    result = cost_network(accel, [layer_of(row)], convention="scalesim")
    assert result.compute_cycles == int(row["compute_cycles"])
    assert int(result.per_layer["compute_cycles"].iloc[0]) == int(row["compute_cycles"])
