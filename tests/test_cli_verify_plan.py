"""``hwsim verify --plan``: a per-layer precision plan quantizes, lowers and verifies the model at
the plan's widths and formats; a plan that does not fit the model is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim.cli import main
from hwsim.ir import load_program

pytest.importorskip("torch")


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_plan_widths_and_formats_reach_the_program(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text('layers:\n'
                    '  "features.1.*": {weight_bits: 6}\n'
                    '  "features.2.conv.2": {weight_format: apot, weight_bits: 4}\n'
                    '  "features.3.conv.0.0": {act_bits: 6}\n'
                    '  "features.5.conv.2": {weight_format: multipoint, weight_bits: 4, '
                    'act_bits: 8, act_format: int, weight_points: 1.25}\n'
                    '  "features.6.conv.1.0": {weight_format: multipoint, weight_bits: 4, '
                    'weight_points: 1.5}\n')
    out = tmp_path / "prog"
    summary = tmp_path / "s.json"
    assert main(["-q", "verify", "--model", "mobilenet_v2", "--plan", str(plan), "--images", "2",
                 "--save-program", str(out), "--json", str(summary)]) == 0
    nodes = {n["name"]: n for n in json.loads(out.with_suffix(".json").read_text())["nodes"]}
    bits = {name: (n["op"], n["attrs"].get("weight_bits"), n["attrs"].get("input_bits"))
            for name, n in nodes.items() if "weight_bits" in n.get("attrs", {})}
    assert bits["features.0.0"] == ("conv2d", 8, 8)              # not in the plan
    assert bits["features.1.conv.0.0"] == ("conv2d", 6, 8)       # glob
    assert bits["features.1.conv.1"] == ("conv2d", 6, 8)
    assert bits["features.2.conv.2"] == ("apot_conv2d", 4, 8)    # format
    assert bits["features.3.conv.0.0"] == ("conv2d", 8, 6)       # its input at 6 bits
    # multipoint with weight_points (an allocator's plan): Option.rows(K) rows, as realized
    assert bits["features.5.conv.2"] == ("multipoint_conv2d", 4, 8)
    assert bits["features.6.conv.1.0"] == ("multipoint_conv2d", 4, 8)      # depthwise
    program = load_program(out.with_suffix(".json"))
    rows = {name: program.node(name).arrays["weight_rows"].shape[0] for name in
            ("features.5.conv.2", "features.6.conv.1.0")}
    assert rows == {"features.5.conv.2": 32 + 8, "features.6.conv.1.0": 192 + 96}
    report = json.loads(summary.read_text())
    assert report["summary"]["max_lsb_diff_any_layer"] <= 1       # still bit-accurate


def test_plan_errors_are_one_line(tmp_path, capsys):
    base = ["verify", "--model", "mobilenet_v2", "--images", "1", "--plan"]
    nomatch = tmp_path / "nomatch.yaml"
    nomatch.write_text("layers:\n  conv_9: {weight_bits: 4}\n")
    _one_line_error(capsys, base + [str(nomatch)], "['conv_9'] match no layer")
    alloc = tmp_path / "alloc.json"
    alloc.write_text(json.dumps({"layers": {"features.0.0": {"weight_bits": 4}},
                                 "allocation": {"solver": "milp"}}))
    _one_line_error(capsys, base + [str(alloc)], "the allocation has no entry for layers")
    badbits = tmp_path / "badbits.yaml"
    badbits.write_text("layers:\n  features.2.conv.2: {weight_format: apot, weight_bits: 9}\n")
    _one_line_error(capsys, base + [str(badbits)], "layer 'features.2.conv.2'")
    binact = tmp_path / "binact.yaml"
    binact.write_text("layers:\n  features.2.conv.2: {act_format: binary}\n")
    _one_line_error(capsys, base + [str(binact)], "act_format 'binary'")
    _one_line_error(capsys, base + [str(tmp_path / "missing.yaml")], "--plan")


def test_layers_reading_one_tensor_must_agree(tmp_path, capsys):
    # resnet18: a downsampling block's conv1 and its 1x1 shortcut read the same tensor
    plan = tmp_path / "p.yaml"
    plan.write_text("layers:\n  layer2.0.conv1: {act_bits: 6}\n"
                    "  layer2.0.downsample.0: {act_bits: 8}\n")
    _one_line_error(capsys, ["verify", "--model", "resnet18", "--images", "1", "--plan",
                             str(plan)], "reads the same input")


def test_plan_with_onnx_is_a_usage_error(tmp_path, capsys):
    _one_line_error(capsys, ["verify", "--onnx", str(tmp_path / "m.onnx"), "--plan", "p.yaml"],
                    "--plan")
