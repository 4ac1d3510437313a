"""Regression tests of the hardening issue: bad configs, topologies and models end in ONE clear
line (exit status 2 from the CLI), never a traceback or a silently wrong number.

The bad inputs are files under tests/data/bad/, named after their case:

1. binary garbage:          garbage_binary.{yaml,cfg,csv}
2. numbers too large:       rows_1e30.yaml, dim_1e30.csv
3. silently wrong answers:  duplicate_key.yaml, clock_inf.yaml, dram_bandwidth_1e30.yaml,
                            size_bytes_inf.yaml, mac_energy_1e308.yaml, access_bits_3.yaml,
                            acc_bits_below_product.yaml, rows_1e9.yaml (valid: must not give a
                            negative utilization)
4. int64 overflow:          int64_overflow.csv
5. topology headers:        no_header.csv, wrong_header.csv
6. SCALE-Sim CALC mode:     calc_mode_bandwidth_ignored.cfg
7. messages:                cfg_errors.cfg, typo_clock_mz.yaml (and --set strings)
8. ONNX ops not priced:     a GRU model the test writes (convtranspose.onnx is priced now)
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from hwsim.arch import accelerator_from_dict, load_accelerator
from hwsim.cli.main import main
from hwsim.cost import cost_network
from hwsim.errors import ConfigError, HwsimError, WorkloadError
from hwsim.workloads import LayerShape, load_topology_csv

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad"
HW = ROOT / "hw_configs" / "int8_systolic.yaml"
TOPOLOGY_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                   "Channels, Num Filter, Strides,\n")


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the hwsim CLI in-process: (exit status, stdout, stderr). Numpy warnings are errors."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def one_line_error(*argv: str) -> str:
    """The CLI's error for `argv`: exit status 2, exactly one line on stderr, no traceback."""
    rc, _, err = cli(*argv)
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"hwsim {argv[0]}: error: "), err
    return err.strip()


def small_topology(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text(TOPOLOGY_HEADER + "conv1, 10, 10, 3, 3, 4, 4, 1,\n")
    return path


# 1. Binary garbage ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["garbage_binary.yaml", "garbage_binary.cfg"])
def test_binary_config_is_not_a_text_file(tmp_path, name):
    path = BAD / name
    err = one_line_error("cost", "--hw", path, "--topology", small_topology(tmp_path))
    assert f"{path}: not a text file (UTF-8): byte 0xff at offset 0 cannot be decoded" in err
    with pytest.raises(ConfigError, match=r"not a text file \(UTF-8\)"):
        load_accelerator(path)


def test_binary_topology_is_not_a_text_file():
    path = BAD / "garbage_binary.csv"
    err = one_line_error("cost", "--hw", HW, "--topology", path)
    assert f"{path}: not a text file (UTF-8): byte 0xff at offset 0" in err
    with pytest.raises(WorkloadError, match=r"not a text file \(UTF-8\)"):
        load_topology_csv(path)


def test_nul_bytes_in_valid_utf8_are_not_text(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(HW.read_bytes().replace(b"name:", b"na\x00me:"))
    with pytest.raises(ConfigError, match="not a text file .*NUL bytes"):
        load_accelerator(path)
    topo = tmp_path / "nul.csv"
    topo.write_bytes(TOPOLOGY_HEADER.encode() + b"c1, 10, 10, 3, 3, 4\x00, 4, 1,\n")
    with pytest.raises(WorkloadError, match="not a text file .*NUL bytes"):
        load_topology_csv(topo)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + HW.read_bytes())
    assert load_accelerator(path).compute.rows == 32
    topo = tmp_path / "bom.csv"
    topo.write_bytes(b"\xef\xbb\xbf" + small_topology(tmp_path).read_bytes())
    assert [layer.name for layer in load_topology_csv(topo)] == ["conv1"]


# 2. Numbers too large -------------------------------------------------------------------------
def test_huge_rows_in_yaml_is_a_field_error_with_the_range(tmp_path):
    path = BAD / "rows_1e30.yaml"
    err = one_line_error("cost", "--hw", path, "--topology", small_topology(tmp_path))
    assert err.endswith(f"{path}: compute.rows: expected at most 2147483648, got "
                        f"1000000000000000000000000000000 (1 error)")


def test_huge_topology_dimension_is_a_row_error_with_the_range():
    path = BAD / "dim_1e30.csv"
    err = one_line_error("cost", "--hw", HW, "--topology", path)
    assert err.endswith(f"{path}: line 2: column 'IFMAP Height': expected an integer from 1 to "
                        f"2147483648, got '1000000000000000000000000000000' (1 error)")


def test_layer_shape_bounds_every_size():
    with pytest.raises(WorkloadError, match=r"in_h: expected at most 2147483648, got 10000"):
        LayerShape(name="x", kind="conv", in_h=10**30, in_w=4, in_channels=1, out_channels=1,
                   kernel_h=1, kernel_w=1)
    with pytest.raises(WorkloadError, match="act_bits: expected at most 256"):
        LayerShape(name="x", kind="linear", in_h=1, in_w=1, in_channels=1, out_channels=1,
                   kernel_h=1, kernel_w=1, act_bits=1000)
    with pytest.raises(WorkloadError, match="an integer of 5001 digits"):
        LayerShape(name="x", kind="conv", in_h=10**5000, in_w=4, in_channels=1,
                   out_channels=1, kernel_h=1, kernel_w=1)


# 3. Silently wrong answers --------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("duplicate_key.yaml", "not valid YAML: line 20, column 3: duplicate key 'rows' (first given "
                           "on line 19); each key may appear once per mapping"),
    ("clock_inf.yaml", "clock_mhz: expected a finite number, got inf (1 error)"),
    ("dram_bandwidth_1e30.yaml", "memory.dram.bandwidth_bytes_per_cycle: expected at most "
                                 "1000000000000, got 1e+30 (1 error)"),
    ("size_bytes_inf.yaml", "memory.buffers.ifmap_sram.size_bytes: expected a positive integer, "
                            "got inf (1 error)"),
    ("mac_energy_1e308.yaml", "compute.mac_energy_pj: expected at most 1000000000000, got 1e+308 "
                              "(1 error)"),
    ("access_bits_3.yaml", "memory.dram.access_bits: expected a positive multiple of 8 (an access "
                           "moves whole bytes), got 3 (1 error)"),
    ("acc_bits_below_product.yaml", "compute.acc_bits: expected at least act_bits + weight_bits "
                                    "(72) so that a partial sum holds one product, got 4 "
                                    "(1 error)"),
])
def test_values_that_used_to_be_accepted_are_errors(tmp_path, name, expected):
    path = BAD / name
    err = one_line_error("cost", "--hw", path, "--topology", small_topology(tmp_path))
    assert err.endswith(f"{path}: {expected}"), err


def test_numbers_from_python_are_bounded_too():
    raw = _base_raw()
    raw["compute"]["mac_energy_pj"] = 1e308  # used to price to inf with a numpy RuntimeWarning
    raw["memory"]["dram"]["bandwidth_bytes_per_cycle"] = float("nan")
    with pytest.raises(ConfigError) as err:
        accelerator_from_dict(raw, source="dict")
    msg = str(err.value)
    assert msg.startswith("dict: compute.mac_energy_pj: expected at most 1000000000000, got "
                          "1e+308 (2 errors)\n")
    assert "dict: memory.dram.bandwidth_bytes_per_cycle: expected a positive number or " \
           "'unlimited', got nan" in msg


def test_huge_array_gives_a_small_positive_utilization(tmp_path):
    out = tmp_path / "r.json"
    rc, _, err = cli("simulate", "--hw", BAD / "rows_1e9.yaml", "--model", "resnet18",
                     "--json", out)
    assert rc == 0, err
    doc = json.loads(out.read_text())
    utils = [row["utilization"] for row in doc["per_layer"]] + [doc["summary"]["utilization"]]
    assert all(0 < u < 1e-6 for u in utils), utils
    # exactly: useful MACs / (cycles x 1e9 x 32 PEs), which overflowed int64 before
    row = doc["per_layer"][0]
    assert row["utilization"] == row["macs"] / (row["compute_cycles"] * 10**9 * 32)


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(HW.read_text().replace("mac_energy_pj: 0.3", "mac_energy_pj: 3e-1"))
    assert load_accelerator(path).compute.mac_energy_pj == 0.3


# 4. int64 overflow in the cost arithmetic -----------------------------------------------------
def test_int64_overflow_is_an_error_naming_the_layer():
    err = one_line_error("cost", "--hw", HW, "--topology", BAD / "int64_overflow.csv")
    assert err.startswith("hwsim cost: error: layer 'huge': macs would be 1e+30 on the systolic "
                          "unit, beyond what the cost model counts exactly (at most 2^53"), err


def test_a_large_layer_is_exact_and_a_larger_one_is_refused():
    accel = load_accelerator(HW)
    ok = LayerShape(name="big", kind="linear", in_h=1, in_w=1, in_channels=2**16,
                    out_channels=2**16, kernel_h=1, kernel_w=1, batch=2**14)
    result = cost_network(accel, [ok])
    frame = result.per_layer
    assert result.macs == 2**46 and frame["macs"].iloc[0] == 2**46
    counts = frame.select_dtypes("number")
    assert (counts >= 0).all().all() and np.isfinite(counts.to_numpy(dtype=float)).all()
    # 2^53 MACs fit, but re-streaming its inputs once per filter chunk moves more than 2^53 bytes
    too_big = LayerShape(name="edge", kind="linear", in_h=1, in_w=1, in_channels=1,
                         out_channels=2**31, kernel_h=1, kernel_w=1, batch=2**22)
    with pytest.raises(WorkloadError, match=r"^layer 'edge': \w+ would be .* \(at most 2\^53"):
        cost_network(accel, [ok, too_big])


def test_totals_are_exact_beyond_int64():
    # 2^13 layers of 2^50 MACs each: the total, 2^63, does not fit int64 but is reported exactly
    layer = LayerShape(name="l", kind="conv", in_h=2**13, in_w=2**13, in_channels=2**12,
                       out_channels=2**12, kernel_h=1, kernel_w=1)
    result = cost_network(load_accelerator(HW), [layer] * 2**13)
    assert result.per_layer["macs"].iloc[0] == 2**50 and result.macs == 2**63
    per_layer_cycles = int(result.per_layer["total_cycles"].iloc[0])
    assert result.total_cycles == per_layer_cycles * 2**13 > 0
    assert 0 < result.utilization <= 1 and math.isfinite(result.energy_total_pj)


# 5. Topology header ---------------------------------------------------------------------------
def test_topology_without_header_keeps_no_silent_layer_loss():
    path = BAD / "no_header.csv"
    err = one_line_error("cost", "--hw", HW, "--topology", path)
    assert f"{path}: line 1: expected the header line 'Layer name, IFMAP Height," in err
    assert "got a layer row ('conv1'); SCALE-Sim skips line 1 as the header" in err


def test_topology_with_a_wrong_header_names_the_cell():
    path = BAD / "wrong_header.csv"
    err = one_line_error("cost", "--hw", HW, "--topology", path)
    assert err.endswith(f"{path}: line 1: expected the header line 'Layer name, IFMAP Height, "
                        f"IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                        f"Strides'; header cell 1 is 'a', expected 'Layer name' (1 error)")


@pytest.mark.parametrize("header", [
    TOPOLOGY_HEADER.strip(),
    "Layer name,IFMAP height,IFMAP width,Filter height,Filter width,Channels,Num filter,"
    "Stride height,Stride width,",  # as SCALE-Sim's own write_topo_file spells it
    TOPOLOGY_HEADER.strip() + ", Target",  # SCALE-Sim's Resnet18.csv has an extra column
])
def test_scalesim_header_spellings_are_accepted(tmp_path, header):
    path = tmp_path / "t.csv"
    path.write_text(header + "\nconv1, 10, 10, 3, 3, 4, 4, 1,\n")
    assert [layer.name for layer in load_topology_csv(path)] == ["conv1"]


def test_topology_error_lists_first_problem_on_the_first_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(TOPOLOGY_HEADER + "a, 10, ten, 3, 3, 4, 4, 1,\nb, 10, 10, 3, 3, 0, 4, 1,\n")
    with pytest.raises(WorkloadError) as err:
        load_topology_csv(path)
    lines = str(err.value).splitlines()
    assert lines == [f"{path}: line 2: column 'IFMAP Width': expected an integer, got 'ten' "
                     f"(2 errors)",
                     f"  {path}: line 3: column 'Channels': expected a positive integer, got 0"]


# 6. SCALE-Sim CALC vs USER bandwidth mode ------------------------------------------------------
REFERENCE = list(csv.DictReader(open(ROOT / "tests/data/scalesim/scalesim_v3_compute_cycles.csv")))


def _topology_of(rows: list[dict], path: Path) -> Path:
    path.write_text(TOPOLOGY_HEADER + "".join(
        f"{r['layer']}, {r['ifmap_h']}, {r['ifmap_w']}, {r['filter_h']}, {r['filter_w']}, "
        f"{r['channels']}, {r['num_filter']}, {r['stride']},\n" for r in rows))
    return path


def test_calc_mode_ignores_bandwidth_total_equals_scalesim_compute_cycles(tmp_path):
    """The .cfg says Bandwidth = 10 but InterfaceBandwidth = CALC: SCALE-Sim reports no stalls."""
    cfg = BAD / "calc_mode_bandwidth_ignored.cfg"  # 8 x 24, os
    case = [r for r in REFERENCE if (r["rows"], r["cols"], r["dataflow"]) == ("8", "24", "os")]
    out = tmp_path / "r.json"
    rc, _, err = cli("cost", "--hw", cfg, "--topology", _topology_of(case, tmp_path / "t.csv"),
                     "--json", out)
    assert rc == 0, err
    got = {r["name"]: r for r in json.loads(out.read_text())["per_layer"]}
    assert len(got) == len(case) == 7
    for r in case:
        assert got[r["layer"]]["compute_cycles"] == int(r["compute_cycles"])
        assert got[r["layer"]]["stall_cycles"] == int(r["stall_cycles"]) == 0
        assert got[r["layer"]]["total_cycles"] == int(r["compute_cycles"])
    accel = load_accelerator(cfg)
    assert math.isinf(accel.dram.bandwidth_bytes_per_cycle)
    assert all(math.isinf(b.bandwidth_bytes_per_cycle) for b in accel.buffers)


def test_user_mode_bandwidth_binds(tmp_path):
    cfg = tmp_path / "user.cfg"
    cfg.write_text((BAD / "calc_mode_bandwidth_ignored.cfg").read_text()
                   .replace("CALC", "USER").replace("Bandwidth = 10", "Bandwidth = 1"))
    accel = load_accelerator(cfg)
    assert accel.dram.bandwidth_bytes_per_cycle == 1.0
    layers = load_topology_csv(_topology_of(REFERENCE[:21:3], tmp_path / "t.csv"))
    frame = cost_network(accel, layers, convention="scalesim").per_layer
    dram = frame["dram_read_bytes"] + frame["dram_write_bytes"]
    assert (frame["total_cycles"] == np.maximum(frame["compute_cycles"], dram)).all()
    assert (frame["stall_cycles"] > 0).any()
    # the same .cfg without [run_presets] is CALC (SCALE-Sim's default): no stalls
    calc = tmp_path / "default.cfg"
    calc.write_text(cfg.read_text().replace("InterfaceBandwidth = USER", ""))
    frame = cost_network(load_accelerator(calc), layers, convention="scalesim").per_layer
    assert (frame["stall_cycles"] == 0).all()


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("InterfaceBandwidth = USER", "InterfaceBandwidth = FAST"),
     "[run_presets] InterfaceBandwidth: expected one of ['CALC', 'USER'], got 'FAST'"),
    (lambda t: t.replace("Bandwidth = 10\n", ""),
     "[architecture_presets] Bandwidth: missing; InterfaceBandwidth = USER needs the DRAM "
     "bandwidth"),
    (lambda t: t.replace("Bandwidth = 10", "Bandwidth = inf"),
     "[architecture_presets] Bandwidth: expected a number of words per cycle from 1e-06 to "
     "1e+12, got 'inf'"),
    (lambda t: t.replace("IfmapSramSzkB = 256", "IfmapSramSzkB = 99999999999"),
     "[architecture_presets] IfmapSramSzkB: expected an integer from 1 to 1073741824, got "
     "99999999999"),
    (lambda t: t.replace("Bandwidth = 10", "Bandwidth = 10%"),
     "[architecture_presets] Bandwidth: expected a number of words per cycle"),
    (lambda t: "garbage\n" + t, "not a valid SCALE-Sim .cfg: line 1: expected a [section] "
                               "header first, got 'garbage\\n' (1 error)"),
    (lambda t: t + "ArrayWidth = 8\n", "not a valid SCALE-Sim .cfg: line 15: option 'arraywidth' "
                                      "given twice in section [architecture_presets] (1 error)"),
    (lambda t: t + "just words\n", "not a valid SCALE-Sim .cfg: line 15: expected 'key = value', "
                                   "got 'just words' (1 error)"),
])
def test_user_mode_cfg_problems_are_one_line(tmp_path, edit, expected):
    cfg = tmp_path / "user.cfg"
    cfg.write_text(edit((BAD / "calc_mode_bandwidth_ignored.cfg").read_text()
                        .replace("CALC", "USER")))
    err = one_line_error("cost", "--hw", cfg, "--topology", small_topology(tmp_path))
    assert f"{cfg}: {expected}" in err, err


# 7. Messages: one line per problem, the right source named ------------------------------------
def test_single_config_error_is_a_single_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(HW.read_text().replace("rows: 32", "rows: 0"))
    err = one_line_error("cost", "--hw", path, "--topology", small_topology(tmp_path))
    assert err == (f"hwsim cost: error: {path}: compute.rows: expected a positive integer, "
                   f"got 0 (1 error)")


def test_cfg_error_reports_only_the_cfg_problems(tmp_path):
    path = BAD / "cfg_errors.cfg"
    err = one_line_error("cost", "--hw", path, "--topology", small_topology(tmp_path))
    assert err == (f"hwsim cost: error: {path}: [architecture_presets] ArrayHeight: expected an "
                   f"integer, got 'tall' (1 error)")


@pytest.mark.parametrize("override, expected", [
    ("compute.rows=abc", "--set compute.rows=abc: expected a positive integer, got 'abc' "
                         "(1 error)"),
    ("compute.rows=" + "1" * 30, f"--set compute.rows={'1' * 30}: expected at most 2147483648, "
                                 f"got {'1' * 30} (1 error)"),
    ("compute.rows=" + "9" * 5000, "--set compute.rows=999"),
    ("compute.rows=", "--set compute.rows=: missing; expected a positive integer (1 error)"),
    ("compute.rows=[1, 2", "--set compute.rows=[1, 2: the value is not valid YAML (line 1, "
                           "column"),
    ("compute.rows={a: 1, a: 2}", "--set compute.rows={a: 1, a: 2}: the value is not valid YAML "
                                  "(line 1, column 8: duplicate key 'a'"),
    ("compute.rowz=4", "--set compute.rowz=4: compute.rowz does not exist; did you mean "
                       "'compute.rows'?"),
    ("compute.acc_bits=8", "--set compute.acc_bits=8: expected at least act_bits + weight_bits "
                           "(16)"),
    ("memory.dram.bandwidth_bytes_per_cycle=.nan", "--set memory.dram.bandwidth_bytes_per_cycle"
                                                   "=.nan: expected a positive number or "
                                                   "'unlimited', got nan"),
])
def test_set_errors_name_the_flag(tmp_path, override, expected):
    err = one_line_error("cost", "--hw", HW, "--topology", small_topology(tmp_path),
                         f"--set={override}")
    assert err.startswith(f"hwsim cost: error: {expected}"), err
    assert str(HW) not in err


def test_set_and_file_errors_are_listed_each_with_its_source(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(HW.read_text().replace("dataflow: os", "dataflow: xs"))
    rc, _, err = cli("cost", "--hw", path, "--topology", small_topology(tmp_path),
                     "--set", "compute.rows=-1")
    assert rc == 2
    assert err.splitlines() == [
        "hwsim cost: error: --set compute.rows=-1: expected a positive integer, got -1 (2 errors)",
        f"  {path}: compute.dataflow: expected one of ['os', 'ws', 'is'], got 'xs'"]


def test_a_cross_field_error_caused_by_a_set_mentions_it(tmp_path):
    err = one_line_error("cost", "--hw", BAD / "calc_mode_bandwidth_ignored.cfg", "--topology",
                         small_topology(tmp_path), "--set", "compute.act_bits=64")
    assert err.endswith("compute.acc_bits: expected at least act_bits + weight_bits (72) so that "
                        "a partial sum holds one product, got 32 (after --set "
                        "compute.act_bits=64) (1 error)"), err


def test_typo_gets_did_you_mean_and_no_missing_error(tmp_path):
    path = BAD / "typo_clock_mz.yaml"
    err = one_line_error("cost", "--hw", path, "--topology", small_topology(tmp_path))
    assert err.endswith(f"{path}: clock_mz: unknown field; did you mean 'clock_mhz'? expected "
                        f"one of ['assign', 'clock_mhz', 'compute', 'description', 'memory', "
                        f"'name', 'units'] (1 error)")


def test_unlimited_bandwidth_is_accepted_in_yaml():
    accel = load_accelerator(HW, ["memory.dram.bandwidth_bytes_per_cycle=unlimited"])
    assert math.isinf(accel.dram.bandwidth_bytes_per_cycle)
    layers = load_topology_csv(BAD / "int64_overflow.csv")[:1]
    assert cost_network(accel, layers).stall_cycles == 0


# 8. ONNX ops the cost model cannot price -------------------------------------------------------
def test_unpriced_op_is_refused_not_dropped(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    path = tmp_path / "gru.onnx"  # (ConvTranspose, refused here before, is priced now)
    gru = helper.make_node("GRU", ["x", "w", "r"], ["y"], name="rnn", hidden_size=4)
    graph = helper.make_graph(
        [gru], "gru", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.zeros((1, 12, 2), np.float32), "w"),
                     numpy_helper.from_array(np.zeros((1, 12, 4), np.float32), "r")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    err = one_line_error("simulate", "--hw", HW, "--model", path)
    assert err.endswith(f"{path}: node 'rnn' (GRU): cannot be priced: the cost model has no "
                        f"layer shape for a recurrent layer, and leaving it out would "
                        f"under-report the cost (supported: Conv, ConvTranspose, Gemm, MatMul)")
    from hwsim.onnx import load_onnx_workload

    with pytest.raises(HwsimError, match="'rnn' \\(GRU\\): cannot be priced"):
        load_onnx_workload(path)


def _base_raw() -> dict:
    import yaml

    return yaml.safe_load(HW.read_text())
