"""export_onnx of the ops quant's capture gained: concat -> QLinearConcat, mul -> QLinearMul,
sigmoid tables -> QLinearSigmoid, nearest resize -> Resize. ONNX Runtime must compute every
node's codes exactly as hwsim does (checked on every intermediate tensor); where it would not
(a table entry ONNX Runtime's float32 arithmetic rounds otherwise, a dyadic requantization, an
activation ONNX Runtime has no quantized op for) the export is refused naming the node."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

import quant  # noqa: E402
from hwsim import execute  # noqa: E402
from hwsim.ir import IntProgram, Node, TensorQuant  # noqa: E402
from hwsim.kernels import activation_table, exact_activation_table  # noqa: E402
from hwsim.lower import lower  # noqa: E402
from hwsim.onnx import (OnnxExportError, export_onnx, load_onnx_program,  # noqa: E402
                        onnx_model, quantize_input)
from tests.test_onnx_export import mismatches, ort_tensors  # noqa: E402

F32 = np.float32


class SigmoidSEUNet(nn.Module):
    """conv-ReLU, a squeeze-excite gate with a sigmoid, a downsampling branch upsampled
    (nearest) and concatenated with a sigmoid of it, a ReLU fused into a product, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.down = nn.Conv2d(16, 16, 3, padding=1, stride=2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.mix = nn.Conv2d(32, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        a = F.relu(self.stem(x))
        a = a * torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(a, 1)))))
        b = self.up(F.relu(self.down(a)))
        c = torch.cat([a, torch.sigmoid(b)], 1)
        c = F.relu(self.mix(c) * a)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(c, 1), 1))


def _qm(signed: bool, seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(8, 3, 12, 12)
    act = quant.IntFormat(bits=8, signed=signed, symmetric=False, per_channel=False)
    return quant.quantize(SigmoidSEUNet().eval(), quant.QuantConfig(activation=act), [x]), x


@pytest.fixture(scope="module", params=[False, True], ids=["uint8", "int8"])
def quantized(request):
    return _qm(request.param)


def test_every_node_equals_onnx_runtime(quantized):
    qm, x = quantized
    program = lower(qm, requant="float32", engine="ort")
    ops = [n.op for n in program.nodes()]
    for op in ("mul", "concat", "activation_lut", "resize_nearest"):
        assert op in ops, op
    bad, compared, _ = mismatches(program, qm.quantize_input(x))
    print(f"\n{compared} codes compared over {len(bad)} tensors, "
          f"{sum(bad.values())} mismatches")
    assert compared > 0 and not any(bad.values()), bad
    model = onnx_model(program)
    types = {n.op_type for n in model.graph.node}
    assert {"QLinearMul", "QLinearConcat", "QLinearSigmoid", "Resize"} <= types


def test_float_io_and_round_trip_through_the_importer(quantized, tmp_path):
    qm, x = quantized
    program = lower(qm, requant="float32", engine="ort")
    path = export_onnx(program, tmp_path / "net.onnx", float_input=True, float_output=True)
    xf = x.numpy()
    (theirs,) = ort_tensors(path, xf).values()
    codes = quantize_input(program, xf)
    ours = program.output.out.dequantize(execute(program, codes).output.astype(np.int64))
    assert np.array_equal(theirs, ours.astype(F32))
    back = load_onnx_program(path, input_shape=xf.shape)
    assert np.array_equal(execute(back, codes).output, execute(program, codes).output)


def test_dyadic_products_are_refused_naming_the_node():
    qm, _ = _qm(False)
    with pytest.raises(OnnxExportError) as err:
        onnx_model(lower(qm, requant="dyadic"))
    msg = str(err.value)
    assert "node 'mul' (mul): requantization mode 'dyadic'" in msg
    assert "node 'cat' (concat): requantization mode 'dyadic'" in msg


def test_ops_without_a_bit_exact_ort_op_are_refused():
    class Hard(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = F.silu(nn.functional.hardswish(self.conv(x)))
            return F.interpolate(y, scale_factor=2, mode="bilinear")

    x = torch.randn(4, 3, 6, 6)
    qm = quant.quantize(Hard().eval(), quant.QuantConfig(), [x])
    with pytest.raises(OnnxExportError) as err:
        onnx_model(lower(qm, requant="float32", engine="ort"))
    msg = str(err.value)
    assert "node 'hardswish' (activation_lut): fn 'hardswish' has no ONNX Runtime quantized op" \
        in msg
    assert "node 'silu' (activation_lut): fn 'silu'" in msg
    assert "node 'resize' (resize_linear): op 'resize_linear' has no bit-exact" in msg


def _input(scale: float, zp: int) -> Node:
    return Node("x", "input", (), (1, 2, 4, 4), TensorQuant(scale, zp, 0, 255))


def test_a_sigmoid_table_onnx_runtime_rounds_otherwise_is_refused():
    """At these scales ONNX Runtime's float32 sigmoid puts input code 229 on output code 95,
    the exactly rounded table on 94 (about 1 table in 300 has such an entry)."""
    s_x, zp_x, s_y, zp_y = 0.02144579551694422, 240, 0.0049306822252989865, 5
    table = exact_activation_table("sigmoid", x_scale=s_x, x_zero_point=zp_x, x_range=(0, 255),
                                   y_scale=s_y, y_zero_point=zp_y, y_range=(0, 255))
    ort = activation_table("sigmoid", x_scale=F32(s_x), x_zero_point=zp_x, y_scale=F32(s_y),
                           y_zero_point=zp_y, qmin=0, qmax=255)
    assert np.flatnonzero(table != ort).tolist() == [229]
    program = IntProgram("sig")
    program.add(_input(s_x, zp_x))
    program.add(Node("sig", "activation_lut", ("x",), (1, 2, 4, 4),
                     TensorQuant(s_y, zp_y, 0, 255),
                     {"fn": "sigmoid", "arithmetic": "exact", "input_scale": s_x,
                      "input_zero_point": zp_x, "input_range": [0, 255]},
                     {"table": table.astype(np.uint8)}))
    with pytest.raises(OnnxExportError, match=r"node 'sig' \(activation_lut\): QLinearSigmoid .*"
                                              r"1 of 256 table entries differ \(input codes 229"):
        onnx_model(program)
    ort_node = Node("sig", "activation_lut", ("x",), (1, 2, 4, 4), TensorQuant(s_y, zp_y, 0, 255),
                    {"fn": "sigmoid", "input_scale": s_x, "input_zero_point": zp_x},
                    {"table": ort.astype(np.uint8)})
    program = IntProgram("sig_ort")
    program.add(_input(s_x, zp_x))
    program.add(ort_node)
    codes = np.arange(256, dtype=np.uint8).reshape(8, 2, 4, 4)
    assert np.array_equal(ort_tensors(onnx_model(program), codes)["sig"],
                          execute(program, codes).output)


def test_a_concat_whose_requantization_onnx_runtime_rounds_otherwise_is_refused():
    """hwsim's float32 concat multiplies (c - zp) by f32(s_i / s_y); QLinearConcat divides
    f32(s_i (c - zp)) by s_y. At these scales input code 219 lands on different codes."""
    s_i, zp_i, s_y, zp_y = 0.19001340465432634, 42, 0.16858332272478713, 46
    program = IntProgram("cat")
    program.add(_input(s_i, zp_i))
    program.add(Node("cat", "concat", ("x", "x"), (1, 4, 4, 4), TensorQuant(s_y, zp_y, 0, 255),
                     {"axis": 1, "requant": {"mode": "float32", "clamp": [0, 255]},
                      "input_zero_points": [zp_i, zp_i]},
                     {"rq_scale_f32": np.full(2, s_i / s_y, dtype=F32)}))
    with pytest.raises(OnnxExportError, match=r"input 0 \('x'\): QLinearConcat's "
                                              r"requantization table .* \(input codes 219\)"):
        onnx_model(program)
