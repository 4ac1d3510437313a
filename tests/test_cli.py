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
