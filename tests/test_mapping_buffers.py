"""Mappings on two-level accelerators: the value, the default mapper, files and overrides."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwsim.arch import load_accelerator
from hwsim.cli import main
from hwsim.cost import cost_network
from hwsim.errors import ConfigError, WorkloadError
from hwsim.mapping.buffers import BufferMapping
from hwsim.mapping.files import load_mappings, mappings_from_dict
from hwsim.workloads import builtin_workload
from tests._cost_helpers import accel_with, reference_cycles

REPO = Path(__file__).resolve().parents[1]
HW = REPO / "hw_configs" / "int8_systolic.yaml"


def shared_buffer_accel(size: int = 65536):
    """The base config with ifmap and filters sharing one buffer of `size` bytes."""
    accel = accel_with(16, 16, "ws")
    ifmap, filt, ofmap = accel.buffers
    shared = replace(ifmap, name="act_w_sram", holds=("ifmap", "filter"), size_bytes=size)
    return replace(accel, buffers=(shared, ofmap))


@pytest.mark.parametrize("objective", ["latency", "energy", "edp"])
@pytest.mark.parametrize("accel", [accel_with(16, 16, "ws", buffer_bytes=8192),
                                   shared_buffer_accel()], ids=["split", "shared"])
def test_the_mapper_is_no_worse_than_any_candidate_on_every_layer(objective, accel):
    layers = builtin_workload("resnet18")
    best = cost_network(accel, layers, objective=objective).per_layer
    score = {"latency": best.total_cycles, "energy": best.energy_total_pj,
             "edp": best.total_cycles * best.energy_total_pj}[objective]
    # every candidate, forced on every layer
    candidates = [BufferMapping(order) for order in ("filter_outer", "ifmap_outer")]
    if len(accel.buffers) == 2:
        candidates += [BufferMapping("filter_outer", tiles_bytes=(("filter", 49152),)),
                       BufferMapping("ifmap_outer", tiles_bytes=(("ifmap", 49152),))]
    for candidate in candidates:
        forced = cost_network(accel, layers, mappings=[candidate] * len(layers)).per_layer
        other = {"latency": forced.total_cycles, "energy": forced.energy_total_pj,
                 "edp": forced.total_cycles * forced.energy_total_pj}[objective]
        assert (score <= other * (1 + 1e-12)).all(), candidate


def test_mappings_round_trip_through_a_file_and_reproduce_the_costs(tmp_path):
    accel = shared_buffer_accel(8192)
    layers = builtin_workload("resnet18")
    first = cost_network(accel, layers, objective="energy")
    chosen = first.mappings()
    assert {m.loop_order for m in chosen} == {"filter_outer", "ifmap_outer"}
    assert any(m.tile("filter") == 6144 for m in chosen)  # the 3/4 partition candidate
    assert any(m.tile("ifmap") == 6144 for m in chosen)
    doc = {"layers": {l.name: m.to_dict() for l, m in zip(layers, chosen)}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    again = cost_network(accel, layers, mappings=load_mappings(path, [l.name for l in layers]))
    for column in ("total_cycles", "energy_total_pj", "dram_read_bytes"):
        np.testing.assert_array_equal(first.per_layer[column], again.per_layer[column])
    assert again.mappings() == chosen


def test_a_given_dataflow_runs_that_dataflow_and_the_rest_keep_the_config():
    accel = accel_with(32, 32, "os")
    layers = builtin_workload("resnet18")[:3]
    cost = cost_network(accel, layers, mappings=[BufferMapping("filter_outer", "ws"), None, None])
    l0 = layers[0]
    sr = 112 * 112
    assert cost.per_layer.compute_cycles[0] == reference_cycles("ws", 32, 32, sr, 64, 7 * 7 * 3)
    assert [m.dataflow for m in cost.mappings()] == ["ws", "os", "os"]
    assert l0.name == "conv1"


def test_bad_mappings_are_one_clear_error():
    names = [l.name for l in builtin_workload("resnet18")]
    accel = load_accelerator(HW)
    with pytest.raises(ConfigError, match=r"m.yaml: layers.conv1.loop_order: expected one of"):
        mappings_from_dict({"layers": {"conv1": {"loop_order": "sideways"}}}, names, "m.yaml")
    with pytest.raises(ConfigError, match=r"layers.conv1.tiles_bytes.psum: unknown operand"):
        mappings_from_dict({"layers": {"conv1": {"tiles_bytes": {"psum": 4}}}}, names)
    with pytest.raises(ConfigError, match=r"layers.conv1.tile: unknown field"):
        mappings_from_dict({"layers": {"conv1": {"tile": 4}}}, names)
    with pytest.raises(WorkloadError, match=r"\['conv0'\] match no layer"):
        mappings_from_dict({"layers": {"conv0": {"loop_order": "ifmap_outer"}}}, names)
    with pytest.raises(ConfigError, match="expected a mapping with 'layers'"):
        mappings_from_dict({"conv1": {}}, names)
    given = mappings_from_dict({"layers": {"conv1": {"tiles_bytes": {"filter": 200000}}}}, names,
                               "m.yaml")
    with pytest.raises(ConfigError, match=r"m.yaml: layer 'conv1': tiles_bytes \{'filter': "
                                          r"200000\} need 200000 bytes; buffer 'filter_sram'"):
        cost_network(accel, builtin_workload("resnet18"), mappings=given, source="m.yaml")
    fusion = load_accelerator(REPO / "hw_configs" / "bitfusion.yaml")
    given = mappings_from_dict({"layers": {"conv1": {"dataflow": "ws"}}}, names, "m.yaml")
    with pytest.raises(ConfigError, match="layer 'conv1': dataflow 'ws': unit 'bit_fusion'"):
        cost_network(fusion, builtin_workload("resnet18"), mappings=given, source="m.yaml")
    with pytest.raises(ConfigError, match="objective: expected one of"):
        cost_network(accel, builtin_workload("resnet18"), objective="area")


def test_cli_writes_the_mapping_and_reads_it_back(tmp_path, capsys):
    out, again = tmp_path / "m.json", tmp_path / "a.json"
    cost_json = tmp_path / "c.json"
    assert main(["simulate", "--hw", str(HW), "--model", "resnet18", "--objective", "latency",
                 "--mapping-out", str(out), "--json", str(cost_json), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["objective"] == "latency" and len(doc["layers"]) == 21
    doc["layers"]["conv1"]["dataflow"] = "ws"
    out.write_text(json.dumps(doc))
    assert main(["simulate", "--hw", str(HW), "--model", "resnet18", "--mapping", str(out),
                 "--json", str(again), "-q"]) == 0
    before = json.loads(cost_json.read_text())["per_layer"]
    after = json.loads(again.read_text())["per_layer"]
    assert before[0]["compute_cycles"] != after[0]["compute_cycles"]
    assert [r["total_cycles"] for r in before[1:]] == [r["total_cycles"] for r in after[1:]]
    capsys.readouterr()
    assert main(["simulate", "--hw", str(HW), "--model", "resnet18", "--mapping",
                 str(tmp_path / "missing.yaml")]) == 2
    assert "--mapping" in capsys.readouterr().err
