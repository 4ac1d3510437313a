"""The integer program as plain data: build, check, save/load round trip, clear errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hwsim.errors import ProgramError
from hwsim.ir import IntProgram, Node, TensorQuant, check_program, load_program, save_program

U8 = TensorQuant(0.05, 3, 0, 255)


def small_program(mode: str = "dyadic") -> IntProgram:
    rng = np.random.default_rng(0)
    p = IntProgram("tiny")
    p.add(Node("x", "input", (), (1, 3, 6, 6), U8))
    rq = ({"rq_multiplier": np.full(4, 1 << 30, np.int64), "rq_shift": np.full(4, 38, np.int64)}
          if mode == "dyadic" else {"rq_scale_f32": np.full(4, 2.0 ** -8, np.float32)})
    p.add(Node("conv", "conv2d", ("x",), (1, 4, 6, 6), TensorQuant(0.1, 0, 0, 255),
               attrs={"stride": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1,
                      "accumulator": {"bits": 32, "mode": "wrap"}, "input_zero_point": 3,
                      "requant": {"mode": mode, "clamp": [0, 255]}, "weight_bits": 8},
               arrays={"weight": rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8),
                       "weight_zero_point": np.zeros(4, np.int64),
                       "bias": rng.integers(-500, 500, 4).astype(np.int64), **rq}))
    p.add(Node("flat", "flatten", ("conv",), (1, 144), TensorQuant(0.1, 0, 0, 255),
               attrs={"start_dim": 1}))
    return p


@pytest.mark.parametrize("mode", ["dyadic", "float32"])
def test_save_load_round_trip_keeps_every_array_and_attr(tmp_path, mode):
    p = small_program(mode)
    path = save_program(p, tmp_path / "net")
    q = load_program(path)
    assert [n.name for n in q.nodes()] == [n.name for n in p.nodes()]
    for a, b in zip(p.nodes(), q.nodes()):
        assert (a.op, a.inputs, a.out_shape, a.out) == (b.op, b.inputs, b.out_shape, b.out)
        assert json.dumps(a.attrs, sort_keys=True) == json.dumps(b.attrs, sort_keys=True)
        assert a.arrays.keys() == b.arrays.keys()
        for k in a.arrays:
            assert a.arrays[k].dtype == b.arrays[k].dtype
            np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    assert q.output_name == "flat" and q.input_name == "x"


def test_load_needs_no_torch(tmp_path):
    path = save_program(small_program(), tmp_path / "net")
    code = ("import sys, hwsim.ir, hwsim.executor;"
            f"p = hwsim.ir.load_program({str(path)!r});"
            "assert 'torch' not in sys.modules, 'torch was imported';print(len(p))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_check_lists_every_malformed_node():
    p = small_program()
    bad = Node("bad", "conv2d", ("flat",), (1, 1), U8, attrs={"stride": [1, 1]})
    p.add(bad)
    p.add(Node("odd", "sqrt", ("x",), (1,), U8))
    with pytest.raises(ProgramError) as e:
        check_program(p)
    msg = str(e.value)
    assert "node 'bad': missing attribute 'padding'" in msg
    assert "node 'bad': missing array 'weight'" in msg
    assert "node 'odd': unknown op 'sqrt'" in msg


def test_requant_clamp_outside_code_range_is_reported():
    p = small_program()
    node = p.node("conv")
    node.attrs["requant"]["clamp"] = [-1, 300]
    with pytest.raises(ProgramError, match="node 'conv': requant clamp"):
        check_program(p)


def test_adding_a_node_before_its_input_is_an_error():
    p = IntProgram("p")
    with pytest.raises(ProgramError, match="reads 'x', which is not defined"):
        p.add(Node("y", "flatten", ("x",), (1,), U8, attrs={"start_dim": 1}))


def test_load_reports_missing_files_and_wrong_format(tmp_path):
    with pytest.raises(ProgramError, match="no such file"):
        load_program(tmp_path / "missing.json")
    path = save_program(small_program(), tmp_path / "net")
    doc = json.loads(path.read_text())
    doc["format"] = "something-else"
    path.write_text(json.dumps(doc))
    with pytest.raises(ProgramError, match="field 'format'"):
        load_program(path)


def test_tensor_quant_rejects_bad_values():
    with pytest.raises(ValueError):
        TensorQuant(0.0, 0, 0, 255)
    with pytest.raises(ValueError):
        TensorQuant(1.0, 300, 0, 255)
    assert TensorQuant(1.0, 0, -128, 127).dtype == np.int8
    assert TensorQuant(1.0, 0, 0, 255).dtype == np.uint8
    assert TensorQuant(1.0, 0, -(2 ** 15), 2 ** 15 - 1).dtype == np.int16


def test_node_order_follows_additions():
    p = small_program()
    assert [n.name for n in p.nodes()] == ["x", "conv", "flat"]
    p.add(Node("flat2", "flatten", ("conv",), (1, 144), TensorQuant(0.1, 0, 0, 255),
               attrs={"start_dim": 1}))
    assert [n.name for n in p.nodes()] == ["x", "conv", "flat", "flat2"]
