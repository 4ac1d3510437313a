"""Accelerator config loading: YAML and SCALE-Sim .cfg, overrides, and all-errors-at-once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.arch import (UNIT_KINDS, Accelerator, SystolicArray, UnitKind, load_accelerator,
                        register_unit_kind, unit_kind)
from hwsim.errors import ConfigError
from tests._cost_helpers import write_config_variant

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "hw_configs").glob("*.yaml"))
BASE = REPO / "hw_configs" / "int8_systolic.yaml"


def write_variant(tmp_path: Path, edit) -> Path:
    return write_config_variant(tmp_path, BASE, edit)


def test_shipped_configs_load():
    assert len(CONFIGS) >= 3
    names = set()
    for path in CONFIGS:
        accel = load_accelerator(path)
        assert isinstance(accel, Accelerator) and accel.source == str(path)
        assert accel.dram.size_bytes is None
        assert {op for b in accel.buffers for op in b.holds} == {"ifmap", "filter", "ofmap"}
        names.add(accel.name)
    assert len(names) == len(CONFIGS)


def test_base_config_values():
    accel = load_accelerator(BASE)
    unit = accel.compute
    assert isinstance(unit, SystolicArray)
    assert (unit.rows, unit.cols, unit.dataflow, unit.act_bits, unit.acc_bits) == (32, 32, "os", 8, 32)
    assert unit.mac_energy_pj == 0.3 and accel.clock_hz == 1e9 and accel.clock_mhz == 1000
    assert accel.buffer_for("filter").name == "filter_sram"
    assert [lvl.name for lvl in accel.levels] == ["dram", "ifmap_sram", "filter_sram", "ofmap_sram"]


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["compute"].pop("rows"), "compute.rows: missing; expected a positive integer"),
    (lambda r: r["compute"].update(cols="wide"), "compute.cols: expected a positive integer, got 'wide'"),
    (lambda r: r["compute"].update(rows=0), "compute.rows: expected a positive integer, got 0"),
    (lambda r: r["memory"]["buffers"]["ifmap_sram"].update(size_bytes=-4096),
     "memory.buffers.ifmap_sram.size_bytes: expected a positive integer, got -4096"),
    (lambda r: r["compute"].update(dataflow="rs"),
     "compute.dataflow: expected one of ['os', 'ws', 'is'], got 'rs'"),
    (lambda r: r.pop("clock_mhz"), "clock_mhz: missing"),
    (lambda r: r["memory"]["dram"].update(read_energy_pj=-1.0),
     "memory.dram.read_energy_pj: expected a non-negative number, got -1.0"),
    (lambda r: r["compute"].update(rows=True), "compute.rows: expected a positive integer, got True"),
    (lambda r: r["compute"].update(rowz=4), "compute.rowz: unknown field"),
    (lambda r: r["memory"]["buffers"]["ofmap_sram"].update(holds=["ofmap", "psum"]),
     "memory.buffers.ofmap_sram.holds: expected a non-empty list"),
    (lambda r: r["memory"]["buffers"]["filter_sram"].update(holds=["filter", "ifmap"]),
     "memory.buffers: operand 'ifmap' must be held by exactly one buffer"),
    (lambda r: r["memory"].pop("dram"), "memory.dram: missing"),
])
def test_each_bad_field_is_named_with_the_file(tmp_path, edit, expected):
    path = write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    assert f"{path}: {expected}" in str(err.value)


def test_all_errors_reported_together(tmp_path):
    def edit(raw):
        raw["compute"]["rows"] = 0
        raw["compute"]["dataflow"] = "xs"
        raw["memory"]["buffers"]["ofmap_sram"]["bandwidth_bytes_per_cycle"] = "fast"
    path = write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    lines = msg.splitlines()
    # the first line names the file and the first problem, then one line per further problem
    assert lines[0] == f"{path}: compute.rows: expected a positive integer, got 0 (3 errors)"
    assert len(lines) == 3 and all(line.startswith(f"  {path}: ") for line in lines[1:])
    for field in ("compute.rows", "compute.dataflow",
                  "memory.buffers.ofmap_sram.bandwidth_bytes_per_cycle"):
        assert f"{path}: {field}:" in msg


def test_unknown_kind_lists_known_kinds(tmp_path):
    path = write_variant(tmp_path, lambda r: r["compute"].update(kind="analog_crossbar"))
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    assert {"shift_add", "systolic", "xnor_popcount"} <= set(UNIT_KINDS)
    assert f"compute.kind: expected one of {sorted(UNIT_KINDS)}" in str(err.value)
    with pytest.raises(ConfigError) as err:
        unit_kind("analog_crossbar")
    assert f"known kinds: {sorted(UNIT_KINDS)}" in str(err.value)


def test_registering_a_kind_twice_is_refused():
    before = dict(UNIT_KINDS)
    with pytest.raises(ConfigError, match="already registered"):
        register_unit_kind(UnitKind("systolic", (), lambda v: None, "dup"))
    assert UNIT_KINDS == before


def test_overrides_apply_before_validation():
    accel = load_accelerator(BASE, ["compute.rows=64", "compute.dataflow=ws",
                                    "memory.buffers.ifmap_sram.size_bytes=4096",
                                    "memory.dram.bandwidth_bytes_per_cycle=8.5"])
    assert (accel.compute.rows, accel.compute.dataflow) == (64, "ws")
    assert accel.buffer_for("ifmap").size_bytes == 4096
    assert accel.dram.bandwidth_bytes_per_cycle == 8.5
    with pytest.raises(ConfigError, match="^--set compute.cols=0: expected a positive integer, "
                                          "got 0"):
        load_accelerator(BASE, ["compute.cols=0"])


@pytest.mark.parametrize("override, expected", [
    ("compute.rowz=4", "--set compute.rowz=4: compute.rowz does not exist; did you mean "
                       "'compute.rows'?"),
    ("memory.buffers.gb.size_bytes=1", "--set memory.buffers.gb.size_bytes=1: "
                                       "memory.buffers.gb.size_bytes does not exist"),
    ("compute.rows", "--set compute.rows: expected 'key.path=value'"),
])
def test_bad_override_is_an_error(override, expected):
    with pytest.raises(ConfigError) as err:
        load_accelerator(BASE, [override])
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_missing_file_bad_suffix_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_accelerator(tmp_path / "none.yaml")
    other = tmp_path / "x.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match="unknown accelerator config type"):
        load_accelerator(other)
    broken = tmp_path / "broken.yaml"
    broken.write_text("compute: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_accelerator(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_accelerator(empty)


SCALESIM_CFG = """[general]
run_name = google_like

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = 128
ArrayWidth = 64
IfmapSramSzkB = 6144
FilterSramSzkB = 6144
OfmapSramSzkB = 2048
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 25
Dataflow = is
ReadRequestBuffer = 32
WriteRequestBuffer = 32
"""


def test_scalesim_cfg_is_mapped(tmp_path):
    path = tmp_path / "google.cfg"
    path.write_text(SCALESIM_CFG)
    accel = load_accelerator(path)
    unit = accel.compute
    assert accel.name == "google_like"
    assert (unit.rows, unit.cols, unit.dataflow, unit.act_bits) == (128, 64, "is", 8)
    assert accel.buffer_for("ifmap").size_bytes == 6144 * 1024
    assert accel.buffer_for("ofmap").size_bytes == 2048 * 1024
    assert accel.dram.bandwidth_bytes_per_cycle == 25.0
    assert accel.clock_hz == 1e9 and unit.mac_energy_pj > 0
    tuned = load_accelerator(path, ["compute.mac_energy_pj=0.5", "memory.buffers.ofmap_sram.size_bytes=1024"])
    assert tuned.compute.mac_energy_pj == 0.5 and tuned.buffer_for("ofmap").size_bytes == 1024


def test_scalesim_cfg_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.cfg"
    path.write_text(SCALESIM_CFG.replace("ArrayHeight = 128", "ArrayHeight = tall")
                    .replace("Dataflow = is", "Dataflow = rs").replace("OfmapSramSzkB = 2048\n", ""))
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: [architecture_presets] ArrayHeight: expected an integer, "
                          f"got 'tall' (3 errors)\n")
    assert f"{path}: [architecture_presets] Dataflow: expected one of ['os', 'ws', 'is'], got 'rs'" in msg
    assert f"{path}: [architecture_presets] OfmapSramSzkB: missing" in msg
    # only the .cfg's own problems: nothing about YAML fields the SCALE-Sim user never wrote
    assert len(msg.splitlines()) == 3 and "compute." not in msg and "memory." not in msg


def test_a_new_unit_kind_needs_only_one_registry_entry(tmp_path):
    """A toy kind: registered once, it loads from YAML and is priced by the unchanged cost model."""
    from dataclasses import dataclass

    import numpy as np

    from hwsim.arch import ArrayAccesses, ComputeUnit
    from hwsim.arch.schema import positive_int
    from hwsim.cost import cost_network
    from hwsim.workloads import linear_layer

    @dataclass(frozen=True)
    class ToyLanes(ComputeUnit):
        lanes: int = 1

        @property
        def pe_count(self) -> int:
            return self.lanes

        def compute_cycles(self, g, ops):
            return -(-(g.sr * g.sc * g.t) // self.lanes)

        def array_accesses(self, g, ops):
            sr, sc, t = g.sr, g.sc, g.t
            zero = np.zeros_like(sr)
            return ArrayAccesses(sr * t, sc * t, sr * sc, zero, zero, False)

    register_unit_kind(UnitKind("toy_lanes", (positive_int("lanes"),), lambda v: ToyLanes(**v), "test"))
    try:
        def edit(raw):
            for key in ("rows", "cols", "dataflow"):
                raw["compute"].pop(key)
            raw["compute"].update(kind="toy_lanes", lanes=10)
        accel = load_accelerator(write_variant(tmp_path, edit))
        result = cost_network(accel, [linear_layer("fc", 7, 3)])
        assert result.compute_cycles == 3  # ceil(21 MACs / 10 lanes)
        with pytest.raises(ConfigError, match="'systolic', 'toy_lanes'"):
            unit_kind("nope")
    finally:
        del UNIT_KINDS["toy_lanes"]
