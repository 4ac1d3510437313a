"""`hwsim verify --onnx`: an int8 ONNX model run by hwsim and by ONNX Runtime, compared layer by
layer; user mistakes end in one line `hwsim verify: error: ...` and exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import hwsim.onnx  # noqa: E402
from hwsim import execute  # noqa: E402
from hwsim.cli import main  # noqa: E402
from tests._cli_helpers import one_error_line  # noqa: E402
from hwsim.ir import load_program  # noqa: E402
from hwsim.onnx import export_onnx, load_onnx_program, quantize_input, with_ort_accumulators  # noqa: E402
from tests.test_onnx_export import small_program  # noqa: E402

N_INPUTS = 3


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A SmallNet-like int8 model (float in, float out) and float inputs for it, on disk."""
    folder = tmp_path_factory.mktemp("cli_onnx")
    program = with_ort_accumulators(small_program(seed=21, narrow_clamps=False))
    model = export_onnx(program, folder / "small.int8.onnx", float_input=True, float_output=True)
    x = np.random.default_rng(21).normal(0.0, 1.5, size=(N_INPUTS, 3, 12, 12)).astype(np.float32)
    inputs = folder / "inputs.npy"
    np.save(inputs, x)
    return {"folder": folder, "model": str(model), "inputs": str(inputs), "x": x,
            "program": program}


def verify(*args: str) -> int:
    return main(["verify", *args])


def test_table_and_json_of_a_bit_exact_model(small, capsys):
    js, csv = small["folder"] / "r.json", small["folder"] / "r.csv"
    assert verify("--onnx", small["model"], "--inputs", small["inputs"], "--json", str(js),
                  "--csv", str(csv)) == 0
    out = capsys.readouterr().out
    program = small["program"]
    doc = json.loads(js.read_text())
    rows = doc["per_layer"]
    assert [r["layer"] for r in rows] == [n.name for n in program.nodes()]
    assert [r["op"] for r in rows] == [n.op for n in program.nodes()]
    sizes = {n.name: N_INPUTS * int(np.prod(n.out_shape[1:])) for n in program.nodes()}
    assert {r["layer"]: r["outputs"] for r in rows} == sizes
    assert all(r["mismatches"] == 0 and r["max_lsb_diff"] == 0 and r["sqnr_db"] == "inf"
               for r in rows)
    summary = doc["summary"]
    assert summary["layers_bit_exact"] == f"{len(rows)}/{len(rows)}"
    assert summary["total_mismatches"] == 0 and summary["inputs"] == N_INPUTS
    assert summary["outputs_compared"] == sum(sizes.values())
    assert summary["output_top1_agreement"] == 1.0
    assert summary["engine"].startswith("onnxruntime ")
    assert csv.read_text().count("\n") == len(rows) + 1
    for needle in ("layer", "mismatches", "max_lsb_diff", "sqnr_db", "layers_bit_exact", "conv1",
                   "output_top1_agreement"):
        assert needle in out


def test_mismatches_are_counted_per_layer(small, capsys, monkeypatch):
    """ORT's values perturbed at one output code: the table and summary report exactly that."""
    real = hwsim.onnx.ort_reference_outputs

    def perturbed(model, x, names=(), **kw):
        ref = real(model, x, names, **kw)
        fc = ref["fc"].copy()
        fc[1, 2] = fc[1, 2] + 3 if fc[1, 2] < 250 else fc[1, 2] - 3
        return {**ref, "fc": fc}

    monkeypatch.setattr(hwsim.onnx, "ort_reference_outputs", perturbed)
    js = small["folder"] / "perturbed.json"
    assert verify("--onnx", small["model"], "--inputs", small["inputs"], "--json", str(js)) == 0
    capsys.readouterr()
    doc = json.loads(js.read_text())
    fc = next(r for r in doc["per_layer"] if r["layer"] == "fc")
    assert (fc["mismatches"], fc["max_lsb_diff"]) == (1, 3)
    assert isinstance(fc["sqnr_db"], float) and fc["sqnr_db"] > 10
    others = [r for r in doc["per_layer"] if r["layer"] != "fc"]
    assert all(r["mismatches"] == 0 for r in others)
    n = len(doc["per_layer"])
    assert doc["summary"]["layers_bit_exact"] == f"{n - 1}/{n}"
    assert doc["summary"]["total_mismatches"] == 1 and doc["summary"]["max_lsb_diff"] == 3


def test_images_option_and_saved_program(small, capsys):
    saved = small["folder"] / "imported"
    js = small["folder"] / "two.json"
    assert verify("--onnx", small["model"], "--inputs", small["inputs"], "--images", "2",
                  "--save-program", str(saved), "--json", str(js)) == 0
    capsys.readouterr()
    assert json.loads(js.read_text())["summary"]["inputs"] == 2
    back = load_program(saved.with_suffix(".json"))
    codes = quantize_input(back, small["x"])
    imported = load_onnx_program(small["model"])
    assert np.array_equal(execute(back, codes).output, execute(imported, codes).output)


@pytest.mark.parametrize("engine", ["qnnpack", "onednn", "fbgemm"])
def test_pytorch_engines_are_refused_for_onnx(small, capsys, engine):
    assert verify("--onnx", small["model"], "--inputs", small["inputs"], "--engine", engine) == 2
    line = one_error_line(capsys)
    assert f"--engine {engine}" in line and "apply to --model" in line


def test_engine_ort_is_accepted(small, capsys):
    assert verify("--onnx", small["model"], "--inputs", small["inputs"], "--engine", "ort") == 0
    assert "layers_bit_exact" in capsys.readouterr().out


def _unsupported_op_model(path) -> str:
    """x -> QuantizeLinear -> com.microsoft QLinearReduceMean -> DequantizeLinear."""
    inits = [numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.uint8(128), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="quantize"),
             helper.make_node("QLinearReduceMean", ["xq", "s", "z", "s", "z"], ["yq"],
                              name="reduce", domain="com.microsoft", axes=[1], keepdims=1),
             helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dequantize")]
    graph = helper.make_graph(nodes, "unsupported",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_bad_input_is_one_line_and_exit_2(small, capsys):
    folder = small["folder"]
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf\xff\xff")
    wrong = folder / "wrong_shape.npy"
    np.save(wrong, np.zeros((2, 3, 10, 12), np.float32))
    ints = folder / "ints.npy"
    np.save(ints, np.zeros((2, 3, 12, 12), np.int64))
    cases = [
        (["--onnx", str(corrupt)], [str(corrupt), "not an ONNX model"]),
        (["--onnx", str(folder / "missing.onnx")], ["missing.onnx", "no such file"]),
        (["--onnx", _unsupported_op_model(folder / "reduce.onnx")],
         ["'reduce'", "com.microsoft:QLinearReduceMean cannot be imported"]),
        (["--onnx", small["model"], "--inputs", str(wrong)],
         [str(wrong), "shape (N, 3, 12, 12)", "(2, 3, 10, 12)"]),
        (["--onnx", small["model"], "--inputs", str(ints)], ["expected float inputs", "int64"]),
        (["--onnx", small["model"], "--inputs", str(corrupt)], ["not a .npy file"]),
        (["--onnx", small["model"]], ["(N, 3, 12, 12)", "--inputs FILE.npy"]),
        (["--onnx", small["model"], "--inputs", small["inputs"], "--images", "0"],
         ["argument --images", "expected a positive integer, got '0'"]),
        # with --model (the default), --inputs are images for the zoo model: shape checked first
        (["--inputs", small["inputs"]], ["expected images of shape (N, 3, 224, 224)",
                                         "got (N, 3, 12, 12)"]),
    ]
    for args, needles in cases:
        assert verify(*args) == 2, args
        line = one_error_line(capsys)
        for needle in needles:
            assert needle in line, (args, line)


def test_model_and_onnx_are_mutually_exclusive(small, capsys):
    assert verify("--model", "mobilenet_v2", "--onnx", small["model"]) == 2
    assert "not allowed with argument" in one_error_line(capsys)


def test_mobilenet_v2_from_the_zoo_images(tmp_path, capsys):
    """hwsim's int8 MobileNetV2 exported to ONNX, verified on 4 of the zoo's evaluation images
    (the default inputs for a (N, 3, 224, 224) model)."""
    pytest.importorskip("torch")
    from hwsim.flows import quantize_zoo_model

    flow = quantize_zoo_model("mobilenet_v2", requant="float32", accumulator_mode="int16_pairs")
    model = export_onnx(with_ort_accumulators(flow.program), tmp_path / "mobilenet_v2.int8.onnx",
                        float_input=True, float_output=True)
    js = tmp_path / "mobilenet.json"
    assert verify("--onnx", str(model), "--images", "4", "--json", str(js)) == 0
    out = capsys.readouterr().out
    doc = json.loads(js.read_text())
    summary = doc["summary"]
    print(f"\nhwsim verify --onnx MobileNetV2, 4 images: {summary['outputs_compared']} codes "
          f"compared over {len(doc['per_layer'])} layers, {summary['total_mismatches']} "
          f"mismatches, {summary['accumulator_overflows']} int16-pair overflows")
    assert summary["layers_bit_exact"] == "66/66" and summary["total_mismatches"] == 0
    assert summary["inputs"] == 4 and summary["output_top1_agreement"] == 1.0
    ops = [r["op"] for r in doc["per_layer"]]
    assert (ops.count("conv2d"), ops.count("add"), ops.count("linear")) == (52, 10, 1)
    assert "classifier.1" in out


def test_simulate_costs_a_float_onnx_model_like_the_builtin_workload(tmp_path):
    """`hwsim simulate --model resnet50.onnx` (the onnx wheel's ResNet-50 topology, weights made
    by ConstantOfShape) costs the same 54 layers and MACs as the built-in resnet50."""
    import json
    from pathlib import Path

    import onnx

    from hwsim.cli import main
    from hwsim.workloads import builtin_workload

    model = Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx"
    out = tmp_path / "r50.json"
    hw = Path(__file__).resolve().parents[1] / "hw_configs" / "int8_systolic.yaml"
    assert main(["simulate", "--hw", str(hw), "--model", str(model),
                 "--json", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    builtin = builtin_workload("resnet50")
    assert summary["layers"] == len(builtin) == 54
    assert summary["macs"] == sum(layer.macs() for layer in builtin)
