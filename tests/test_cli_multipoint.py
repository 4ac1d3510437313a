"""`hwsim verify --weight-format multipoint`: bad input is one line on stderr and exit status 2,
before any quantizing (the flow's MobileNetV2 run is in test_multipoint_integer.py)."""

from __future__ import annotations

import pytest

from hwsim.cli import main
from hwsim.cli.main import MAX_POINTS, WEIGHT_BITS
from tests._cli_helpers import one_error_line


@pytest.fixture
def no_quantizing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("quantize_zoo_model reached: the check came too late")

    monkeypatch.setattr("hwsim.flows.quantize_zoo_model", refuse)


MP = ["verify", "--model", "mobilenet_v2", "--weight-format", "multipoint"]


@pytest.mark.parametrize("args, needle", [
    (MP + ["--bits", "9"], "--weight-format multipoint takes 2..8 bits, got 9"),
    (MP + ["--bits", "1"], "argument --bits: expected an integer in [2, 16]"),
    (MP + ["--max-points", "0"], "argument --max-points: expected an integer in [1, 64]"),
    (MP + ["--max-points", "two"], "argument --max-points"),
    (MP + ["--points-budget", "-0.1"], "argument --points-budget: expected a number >= 0"),
    (MP + ["--points-budget", "nan"], "argument --points-budget: expected a number >= 0"),
    (MP + ["--points-budget", "inf"], "argument --points-budget: expected a number >= 0"),
    (MP + ["--points-budget", "1.5"], "beyond what --max-points 2 allows (at most 1)"),
    (MP + ["--max-points", "1", "--points-budget", "0.1"], "--max-points 1 allows (at most 0)"),
    (MP + ["--per-tensor"], "--per-tensor: --weight-format multipoint has per-channel points"),
    (MP + ["--weight-clipping", "mse"], "--weight-clipping: --weight-format multipoint"),
    (["verify", "--model", "mobilenet_v2", "--points-budget", "0.1"],
     "--points-budget: apply to --weight-format multipoint, not int"),
    (["verify", "--model", "mobilenet_v2", "--weight-format", "apot", "--max-points", "3"],
     "--max-points: apply to --weight-format multipoint, not apot"),
])
def test_bad_multipoint_options(args, needle, capsys, no_quantizing):
    assert main(args) == 2
    assert needle in one_error_line(capsys)


def test_onnx_takes_no_multipoint_options(capsys, no_quantizing):
    assert main(["verify", "--onnx", "m.onnx", "--points-budget", "0.1"]) == 2
    assert "--points-budget: the quantization options apply to --model" in one_error_line(capsys)


def test_the_cli_ranges_are_the_format_ranges():
    import quant

    lo, hi = WEIGHT_BITS["multipoint"]
    plo, phi = MAX_POINTS
    quant.MultipointFormat(lo, plo), quant.MultipointFormat(hi, phi)
    for bits, points in ((lo - 1, 2), (hi + 1, 2), (4, plo - 1), (4, phi + 1)):
        with pytest.raises(quant.QuantError):
            quant.MultipointFormat(bits, points)


def test_flags_reach_the_flow(monkeypatch, capsys):
    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("hwsim.flows.quantize_zoo_model", stop)
    with pytest.raises(SystemExit):
        main(MP + ["--bits", "3", "--max-points", "3", "--points-budget", "0.25",
                   "--first-last-int8"])
    assert seen["weight_family"] == "multipoint" and seen["bits"] == 3
    assert seen["max_points"] == 3 and seen["points_budget"] == 0.25
    assert seen["first_last_int8"] is True


def test_simulate_multipoint_on_shapes_only_needs_points(capsys, tmp_path):
    """Without weight_points the rows depend on the weights: refused, one line (the uniform
    flag, or a hand-written plan entry); with them (an allocator's plan) the layers are priced
    as their rows (tests/test_plan_multipoint.py checks the figures)."""
    hw = ["--hw", "hw_configs/int8_systolic.yaml", "--model", "mobilenet_v2", "-q"]
    assert main(["simulate", *hw, "--weight-format", "multipoint", "--bits", "4"]) == 2
    line = one_error_line(capsys, command="simulate")
    assert "--weight-format: layer 'features.0.0' has multipoint weights" in line
    assert "weight_points" not in line
    plan = tmp_path / "plan.yaml"
    plan.write_text("layers:\n  features.1.*: {weight_format: multipoint, weight_bits: 4}\n")
    assert main(["simulate", *hw, "--plan", str(plan)]) == 2
    line = one_error_line(capsys, command="simulate")
    assert f"--plan {plan}: layer 'features.1.conv.0.0' has multipoint" in line
    assert "give its plan entry weight_points" in line
    plan.write_text("layers:\n  features.1.*: {weight_format: multipoint, weight_bits: 4, "
                    "weight_points: 1.5}\n")
    assert main(["simulate", *hw, "--plan", str(plan)]) == 0
    # points for some layers do not price the uniform flag's other multipoint layers
    assert main(["simulate", *hw, "--weight-format", "multipoint", "--bits", "4",
                 "--plan", str(plan)]) == 2
    assert "--weight-format: layer 'features.0.0' has multipoint" in one_error_line(
        capsys, command="simulate")
