"""`hwsim verify --calibration`: the flag reaches the flow, bad combinations are one line and exit
status 2 before any quantizing, and (slow) a real run prints the pipeline's report and time."""

from __future__ import annotations

import json

import pytest

from hwsim.cli import main
from tests._cli_helpers import no_quantizing, one_error_line  # noqa: F401  (fixture)

V = ["verify", "--model", "mobilenet_v2"]


@pytest.mark.parametrize("args, needle", [
    (V + ["--calibration", "heavy"], "argument --calibration: invalid choice: 'heavy'"),
    (V + ["--weight-format", "multipoint", "--calibration", "light"],
     "--calibration light: the calibration pipelines do not apply to --weight-format multipoint"),
    (["verify", "--onnx", "m.onnx", "--calibration", "advanced"],
     "--calibration: the quantization options apply to --model"),
])
def test_bad_calibration_options(args, needle, capsys, no_quantizing):  # noqa: F811
    assert main(args) == 2
    assert needle in one_error_line(capsys)


def test_the_flag_reaches_the_flow(monkeypatch):
    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("hwsim.flows.quantize_zoo_model", stop)
    for given, expected in ((["--calibration", "advanced"], "advanced"), ([], "none")):
        with pytest.raises(SystemExit):
            main(V + ["--bits", "4", "--first-last-int8"] + given)
        assert seen["calibration"] == expected


def test_flow_refuses_multipoint_calibration():
    import torch
    from torch import nn

    from hwsim.errors import HwsimError
    from hwsim.flows import quantize_model

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with pytest.raises(HwsimError, match="do not apply to multipoint"):
        quantize_model(net, torch.randn(8, 3, 8, 8), bits=4, weight_family="multipoint",
                       calibration="light")


@pytest.mark.slow
def test_light_calibration_end_to_end(capsys, tmp_path):
    """MobileNetV2, 4 evaluation images: the pipeline's steps are printed, its time is in the
    summary, and the integer program stays within one LSB of the fake-quant model."""
    out_json = tmp_path / "v.json"
    assert main(V + ["--calibration", "light", "--images", "4", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "light pipeline:" in printed and "bn_reestimate" in printed
    summary = json.loads(out_json.read_text())["summary"]
    assert summary["calibration"] == "light" and summary["calibration_seconds"] > 0
    assert summary["max_lsb_diff_any_layer"] <= 1
