"""Bad input to the `hwsim` command ends in one line on stderr naming the file, flag or field
and what was expected, and exit status 2; never a traceback or a silent wrong answer. One
regression test per case of the hardening issue; the input files are in tests/data/bad/
(`cli_*`, `program_*`; regenerate with `python -m tests.test_cli_hardening`).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwsim import ProgramError, execute
from hwsim.cli import main
from tests._cli_helpers import one_error_line
from hwsim.cli.main import ACC_BITS, ACT_BITS, N_EVAL_IMAGES, WEIGHT_BITS, build_parser
from hwsim.ir import load_program

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad"
HW = str(ROOT / "hw_configs" / "int8_systolic.yaml")


@pytest.fixture
def no_quantizing(monkeypatch):
    """Checks that must fail before the zoo model is quantized (seconds of work)."""
    def refuse(*args, **kwargs):
        raise AssertionError("quantize_zoo_model reached: the check came too late")

    monkeypatch.setattr("hwsim.flows.quantize_zoo_model", refuse)


# ------------------------------------------------------------------------------------------------
# 1. Saved programs: truncated .npz, JSON a list, malformed nodes -> one ProgramError naming the file

@pytest.mark.parametrize("stem, needles", [
    ("program_list", ["program_list.json", "expected a JSON object", "got a JSON array"]),
    ("program_truncated_npz", ["program_truncated_npz.npz", "corrupt", "BadZipFile"]),
    ("program_not_json", ["program_not_json.json", "not valid JSON"]),
    ("program_node_wrong_type", ["program_node_wrong_type.json", "nodes[1]", "'out_shape'",
                                 "expected a JSON array"]),
    ("program_missing_array", ["program_missing_array.json", "nodes[1]", "is not an array in",
                               "program_missing_array.npz"]),
])
def test_malformed_saved_program(stem, needles, capsys):
    with pytest.raises(ProgramError) as exc:
        load_program(BAD / f"{stem}.json")
    assert "\n" not in str(exc.value)
    for needle in needles:
        assert needle in str(exc.value), str(exc.value)
    assert main(["simulate", "--hw", HW, "--model", str(BAD / f"{stem}.json")]) == 2
    line = one_error_line(capsys, "simulate")
    for needle in needles:
        assert needle in line


def test_saved_program_that_fails_check_program_is_one_line_naming_the_file(tmp_path):
    doc = json.loads((BAD / "program_node_wrong_type.json").read_text())
    doc["nodes"][1]["out_shape"] = [1, 5, 12, 12]  # valid type, wrong value
    doc["nodes"][1]["op"] = "no_such_op"
    (tmp_path / "p.json").write_text(json.dumps(doc))
    (tmp_path / "p.npz").write_bytes((BAD / "program_node_wrong_type.npz").read_bytes())
    with pytest.raises(ProgramError) as exc:
        load_program(tmp_path / "p.json")
    assert str(exc.value).startswith(f"{tmp_path / 'p.json'}: ") and "\n" not in str(exc.value)
    assert "no_such_op" in str(exc.value)


def test_unreadable_program_file_names_it(monkeypatch, tmp_path):
    for suffix in (".json", ".npz"):
        (tmp_path / f"p{suffix}").write_bytes((BAD / f"program_node_wrong_type{suffix}").read_bytes())
    real = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "p.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ProgramError, match=r"p\.json: cannot read \(Permission denied\)"):
        load_program(tmp_path / "p.json")


# ------------------------------------------------------------------------------------------------
# 2. Output and input paths: one line naming the flag and the path

def test_output_path_under_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--csv", f"{afile}/x.csv"]) == 2
    line = one_error_line(capsys, "simulate")
    assert f"--csv {afile}/x.csv: cannot write: {afile} is a file, not a directory" in line


def test_json_path_that_is_a_directory(tmp_path, capsys):
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--json", str(tmp_path)]) == 2
    line = one_error_line(capsys, "simulate")
    assert f"--json {tmp_path}: is a directory; expected a file path" in line


def test_json_path_in_an_unwritable_directory(tmp_path, capsys, monkeypatch):
    """A write that fails with PermissionError (simulated: the suite may run as root, which
    writes anywhere) is one line naming the flag; so is the up-front check when it sees it."""
    real = Path.write_text

    def denied(self, *args, **kwargs):
        if self.name == "r.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", denied)
    js = tmp_path / "r.json"
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--json", str(js)]) == 2
    assert f"--json {js}: cannot write: permission denied" in one_error_line(capsys, "simulate")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--json", str(js)]) == 2
    assert f"--json {js}: cannot write: permission denied" in one_error_line(capsys, "simulate")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads and writes anything")
def test_real_permissions(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    hw = tmp_path / "hw.yaml"
    hw.write_text(Path(HW).read_text())
    hw.chmod(0)
    try:
        assert main(["simulate", "--hw", HW, "--model", "resnet18", "--json",
                     str(locked / "r.json")]) == 2
        assert "--json" in one_error_line(capsys, "simulate")
        assert main(["simulate", "--hw", str(hw), "--model", "resnet18"]) == 2
        assert f"--hw {hw}: cannot read: permission denied" in one_error_line(capsys, "simulate")
    finally:
        locked.chmod(0o700)
        hw.chmod(0o600)


@pytest.mark.parametrize("argv, flag", [
    (["simulate", "--hw", "{f}", "--model", "resnet18"], "--hw"),
    (["cost", "--hw", HW, "--topology", "{f}"], "--topology"),
    (["simulate", "--hw", HW, "--model", "{f}.onnx"], "--model"),
])
def test_unreadable_inputs_name_the_flag(argv, flag, tmp_path, capsys, monkeypatch):
    target = tmp_path / "locked"
    target.write_text("x")
    onnx_target = tmp_path / "locked.onnx"
    onnx_target.write_text("x")
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if str(file).startswith(str(target)):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    argv = [a.replace("{f}", str(target)) for a in argv]
    assert main(argv) == 2
    line = one_error_line(capsys, argv[0])
    assert f"{flag} {target}" in line and "cannot read: permission denied" in line


def test_unreadable_onnx_model_names_it(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from hwsim.onnx import OnnxImportError
    from hwsim.onnx._model import load_model

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if str(file) == str(model):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(OnnxImportError, match=r"m\.onnx: cannot read \(Permission denied\)"):
        load_model(str(model))


def test_a_directory_is_said_to_be_a_directory(tmp_path, capsys):
    pytest.importorskip("onnx")
    from hwsim.onnx import OnnxImportError
    from hwsim.onnx._model import load_model

    assert main(["verify", "--onnx", str(tmp_path)]) == 2
    assert f"--onnx {tmp_path}: is a directory" in one_error_line(capsys, "verify")
    with pytest.raises(OnnxImportError, match="is a directory, not an ONNX model file"):
        load_model(str(tmp_path))
    assert main(["simulate", "--hw", str(tmp_path), "--model", "resnet18"]) == 2
    assert f"--hw {tmp_path}: is a directory" in one_error_line(capsys, "simulate")
    assert main(["simulate", "--hw", HW, "--model", str(tmp_path)]) == 2
    assert f"--model {tmp_path}: is a directory" in one_error_line(capsys, "simulate")


# ------------------------------------------------------------------------------------------------
# 3. A closed stdout: the files are written first; no traceback

def test_broken_pipe_writes_the_files_and_exits_quietly(tmp_path):
    js, csv = tmp_path / "r.json", tmp_path / "r.csv"
    proc = subprocess.Popen([sys.executable, "-m", "hwsim", "simulate", "--hw", HW, "--model",
                             "resnet50", "--json", str(js), "--csv", str(csv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # `| head` that has already exited: every write raises EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert len(json.loads(js.read_text())["per_layer"]) == 54
    assert csv.read_text().count("\n") == 55


def test_broken_pipe_in_process(tmp_path, monkeypatch):
    class ClosedPipe(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    js = tmp_path / "r.json"
    assert main(["cost", "--hw", HW, "--topology", str(BAD / "cli_topology.csv"),
                 "--json", str(js)]) == 1
    assert json.loads(js.read_text())["summary"]["layers"] == 2


# ------------------------------------------------------------------------------------------------
# 4. An ONNX model with a static batch of 1, verified on a batch of 4

def test_static_batch_model_verifies_on_more_inputs(capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    js = tmp_path / "r.json"
    model, inputs = BAD / "cli_static_batch1.int8.onnx", BAD / "cli_inputs_batch4.npy"
    assert main(["verify", "--onnx", str(model), "--inputs", str(inputs), "--json", str(js)]) == 0
    summary = json.loads(js.read_text())["summary"]
    assert summary["inputs"] == 4 and summary["total_mismatches"] == 0
    assert summary["output_top1_agreement"] == 1.0


def test_ort_runs_a_static_batch_model_in_chunks():
    pytest.importorskip("onnxruntime")
    from hwsim.onnx import ort_reference_outputs

    model = str(BAD / "cli_static_batch1.int8.onnx")
    x = np.load(BAD / "cli_inputs_batch4.npy")
    whole = ort_reference_outputs(model, x, ["conv1"])
    for i in range(len(x)):
        one = ort_reference_outputs(model, x[i: i + 1], ["conv1"])
        for name in whole:
            assert np.array_equal(whole[name][i: i + 1], one[name])


def test_static_batch_that_does_not_divide_fails_before_running(tmp_path, capsys, monkeypatch):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(BAD / "cli_static_batch1.int8.onnx"))
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 3
    path = tmp_path / "static3.onnx"
    onnx.save(model, str(path))

    def refuse(*args, **kwargs):
        raise AssertionError("hwsim executed the model before the batch check")

    monkeypatch.setattr("hwsim.onnx.verify.execute", refuse)
    assert main(["verify", "--onnx", str(path), "--inputs", str(BAD / "cli_inputs_batch4.npy")]) == 2
    line = one_error_line(capsys, "verify")
    assert "static batch of 3" in line and "4 inputs are not a multiple" in line


def test_simulate_batch_on_a_static_batch_model(capsys):
    pytest.importorskip("onnx")
    model = str(BAD / "cli_static_batch1.int8.onnx")
    assert main(["simulate", "--hw", HW, "--model", model, "--batch", "8"]) == 2
    assert "--batch 8" in (line := one_error_line(capsys, "simulate")) and "static batch of 1" in line


# ------------------------------------------------------------------------------------------------
# 5. Numbers: checked up front, naming the flag

@pytest.mark.parametrize("args, needles", [
    (["--images", "1000"], ["argument --images", "1000 requested", f"{N_EVAL_IMAGES} evaluation images"]),
    (["--images", "0"], ["argument --images", "positive integer", "'0'"]),
    (["--images", "-2"], ["argument --images"]),
    (["--bits", "0"], ["argument --bits", "[2, 16]", "'0'"]),
    (["--bits", "17"], ["argument --bits"]),
    (["--bits", "8", "--weight-format", "apot"], ["argument --bits", "apot takes 3..7 bits", "got 8"]),
    (["--bits", "2", "--weight-format", "apot"], ["argument --bits", "apot takes 3..7 bits"]),
    (["--act-bits", "1"], ["argument --act-bits", "[2, 16]"]),
    (["--acc-bits", "4"], ["argument --acc-bits", "[8, 64]", "'4'"]),
    (["--acc-bits", "65"], ["argument --acc-bits"]),
    (["--bits", "four"], ["argument --bits", "'four'"]),
    (["--model", "vgg16"], ["argument --model", "invalid choice", "resnet18"]),
    (["--onnx", "m.onnx", "--bits", "4"], ["--bits", "apply to --model"]),
])
def test_verify_numbers_are_checked_before_quantizing(args, needles, capsys, no_quantizing):
    start = time.perf_counter()
    assert main(["verify", *args]) == 2
    assert time.perf_counter() - start < 2
    line = one_error_line(capsys, "verify")
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("argv, needle", [
    (["demo", "--images", "51"], "argument --images: 51 requested"),
    (["demo", "--latency-budget", "0"], "--latency-budget 0.0: expected a fraction in (0, 1]"),
    (["demo", "--mixed-hw", "no_such.yaml"], "--mixed-hw"),
    (["simulate", "--hw", HW, "--model", "resnet18", "--batch", "0"], "argument --batch"),
    (["simulate", "--hw", HW, "--model", "resnet18", "--batch", "-1"], "argument --batch"),
])
def test_other_numbers(argv, needle, capsys, no_quantizing):
    assert main(argv) == 2
    assert needle in one_error_line(capsys, argv[0])


def test_verify_onnx_images_beyond_the_inputs(capsys):
    pytest.importorskip("onnxruntime")
    assert main(["verify", "--onnx", str(BAD / "cli_static_batch1.int8.onnx"), "--inputs",
                 str(BAD / "cli_inputs_batch4.npy"), "--images", "10"]) == 2
    line = one_error_line(capsys, "verify")
    assert "--images 10: only 4 inputs are available" in line


def test_the_cli_ranges_are_the_formats_ranges():
    import quant
    from quant.errors import QuantError

    lo, hi = WEIGHT_BITS["int"]
    for bits in (lo, hi):
        quant.IntFormat(bits=bits)
    for bits in (lo - 1, hi + 1):
        with pytest.raises(QuantError):
            quant.IntFormat(bits=bits)
    lo, hi = WEIGHT_BITS["apot"]
    for bits in (lo, hi):
        quant.APoTFormat(bits=bits, signed=True)
    for bits in (lo - 1, hi + 1):
        with pytest.raises(QuantError):
            quant.APoTFormat(bits=bits, signed=True)
    lo, hi = ACT_BITS
    for bits in (lo, hi):
        quant.IntFormat(bits=bits, signed=False, symmetric=False, per_channel=False)
    assert ACC_BITS == (8, 64)


def test_the_number_of_evaluation_images():
    pytest.importorskip("torch")
    from hwsim.zoo import EVAL_IMAGES

    assert N_EVAL_IMAGES == 10 * len(EVAL_IMAGES)  # 5 crops and their flips per image


# ------------------------------------------------------------------------------------------------
# 6. A configuration that collapses fidelity warns; random-weight ResNets say so

def test_fidelity_warnings_thresholds():
    from hwsim.verify import fidelity_warnings

    assert fidelity_warnings({"top1_agreement_int_vs_float": 0.9,
                              "output_sqnr_db_int_vs_float": 20.0}) == []
    w = fidelity_warnings({"top1_agreement_int_vs_float": 0.02,
                           "output_sqnr_db_int_vs_float": -4.8})
    assert len(w) == 2 and "0.02" in w[0] and "-4.8 dB" in w[1]
    assert len(fidelity_warnings({"output_sqnr_db_int_vs_float": float("-inf")})) == 1


def test_w4a4_warns_on_stderr(tmp_path, capsys):
    pytest.importorskip("torch")
    js = tmp_path / "r.json"
    assert main(["verify", "--bits", "4", "--act-bits", "4", "--images", "4", "-q",
                 "--json", str(js)]) == 0
    captured = capsys.readouterr()
    warns = [line for line in captured.err.splitlines() if line.startswith("hwsim verify: warning: ")]
    assert warns and "top-1 agreement" in warns[0], captured.err
    assert "Traceback" not in captured.err
    assert json.loads(js.read_text())["summary"]["warnings"] == [w.split("warning: ", 1)[1] for w in warns]


def test_resnet_verification_says_its_weights_are_random(capsys):
    pytest.importorskip("torch")
    assert main(["verify", "--model", "resnet18", "--images", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "random, seeded" in out and "note: the built-in resnet18 has random" in out
    help_text = _help(["verify"])
    assert "resnet18, resnet50 (random seeded weights" in help_text
    assert "mobilenet_v2 (ImageNet weights)" in help_text


# ------------------------------------------------------------------------------------------------
# 7. CLI polish

def _help(argv: list[str]) -> str:
    out = io.StringIO()
    old = sys.stdout
    sys.stdout = out
    try:
        assert main([*argv, "--help"]) == 0
    finally:
        sys.stdout = old
    return " ".join(out.getvalue().split())


def test_version(capsys):
    from hwsim import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hwsim {__version__}"


def test_every_option_has_help():
    parser = build_parser()
    for name, sp in [("hwsim", parser), *parser.commands.items()]:
        for action in sp._actions:
            if action.option_strings:
                assert action.help and action.help.strip(), (name, action.option_strings)


def test_top_level_help_is_for_users():
    text = _help([])
    assert "Argument parsing" not in text and "dispatch" not in text
    assert "simulate quantized neural networks" in text
    for command in ("demo", "simulate", "cost", "verify"):
        assert command in text


def test_simulate_help_lists_models_and_file_types():
    from hwsim.workloads import builtin_workload_names

    text = _help(["simulate"])
    for name in builtin_workload_names():
        assert name in text
    for kind in (".json", ".npz", ".onnx"):
        assert kind in text


def test_quiet_prints_only_the_summary(capsys):
    assert main(["simulate", "--hw", HW, "--model", "resnet18"]) == 0
    loud = capsys.readouterr().out
    for argv in (["--quiet", "simulate"], ["simulate", "-q"]):
        assert main([*argv, "--hw", HW, "--model", "resnet18"]) == 0
        quiet = capsys.readouterr().out
        assert "compute_cycles" in quiet and "layer1.0.conv1" in loud
        assert "layer1.0.conv1" not in quiet and len(quiet) < len(loud) / 3


def test_demo_summary_once_and_integer_csv_columns(tmp_path, capsys):
    pytest.importorskip("torch")
    import pandas as pd

    csv = tmp_path / "demo.csv"
    assert main(["demo", "--images", "2", "--no-codesign", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert out.count("top1_agreement_int_vs_float") == 1
    assert out.count("layers_bit_exact") == 1
    df = pd.read_csv(csv, dtype_backend="numpy_nullable")
    assert len(df) > 60
    for col in ("macs", "compute_cycles", "total_cycles", "max_lsb_diff", "overflows"):
        assert pd.api.types.is_integer_dtype(df[col]), (col, df[col].dtype)
    import csv as csv_module
    import re

    rows = list(csv_module.DictReader(csv.open()))
    for col in ("macs", "compute_cycles", "total_cycles", "max_lsb_diff"):
        cells = [r[col] for r in rows if r[col] != ""]
        assert cells and all(re.fullmatch(r"-?\d+", c) for c in cells), (col, cells[:5])
    assert df["macs"].isna().sum() > 0  # pooling/add layers: no cost row, an empty cell


def test_error_messages_are_one_line_per_problem():
    from hwsim.cli.main import error_lines

    assert error_lines("shape inference failed ([ShapeInferenceError] x\n(op_type:Gemm)\n)") == \
        "shape inference failed ([ShapeInferenceError] x (op_type:Gemm) )"
    listing = "bad config (2 errors)\n  a.yaml: rows: expected a positive integer"
    assert error_lines(listing) == listing


# ------------------------------------------------------------------------------------------------
# 8. A batch of 0 inputs

def test_execute_refuses_a_batch_of_zero():
    from tests.test_onnx_export import small_program

    program = small_program(seed=3)
    shape = (0, *program.input.out_shape[1:])
    with pytest.raises(ProgramError, match="a batch of 0 inputs"):
        execute(program, np.zeros(shape, dtype=program.input.out.dtype))


# ------------------------------------------------------------------------------------------------
# 9. hwsim.zoo.minilm() is the function, whatever was imported first

def test_zoo_minilm_is_callable_after_importing_its_module():
    pytest.importorskip("torch")
    code = ("import hwsim.zoo, hwsim.zoo.minilm\n"
            "from hwsim.zoo.minilm import MiniLM, minilm_model_dir\n"
            "import hwsim.minilm_flow\n"
            "import types\n"
            "assert callable(hwsim.zoo.minilm) and not isinstance(hwsim.zoo.minilm, types.ModuleType)\n"
            "try:\n"
            "    m = hwsim.zoo.minilm()\n"
            "except hwsim.WorkloadError as exc:\n"
            "    print('no weights:', exc)\n"
            "else:\n"
            "    assert isinstance(m, MiniLM)\n"
            "    print(m.encode(['a cat']).shape)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "(1, 384)" in res.stdout or "no weights" in res.stdout


# ------------------------------------------------------------------------------------------------
# The files of tests/data/bad/ (cli_*, program_*): `python -m tests.test_cli_hardening`

def _write_bad_files() -> None:
    import onnx

    from hwsim.ir import save_program
    from hwsim.onnx import export_onnx, with_ort_accumulators
    from tests.test_onnx_export import small_program

    BAD.mkdir(parents=True, exist_ok=True)
    program = with_ort_accumulators(small_program(seed=21, narrow_clamps=False))
    good = save_program(program, BAD / "program_node_wrong_type")
    doc = json.loads(good.read_text())
    doc["nodes"][1]["out_shape"] = "1x8x12x12"
    good.write_text(json.dumps(doc, indent=1))
    npz = (BAD / "program_node_wrong_type.npz").read_bytes()
    (BAD / "program_list.json").write_text("[1, 2]\n")
    np.savez(BAD / "program_list.npz", a=np.zeros(1, np.int8))
    (BAD / "program_not_json.json").write_text('{"format": "hwsim-int-program", "version": 1,\n')
    np.savez(BAD / "program_not_json.npz", a=np.zeros(1, np.int8))
    save_program(program, BAD / "program_truncated_npz")
    (BAD / "program_truncated_npz.npz").write_bytes(npz[: len(npz) // 2])
    save_program(program, BAD / "program_missing_array")
    doc = json.loads((BAD / "program_missing_array.json").read_text())
    doc["nodes"][1]["arrays"]["weight"] = "n99.weight"
    (BAD / "program_missing_array.json").write_text(json.dumps(doc, indent=1))
    model = export_onnx(program, BAD / "cli_static_batch1.int8.onnx", float_input=True,
                        float_output=True)
    proto = onnx.load(str(model))
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 1  # as torch.onnx.export writes it without dynamic_axes
    onnx.save(proto, str(model))
    x = np.random.default_rng(4).normal(0.0, 1.5, size=(4, 3, 12, 12)).astype(np.float32)
    np.save(BAD / "cli_inputs_batch4.npy", x)
    (BAD / "cli_topology.csv").write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nconv1, 16, 16, 3, 3, 8, 16, 1,\nconv2, 14, 14, 3, 3, 16, 16, 2,\n")


if __name__ == "__main__":
    _write_bad_files()
