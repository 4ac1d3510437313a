"""export_onnx of the ops quant's capture gained: concat -> QLinearConcat, mul -> QLinearMul,
sigmoid tables -> QLinearSigmoid where ONNX Runtime's float32 table is the node's, every other
table (hardswish, hardsigmoid, SiLU, tanh, a sigmoid ORT rounds otherwise) -> Cast + Gather of
the node's table, nearest resize -> Resize, bilinear resize -> exact float64 ops, transposed
convs -> zero insertion + QLinearConv. ONNX Runtime must compute every node's codes exactly as
hwsim does (checked on every intermediate tensor); where it would not (a dyadic
requantization, a concat ORT requantizes otherwise, an op with no exact export) the export is
refused naming the node."""
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
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hwsim.ir import IntProgram, Node, TensorQuant  # noqa: E402
from hwsim.kernels import activation_table, exact_activation_table, ort_output_scale  # noqa: E402
from hwsim.kernels.conv_transpose import conv_transpose_out_size  # noqa: E402
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


class Hard(nn.Module):
    """conv -> hardswish -> SiLU -> tanh -> hardsigmoid -> bilinear upsampling (x2)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = F.hardsigmoid(torch.tanh(F.silu(F.hardswish(self.conv(x)))))
        return F.interpolate(y, scale_factor=2, mode="bilinear")


@pytest.mark.parametrize("signed", [False, True], ids=["uint8", "int8"])
def test_tables_without_a_quantized_ort_op_and_bilinear_resize_export_exactly(signed):
    """Tables ONNX Runtime has no quantized op for become Gathers of the node's own table, the
    bilinear resize exact float64 ops: 0 mismatches at every node."""
    torch.manual_seed(1)
    x = torch.randn(4, 3, 6, 6) * 2
    act = quant.IntFormat(bits=8, signed=signed, symmetric=False, per_channel=False)
    qm = quant.quantize(Hard().eval(), quant.QuantConfig(activation=act), [x])
    program = lower(qm, requant="float32", engine="ort")
    fns = [n.attrs["fn"] for n in program.nodes() if n.op == "activation_lut"]
    assert fns == ["hardswish", "silu", "tanh", "hardsigmoid"]
    assert program.output.op == "resize_linear"
    bad, compared, _ = mismatches(program, qm.quantize_input(x))
    print(f"\n{compared} codes compared over {len(bad)} tensors, {sum(bad.values())} mismatches")
    assert compared > 0 and not any(bad.values()), bad
    gathers = [n.name for n in onnx_model(program).graph.node if n.op_type == "Gather"]
    assert {f"{fn}/Gather" for fn in fns} <= set(gathers)


def test_ops_without_an_exact_export_are_still_refused_naming_the_node():
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return F.gelu(F.avg_pool2d(F.hardswish(self.conv(x)), 2))

    x = torch.randn(4, 3, 6, 6)
    qm = quant.quantize(Pooled().eval(), quant.QuantConfig(), [x])
    with pytest.raises(OnnxExportError) as err:
        onnx_model(lower(qm, requant="float32", engine="ort"))
    msg = str(err.value)
    assert "node 'avgpool' (avgpool2d): only global average pooling" in msg
    assert "node 'gelu' (vector_op): op 'vector_op' has no bit-exact" in msg
    assert "hardswish" not in msg  # exported as a Gather now


def _input(scale: float, zp: int) -> Node:
    return Node("x", "input", (), (1, 2, 4, 4), TensorQuant(scale, zp, 0, 255))


def test_a_sigmoid_table_onnx_runtime_rounds_otherwise_is_gathered_not_qlinear():
    """At these scales ONNX Runtime's float32 sigmoid puts input code 229 on output code 95,
    the exactly rounded table on 94 (about 1 table in 300 has such an entry): the export
    writes a Gather of the node's table instead of QLinearSigmoid; ONNX Runtime's own table
    stays a QLinearSigmoid. Both give hwsim's codes for all 256 input codes."""
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
    codes = np.arange(256, dtype=np.uint8).reshape(8, 2, 4, 4)
    model = onnx_model(program)
    assert [n.op_type for n in model.graph.node] == ["Cast", "Gather"]
    assert np.array_equal(ort_tensors(model, codes)["sig"], execute(program, codes).output)
    ort_node = Node("sig", "activation_lut", ("x",), (1, 2, 4, 4), TensorQuant(s_y, zp_y, 0, 255),
                    {"fn": "sigmoid", "input_scale": s_x, "input_zero_point": zp_x},
                    {"table": ort.astype(np.uint8)})
    program = IntProgram("sig_ort")
    program.add(_input(s_x, zp_x))
    program.add(ort_node)
    model = onnx_model(program)
    assert [n.op_type for n in model.graph.node] == ["QLinearSigmoid"]
    assert np.array_equal(ort_tensors(model, codes)["sig"], execute(program, codes).output)


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


# ------------------------------------------------------------------------------------------------
# conv_transpose2d: zero insertion + QLinearConv

def conv_transpose_program(seed: int, signed: bool, *, cin: int, cout: int, groups: int,
                           kernel: tuple[int, int], stride: tuple[int, int],
                           padding: tuple[int, int, int, int], output_padding: tuple[int, int],
                           dilation: tuple[int, int], hw: tuple[int, int] = (4, 5),
                           narrow: bool = False) -> IntProgram:
    """input (3, cin, *hw) -> conv_transpose2d with random int8 weights and bias, float32
    requantization as ONNX Runtime derives it (output shape from the geometry)."""
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 127) if signed else (0, 255)
    s_x, s_y = float(F32(0.03)), float(F32(0.05))
    program = IntProgram(f"ct{seed}")
    program.add(Node("x", "input", (), (3, cin, *hw),
                     TensorQuant(s_x, int(rng.integers(lo + 20, hi - 20)), lo, hi)))
    oh, ow = (conv_transpose_out_size(n, s, p0, p1, k, d, o) for n, s, p0, p1, k, d, o in
              zip(hw, stride, padding[:2], padding[2:], kernel, dilation, output_padding))
    s_w = rng.uniform(0.002, 0.02, cout).astype(F32)
    out = TensorQuant(s_y, int(rng.integers(lo + 20, hi - 20)), lo, hi)
    clamp = [out.zero_point, hi] if narrow else [lo, hi]  # a fused ReLU: a Clip after the op
    program.add(Node(
        "ct", "conv_transpose2d", ("x",), (3, cout, oh, ow), out,
        {"accumulator": {"bits": 32, "mode": "wrap"},
         "input_zero_point": program.node("x").out.zero_point, "weight_bits": 8,
         "requant": {"mode": "float32", "clamp": clamp}, "stride": list(stride),
         "padding": list(padding), "output_padding": list(output_padding),
         "dilation": list(dilation), "groups": groups},
        {"weight": rng.integers(-127, 128, (cout, cin // groups, *kernel)).astype(np.int8),
         "weight_zero_point": np.zeros(cout, np.int64), "weight_scale": s_w.astype(np.float64),
         "bias": rng.integers(-3000, 3000, cout).astype(np.int64),
         "rq_scale_f32": ort_output_scale(s_x, s_w, s_y)}))
    return program


@st.composite
def geometries(draw) -> dict:
    groups = draw(st.sampled_from([1, 2]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(4))  # may exceed d(k-1): crops
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    return dict(cin=2 * groups, cout=3 * groups, groups=groups, kernel=k, stride=stride,
                padding=padding, output_padding=output_padding, dilation=dilation)


def _positive_output(g: dict) -> bool:
    return all(conv_transpose_out_size(n, s, p0, p1, k, d, o) >= 1 for n, s, p0, p1, k, d, o in
               zip((4, 5), g["stride"], g["padding"][:2], g["padding"][2:], g["kernel"],
                   g["dilation"], g["output_padding"]))


@settings(max_examples=30)
@given(geometries().filter(_positive_output), st.booleans(), st.booleans(),
       st.integers(0, 2**16))
def test_conv_transpose_equals_onnx_runtime_for_any_geometry(geometry, signed, narrow, seed):
    """Strides, dilations, asymmetric paddings (cropping ones too), output paddings, groups,
    u8 and s8 codes, fused clamps: ONNX Runtime's codes are hwsim's at every node."""
    program = conv_transpose_program(seed, signed, narrow=narrow, **geometry)
    lo = -128 if signed else 0
    codes = np.random.default_rng(seed).integers(lo, lo + 256, program.input.out_shape)
    bad, compared, _ = mismatches(program, codes.astype(program.input.out.dtype))
    assert compared > 0 and not any(bad.values()), (geometry, bad)


def test_conv_transpose_from_torch_equals_onnx_runtime():
    """nn.ConvTranspose2d (stride 2, output padding, fused ReLU) through quant and lower."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),
                        nn.ReLU()).eval()
    x = torch.randn(4, 3, 6, 6)
    qm = quant.quantize(net, quant.QuantConfig(), [x])
    program = lower(qm, requant="float32", engine="ort")
    assert [n.op for n in program.nodes()] == ["input", "conv2d", "conv_transpose2d"]
    bad, compared, _ = mismatches(program, qm.quantize_input(x))
    print(f"\n{compared} codes compared, {sum(bad.values())} mismatches")
    assert compared > 0 and not any(bad.values()), bad
    types = [n.op_type for n in onnx_model(program).graph.node]
    assert types.count("QLinearConv") == 2 and "Pad" in types and "Reshape" in types


def test_conv_transpose_is_refused_where_onnx_runtime_would_saturate_int16_pairs():
    """On a CPU whose QLinearConv saturates u8 x s8 product pairs to int16 (int16_pairs=True:
    AVX2 without VNNI), the exported QLinearConv would not give the node's int32 sums."""
    program = conv_transpose_program(0, False, cin=2, cout=3, groups=1, kernel=(3, 3),
                                     stride=(2, 2), padding=(1, 1, 1, 1), output_padding=(1, 1),
                                     dilation=(1, 1))
    with pytest.raises(OnnxExportError, match=r"node 'ct' \(conv_transpose2d\): accumulator .* "
                                              r"does not model int16 pairs"):
        onnx_model(program, int16_pairs=True)
    onnx_model(program, int16_pairs=False)  # an exact CPU: exported


def test_a_table_over_narrower_input_codes_is_gathered_exactly():
    """7-bit input codes (0..127 stored as uint8) through an exactly rounded int8 tanh table of
    128 entries: the Gather's 256-entry table repeats the edge entry beyond code 127, and
    ONNX Runtime gives hwsim's codes for every code hwsim accepts."""
    s_x, zp_x, s_y, zp_y = 0.05, 64, 1 / 127, 0
    table = exact_activation_table("tanh", x_scale=s_x, x_zero_point=zp_x, x_range=(0, 127),
                                   y_scale=s_y, y_zero_point=zp_y, y_range=(-128, 127))
    program = IntProgram("tanh7")
    program.add(Node("x", "input", (), (1, 2, 8, 8), TensorQuant(s_x, zp_x, 0, 127)))
    program.add(Node("tanh", "activation_lut", ("x",), (1, 2, 8, 8),
                     TensorQuant(s_y, zp_y, -128, 127),
                     {"fn": "tanh", "arithmetic": "exact", "input_scale": s_x,
                      "input_zero_point": zp_x, "input_range": [0, 127]},
                     {"table": table.astype(np.int8)}))
    codes = np.arange(128, dtype=np.uint8).reshape(1, 2, 8, 8)
    bad, compared, run = mismatches(program, codes)
    assert compared == 128 and bad == {"tanh": 0}
    assert len(np.unique(run.output)) > 50  # a real table, not a constant
