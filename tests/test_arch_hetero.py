"""Heterogeneous accelerators: several units, assignment rules, per-layer unit, config errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwsim.arch import (UNIT_KINDS, AssignRule, Operands, SystolicArray, XnorPopcount,
                        assign_units, load_accelerator)
from hwsim.cost import cost_network
from hwsim.errors import ConfigError
from tests._cost_helpers import write_config_variant
from hwsim.workloads import builtin_workload

REPO = Path(__file__).resolve().parents[1]
HETERO = REPO / "hw_configs" / "hetero_int8_xnor.yaml"
BINARY = REPO / "hw_configs" / "binary_xnor.yaml"


def binarize_middle(layers):
    last = len(layers) - 1
    return [l if i in (0, last) else replace(l, act_bits=1, weight_bits=1, weight_format="binary",
                                             act_format="binary")
            for i, l in enumerate(layers)]


def test_hetero_config_loads_with_named_units():
    accel = load_accelerator(HETERO)
    assert accel.default_unit == "binary" and list(accel.units) == ["binary", "int8_array"]
    assert isinstance(accel.unit("int8_array"), SystolicArray)
    assert isinstance(accel.compute, XnorPopcount)
    assert accel.rules == (AssignRule("int8_array", position="first"),
                           AssignRule("int8_array", position="last"))
    with pytest.raises(ConfigError, match=r"no compute unit named 'gpu'.*'binary', 'int8_array'"):
        accel.unit("gpu")


def test_resnet18_per_layer_report_names_the_unit_of_each_layer():
    accel = load_accelerator(HETERO)
    layers = binarize_middle(builtin_workload("resnet18", input_hw=64))
    result = cost_network(accel, layers)
    frame = result.per_layer
    expected = ["int8_array"] + ["binary"] * (len(layers) - 2) + ["int8_array"]
    assert list(frame["unit"]) == expected
    # Each row is priced exactly as on a single-unit accelerator with that unit alone.
    int8_only = replace(accel, compute=accel.unit("int8_array"), compute_name="", other_units=(),
                        rules=())
    bin_only = replace(accel, other_units=(), rules=())
    for i in (0, 5, len(layers) - 1):
        alone = cost_network(int8_only if expected[i] == "int8_array" else bin_only, [layers[i]])
        row, ref = frame.iloc[i], alone.per_layer.iloc[0]
        for col in ("compute_cycles", "total_cycles", "energy_compute_pj", "energy_total_pj",
                    "dram_read_bytes", "utilization", "passes"):
            assert row[col] == ref[col], (i, col)
    assert (frame.loc[frame["unit"] == "binary", "mac_actions"] == 0).all()
    assert (frame.loc[frame["unit"] == "int8_array", "xnor_actions"] == 0).all()
    assert result.total_cycles == frame["total_cycles"].sum()
    pes = np.where(frame["unit"] == "binary", 32 * 64, 32 * 32)
    assert result.utilization == pytest.approx(result.macs / (frame["compute_cycles"] * pes).sum())


def test_unsupported_format_names_file_field_layer_and_unit():
    accel = load_accelerator(HETERO)
    layers = builtin_workload("resnet18", input_hw=64)  # all int8
    with pytest.raises(ConfigError) as err:
        cost_network(accel, layers)
    msg = str(err.value)
    assert f"{HETERO}: units.binary: layer 'layer1.0.conv1' (act_bits=8, weight_bits=8)" in msg
    assert "unit 'binary' (xnor_popcount)" in msg and "weight_bits (planes) <= 4" in msg
    assert "'conv1'" not in msg and "'fc'" not in msg  # those run on the int8 array
    single = load_accelerator(BINARY)
    five_bit = [replace(layers[3], act_bits=5, weight_bits=1)]
    with pytest.raises(ConfigError, match=rf"{BINARY}: compute: layer '{layers[3].name}' \(act_bits=5"):
        cost_network(single, five_bit)


def test_rules_match_by_pattern_bits_and_position_first_match_wins():
    names = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.downsample.0", "fc"]
    act = np.array([8, 1, 2, 1, 8])
    wgt = np.array([8, 1, 1, 1, 8])
    rules = [AssignRule("a", layers=("*.downsample.*",)), AssignRule("b", act_bits=2),
             AssignRule("c", position="last"), AssignRule("d", layers=("layer*",), weight_bits=1),
             AssignRule("e", position="first", weight_bits=4)]
    got = assign_units(rules, "z", names, Operands.of(act, wgt))
    assert list(got) == ["z", "d", "b", "a", "c"]
    # position follows the name, so repeated rows (one per option) are assigned alike
    assert list(assign_units([AssignRule("f", position="first")], "z", ["x", "y", "x"],
                             Operands.of(act[:3], wgt[:3]))) == ["f", "z", "f"]


def test_rules_match_by_weight_and_activation_format():
    names = ["a", "b", "c", "d"]
    ops = Operands.of([8, 4, 4, 1], [8, 4, 4, 1], ["int", "apot", "apot", "binary"],
                      ["int", "int", "apot", "binary"])
    rules = [AssignRule("x", format="apot", act_format="apot"), AssignRule("y", format="apot"),
             AssignRule("w", act_format="binary", weight_bits=8), AssignRule("v", format="binary")]
    assert list(assign_units(rules, "z", names, ops)) == ["z", "y", "x", "v"]


def test_rules_from_yaml_by_pattern_and_overrides_reach_named_units(tmp_path):
    def edit(raw):
        raw["assign"]["rules"] = [{"unit": "int8_array", "layers": ["conv1", "fc"]},
                                  {"unit": "int8_array", "weight_bits": 8}]
    accel = load_accelerator(write_config_variant(tmp_path, HETERO, edit), ["units.binary.simd=32"])
    assert accel.unit("binary").simd == 32
    layers = binarize_middle(builtin_workload("resnet18", input_hw=32))
    layers[5] = replace(layers[5], act_bits=8, weight_bits=8, weight_format="int", act_format="int")
    units = list(cost_network(accel, layers).per_layer["unit"])
    assert units[0] == units[5] == units[-1] == "int8_array"
    assert units.count("binary") == len(layers) - 3


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["assign"]["rules"][0].update(unit="gpu"),
     "assign.rules[0].unit: expected one of ['binary', 'int8_array'], got 'gpu'"),
    (lambda r: r["assign"].update(default="tpu"),
     "assign.default: expected one of ['binary', 'int8_array'], got 'tpu'"),
    (lambda r: r["assign"]["rules"][1].update(position="middle"),
     "assign.rules[1].position: expected one of ['first', 'last'], got 'middle'"),
    (lambda r: r["assign"]["rules"][1].update(layers="conv*"),
     "assign.rules[1].layers: expected a non-empty list of name patterns"),
    (lambda r: r["assign"]["rules"][0].update(weight_bit=1), "assign.rules[0].weight_bit: unknown field"),
    (lambda r: r.pop("assign"), "assign: missing; with several units"),
    (lambda r: r.update(compute=r["units"]["binary"]), "units: give either 'compute'"),
    (lambda r: r["units"]["binary"].update(popcount_bits=6),
     "units.binary.popcount_bits: expected at least 7 bits to count 64 SIMD lanes, got 6"),
    (lambda r: r["units"]["binary"].update(mac_energy_pj=0.3),
     "units.binary.mac_energy_pj: unknown field"),
    (lambda r: r["units"]["binary"].pop("simd"), "units.binary.simd: missing; expected a positive integer"),
    (lambda r: r["units"]["int8_array"].update(kind="analog"),
     f"units.int8_array.kind: expected one of {sorted(UNIT_KINDS)}, got 'analog'"),
])
def test_bad_hetero_config_gives_one_error_naming_file_and_field(tmp_path, edit, expected):
    path = write_config_variant(tmp_path, HETERO, edit)
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    assert "(1 error)" in msg and f"{path}: {expected}" in msg, msg


def test_single_binary_config_and_its_errors(tmp_path):
    accel = load_accelerator(BINARY)
    assert accel.default_unit == "xnor_popcount" and accel.other_units == ()
    unit = accel.compute
    assert (unit.pe, unit.simd, unit.popcount_bits, unit.acc_bits) == (32, 64, 7, 16)
    path = write_config_variant(tmp_path, BINARY, lambda r: r["compute"].update(acc_bits=4, pe=0))
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    assert "(2 errors)" in msg
    assert f"{path}: compute.acc_bits: expected at least popcount_bits (7), got 4" in msg
    assert f"{path}: compute.pe: expected a positive integer, got 0" in msg
    path = write_config_variant(tmp_path, BINARY, lambda r: r.update(assign={"default": "x"}))
    with pytest.raises(ConfigError, match="assign: only valid with 'units'"):
        load_accelerator(path)
