"""``hwsim simulate`` says what it did not cost: a saved program's or an ONNX model's nodes the
cost model leaves out (adds, pooling, ...) are one line after the summary (also with -q) and a
list with reasons under ``uncosted`` in --json; shapes-only workloads print no such line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim.cli import main
from hwsim.cli.commands import uncosted_line
from hwsim.ir import save_program
from hwsim.workloads.program import uncosted_ops
from tests.test_onnx_export import small_program

HW = str(Path(__file__).resolve().parents[1] / "hw_configs" / "int8_systolic.yaml")


def test_a_saved_program_lists_its_uncosted_nodes(tmp_path, capsys):
    program = small_program(0)
    path = save_program(program, tmp_path / "net")
    reasons = uncosted_ops(program)
    expected = [n for n in program.nodes() if n.op in reasons]
    assert len({n.op for n in expected}) >= 3  # add, pools, flatten

    out = tmp_path / "s.json"
    assert main(["-q", "simulate", "--hw", HW, "--model", str(path), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # -q: the summary, then the line
    assert lines[0] == f"{path} on int8_systolic_os_32x32"
    assert all(l.startswith("  ") for l in lines[1:-1])
    last = lines[-1]
    assert last.startswith(f"not costed (vector unit / data movement): {len(expected)} nodes - ")
    assert last.endswith("(reasons: --json)")
    for op in {n.op for n in expected}:
        count = sum(n.op == op for n in expected)
        assert f"{op} x{count}" in last

    doc = json.loads(out.read_text())
    assert set(doc) == {"summary", "per_layer", "uncosted"}
    unc = doc["uncosted"]
    assert unc["nodes"] == len(expected)
    assert unc["list"] == [{"name": n.name, "op": n.op, "reason": reasons[n.op]} for n in expected]
    assert sum(unc["ops"].values()) == len(expected)
    assert all(item["reason"] for item in unc["list"])
    # the costed layers and the uncosted nodes are disjoint
    assert not {r["name"] for r in doc["per_layer"]} & {i["name"] for i in unc["list"]}

    # without -q: the table, the summary, the line, then what was written
    assert main(["simulate", "--hw", HW, "--model", str(path), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == last and lines[-1] == f"wrote {out}"


def test_a_builtin_workload_prints_no_uncosted_line(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["-q", "simulate", "--hw", HW, "--model", "mobilenet_v2", "--json",
                 str(out)]) == 0
    assert "not costed" not in capsys.readouterr().out
    assert set(json.loads(out.read_text())) == {"summary", "per_layer"}


def test_an_onnx_model_lists_its_uncosted_nodes(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.ones((4, 5), np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "c"], ["a"], name="add"),
             helper.make_node("GlobalAveragePool", ["a"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "f2"], ["mm"], name="selfmm"),
             helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc")]
    graph = helper.make_graph(
        [*nodes[:5], helper.make_node("Transpose", ["f"], ["f2"], name="t"), *nodes[5:]], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], initializer=[w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    out = tmp_path / "s.json"
    assert main(["-q", "simulate", "--hw", HW, "--model", str(path), "--json", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("not costed (vector unit / data movement): 6 nodes - ")
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["per_layer"]] == ["conv", "fc"]
    listed = {i["name"]: i for i in doc["uncosted"]["list"]}
    assert list(listed) == ["relu", "add", "pool", "flatten", "t", "selfmm"]
    assert "two activations" in listed["selfmm"]["reason"]
    assert "no MACs on weights" in listed["add"]["reason"]


def test_the_line_counts_and_truncates():
    nodes = ([{"name": f"a{i}", "op": "add", "reason": "r"} for i in range(10)]
             + [{"name": f"t{i}", "op": "activation_lut", "reason": "r"} for i in range(2)])
    assert uncosted_line(nodes) == ("not costed (vector unit / data movement): 12 nodes - "
                                    "add x10, activation_lut x2 (reasons: --json)")
    many = [{"name": f"n{i}", "op": f"op{i}", "reason": "r"} for i in range(9)]
    assert uncosted_line(many).endswith("op5 x1, 3 more ops (reasons: --json)")
    assert "1 node - " in uncosted_line(many[:1])
