"""``hwsim allocate``: flags, the plan it writes, and simulate --plan reproducing its costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim.cli import main
from hwsim.cli.allocate import parse_budget, parse_option
from hwsim.errors import HwsimError
from quant.allocate import Option

REPO = Path(__file__).resolve().parents[1]
BITFUSION = str(REPO / "hw_configs" / "bitfusion.yaml")


def test_flags_parse_and_bad_ones_are_named():
    assert parse_budget("latency=0.5x") == ("latency_cycles", "0.5x")
    assert parse_budget("energy_pj=2e9") == ("energy_pj", "2e9")
    assert parse_option("apot:w4a8") == Option(4, 8, "apot")
    assert parse_option("W2A8") == Option(2, 8)
    with pytest.raises(HwsimError, match="--budget speed=2: expected RESOURCE=LIMIT"):
        parse_budget("speed=2")
    with pytest.raises(HwsimError, match="--options 4w8a"):
        parse_option("4w8a")


@pytest.mark.parametrize("argv, needle", [
    (["--budget", "latency=0.5x"], "the following arguments are required: --out"),
    (["--out", "p.json"], "--budget: give at least one"),
    (["--out", "p.json", "--budget", "latency=0.5x", "--options", "w8a8,w8a8"],
     "expected distinct options"),
    (["--out", "p.json", "--budget", "latency=0.5x", "--images", "51"], "--images"),
])
def test_bad_invocations_exit_2_with_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["allocate", "--hw", BITFUSION, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.slow
def test_allocate_writes_a_plan_that_simulate_reproduces(tmp_path, capsys):
    plan, report = tmp_path / "plan.json", tmp_path / "report.json"
    assert main(["allocate", "--hw", BITFUSION, "--budget", "energy=0.85x", "--images", "4",
                 "--out", str(plan), "--json", str(report), "--plot",
                 str(tmp_path / "pareto.png")]) == 0
    out = capsys.readouterr().out
    assert "predicted == simulated" in out and "NO" not in out
    doc = json.loads(plan.read_text())
    totals = doc["allocation"]["totals"]
    base = json.loads(report.read_text())["base"]["allocation"]["totals"]
    assert totals["energy_pj"] <= 0.85 * base["energy_pj"]
    assert (tmp_path / "pareto.png").stat().st_size > 0
    assert (tmp_path / "pareto_bits.png").stat().st_size > 0
    sim = tmp_path / "sim.json"
    assert main(["simulate", "--hw", BITFUSION, "--model", "mobilenet_v2", "--plan", str(plan),
                 "--json", str(sim), "-q"]) == 0
    summary = json.loads(sim.read_text())["summary"]
    assert summary["total_cycles"] == totals["latency_cycles"]
    assert summary["energy_total_pj"] == pytest.approx(totals["energy_pj"], rel=1e-12)
