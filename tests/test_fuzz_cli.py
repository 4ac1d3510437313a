"""Fuzzing the `hwsim` command in-process: hypothesis-generated argument vectors (random subsets
of flags with random values, missing and extra arguments, bad paths), mutated saved programs
(JSON and .npz: truncated, bit-flipped, fields of the wrong type) and mutated ONNX models
(truncated, bit-flipped), all run through `hwsim.cli.main.main(argv)` with stdout and stderr
captured.

The property: exit status 0 with finite, non-negative figures in the --json file, or exit
status 2 with one line on stderr (`hwsim ...: error: ...`; a file with several problems gets
one line per problem, the others indented, as tests/test_bad_inputs.py specifies); never an exception
escaping `main` (a traceback), never a RuntimeWarning (an overflow or NaN on the way).

The argument vectors never reach the slow MobileNetV2 quantization: `verify` without --onnx
always carries an argument error, and quantize_zoo_model is patched to fail the test if it is
reached. Budget: 7,600 generated inputs (HWSIM_FUZZ_SCALE multiplies it), derandomized.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import time
import traceback
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hwsim.cli.main import main  # noqa: E402
from hwsim.ir import save_program  # noqa: E402
from hwsim.onnx import export_onnx, with_ort_accumulators  # noqa: E402
from tests.test_onnx_export import small_program  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCALE = float(os.environ.get("HWSIM_FUZZ_SCALE", "1"))
SLOW_SECONDS = 5.0  # one in-process run of a tiny model; more means a slow path was reached


def fuzz_settings(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), derandomize=True, deadline=None,
                    database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------------------------
# Files: good ones, and bad ones of every kind


def _float_onnx_model(path: Path) -> None:
    """A tiny float model for `simulate --model x.onnx`: conv -> relu -> flatten -> gemm."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(5, 4 * 6 * 6)).astype(np.float32), "fc_w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[0, 0, 0, 0]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc_w"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny_float",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_cli")
    good = d / "good"
    good.mkdir()
    shutil.copy(ROOT / "hw_configs" / "int8_systolic.yaml", good / "hw.yaml")
    (good / "topo.csv").write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nconv1, 16, 16, 3, 3, 8, 16, 1,\nconv2, 14, 14, 3, 3, 16, 16, 2,\n")
    program = with_ort_accumulators(small_program(seed=21, narrow_clamps=False))
    save_program(program, good / "prog")
    export_onnx(program, good / "int8.onnx", float_input=True, float_output=True)
    _float_onnx_model(good / "float.onnx")
    x = np.random.default_rng(21).normal(0.0, 1.5, size=(3, 3, 12, 12)).astype(np.float32)
    np.save(good / "x.npy", x)
    np.save(good / "x_wrong_shape.npy", x[:, :, :10])
    np.save(good / "x_int.npy", x.astype(np.int64))
    np.save(good / "x_nan.npy", np.where(x > 1, np.nan, x).astype(np.float32))
    np.save(good / "x_empty.npy", x[:0])
    (good / "garbage.bin").write_bytes(bytes(range(256)) * 3)
    (good / "empty").write_bytes(b"")
    (good / "adir").mkdir()
    work = d / "work"
    work.mkdir()
    return {"good": good, "work": work, "out": d / "out"}


def _fresh_out(files) -> Path:
    out = files["out"]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return out


# ------------------------------------------------------------------------------------------------
# Running main in-process, and the property


class SlowPathReached(AssertionError):
    """The fuzzer built an argv that quantizes a zoo model: a bug of this test."""


def _no_quantizing(*args, **kwargs):
    raise SlowPathReached("quantize_zoo_model reached: the argv should have failed earlier")


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught, \
            mock.patch("hwsim.flows.quantize_zoo_model", _no_quantizing):
        warnings.simplefilter("always")
        try:
            status = main(argv)
        except SlowPathReached:
            raise
        except BaseException as exc:  # noqa: BLE001  (a traceback is what we hunt)
            where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            raise AssertionError(f"main({argv!r}) raised {type(exc).__name__}: {exc}\n"
                                 f"{where}stderr: {err.getvalue()}") from exc
    elapsed = time.perf_counter() - start
    assert elapsed < SLOW_SECONDS, (argv, elapsed)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, (argv, [str(w.message) for w in runtime])
    return status, out.getvalue(), err.getvalue()


def _finite_non_negative(value, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        assert math.isfinite(value) and value >= 0, (where, value)


COUNT_FIELDS = ("outputs", "mismatches", "max_lsb_diff", "inputs", "outputs_compared",
                "total_mismatches", "accumulator_overflows")


def check(argv: list[str], json_path: Path | None) -> tuple[int, str, str]:
    """Run `argv`; assert the property; return (status, stdout, stderr)."""
    status, out, err = run(argv)
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    if status == 2:  # one line; several problems of one file: one line each, indented
        lines = err.splitlines()
        assert lines and all(line.startswith("  ") for line in lines[1:]), (argv, err)
        assert lines[0].startswith("hwsim") and ": error: " in lines[0], (argv, err)
        return status, out, err
    assert status == 0, (argv, status, err)
    assert all(line.startswith("hwsim ") and ": warning: " in line
               for line in err.splitlines()), (argv, err)
    if json_path is None or not json_path.exists():
        return status, out, err
    doc = json.loads(json_path.read_text())
    summary, rows = doc["summary"], doc["per_layer"]
    if "accelerator" in summary:  # a cost: every figure finite and non-negative
        assert summary["layers"] == len(rows) > 0, argv
        for key, value in summary.items():
            _finite_non_negative(value, f"summary.{key}")
        for row in rows:
            for key, value in row.items():
                _finite_non_negative(value, f"{row.get('name')}.{key}")
    else:  # hwsim vs ONNX Runtime: counts non-negative, SQNR a number or +-inf, never NaN
        for key in COUNT_FIELDS:
            if key in summary:
                _finite_non_negative(summary[key], f"summary.{key}")
        for row in rows:
            for key in COUNT_FIELDS:
                if key in row:
                    _finite_non_negative(row[key], f"{row['layer']}.{key}")
            assert row["sqnr_db"] in ("inf", "-inf") or math.isfinite(row["sqnr_db"]), row
    return status, out, err


# ------------------------------------------------------------------------------------------------
# 1. Argument vectors: random subsets of flags with random values


def _paths(files):
    g = files["good"]
    return {
        "hw": [str(g / "hw.yaml"), str(g / "missing.yaml"), str(g / "adir"), str(g / "garbage.bin"),
               str(g / "empty"), str(g / "topo.csv"), "", str(ROOT / "hw_configs" / "binary_xnor.yaml"),
               str(ROOT / "hw_configs" / "tpu_like_ws_128x128.yaml")],
        "model": ["resnet18", "resnet50", "mobilenet_v2", "resnet34", "vgg99", "", str(g / "prog.json"),
                  str(g / "prog.npz"), str(g / "prog"), str(g / "float.onnx"), str(g / "int8.onnx"),
                  str(g / "missing.onnx"), str(g / "adir"), str(g / "garbage.bin"),
                  str(g / "missing.json"), str(g / "x.npy")],
        "topology": [str(g / "topo.csv"), str(g / "missing.csv"), str(g / "adir"), str(g / "garbage.bin"),
                     str(g / "empty"), str(g / "hw.yaml"), ""],
        "onnx": [str(g / "int8.onnx"), str(g / "float.onnx"), str(g / "garbage.bin"), str(g / "adir"),
                 str(g / "missing.onnx"), str(g / "empty"), str(g / "prog.json")],
        "inputs": [str(g / "x.npy"), str(g / "x_wrong_shape.npy"), str(g / "x_int.npy"),
                   str(g / "x_nan.npy"), str(g / "x_empty.npy"), str(g / "garbage.bin"),
                   str(g / "adir"), str(g / "missing.npy"), str(g / "empty")],
        "out_json": [str(files["out"] / "out.json"), str(g / "adir"), "/etc/hostname/x.json", "",
                     str(files["out"] / "new" / "deeper" / "out.json")],
        "out_csv": [str(files["out"] / "out.csv"), str(g / "adir"), "/etc/hostname/x.csv", "",
                    str(g / "garbage.bin") + "/x.csv"],
        "save": [str(files["out"] / "saved"), str(g / "adir"), "/etc/hostname/p", ""],
    }


NUMBERS = st.one_of(st.integers(-3, 80), st.integers(-(10 ** 30), 10 ** 30),
                    st.sampled_from(["", "x", "1.5", "1e3", "0x10", " 7", "-0", "٣"]))
SET_KEYS = ["compute.rows", "compute.cols", "compute.dataflow", "compute.mac_energy_pj",
            "clock_mhz", "memory.dram.bandwidth_bytes_per_cycle", "memory.buffers.ifmap_sram.size_bytes",
            "compute.nosuch", "name", "", "compute", "memory.buffers"]
SET_VALUES = st.one_of(st.integers(-5, 5000).map(str), st.sampled_from(
    ["ws", "os", "is", "xx", "", "1.5", "-0.5", "nan", "inf", "1e400", "[1, 2]", "{a: 1}", "true", "null"]))
EXTRA = ["--nope", "-x", "extra", "--", "--model", "--hw", "--bits", "--batch", "-q", "--quiet",
         "--set", "--convention", "simulate"]


def _option(files, command: str):
    p = _paths(files)
    common = [
        st.tuples(st.just("--csv"), st.sampled_from(p["out_csv"])),
        st.tuples(st.just("--json"), st.sampled_from(p["out_json"])),
        st.tuples(st.sampled_from(["-q", "--quiet"])),
    ]
    hw = [
        st.tuples(st.just("--hw"), st.sampled_from(p["hw"])),
        st.tuples(st.just("--set"), st.builds(lambda k, v: f"{k}={v}", st.sampled_from(SET_KEYS),
                                              SET_VALUES)),
        st.tuples(st.just("--set"), st.sampled_from(["noequals", "=3", "compute.rows==4", ""])),
        st.tuples(st.just("--convention"), st.sampled_from(["torch", "scalesim", "tf", ""])),
    ]
    per_command = {
        "simulate": [st.tuples(st.just("--model"), st.sampled_from(p["model"])),
                     st.tuples(st.just("--batch"), NUMBERS.map(str))],
        "cost": [st.tuples(st.just("--topology"), st.sampled_from(p["topology"]))],
        "verify": [st.tuples(st.just("--onnx"), st.sampled_from(p["onnx"])),
                   st.tuples(st.just("--inputs"), st.sampled_from(p["inputs"])),
                   st.tuples(st.just("--images"), NUMBERS.map(str)),
                   st.tuples(st.just("--engine"), st.sampled_from(["ort", "qnnpack", "fbgemm", "tvm"])),
                   st.tuples(st.just("--backend"), st.sampled_from(["fast", "reference", "slow"])),
                   st.tuples(st.just("--save-program"), st.sampled_from(p["save"])),
                   st.tuples(st.just("--acc-report")),
                   st.tuples(st.sampled_from(["--bits", "--act-bits", "--acc-bits"]), NUMBERS.map(str)),
                   st.tuples(st.just("--weight-format"), st.sampled_from(["int", "apot", "fp8"])),
                   st.tuples(st.sampled_from(["--per-tensor", "--first-last-int8"])),
                   st.tuples(st.just("--model"), st.sampled_from(["resnet18", "mobilenet_v2", "vgg"]))],
    }
    opts = common + per_command.get(command, []) + (hw if command in ("simulate", "cost") else [])
    return st.one_of(opts)


# Argument errors argparse reports while reading the token, whatever follows: `verify` without
# --onnx carries one of these, so it never quantizes a zoo model.
VERIFY_ARG_ERRORS = [["--bits", "0"], ["--bits", "17"], ["--acc-bits", "7"], ["--act-bits", "1"],
                     ["--images", "-3"], ["--images", "0"], ["--model", "vgg"], ["--nope"],
                     ["--backend", "slow"], ["--engine", "tvm"], ["--weight-format", "fp8"],
                     ["--acc-bits", "65"], ["--images", "many"]]


@st.composite
def argv_strategy(draw, files):
    command = draw(st.sampled_from(["simulate", "simulate", "cost", "cost", "verify", "verify",
                                    "bogus", "", "demo"]))
    argv = [command] if command else []
    g = files["good"]
    if draw(st.booleans()):  # start from a valid command line, then add random options
        argv += {"simulate": ["--hw", str(g / "hw.yaml"), "--model",
                              draw(st.sampled_from(["resnet18", "mobilenet_v2", str(g / "prog.json"),
                                                    str(g / "float.onnx")]))],
                 "cost": ["--hw", str(g / "hw.yaml"), "--topology", str(g / "topo.csv")],
                 "verify": ["--onnx", str(g / "int8.onnx"), "--inputs", str(g / "x.npy")]
                 }.get(command, [])
    options = draw(st.lists(_option(files, command), max_size=5))
    for opt in options:
        argv += list(opt)
    if command == "demo":  # never a valid demo: it would quantize MobileNetV2
        argv.insert(draw(st.integers(1, len(argv))), "--images")
        argv.insert(argv.index("--images") + 1, draw(st.sampled_from(["0", "51", "-1", "x"])))
    if command == "verify" and "--onnx" not in argv:
        err = draw(st.sampled_from(VERIFY_ARG_ERRORS))
        at = draw(st.integers(1, len(argv)))
        argv[at:at] = err
    if draw(st.booleans()) and len(argv) > 1:  # a missing value or flag
        del argv[draw(st.integers(1, len(argv) - 1))]
    if draw(st.integers(0, 4)) == 0:  # an extra token
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(EXTRA)))
    if draw(st.integers(0, 9)) == 0:
        argv.insert(0, draw(st.sampled_from(["-q", "--quiet", "--version", "-h", "--help", "--nope"])))
    if command == "verify" and "--onnx" not in argv and not any(
            argv[i: i + len(e)] == e for e in VERIFY_ARG_ERRORS for i in range(len(argv))):
        argv.append("--nope")  # the deletion hit the error: keep verify away from quantizing
    return argv


def test_fuzz_argument_vectors(files):
    seen = {"exit0": 0, "exit2": 0}

    @fuzz_settings(3000)
    @given(argv=argv_strategy(files))
    def prop(argv):
        out = _fresh_out(files)
        json_path = out / "out.json"
        if "--json" not in argv and argv and argv[0] in ("simulate", "cost", "verify"):
            argv = argv + ["--json", str(json_path)]
        status, _, _ = check(argv, json_path)
        seen["exit0" if status == 0 else "exit2"] += 1

    prop()
    print("argument vectors, exit statuses:", seen)
    total = seen["exit0"] + seen["exit2"]
    assert seen["exit0"] > 0.05 * total and seen["exit2"] > 0.3 * total, seen


# ------------------------------------------------------------------------------------------------
# 2. Saved programs: the JSON and the .npz mutated


def _json_mutation(draw, doc):
    """A structural mutation of the program document: a value replaced by one of another type,
    a key deleted or added, a list truncated."""
    junk = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                     st.lists(st.integers(-3, 3), max_size=3), st.just({}), st.just({"a": 1}))
    paths = []

    def walk(v, path):
        paths.append(path)
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, path + (i,))

    walk(doc, ())
    path = draw(st.sampled_from(paths))
    if not path:
        return draw(junk)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    action = draw(st.sampled_from(["replace", "replace", "delete", "add", "truncate"]))
    key = path[-1]
    if action == "replace":
        parent[key] = draw(junk)
    elif action == "delete":
        del parent[key]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=6))] = draw(junk)
    elif action == "truncate" and isinstance(parent[key], list):
        del parent[key][draw(st.integers(0, max(0, len(parent[key]) - 1))):]
    else:
        parent[key] = draw(junk)
    return doc


def _byte_mutation(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "flip", "flips", "insert", "zero"]))
    n = len(data)
    if n == 0:
        return draw(st.binary(max_size=8))
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, n - 1)))]
    buf = bytearray(data)
    if kind == "flip":
        i = draw(st.integers(0, n - 1))
        buf[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "flips":
        for i in draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=20)):
            buf[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "insert":
        i = draw(st.integers(0, n))
        buf[i:i] = draw(st.binary(min_size=1, max_size=8))
    else:
        i = draw(st.integers(0, n - 1))
        buf[i: i + draw(st.integers(1, 64))] = bytes(min(64, n - i))
    return bytes(buf)


@st.composite
def program_mutation(draw, files):
    g = files["good"]
    text, npz = (g / "prog.json").read_text(), (g / "prog.npz").read_bytes()
    target = draw(st.sampled_from(["json", "json", "json_bytes", "npz", "both"]))
    if target in ("json", "both"):
        doc = json.loads(text)
        for _ in range(draw(st.integers(1, 3))):
            doc = _json_mutation(draw, doc)
        text = json.dumps(doc)
    if target == "json_bytes":
        text = _byte_mutation(draw, text.encode()).decode("utf-8", errors="surrogateescape")
    if target in ("npz", "both"):
        npz = _byte_mutation(draw, npz)
    return text, npz, draw(st.sampled_from(["json", "npz", "stem"]))


def test_fuzz_saved_programs(files):
    hw = str(files["good"] / "hw.yaml")
    work = files["work"] / "prog"
    work.mkdir(exist_ok=True)

    @fuzz_settings(2000)
    @given(case=program_mutation(files))
    def prop(case):
        text, npz, give = case
        (work / "p.json").write_bytes(text.encode("utf-8", errors="surrogateescape"))
        (work / "p.npz").write_bytes(npz)
        model = {"json": work / "p.json", "npz": work / "p.npz", "stem": work / "p.json"}[give]
        out = _fresh_out(files)
        status, _, err = check(["simulate", "--hw", hw, "--model", str(model), "--json",
                                str(out / "out.json")], out / "out.json")
        seen[status] = seen.get(status, 0) + 1
        if status == 2:  # the message names the file at fault
            assert "p.json" in err or "p.npz" in err, err

    seen: dict[int, int] = {}
    prop()
    print("saved programs, exit statuses:", seen)
    assert seen.get(0, 0) > 0 and seen.get(2, 0) > 0.5 * sum(seen.values()), seen


# ------------------------------------------------------------------------------------------------
# 3. ONNX models: truncated and bit-flipped


@st.composite
def onnx_mutation(draw, files):
    which = draw(st.sampled_from(["int8.onnx", "int8.onnx", "float.onnx"]))
    data = (files["good"] / which).read_bytes()
    for _ in range(draw(st.integers(1, 2))):
        data = _byte_mutation(draw, data)
    return which, data


def test_fuzz_onnx_models(files):
    g = files["good"]
    work = files["work"] / "onnx"
    work.mkdir(exist_ok=True)

    @fuzz_settings(2000)
    @given(case=onnx_mutation(files))
    def prop(case):
        which, data = case
        model = work / "m.onnx"
        model.write_bytes(data)
        out = _fresh_out(files)
        js = out / "out.json"
        if which == "int8.onnx":
            argv = ["verify", "--onnx", str(model), "--inputs", str(g / "x.npy"), "--json", str(js)]
        else:
            argv = ["simulate", "--hw", str(g / "hw.yaml"), "--model", str(model), "--json", str(js)]
        status, _, err = check(argv, js)
        seen[(which, status)] = seen.get((which, status), 0) + 1
        if status == 2:
            assert "m.onnx" in err, err

    seen: dict = {}
    prop()
    print("ONNX models, (model, exit status):", seen)
    assert seen.get(("int8.onnx", 0), 0) > 0 and seen.get(("float.onnx", 0), 0) > 0, seen


# ------------------------------------------------------------------------------------------------
# 4. verify --onnx with random options on the good model


@st.composite
def verify_onnx_argv(draw, files):
    g = files["good"]
    argv = ["verify", "--onnx", str(g / "int8.onnx")]
    options = draw(st.lists(_option(files, "verify"), max_size=5))
    for opt in options:
        if opt[0] not in ("--onnx", "--model"):
            argv += list(opt)
    if "--inputs" not in argv and draw(st.booleans()):
        argv += ["--inputs", str(g / "x.npy")]
    return argv


def test_fuzz_verify_onnx_options(files):
    @fuzz_settings(600)
    @given(argv=verify_onnx_argv(files))
    def prop(argv):
        out = _fresh_out(files)
        js = out / "out.json"
        if "--json" not in argv:
            argv = argv + ["--json", str(js)]
        status, _, _ = check(argv, js)
        seen[status] = seen.get(status, 0) + 1

    seen: dict[int, int] = {}
    prop()
    print("verify --onnx options, exit statuses:", seen)
    assert seen.get(0, 0) > 0 and seen.get(2, 0) > 0, seen
