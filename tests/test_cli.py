"""The hwsim command: results for good input, one clear line and exit 2 for user mistakes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
HW = str(ROOT / "hw_configs" / "int8_systolic.yaml")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwsim", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_simulate_builtin_writes_csv_and_json(tmp_path, capsys):
    csv, js = tmp_path / "r.csv", tmp_path / "r.json"
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--csv", str(csv),
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "compute_cycles" in out and "resnet18" in out
    doc = json.loads(js.read_text())
    assert len(doc["per_layer"]) == 21  # 20 convs (incl. 3 downsample) + fc
    assert csv.read_text().count("\n") == 22


def test_set_override_changes_the_cost(tmp_path):
    base, small = tmp_path / "a.json", tmp_path / "b.json"
    main(["simulate", "--hw", HW, "--model", "mobilenet_v2", "--json", str(base)])
    main(["simulate", "--hw", HW, "--model", "mobilenet_v2", "--json", str(small),
          "--set", "compute.rows=8", "--set", "compute.cols=8"])
    a = json.loads(base.read_text())["summary"]["total_cycles"]
    b = json.loads(small.read_text())["summary"]["total_cycles"]
    assert b > a


@pytest.mark.parametrize("args, needle", [
    (["simulate", "--hw", "nope.yaml", "--model", "resnet18"], "nope.yaml"),
    (["simulate", "--hw", HW, "--model", "vgg99"], "vgg99"),
    (["simulate", "--hw", HW, "--model", "resnet18", "--set", "compute.rows=0"], "compute.rows"),
    (["simulate", "--hw", HW, "--model", "resnet18", "--set", "compute.nosuch=3"], "nosuch"),
    (["cost", "--hw", HW, "--topology", "missing.csv"], "missing.csv"),
])
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(args, needle):
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert needle in res.stderr
    assert res.stderr.startswith("hwsim ")


def test_cost_with_bad_topology_row_names_the_row(tmp_path):
    topo = tmp_path / "t.csv"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                    "Num Filter, Strides,\nconv1, 56, 56, 3, 3, 64, 64, 1,\n"
                    "conv2, 2, 2, 5, 5, 64, 64, 1,\n")
    res = run_cli("cost", "--hw", HW, "--topology", str(topo))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "conv2" in res.stderr or "line 3" in res.stderr or "row 3" in res.stderr, res.stderr


def test_scalesim_users_own_cfg_and_topology_reproduce_scalesim_compute_cycles(tmp_path):
    """SCALE-Sim v3 files in, SCALE-Sim 3.0.0's compute cycles out (CALC mode, tests/data)."""
    import csv

    ref_rows = list(csv.DictReader(open(ROOT / "tests/data/scalesim/scalesim_v3_compute_cycles.csv")))
    checked = 0
    for (rows, cols, df) in sorted({(r["rows"], r["cols"], r["dataflow"]) for r in ref_rows}):
        case = [r for r in ref_rows if (r["rows"], r["cols"], r["dataflow"]) == (rows, cols, df)]
        cfg = tmp_path / f"a{rows}x{cols}{df}.cfg"
        cfg.write_text(f"[general]\nrun_name = t\n\n[architecture_presets]\nArrayHeight = {rows}\n"
                       f"ArrayWidth = {cols}\nIfmapSramSzkB = 256\nFilterSramSzkB = 256\n"
                       f"OfmapSramSzkB = 128\nIfmapOffset = 0\nFilterOffset = 10000000\n"
                       f"OfmapOffset = 20000000\nBandwidth = 10\nDataflow = {df}\n\n"
                       "[run_presets]\nInterfaceBandwidth = CALC\n")
        topo = tmp_path / f"t{rows}x{cols}{df}.csv"
        topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                        "Channels, Num Filter, Strides,\n" + "".join(
                            f"{r['layer']}, {r['ifmap_h']}, {r['ifmap_w']}, {r['filter_h']}, "
                            f"{r['filter_w']}, {r['channels']}, {r['num_filter']}, {r['stride']},\n"
                            for r in case))
        out = tmp_path / f"r{rows}x{cols}{df}.json"
        assert main(["cost", "--hw", str(cfg), "--topology", str(topo), "--json", str(out)]) == 0
        got = {r["name"]: r["compute_cycles"] for r in json.loads(out.read_text())["per_layer"]}
        for r in case:
            assert got[r["layer"]] == int(r["compute_cycles"]), (rows, cols, df, r["layer"])
            checked += 1
    assert checked == len(ref_rows) == 63


# ------------------------------------------------------------------------------------------------
# CLI hardening (the real `python -m hwsim` process): bad input is one line on stderr and exit 2.
# More cases, in-process, in tests/test_cli_hardening.py; the fuzzer in tests/test_fuzz_cli.py.

BAD = ROOT / "tests" / "data" / "bad"


@pytest.mark.parametrize("args, needles", [
    (["simulate", "--hw", HW, "--model", str(BAD / "program_list.json")],
     ["program_list.json", "expected a JSON object"]),
    (["simulate", "--hw", HW, "--model", str(BAD / "program_truncated_npz.json")],
     ["program_truncated_npz.npz", "corrupt"]),
    (["simulate", "--hw", HW, "--model", "resnet18", "--json", str(ROOT / "tests")],
     ["--json", "is a directory"]),
    (["simulate", "--hw", HW, "--model", "resnet18", "--csv", f"{HW}/x.csv"],
     ["--csv", "is a file, not a directory"]),
    (["verify", "--bits", "0"], ["argument --bits", "'0'"]),
    (["verify", "--images", "1000"], ["argument --images", "50 evaluation images"]),
    (["verify", "--onnx", str(ROOT / "tests")], ["--onnx", "is a directory"]),
])
def test_hardening_cases_in_a_real_process(args, needles):
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def test_version_in_a_real_process():
    from hwsim import __version__

    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"hwsim {__version__}"


# ------------------------------------------------------------------------------------------------
# Bad configs and topologies (hardening; more cases in-process in tests/test_bad_inputs.py, the
# fuzzer in tests/test_fuzz_inputs.py): one line naming the file, flag or row, exit 2.

@pytest.mark.parametrize("args, needle", [
    (["cost", "--hw", str(BAD / "garbage_binary.yaml"), "--topology", str(BAD / "no_header.csv")],
     "garbage_binary.yaml: not a text file (UTF-8)"),
    (["cost", "--hw", HW, "--topology", str(BAD / "no_header.csv")],
     "no_header.csv: line 1: expected the header line"),
    (["cost", "--hw", HW, "--topology", str(BAD / "int64_overflow.csv")],
     "layer 'huge': macs would be 1e+30"),
    (["simulate", "--hw", str(BAD / "duplicate_key.yaml"), "--model", "resnet18"],
     "duplicate key 'rows'"),
    (["simulate", "--hw", HW, "--model", "resnet18", "--set", "compute.rows=abc"],
     "--set compute.rows=abc: expected a positive integer, got 'abc'"),
    (["simulate", "--hw", str(BAD / "cfg_errors.cfg"), "--model", "resnet18"],
     "cfg_errors.cfg: [architecture_presets] ArrayHeight: expected an integer, got 'tall'"),
])
def test_bad_config_or_topology_in_a_real_process(args, needle):
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert needle in res.stderr, res.stderr


def test_scalesim_calc_mode_total_cycles_equal_compute_cycles(tmp_path):
    """CALC mode ignores the .cfg's Bandwidth: no stalls, total = SCALE-Sim's compute cycles."""
    import csv

    ref_rows = list(csv.DictReader(open(ROOT / "tests/data/scalesim/scalesim_v3_compute_cycles.csv")))
    for (rows, cols, df) in sorted({(r["rows"], r["cols"], r["dataflow"]) for r in ref_rows}):
        case = [r for r in ref_rows if (r["rows"], r["cols"], r["dataflow"]) == (rows, cols, df)]
        cfg = tmp_path / "calc.cfg"
        cfg.write_text(f"[architecture_presets]\nArrayHeight = {rows}\nArrayWidth = {cols}\n"
                       f"IfmapSramSzkB = 256\nFilterSramSzkB = 256\nOfmapSramSzkB = 128\n"
                       f"Bandwidth = 10\nDataflow = {df}\n\n[run_presets]\n"
                       f"InterfaceBandwidth = CALC\n")
        topo = tmp_path / "t.csv"
        topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                        "Channels, Num Filter, Strides,\n" + "".join(
                            f"{r['layer']}, {r['ifmap_h']}, {r['ifmap_w']}, {r['filter_h']}, "
                            f"{r['filter_w']}, {r['channels']}, {r['num_filter']}, {r['stride']},\n"
                            for r in case))
        out = tmp_path / "r.json"
        assert main(["cost", "--hw", str(cfg), "--topology", str(topo), "--json", str(out)]) == 0
        got = {r["name"]: r for r in json.loads(out.read_text())["per_layer"]}
        for r in case:
            assert got[r["layer"]]["total_cycles"] == int(r["compute_cycles"]), (rows, cols, df)
            assert got[r["layer"]]["stall_cycles"] == int(r["stall_cycles"]) == 0
