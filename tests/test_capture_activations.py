"""Real models as users bring them: sigmoid / hardsigmoid / hardswish / SiLU / tanh, squeeze-
excite gates (global average pool -> FC -> activation -> element-wise multiply), and nearest
upsampling, from torch capture through fake-quant, lowering and bit-accurate execution.

Integer semantics checked here:
- pointwise activations are lookup tables over the input codes whose entries are the exactly
  rounded function (quant.pointwise, hwsim.kernels.lut_exact): the integer program equals the
  fake-quant model bit for bit;
- mul is (a - zp_a)(b - zp_b) requantized with M = s_a s_b / s_y (dyadic: round half up;
  float32: ONNX Runtime's QLinearMul); the fake-quant model rounds the float32 product
  half to even, so the two differ by at most 1 LSB;
- nearest resize is torch's index gather: exact.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import quant
from hwsim import kernels as k
from hwsim.errors import ProgramError
from hwsim.executor import execute, execute_node
from hwsim.ir import check_program, load_program, save_program
from hwsim.lower import lower
from hwsim.verify import verify
from hwsim.workloads import program_workload, uncosted_ops
from quant.errors import QuantError, UnsupportedOpError
from quant.pointwise import lookup_table

F32 = np.float32


# ------------------------------------------------------------------------------------------------
# Models

class SqueezeExcite(nn.Module):
    """torchvision's SqueezeExcitation: pool -> 1x1 conv -> ReLU -> 1x1 conv -> gate -> mul."""

    def __init__(self, c: int, squeeze: int, gate: nn.Module) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = nn.ReLU(), gate

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


class SqueezeExciteLinear(nn.Module):
    """The SENet paper's code: view -> Linear -> ReLU -> Linear -> Sigmoid -> view ->
    x * y.expand_as(x)."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, c // r), nn.ReLU(inplace=True),
                                nn.Linear(c // r, c), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.fc(self.avg(x).view(b, c)).view(b, c, 1, 1)
        return x * y.expand_as(x)


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.6, 1.4)
    bn.bias.data.uniform_(-0.2, 0.2)
    return bn


class HardSECNN(nn.Module):
    """MobileNetV3-like: conv-BN-Hardswish, depthwise-BN-Hardswish, SE (Hardsigmoid gate),
    projection + residual add, head with Hardswish."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), _bn(16),
                                  nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), _bn(16),
                                nn.Hardswish())
        self.se = SqueezeExcite(16, 8, nn.Hardsigmoid())
        self.project = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), _bn(16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(16, 32), nn.Hardswish(), nn.Linear(32, 10))

    def forward(self, x):
        x = self.stem(x)
        x = self.project(self.se(self.dw(x))) + x
        return self.head(torch.flatten(self.pool(x), 1))


class SiLUCNN(nn.Module):
    """EfficientNet-like: conv-BN-SiLU (module and F.silu), SE with Linear layers and a sigmoid
    gate, a tanh, a ReLU fused into a product."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1, bias=False), _bn(12), nn.SiLU())
        self.conv = nn.Conv2d(12, 16, 3, stride=2, padding=1)
        self.se = SqueezeExciteLinear(16)
        self.side = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.silu(self.conv(self.stem(x)))
        x = self.se(x)
        x = torch.relu(torch.tanh(self.side(x)) * x)  # the ReLU fuses into the mul
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class UNetLike(nn.Module):
    """Encoder / decoder with skip connections: nn.Upsample(scale_factor=2, nearest) and
    F.interpolate(size=skip.shape[-2:], nearest); a per-pixel output."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 8, 3, padding=1)
        self.enc2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bottom = nn.Conv2d(16, 16, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = nn.Conv2d(32, 8, 3, padding=1)
        self.dec1 = nn.Conv2d(16, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        e1 = F.relu(self.enc1(x))                        # 12x12
        e2 = F.relu(self.enc2(F.max_pool2d(e1, 2)))      # 6x6
        b = F.relu(self.bottom(F.max_pool2d(e2, 2)))     # 3x3
        d2 = F.relu(self.dec2(torch.cat([self.up(b), e2], 1)))
        d2 = F.interpolate(d2, size=e1.shape[-2:], mode="nearest")
        d1 = F.relu(self.dec1(torch.cat([d2, e1], 1)))
        return torch.sigmoid(self.out(d1))


def _quantized(model_cls, shape=(3, 16, 16), seed=0, config=None):
    torch.manual_seed(seed)
    model = model_cls().eval()
    g = torch.Generator().manual_seed(seed + 1)
    calib = torch.randn(16, *shape, generator=g)
    qm = quant.quantize(model, config or quant.QuantConfig(), [calib[:8], calib[8:]])
    return model, qm, torch.randn(6, *shape, generator=g)


@pytest.fixture(scope="module")
def hard_se():
    return _quantized(HardSECNN)


@pytest.fixture(scope="module")
def silu_cnn():
    return _quantized(SiLUCNN, shape=(3, 12, 12), seed=3)


@pytest.fixture(scope="module")
def unet():
    return _quantized(UNetLike, shape=(3, 12, 12), seed=5)


def _check_report(qm, program, x, name: str):
    """verify's per-layer report: every layer within 1 LSB of the fake-quant model in
    isolation, table activations and resizes bit-exact (also end to end)."""
    report = verify(qm, program, x)
    print(f"\n{name}:\n{report.to_text()}")
    rows = report.per_layer
    assert int(rows["max_lsb_diff"].max()) <= 1, rows
    exact = rows[rows["op"].isin(["activation_lut", "resize_nearest"])]
    assert len(exact) and bool(exact["bit_exact"].all()), exact
    assert int(exact["max_lsb_diff_e2e"].max()) <= int(rows["max_lsb_diff_e2e"].max())
    assert report.summary["output_sqnr_db_int_vs_float"] > 15.0
    return report


# ------------------------------------------------------------------------------------------------
# Capture

def test_hard_se_cnn_captures_tables_and_a_broadcast_product(hard_se):
    _, qm, _ = hard_se
    ops = {r.name: (r.op, r.attrs.get("fn")) for r in qm.graph}
    assert ops["stem.2"] == ("pointwise", "hardswish")
    assert ops["se.scale_activation"] == ("pointwise", "hardsigmoid")
    assert ops["head.1"] == ("pointwise", "hardswish")
    mul = qm.graph["se.mul"]
    assert mul.op == "mul" and mul.inputs == ("se.scale_activation", "dw.2")
    assert [qm.graph[s].out_shape for s in mul.inputs] == [(1, 16, 1, 1), (1, 16, 8, 8)]
    assert mul.out_shape == (1, 16, 8, 8)
    table = qm.lookup_table("stem.2")
    assert table.shape == (256,) and not table.flags.writeable


def test_silu_cnn_captures_functional_forms_expand_as_and_a_fused_relu(silu_cnn):
    _, qm, _ = silu_cnn
    fns = sorted(r.attrs["fn"] for r in qm.graph if r.op == "pointwise")
    assert fns == ["sigmoid", "silu", "silu", "tanh"]
    se_mul = qm.graph["se.mul"]
    assert se_mul.inputs == ("silu", "se.reshape_1")  # expand_as: looked through
    assert qm.graph["se.reshape_1"].attrs["shape"] == (-1, 16, 1, 1)
    assert [qm.graph[s].out_shape for s in se_mul.inputs] == [(1, 16, 6, 6), (1, 16, 1, 1)]
    (gated,) = [r for r in qm.graph if r.op == "mul" and r.name != "se.mul"]
    assert gated.activation == (0.0, math.inf)


def test_unet_captures_nearest_resizes_as_gathers(unet):
    _, qm, _ = unet
    up, interp = (qm.graph[n] for n in ("up", "resize"))
    assert up.op == interp.op == "resize"
    assert up.attrs["rows"] == (0, 0, 1, 1, 2, 2) and up.attrs["scales"] == (2.0, 2.0)
    assert interp.out_shape == (1, 8, 12, 12)
    assert (up.attrs["coordinate_transformation_mode"], up.attrs["nearest_mode"]) == \
        ("asymmetric", "floor")
    assert qm.act_params("up") is qm.act_params("bottom")  # moves codes: no new quantization


@pytest.mark.parametrize("mode, kw, rows", [
    ("nearest", {"scale_factor": 1.5}, [0, 0, 1, 2, 2, 3, 4, 4, 5]),
    ("nearest", {"size": (4, 9)}, None),
    ("nearest-exact", {"scale_factor": 1.5}, [0, 1, 1, 2, 3, 3, 4, 5, 5]),
    ("nearest-exact", {"size": (5, 4)}, None),
])
def test_resize_indices_are_torchs_and_lower_exactly(mode, kw, rows):
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return F.interpolate(self.conv(x), mode=mode, **kw)

    torch.manual_seed(0)
    model, x = Up().eval(), torch.randn(3, 2, 6, 6)
    qm = quant.quantize(model, quant.QuantConfig(), [x])
    rec = qm.graph["resize"]
    if rows is not None:
        assert list(rec.attrs["rows"]) == rows
    program = lower(qm)
    codes = qm.quantize_input(x)
    out = execute(program, codes).output
    assert np.array_equal(out, execute(program, codes, backend="reference").output)
    fake = qm.run(x)["resize"]
    assert np.array_equal(program.output.out.dequantize(out.astype(np.int64)).astype(F32), fake)
    assert torch.equal(qm.float_forward(x), model(x))


@pytest.mark.parametrize("kw", [
    {"scale_factor": 2, "align_corners": False}, {"scale_factor": 2, "align_corners": True},
    {"size": (9, 7), "align_corners": False}, {"size": (9, 7), "align_corners": True},
    {"scale_factor": 0.5, "align_corners": False},
    {"scale_factor": 1.5, "recompute_scale_factor": True},
])
def test_bilinear_resize_is_integer_within_one_lsb(kw):
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.head(F.interpolate(F.relu(self.conv(x)), mode="bilinear", **kw))

    torch.manual_seed(0)
    model, x = Up().eval(), torch.randn(8, 3, 6, 6)
    qm = quant.quantize(model, quant.QuantConfig(), [x])
    assert torch.equal(qm.float_forward(x), model(x))
    program = lower(qm)
    node = program.node("resize")
    assert node.op == "resize_linear" and node.out == program.node("conv").out
    codes = qm.quantize_input(x[:1])
    assert np.array_equal(execute(program, codes).output,
                          execute(program, codes, backend="reference").output)
    row = verify(qm, program, x).per_layer.set_index("layer").loc["resize"]
    print(f"\nbilinear {kw}: {row['mismatches']} of {8 * int(np.prod(node.out_shape[1:]))} "
          f"codes 1 LSB from fake-quant")
    assert row["max_lsb_diff"] <= 1 and row["max_lsb_diff_e2e"] <= 1


def test_bilinear_taps_at_scale_two():
    rows, w = k.linear_taps(3, 6, 2.0, "half_pixel")
    assert rows.tolist() == [[0, 1], [0, 1], [0, 1], [1, 2], [1, 2], [2, 2]]
    assert (w / 2.0 ** k.LINEAR_FRAC_BITS).tolist() == [
        [1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]]
    rows, w = k.linear_taps(3, 5, 2.0, "align_corners")
    assert rows.tolist() == [[0, 1], [0, 1], [1, 2], [1, 2], [2, 2]]
    assert (w / 2.0 ** k.LINEAR_FRAC_BITS).tolist() == [
        [1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [0.5, 0.5], [1.0, 0.0]]


# ------------------------------------------------------------------------------------------------
# End to end: quantize -> lower -> execute (fast == reference) -> verify

@pytest.mark.parametrize("requant", ["dyadic", "float32"])
def test_hard_se_cnn_end_to_end(hard_se, requant):
    _, qm, x = hard_se
    program = lower(qm, requant=requant)
    codes = qm.quantize_input(x[:1])
    assert np.array_equal(execute(program, codes).output,
                          execute(program, codes, backend="reference").output)
    ops = [n.op for n in program.nodes()]
    assert ops.count("activation_lut") == 4 and ops.count("mul") == 1
    _check_report(qm, program, x, f"HardSE-CNN, requant {requant}")


def test_silu_cnn_end_to_end(silu_cnn):
    _, qm, x = silu_cnn
    program = lower(qm)
    codes = qm.quantize_input(x[:1])
    assert np.array_equal(execute(program, codes).output,
                          execute(program, codes, backend="reference").output)
    node = program.node([r.name for r in qm.graph if r.op == "mul" and r.activation][0])
    assert node.attrs["requant"]["clamp"][0] == node.out.zero_point  # the fused ReLU
    _check_report(qm, program, x, "SiLU-CNN, requant dyadic")


def test_unet_end_to_end(unet):
    _, qm, x = unet
    program = lower(qm, requant="float32")
    codes = qm.quantize_input(x[:1])
    assert np.array_equal(execute(program, codes).output,
                          execute(program, codes, backend="reference").output)
    assert [n.op for n in program.nodes()].count("resize_nearest") == 2
    _check_report(qm, program, x, "U-Net-like, requant float32")


def test_products_differ_from_fake_quant_by_at_most_one_lsb():
    """Many products of two independent activations: the integer product rounds M·(a-zp)(b-zp)
    half up (dyadic) or ONNX Runtime's float32 way, the fake-quant model rounds the float32
    product of the dequantized operands half to even."""
    class Prod(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 1)

        def forward(self, x):
            return self.a(x) * self.b(x)

    torch.manual_seed(7)
    x = torch.randn(16, 3, 8, 8)
    qm = quant.quantize(Prod().eval(), quant.QuantConfig(), [x])
    for requant in ("dyadic", "float32"):
        rows = verify(qm, lower(qm, requant=requant), x).per_layer.set_index("layer")
        print(f"\nmul, {requant}: max {rows.loc['mul', 'max_lsb_diff']} LSB, "
              f"{rows.loc['mul', 'mismatches']} of {x.shape[0] * 16 * 64} codes differ")
        assert rows.loc["mul", "max_lsb_diff"] <= 1


def test_a_float32_program_requantizes_wide_products_dyadic_and_says_so():
    class Prod(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.a(x) * torch.sigmoid(self.b(x))

    torch.manual_seed(2)
    x = torch.randn(8, 3, 5, 5)
    wide = quant.IntFormat(bits=12, signed=True, symmetric=False, per_channel=False)
    qm = quant.quantize(Prod().eval(), quant.QuantConfig(layer_activation={"a": wide}), [x])
    node = lower(qm, requant="float32").node("mul")
    assert node.attrs["requant"]["mode"] == "dyadic" and "8-bit codes" in node.attrs["note"]
    assert verify(qm, lower(qm, requant="float32"), x).per_layer["max_lsb_diff"].max() <= 1


def test_four_bit_activations_get_sixteen_entry_tables(hard_se):
    cfg = quant.QuantConfig(activation=quant.IntFormat(bits=4, signed=False, symmetric=False,
                                                       per_channel=False))
    _, qm, x = _quantized(HardSECNN, config=cfg)
    program = lower(qm)
    node = program.node("se.scale_activation")
    assert node.arrays["table"].shape == (16,) and node.attrs["input_range"] == [0, 15]
    report = verify(qm, program, x[:2])
    luts = report.per_layer[report.per_layer["op"] == "activation_lut"]
    assert bool(luts["bit_exact"].all())


def test_new_ops_are_listed_as_uncosted_with_a_reason(hard_se, unet):
    reasons = {**uncosted_ops(lower(hard_se[1])), **uncosted_ops(lower(unet[1]))}
    assert "vector unit" in reasons["activation_lut"]
    assert "element-wise" in reasons["mul"] and "moves codes" in reasons["resize_nearest"]
    layers = program_workload(lower(hard_se[1]))
    assert {layer.name for layer in layers} == {"stem.0", "dw.0", "se.fc1", "se.fc2",
                                                "project.0", "head.0", "head.2"}


def test_programs_with_the_new_nodes_save_and_load(hard_se, unet, tmp_path):
    for i, (_, qm, x) in enumerate((hard_se, unet)):
        program = lower(qm)
        loaded = load_program(save_program(program, tmp_path / f"p{i}"))
        codes = qm.quantize_input(x)
        assert np.array_equal(execute(program, codes).output, execute(loaded, codes).output)


# ------------------------------------------------------------------------------------------------
# Bad input: one clear error naming the layer

class _Conv(nn.Module):
    def __init__(self, tail):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.tail = tail

    def forward(self, x):
        return self.tail(self.conv(x))


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("tail, match", [
    (nn.Upsample(scale_factor=2, mode="bicubic"),
     r"'Upsample' at module path 'tail'.*mode 'bicubic' is not supported"),
    (_Fn(lambda x: F.interpolate(x, scale_factor=0.5, mode="area")),
     r"interpolate' at module path 'tail'.*mode 'area' is not supported: only modes 'nearest', "
     r"'nearest-exact' \(an index gather\) and 'bilinear'"),
    (_Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", antialias=True)),
     r"interpolate' at module path 'tail'.*antialias=True"),
    (_Fn(lambda x: x * torch.ones(3, 1, 6, 6)),
     r"at module path 'tail'.*mul of a tensor \(\d, 4, 6, 6\) and a constant of shape "
     r"\(3, 1, 6, 6\)"),
    (_Fn(lambda x: x * x.mean(dim=(2, 3), keepdim=True)), r"'Tensor.mean' at module path 'tail'"),
    (_Fn(lambda x: x.expand(2, 4, 6, 6) + x), r"expand / expand_as is captured only as the "
                                              r"operand of an element-wise multiply"),
    (_Fn(lambda x: x.unsqueeze(0)), r"unsqueeze\(0\) adds a dimension before the batch"),
    (_Fn(lambda x: x * x[:, :1, :, :1].flatten(1)), r"getitem|mul"),
])
def test_unsupported_forms_raise_one_error_naming_the_layer(tail, match):
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(UnsupportedOpError, match=match) as err:
        quant.quantize(_Conv(tail).eval(), quant.QuantConfig(), [x])
    assert isinstance(err.value, QuantError) and "\n" not in str(err.value)


def test_lookup_table_of_another_record_is_an_error(hard_se):
    with pytest.raises(QuantError, match="'stem.0' is a conv2d record"):
        hard_se[1].lookup_table("stem.0")


def test_malformed_table_nodes_are_refused(hard_se):
    program = lower(hard_se[1])
    node = program.node("se.scale_activation")
    for change, message in (
        ({"attrs": {**node.attrs, "fn": "gelu"}}, "fn must be one of"),
        ({"attrs": {**node.attrs, "input_range": [0, 127]}}, r"shape \(128,\)"),
        ({"attrs": {**node.attrs, "arithmetic": "fast"}}, "arithmetic must be one of"),
        ({"arrays": {"table": node.arrays["table"][:100]}}, r"shape \(256,\)"),
    ):
        program.graph.nodes[node.name]["node"] = dataclasses.replace(node, **change)
        with pytest.raises(ProgramError, match=message):
            check_program(program)
    program.graph.nodes[node.name]["node"] = node
    check_program(program)


# ------------------------------------------------------------------------------------------------
# Kernels against their int64 / exact definitions (property tests)

_FNS = ("sigmoid", "hardsigmoid", "hardswish", "silu", "tanh")


@st.composite
def _table_params(draw):
    bits_x = draw(st.integers(2, 8))
    bits_y = draw(st.integers(2, 8))
    signed_x, signed_y = draw(st.booleans()), draw(st.booleans())
    fmt_x = quant.IntFormat(bits=bits_x, signed=signed_x, symmetric=False, per_channel=False)
    fmt_y = quant.IntFormat(bits=bits_y, signed=signed_y, symmetric=False, per_channel=False)
    # binary-exponent scales of any size plus "calibrated" ones
    scale = st.one_of(st.floats(1e-3, 2.0), st.integers(-8, 2).map(lambda e: 2.0 ** e))
    p_x = quant.QuantParams(draw(scale), draw(st.integers(fmt_x.qmin, fmt_x.qmax)), None, fmt_x)
    p_y = quant.QuantParams(draw(scale), draw(st.integers(fmt_y.qmin, fmt_y.qmax)), None, fmt_y)
    return draw(st.sampled_from(_FNS)), p_x, p_y


def _hwsim_table(fn, p_x, p_y):
    return k.exact_activation_table(
        fn, x_scale=float(p_x.scale), x_zero_point=int(p_x.zero_point),
        x_range=(p_x.fmt.qmin, p_x.fmt.qmax), y_scale=float(p_y.scale),
        y_zero_point=int(p_y.zero_point), y_range=(p_y.fmt.qmin, p_y.fmt.qmax))


@settings(max_examples=60, deadline=None)
@given(_table_params())
def test_quant_and_hwsim_tables_agree_and_match_float64_away_from_ties(params):
    """Two independent implementations of the exact tables agree; a float64 evaluation gives
    the same codes wherever its quotient is not within 1e-6 of a rounding tie."""
    fn, p_x, p_y = params
    ours = _hwsim_table(fn, p_x, p_y)
    assert np.array_equal(ours, lookup_table(fn, p_x, p_y))
    x = (np.arange(p_x.fmt.qmin, p_x.fmt.qmax + 1) - int(p_x.zero_point)) * float(p_x.scale)
    y = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
         "silu": lambda v: v / (1 + np.exp(-v)),
         "hardsigmoid": lambda v: np.clip(v + 3, 0, 6) / 6,
         "hardswish": lambda v: v * np.clip(v + 3, 0, 6) / 6}[fn](x)
    q = y / float(p_y.scale)
    decided = np.abs(np.abs(q - np.floor(q)) - 0.5) > 1e-6
    f64 = np.clip(np.rint(q) + int(p_y.zero_point), p_y.fmt.qmin, p_y.fmt.qmax)
    assert np.array_equal(ours[decided], f64[decided])


@pytest.mark.parametrize("fn, code, s_x, s_y, want", [
    ("hardsigmoid", 0, 0.25, 1 / 64, 32),   # 0.5 / 2^-6 = 32
    ("hardsigmoid", 1, 0.25, 2 ** -3, 4),   # (3.25 / 6) / 2^-3 = 4.33
    ("hardswish", 2, 0.75, 2 ** -3, 9),     # 1.5 · 4.5 / 6 = 1.125 = 9 / 8
    ("sigmoid", 0, 0.1, 4.0, 0),            # 0.5 / 4 = 0.125
    ("sigmoid", 0, 0.1, 1.0, 0),            # 0.5: a genuine tie, to even
    ("tanh", 0, 0.1, 1.0, 0),
    ("hardsigmoid", 0, 0.3, 1 / 3, 2),      # 0.5 / f64(1/3) = 1.5000000000000000277: not a tie
    ("hardswish", -1, 1.0, 2 / 3, -1),      # (-1/3) / f64(2/3) = -0.5000000000000000277
    ("hardswish", 4, 0.5, 1.0, 2),          # 2 · 5 / 6 = 1.67
])
def test_exact_rounding_of_single_entries(fn, code, s_x, s_y, want):
    from fractions import Fraction

    params = dict(x_scale=s_x, x_zero_point=0, y_scale=s_y, y_zero_point=0, qmin=-128,
                  qmax=127)
    got = k.exact_activation_code(code, fn, **params)
    assert got == want
    if fn in ("hardsigmoid", "hardswish"):  # the definition, in Fractions of the float scales
        x = Fraction(code) * Fraction(s_x)
        hs = min(max(x + 3, Fraction(0)), Fraction(6)) / 6
        assert got == round((hs if fn == "hardsigmoid" else x * hs) / Fraction(s_y))
    fmt = quant.IntFormat(bits=8, signed=True, symmetric=False, per_channel=False)
    p_x, p_y = (quant.QuantParams(s, 0, None, fmt) for s in (s_x, s_y))
    assert lookup_table(fn, p_x, p_y)[code + 128] == got


@settings(max_examples=40, deadline=None)
@given(_table_params(), st.integers(0, 2**32 - 1))
def test_exact_activation_node_fast_equals_reference(params, seed):
    from hwsim.ir import Node, TensorQuant

    fn, p_x, p_y = params
    table = _hwsim_table(fn, p_x, p_y)
    out = TensorQuant(float(p_y.scale), int(p_y.zero_point), p_y.fmt.qmin, p_y.fmt.qmax)
    node = Node("act", "activation_lut", ("x",), (3, 2, 4, 4), out,
                {"fn": fn, "arithmetic": "exact", "input_scale": float(p_x.scale),
                 "input_zero_point": int(p_x.zero_point),
                 "input_range": [p_x.fmt.qmin, p_x.fmt.qmax]}, {"table": table})
    codes = np.random.default_rng(seed).integers(p_x.fmt.qmin, p_x.fmt.qmax + 1, (3, 2, 4, 4))
    fast, _ = execute_node(node, [codes])
    ref, _ = execute_node(node, [codes], backend="reference")
    assert np.array_equal(fast, ref) and np.array_equal(fast, table[codes - p_x.fmt.qmin])


@st.composite
def _mul_case(draw):
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    # operand b broadcasts over some non-batch dims (a squeeze-excite gate when rank 4)
    b_shape = (shape[0],) + tuple(1 if draw(st.booleans()) else d for d in shape[1:])
    bits = draw(st.sampled_from([4, 8, 12, 16]))
    signed = draw(st.booleans())
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    # power-of-two scales make exact ties: dyadic rounds them up, fake-quant to even
    scales = [draw(st.one_of(st.floats(1e-3, 0.5), st.integers(-9, -1).map(lambda e: 2.0 ** e)))
              for _ in range(3)]
    zps = [draw(st.integers(lo, hi)) for _ in range(3)]
    seed = draw(st.integers(0, 2**32 - 1))
    clamp = sorted(draw(st.lists(st.integers(lo, hi), min_size=2, max_size=2)))
    return shape, b_shape, (lo, hi), scales, zps, seed, clamp


@settings(max_examples=80, deadline=None)
@given(_mul_case())
def test_mul_kernels_equal_their_references_and_fake_quant_within_one_lsb(case):
    shape, b_shape, (lo, hi), (s_a, s_b, s_y), (za, zb, zy), seed, (clo, chi) = case
    rng = np.random.default_rng(seed)
    a, b = rng.integers(lo, hi + 1, shape), rng.integers(lo, hi + 1, b_shape)
    real = s_a * s_b / s_y
    try:
        m, shift = (int(v) for v in k.dyadic_multiplier(real))
    except Exception:
        return  # a multiplier no 31-bit dyadic holds: lowering refuses it
    dy = k.mul_requantize_dyadic(a, za, b, zb, m, shift, zy, clo, chi)
    assert np.array_equal(dy, k.mul_requantize_dyadic_reference(a, za, b, zb, m, shift, zy,
                                                                clo, chi))
    # the fake-quant model (quant.model): operands dequantized in float64 and rounded to
    # float32, their float32 product, then round half to even onto the output grid
    a_fq = ((a - za) * s_a).astype(F32)
    b_fq = ((b - zb) * s_b).astype(F32)
    fake = np.clip(np.rint((a_fq * b_fq).astype(np.float64) / s_y) + zy, clo, chi)
    assert np.abs(dy - fake).max() <= 1
    if hi - lo <= 255:  # float32 requantization: QLinearMul, lowered for 8-bit codes only
        ratio = k.mul_ratio(s_a, s_b, s_y)
        f32 = k.qlinear_mul(a, za, b, zb, ratio, zy, clo, chi)
        assert np.array_equal(f32, k.qlinear_mul_reference(a, za, b, zb, ratio, zy, clo, chi))
        assert np.abs(f32 - fake).max() <= 1


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 13), st.integers(1, 13),
       st.sampled_from(["nearest", "nearest-exact"]))
def test_torch_nearest_indices_are_onnx_resize_indices(h, w, oh, ow, mode):
    """What capture reads off torch (sizes given) is what hwsim's resize kernel and its
    reference compute from the scales (lowering refuses a resize where they differ)."""
    grid = torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w)
    probe = F.interpolate(grid, size=(oh, ow), mode=mode)[0, 0].to(torch.int64)
    rows, cols = (probe[:, 0] // w).numpy(), (probe[0, :] % w).numpy()
    coord = {"nearest": "asymmetric", "nearest-exact": "tf_half_pixel_for_nn"}[mode]
    assert np.array_equal(rows, k.nearest_indices(h, oh, F32(oh / h), coord, "floor"))
    assert np.array_equal(cols, k.nearest_indices(w, ow, F32(ow / w), coord, "floor"))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9),
       st.sampled_from(["half_pixel", "align_corners"]), st.sampled_from([8, 16]),
       st.integers(0, 2**32 - 1))
def test_resize_linear_kernel_equals_its_reference(h, w, oh, ow, mode, bits, seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (2, 2, h, w))
    zp = int(rng.integers(lo, hi + 1))
    scales = (oh / h, ow / w)
    rows, rw = k.linear_taps(h, oh, scales[0], mode)
    cols, cw = k.linear_taps(w, ow, scales[1], mode)
    fast = k.resize_linear(x, zp, rows, rw, cols, cw, k.LINEAR_FRAC_BITS, lo, hi)
    ref = k.resize_linear_reference(x, zp, (oh, ow), scales, mode, k.LINEAR_FRAC_BITS, lo, hi)
    assert np.array_equal(fast, ref)
    # within 1 of the real bilinear value of the codes (weights exact to 2^-21 each)
    t = torch.from_numpy((x - zp).astype(np.float64))
    real = F.interpolate(t, size=(oh, ow), mode="bilinear",
                         align_corners=mode == "align_corners").numpy()
    assert np.abs(fast - zp - real).max() <= 0.5 + 4 * 2.0 ** -21 * (1 << bits)
