"""APoT weights end to end on MobileNetV2 (ImageNet weights), through the CLI as a user runs it:
`hwsim verify --weight-format apot --bits 4` (integer program within 1 LSB of the fake-quant
model at every layer), the saved program simulated on the shift-add configs."""
import json

import numpy as np
import pytest

from hwsim.cli import main
from hwsim.ir import load_program

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("apot")
    argv = ["verify", "--model", "mobilenet_v2", "--weight-format", "apot", "--bits", "4",
            "--first-last-int8", "--images", "4", "--json", str(out / "verify.json"),
            "--save-program", str(out / "mnv2_apot4")]
    assert main(argv) == 0
    return out


def test_verify_apot_every_layer_within_one_lsb(saved):
    doc = json.loads((saved / "verify.json").read_text())
    rows = doc["per_layer"]
    ops = {row["op"] for row in rows}
    assert {"apot_conv2d", "conv2d", "linear"} <= ops  # APoT middle layers, int8 first/last
    worst = max(row["max_lsb_diff"] for row in rows)
    assert worst <= 1, [(r["layer"], r["max_lsb_diff"]) for r in rows if r["max_lsb_diff"] > 1]
    assert doc["summary"]["total_overflows"] == 0


def test_saved_apot_program_keeps_its_levels_and_widths(saved):
    program = load_program(saved / "mnv2_apot4.json")
    apot = [n for n in program.nodes() if n.op == "apot_conv2d"]
    assert len(apot) == 51
    for node in apot:
        assert node.attrs["weight_bits"] == 4 and node.attrs["terms"] == 2
        levels = set(np.unique(np.abs(node.arrays["weight"].astype(np.int64))).tolist())
        assert levels <= {0, 1, 2, 3, 4, 6, 8, 10}  # B = 3 magnitude bits


@pytest.mark.parametrize("config, units", [
    ("hw_configs/hetero_int8_apot.yaml", {"int8_array", "shift_add"}),
    ("hw_configs/shift_add_apot.yaml", {"shift_add"}),
])
def test_simulate_the_saved_program_on_the_shift_add_configs(saved, config, units, capsys):
    out = saved / f"{units.__len__()}.json"
    assert main(["simulate", "--hw", config, "--model", str(saved / "mnv2_apot4.json"),
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["per_layer"]
    assert {row["unit"] for row in rows} == units
    apot_rows = [row for row in rows if row["weight_format"] == "apot"]
    assert len(apot_rows) == 51 and all(row["unit"] == "shift_add" for row in apot_rows)
    assert all(row["shift_actions"] == 2 * row["macs"] for row in apot_rows)  # 2 terms each
    assert doc["summary"]["energy_total_pj"] > 0 and doc["summary"]["total_cycles"] > 0
