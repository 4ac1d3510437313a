"""Memory hierarchies of any depth (``memory.levels``) priced through `cost_network`: the config
schema and its errors, the loop-nest mappings (given or searched), and ZigZag's numbers reached
through hwsim's own YAML configs (tests/data/zigzag/)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwsim.arch import accelerator_from_dict, load_accelerator
from hwsim.cli import main
from hwsim.cost import cost_network
from hwsim.errors import ConfigError
from hwsim.mapping.files import load_mappings
from hwsim.mapping.loopnest import LoopNest
from hwsim.workloads import LayerShape, builtin_workload

REPO = Path(__file__).resolve().parents[1]
EYERISS = REPO / "hw_configs" / "eyeriss_like.yaml"
_spec = importlib.util.spec_from_file_location("bench_zigzag", REPO / "bench" / "bench_zigzag.py")
bench_zigzag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_zigzag)
REF, zigzag_config, zigzag_case = bench_zigzag.REF, bench_zigzag.zigzag_config, bench_zigzag.zigzag_case


@pytest.mark.parametrize("key", sorted(REF["results"]))
def test_zigzag_numbers_through_hwsim_configs(key):
    """MAC energy equal, memory energy and latency within 10% of ZigZag 3.9.1, priced by
    `cost_network` on hwsim YAML configs with the same energies, sizes, ports and mappings."""
    r = REF["results"][key]
    accel = accelerator_from_dict(zigzag_config(r["config"]), f"zigzag_{r['config']}")
    layer, nest = zigzag_case(key)
    cost = cost_network(accel, [layer], mappings=[nest])
    row = cost.per_layer.iloc[0]
    assert row.energy_compute_pj == pytest.approx(r["energy_pJ"]["mac"], rel=1e-12)
    memory = row.energy_total_pj - row.energy_compute_pj
    assert memory == pytest.approx(r["energy_pJ"]["memory_total"], rel=0.10)
    assert row.compute_cycles == r["latency_cycles"]["ideal_temporal"]
    assert row.total_cycles == pytest.approx(r["latency_cycles"]["total"], rel=0.10)
    assert cost.mappings()[0] == nest


def test_eyeriss_like_config_prices_every_network_and_totals_add_up():
    accel = load_accelerator(EYERISS)
    assert accel.hierarchy and [l.name for l in accel.chain("filter")] == ["dram", "glb",
                                                                        "filter_rf"]
    cost = cost_network(accel, builtin_workload("resnet18"))
    frame = cost.per_layer
    levels = ["dram", "glb", "filter_rf", "ifmap_rf", "psum_rf"]
    summed = frame.energy_compute_pj + sum(frame[f"energy_{l}_pj"] for l in levels)
    np.testing.assert_allclose(frame.energy_total_pj, summed, rtol=1e-12)
    assert (frame.total_cycles >= frame.compute_cycles).all()
    assert (frame.utilization <= 1 + 1e-12).all() and cost.utilization > 0.5
    assert (frame.compute_cycles * 168 >= frame.macs).all()
    # a register file is read at most once per PE per cycle (stationary operands less; partial
    # tiles count their idle PEs, see hwsim/mapping/loopnest.py)
    assert (frame.filter_rf_read_accesses <= frame.compute_cycles * 168).all()
    assert isinstance(cost.mappings()[0], LoopNest)
    again = cost_network(accel, builtin_workload("resnet18"), mappings=cost.mappings())
    np.testing.assert_array_equal(again.per_layer.total_cycles, frame.total_cycles)
    np.testing.assert_array_equal(again.per_layer.energy_total_pj, frame.energy_total_pj)


def test_narrower_operands_cost_less_memory_energy_on_the_hierarchy():
    accel = load_accelerator(EYERISS)
    layers = builtin_workload("resnet18")
    from dataclasses import replace
    w8 = cost_network(accel, layers)
    w4 = cost_network(accel, [replace(l, act_bits=4, weight_bits=4) for l in layers])
    assert w4.energy_by_level_pj()["dram"] < w8.energy_by_level_pj()["dram"]
    assert w4.energy_total_pj < w8.energy_total_pj


def _eyeriss_raw() -> dict:
    return yaml.safe_load(EYERISS.read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["memory"]["levels"]["ifmap_rf"].update(holds=[]),
     "memory.levels.ifmap_rf.holds: expected a non-empty list"),
    (lambda r: r["memory"]["levels"]["glb"].update(parent="psum_rf"),
     "memory.levels.glb.parent: the levels form a cycle"),
    (lambda r: r["memory"]["levels"]["glb"].update(parent="l2"),
     "memory.levels.glb.parent: expected another level"),
    (lambda r: r["memory"]["levels"]["psum_rf"].update(holds=["ofmap", "filter"]),
     "operand 'filter' is held by 'filter_rf' and 'psum_rf', which are not on one path"),
    (lambda r: r["memory"]["levels"]["glb"].update(holds=["ifmap", "filter"]) or
     r["memory"]["levels"]["psum_rf"].update(holds=["ifmap"]),
     "operand 'ofmap' is held by no on-chip level"),
    (lambda r: r["compute"].update(kind="systolic", dataflow="os") or r["compute"].pop(
        "mac_energy_pj"), "compute.kind: a memory hierarchy (memory.levels) needs a unit"),
    (lambda r: r["memory"].update(dram={}), "memory: give either 'levels'"),
    (lambda r: r["memory"]["levels"]["glb"].update(ports=3), "memory.levels.glb.ports: expected"),
])
def test_bad_hierarchies_are_clear_errors(tmp_path, edit, message):
    raw = _eyeriss_raw()
    edit(raw)
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_a_mapping_whose_tiles_do_not_fit_names_the_file_layer_and_level(tmp_path):
    accel = load_accelerator(EYERISS)
    layers = builtin_workload("resnet18")[:2]
    nest = cost_network(accel, layers).mappings()[1]
    doc = nest.to_dict()
    # everything but the outermost loop into the filter register file: far beyond 224 B
    doc["levels"]["filter"] = [len(doc["temporal"]) - 1, 1, 0]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"layers": {layers[1].name: doc}}))
    mappings = load_mappings(path, [l.name for l in layers], hierarchy=True)
    with pytest.raises(ConfigError) as err:
        cost_network(accel, layers, mappings=mappings, source=str(path))
    msg = str(err.value)
    assert f"{path}: layer {layers[1].name!r}: the mapping's tiles do not fit" in msg
    assert "level 'filter_rf' needs" in msg and "holds 1792" in msg
    bad = {"layers": {layers[0].name: {"spatial": {"cols": [["K", 14]]}, "temporal": [["Q", 2]],
                                       "levels": {}}}}
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=rf"{path}: layers.conv1: .*temporal"):
        load_mappings(path, [l.name for l in layers], hierarchy=True)


def test_cli_hierarchy_mapping_round_trip(tmp_path, capsys):
    out, first, second = tmp_path / "m.yaml", tmp_path / "a.json", tmp_path / "b.json"
    assert main(["simulate", "--hw", str(EYERISS), "--model", "resnet18", "--mapping-out",
                 str(out), "--json", str(first), "-q", "--objective", "edp"]) == 0
    doc = yaml.safe_load(out.read_text())
    assert set(doc["layers"]["conv1"]) == {"spatial", "temporal", "levels"}
    assert main(["simulate", "--hw", str(EYERISS), "--model", "resnet18", "--mapping", str(out),
                 "--json", str(second), "-q"]) == 0
    a = json.loads(first.read_text())["per_layer"]
    b = json.loads(second.read_text())["per_layer"]
    assert [r["total_cycles"] for r in a] == [r["total_cycles"] for r in b]
    wrong = copy.deepcopy(doc)
    wrong["layers"]["conv1"] = {"loop_order": "filter_outer"}
    out.write_text(yaml.safe_dump(wrong))
    capsys.readouterr()
    assert main(["simulate", "--hw", str(EYERISS), "--model", "resnet18", "--mapping",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layers.conv1" in err[0], err
