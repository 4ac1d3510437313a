"""ConvTranspose in quantized ONNX models: a float island in ONNX Runtime's float32 order.

How it is checked:
- the fast kernel (hwsim.kernels.conv_transpose_f32) equals its element-by-element reference
  (exact rational fma), hypothesis over geometries, groups, 1x1 images and pre-packing, plus
  a reduction longer than MLAS's 128-channel K block;
- the float32 order: every bit of ONNX Runtime's float ConvTranspose on random operands, with
  and without pre-packed weights (summation-order errors rarely reach the codes);
- islands on codes: x -> Q -> DQ -> ConvTranspose(DQ(int8 W per channel), DQ(int32 B)) -> Q
  (QDQ), DQ -> ConvTranspose(float W, float B) -> Q (QOperator's float weights, which ONNX
  Runtime's optimizer quantizes) and DQ -> ConvTranspose(float W, float B) -> Mul -> Q (float
  weights kept, pre-packed), imported and run by hwsim against ONNX Runtime (graph
  optimizations on, as deployed): u8 and s8, overlapping taps, stride = kernel, groups, pads,
  dilation, output_padding, with and without bias, long reductions, 1x1 images; half the
  cases use powers of two and small weights so that many outputs sit exactly on a .5
  rounding boundary (the tallies print how many); 0 mismatches over >= 10^6 codes per type;
- a torch model with three nn.ConvTranspose2d, quantized by `quantize_static` in QDQ and
  QOperator forms (u8, s8), verifies bit exact at every node (QOperator: float weights
  pre-packed, and float weights ONNX Runtime's optimizer quantizes itself);
- pricing: an ONNX ConvTranspose costs the MACs of the same captured layer, and `hwsim
  simulate --model` prices it;
- an unsupported attribute is a one-line error naming the node.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

from onnx import TensorProto, helper  # noqa: E402

from hwsim import execute  # noqa: E402
from hwsim.kernels.conv_transpose_f32 import (Geometry, conv_transpose_f32,  # noqa: E402
                                              conv_transpose_f32_reference, ort_packs_weights)
from hwsim.onnx import (OnnxImportError, load_onnx_program, load_onnx_workload,  # noqa: E402
                        quantize_input, verify_onnx)
from tests._onnx_helpers import elem, model_bytes, quantize_forms, session  # noqa: E402

F32 = np.float32


# ------------------------------------------------------------------------------------------------
# 1. The fast kernel equals the element-by-element reference

@st.composite
def _layers(draw):
    g = draw(st.sampled_from([1, 2, 3]))
    cg, kg = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dil))
    hw = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    full = [(n - 1) * s + d * (k - 1) + 1 + o
            for n, s, d, k, o in zip(hw, stride, dil, kernel, out_pad)]
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    if pads[0] + pads[2] >= full[0] or pads[1] + pads[3] >= full[1]:
        pads = (0, 0, 0, 0)
    return dict(g=g, cg=cg, kg=kg, kernel=kernel, hw=hw, bias=draw(st.booleans()),
                packed=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 31 - 1)),
                geometry=Geometry(stride, pads, dil, out_pad, g))


@settings(max_examples=50, deadline=None)
@given(_layers())
def test_fast_kernel_equals_reference(p):
    rng = np.random.default_rng(p["seed"])
    c = p["g"] * p["cg"]
    x = rng.standard_normal((2, c) + p["hw"]).astype(F32)
    w = rng.standard_normal((c, p["kg"]) + p["kernel"]).astype(F32)
    w = np.where(rng.random(w.shape) < 0.5, np.round(w * 8) / 8, w).astype(F32)
    b = rng.standard_normal(p["g"] * p["kg"]).astype(F32) if p["bias"] else None
    fast = conv_transpose_f32(x, w, b, p["geometry"], packed_weights=p["packed"])
    ref = conv_transpose_f32_reference(x, w, b, p["geometry"], packed_weights=p["packed"])
    assert fast.shape == ref.shape
    np.testing.assert_array_equal(fast.view(np.int32), ref.view(np.int32))


@pytest.mark.parametrize("hw", [(2, 2), (1, 1)])
def test_long_reductions_follow_mlas_blocks(hw):
    """140 input channels: MLAS sums them in one block when it pre-packed the weights of a
    4-pixel image (stride_k 1024), in blocks of 128 + 12 otherwise; a 1x1 image takes the
    M = 1 kernels. Fast = reference in each case, and the orders really differ."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 140) + hw).astype(F32)
    w = rng.standard_normal((140, 3, 2, 2)).astype(F32)
    geometry = Geometry(strides=(2, 2))
    outs = {}
    for packed in (False, True):
        outs[packed] = conv_transpose_f32(x, w, None, geometry, packed_weights=packed)
        ref = conv_transpose_f32_reference(x, w, None, geometry, packed_weights=packed)
        np.testing.assert_array_equal(outs[packed].view(np.int32), ref.view(np.int32))
    assert not np.array_equal(outs[False], outs[True])


# ------------------------------------------------------------------------------------------------
# 2. Islands on codes against ONNX Runtime

# (name, C, K, group, kernel, strides, pads, dilations, output_padding, bias, image)
GEOMETRIES = [
    ("overlap", 8, 16, 1, (4, 4), (2, 2), (1, 1, 1, 1), (1, 1), (0, 0), True, (16, 16)),
    ("stride=kernel", 16, 8, 1, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), (0, 0), True, (16, 16)),
    ("groups", 12, 12, 3, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (1, 1), True, (12, 14)),
    ("depthwise", 16, 16, 16, (4, 4), (2, 2), (1, 1, 1, 1), (1, 1), (0, 0), False, (14, 14)),
    ("pads-uneven", 6, 10, 2, (3, 2), (1, 2), (0, 1, 2, 0), (1, 1), (0, 1), True, (16, 12)),
    ("dilation", 8, 8, 1, (3, 3), (2, 1), (2, 1, 1, 2), (2, 2), (1, 0), False, (14, 14)),
    ("output-padding", 4, 12, 1, (3, 3), (3, 3), (1, 1, 1, 1), (1, 1), (2, 2), True, (10, 10)),
    ("no-bias", 10, 8, 2, (2, 3), (2, 2), (0, 0, 0, 0), (1, 1), (1, 0), False, (16, 16)),
    ("long-k", 160, 8, 1, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), (0, 0), True, (6, 6)),
    ("long-k-grouped", 300, 6, 2, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (1, 1), True, (4, 4)),
    ("1x1-image", 40, 12, 1, (4, 4), (1, 1), (0, 0, 0, 0), (1, 1), (0, 0), True, (1, 1)),
    ("1x1-image-1x1", 37, 7, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), (0, 0), True, (1, 1)),
]
BATCH = {"long-k": 4, "long-k-grouped": 2, "1x1-image": 16, "1x1-image-1x1": 16}


def _float_model(x_shape, w, b, geometry, w_is_input: bool) -> bytes:
    """x [, w] -> ConvTranspose -> y in float32; W an initializer (pre-packed) or an input."""
    g = geometry
    attrs = dict(strides=list(g.strides), pads=list(g.pads), dilations=list(g.dilations),
                 group=g.group, output_padding=list(g.output_padding))
    ins = ["x", "w"] + (["b"] if b is not None else [])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    inits = {} if b is None else {"b": b}
    if w_is_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape)))
    else:
        inits["w"] = w
    return model_bytes([helper.make_node("ConvTranspose", ins, ["y"], **attrs)], inputs,
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def test_float_order_equals_onnx_runtime_bit_for_bit():
    """ONNX Runtime's float32 ConvTranspose on random float32 operands, every bit of every
    output: weights pre-packed (a float initializer) and not (a computed tensor, as a
    DequantizeLinear output is). Codes rarely show a summation-order error (one ulp seldom
    crosses a rounding boundary); the float outputs do."""
    rng = np.random.default_rng(3)
    outputs = mismatches = 0
    for (name, c, k, g, kernel, strides, pads, dil, out_pad, bias, image) in GEOMETRIES:
        geometry = Geometry(strides, pads, dil, out_pad, g)
        x = rng.standard_normal((2, c) + image).astype(F32)
        w = rng.standard_normal((c, k // g) + kernel).astype(F32)
        b = rng.standard_normal(k).astype(F32) if bias else None
        for w_is_input in (False, True):
            feed = {"x": x, **({"w": w} if w_is_input else {})}
            (theirs,) = session(_float_model(x.shape, w, b, geometry, w_is_input)).run(None, feed)
            packed = not w_is_input and ort_packs_weights(w.shape, g)
            ours = conv_transpose_f32(x, w, b, geometry, packed_weights=packed)
            assert ours.shape == theirs.shape, name
            bad = int(np.count_nonzero(ours.view(np.int32) != theirs.view(np.int32)))
            assert bad == 0, (name, w_is_input, bad)
            if name.startswith("long-k") or name.startswith("1x1-image"):  # the order matters
                other = conv_transpose_f32(x, w, b, geometry, packed_weights=not packed)
                assert not np.array_equal(other, theirs), (name, w_is_input)
            outputs, mismatches = outputs + ours.size, mismatches + bad
    print(f"\nConvTranspose float32: {outputs} outputs compared bit for bit with ONNX Runtime, "
          f"{mismatches} mismatches")
    assert outputs > 100_000


FORMS = ("qdq", "float-w", "float-w-mul")


class _Case:
    """One ConvTranspose island model x -> Q -> DQ -> ConvTranspose -> [Mul] -> Q -> y.

    Forms: "qdq": DequantizeLinear of int8 weights (per channel) and of an int32 bias;
    "float-w": float weights and bias (ONNX Runtime quantizes them itself, int8 per tensor);
    "float-w-mul": float weights and bias followed by a float Mul (x 0.5) before the Q, which
    keeps them float (ONNX Runtime pre-packs the weights)."""

    def __init__(self, rng, geometry, dtype, form: str, ties: bool) -> None:
        (self.name, c, k, g, kernel, strides, pads, dil, out_pad, bias, image) = geometry
        info = np.iinfo(dtype)
        kg = k // g
        if ties:  # powers of two and small weight codes: y / s_y = integer / 8 (ties 1/8)
            sx = 2.0 ** -int(rng.integers(3, 7))
            sw = np.full(kg, 2.0 ** -int(rng.integers(3, 8)), F32)
            w_codes = rng.integers(-3, 4, size=(c, kg) + kernel).astype(np.int8)
            b_codes = rng.integers(-100, 101, size=k).astype(np.int32)
            sy = sx * float(sw[0]) * 8
        else:
            sx = float(rng.uniform(0.005, 0.05))
            sw = rng.uniform(0.002, 0.02, size=kg).astype(F32)
            w_codes = rng.integers(-127, 128, size=(c, kg) + kernel).astype(np.int8)
            b_codes = rng.integers(-3000, 3000, size=k).astype(np.int32)
            spread = float(np.sqrt(c // g * kernel[0] * kernel[1] / (strides[0] * strides[1])))
            sy = sx * float(sw.mean()) * 40 * spread
        self.sx, self.zx = F32(sx), int(rng.integers(info.min + 60, info.max - 60))
        w = (w_codes.astype(F32) * sw.reshape(1, kg, 1, 1)).astype(F32)
        sb = (self.sx * np.tile(sw, g)).astype(F32)
        self.sy, self.zy = F32(sy), int(rng.integers(info.min + 60, info.max - 60))
        self.dtype, self.form = dtype, form
        self.shape = (BATCH.get(self.name, 4), c) + image
        attrs = dict(strides=list(strides), pads=list(pads), dilations=list(dil), group=g,
                     output_padding=list(out_pad), kernel_shape=list(kernel))
        inits = {"sx": self.sx, "zx": np.array(self.zx, dtype), "sy": self.sy,
                 "zy": np.array(self.zy, dtype)}
        nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xf"])]
        ins = ["xf", "w"] + (["b"] if bias else [])
        if form == "qdq":
            ins = ["xf", "wf"] + (["bf"] if bias else [])
            inits.update(wq=w_codes, sw=sw, zw=np.zeros(kg, np.int8))
            nodes.append(helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wf"], axis=1))
            if bias:
                inits.update(bq=b_codes, sb=sb, zb=np.zeros(k, np.int32))
                nodes.append(helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["bf"],
                                              axis=0))
        else:
            inits["w"] = w
            if bias:
                inits["b"] = (b_codes.astype(F32) * sb).astype(F32)
        nodes.append(helper.make_node("ConvTranspose", ins, ["f"], name="ct", **attrs))
        if form == "float-w-mul":
            nodes[-1].output[0] = "f0"
            nodes.append(helper.make_node("Mul", ["f0", "half"], ["f"]))
            inits["half"] = F32(0.5)
        nodes.append(helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"]))
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + list(self.shape[1:]))
        y = helper.make_tensor_value_info("y", elem(dtype), None)
        self.model = model_bytes(nodes, [x], [y], inits)
        self.packed = form == "float-w-mul" and ort_packs_weights(w.shape, g)

    def inputs(self, rng) -> np.ndarray:
        info = np.iinfo(self.dtype)
        codes = rng.integers(info.min, info.max + 1, size=self.shape)
        return ((codes - self.zx).astype(F32) * self.sx).astype(F32)


def _ties(island, codes) -> int:
    """Island outputs exactly halfway between two codes before rounding (inside the range)."""
    from hwsim.kernels.float_island import dequantize, evaluate
    from hwsim.ops.float_island import constants

    (spec,) = island.attrs["inputs"]
    values = dict(constants(island))
    values[spec["tensor"]] = dequantize(codes, spec["scale"], spec["zero_point"])
    f = evaluate(island.attrs["nodes"], values, island.attrs["output"])
    out = island.out
    v = (f / F32(out.scale)).astype(F32).astype(np.float64)
    inside = (v > out.qmin - out.zero_point) & (v < out.qmax - out.zero_point)
    return int(np.count_nonzero((v - np.floor(v) == 0.5) & inside))


def _sweep(dtype, seed: int) -> tuple[int, int, int, int]:
    """(outputs, mismatches, ties, models) over every geometry x form x scale kind."""
    rng = np.random.default_rng(seed)
    outputs = mismatches = ties = cases = 0
    for geometry in GEOMETRIES:
        for form in FORMS:
            for tie in (False, True):
                case = _Case(rng, geometry, dtype, form, tie)
                program = load_onnx_program(case.model)
                island = program.output
                ct = island.attrs["nodes"][0]
                assert island.op == "float_island" and ct["op"] == "ConvTranspose"
                assert ct["attrs"]["ort_packed_weights"] == case.packed
                x = case.inputs(rng)
                codes = quantize_input(program, x)
                ours = execute(program, codes).output
                (theirs,) = session(case.model).run(["y"], {"x": x})
                assert ours.shape == theirs.shape, case.name
                bad = int(np.count_nonzero(ours.astype(np.int64) != theirs.astype(np.int64)))
                assert bad == 0, (case.name, form, tie, bad)
                outputs, mismatches = outputs + ours.size, mismatches + bad
                ties += _ties(island, codes)
                cases += 1
    return outputs, mismatches, ties, cases


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_islands_equal_onnx_runtime(dtype):
    outputs, mismatches, ties, cases = _sweep(dtype, seed=11 if dtype == np.uint8 else 12)
    print(f"\nConvTranspose islands, {np.dtype(dtype)}: {cases} models, {outputs} output codes "
          f"compared with ONNX Runtime, {mismatches} mismatches; {ties} "
          f"({100 * ties / outputs:.2f}%) exactly on a .5 rounding boundary")
    assert mismatches == 0
    assert outputs >= 10 ** 6 and ties >= 0.01 * outputs


# ------------------------------------------------------------------------------------------------
# 3. A torch model with ConvTranspose2d, quantized by ONNX Runtime

def _upsampler(tmp_path):
    import logging

    torch = pytest.importorskip("torch")
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from torch import nn

    class Upsampler(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 160, 3, stride=4, padding=1)  # 160 channels: 2 K blocks
            self.up1 = nn.ConvTranspose2d(160, 16, 4, stride=2, padding=1)  # overlapping taps
            self.up2 = nn.ConvTranspose2d(16, 8, 2, stride=2, groups=2, bias=False)
            self.mid = nn.Conv2d(8, 8, 3, padding=1)
            self.up3 = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
            self.head = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            x = torch.relu(self.up1(x))
            x = torch.relu(self.mid(self.up2(x)))
            return self.head(self.up3(x))

    torch.manual_seed(0)
    net = Upsampler().eval()
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(8, 3, 32, 32)).astype(F32)
    paths = {"float": tmp_path / "up.onnx", "pre": tmp_path / "up.pre.onnx"}
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(net, torch.from_numpy(calib[:1]), str(paths["float"]),
                                  opset_version=17, dynamo=False, input_names=["input"],
                                  output_names=["out"],
                                  dynamic_axes={"input": {0: "N"}, "out": {0: "N"}})
            quant_pre_process(str(paths["float"]), str(paths["pre"]))
            paths.update(quantize_forms(paths["pre"], tmp_path / "up", calib,
                                        ("qdq-u8", "qdq-s8", "qoperator-u8", "qoperator-s8")))
    finally:
        logging.getLogger().setLevel(level)
    return paths, rng.normal(size=(4, 3, 32, 32)).astype(F32)


@pytest.fixture(scope="module")
def upsampler(tmp_path_factory):
    return _upsampler(tmp_path_factory.mktemp("upsampler"))


@pytest.mark.parametrize("form", ["qdq-u8", "qdq-s8", "qoperator-u8", "qoperator-s8"])
def test_torch_conv_transpose_quantized_by_ort_verifies_bit_exact(upsampler, form):
    paths, x = upsampler
    check = verify_onnx(paths[form], x)
    print(f"\nupsampler {form}: {check.summary['outputs_compared']} outputs compared, "
          f"{check.summary['total_mismatches']} mismatches, layers "
          f"{check.summary['layers_bit_exact']}")
    print(check.per_layer.to_string())
    islands = [n for n in check.program.nodes() if n.op == "float_island"]
    packed = {n["name"]: n["attrs"]["ort_packed_weights"] for isl in islands
              for n in isl.attrs["nodes"] if n["op"] == "ConvTranspose"}
    # QDQ weights are DequantizeLinear outputs (not pre-packed). QOperator's are float
    # constants: up1 -> Relu -> up2 keep them (pre-packed); DQ -> up3 -> Q has them quantized
    # by ONNX Runtime's optimizer (WeightBiasQuantization), then not pre-packed
    qop = form.startswith("qoperator")
    assert packed == {"/up1/ConvTranspose": qop, "/up2/ConvTranspose": qop,
                      "/up3/ConvTranspose": False}
    assert check.summary["total_mismatches"] == 0
    assert check.summary["outputs_compared"] > 10 ** 5


# ------------------------------------------------------------------------------------------------
# 4. Pricing and errors

def test_onnx_conv_transpose_costs_the_captured_layer(tmp_path):
    """The same layer, captured from torch (hwsim.ops.conv_transpose) and read from its ONNX
    export (hwsim.onnx.workload), has the same cost-model shape and MACs."""
    torch = pytest.importorskip("torch")
    from torch import nn

    import quant
    from hwsim.lower import lower
    from hwsim.workloads import program_workload

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 12, 3, padding=1)
            self.up = nn.ConvTranspose2d(12, 8, 3, stride=2, padding=1, output_padding=1,
                                         groups=2)

        def forward(self, x):
            return self.up(torch.relu(self.conv(x)))

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 3, 10, 10)
    captured = {lay.name: lay for lay in program_workload(lower(quant.quantize(
        net, calibration_data=[x])), batch=2)}["up"]
    path = tmp_path / "up.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, x, str(path), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["out"])
    layers = load_onnx_workload(path, batch=2)
    (onnx_up,) = [lay for lay in layers if lay.name == "/up/ConvTranspose"]
    assert onnx_up.macs() == captured.macs() == 2 * 12 * 10 * 10 * 4 * 3 * 3
    assert onnx_up.weight_count == captured.weight_count
    assert {**vars(onnx_up), "name": "up"} == {**vars(captured), "name": "up"}


def test_cli_simulate_prices_an_onnx_conv_transpose(capsys):
    """`hwsim simulate --model net.onnx` prices the ConvTranspose (refused before) and does not
    list it among the nodes left out."""
    from pathlib import Path

    from hwsim.cli.main import main

    root = Path(__file__).resolve().parents[1]
    model = root / "tests" / "data" / "bad" / "convtranspose.onnx"  # Conv -> ConvTranspose
    assert main(["simulate", "--hw", str(root / "hw_configs" / "int8_systolic.yaml"),
                 "--model", str(model)]) == 0
    out = capsys.readouterr().out
    # x (1, 8, 8, 8) times W (8, 4, 2, 2): 8*8*8 pixels x 4 outputs x 2*2 taps
    assert re.search(r"upsample\s+systolic\s+8\s+8\s+8192\s", out), out
    assert "not costed" not in out


def _one_node(attrs: dict) -> bytes:
    inits = {"sx": F32(0.05), "zx": np.uint8(128), "sy": F32(0.1), "zy": np.uint8(128),
             "w": np.ones((4, 2, 3, 3), F32)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xf"]),
             helper.make_node("ConvTranspose", ["xf", "w"], ["f"], name="the_up", **attrs),
             helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])
    return model_bytes(nodes, [x], [helper.make_tensor_value_info("y", elem(np.uint8), None)],
                       inits)


@pytest.mark.parametrize("attrs, message", [
    (dict(auto_pad="SAME_UPPER", strides=[2, 2]), r"auto_pad 'SAME_UPPER' is not supported"),
    (dict(output_shape=[10, 10], strides=[2, 2]), r"the output_shape attribute is not supported"),
    (dict(strides=[2, 2, 2]), r"strides \[2, 2, 2\]: expected 2 values"),
])
def test_unsupported_attributes_name_the_node(attrs, message):
    with pytest.raises(OnnxImportError, match=r"node 'the_up' \(ConvTranspose\): ConvTranspose: "
                                              + message) as info:
        load_onnx_program(_one_node(attrs))
    assert "\n" not in str(info.value)


def test_an_imported_islands_conv_transposes_are_priced(upsampler):
    """`program_workload` of the imported QDQ program prices each ConvTranspose its float
    islands hold, with the MACs the float model's workload gives it; the islands' float ops stay
    listed as not costed."""
    from hwsim.onnx import load_onnx_program
    from hwsim.workloads import program_workload, uncosted_ops

    paths, _ = upsampler
    program = load_onnx_program(paths["qdq-u8"])
    priced = {lay.name.rsplit("/", 2)[-2]: lay for lay in program_workload(program, batch=3)
              if "ConvTranspose" in lay.name}
    floats = {lay.name.split("/")[1]: lay for lay in load_onnx_workload(paths["pre"], batch=3)
              if lay.name.endswith("ConvTranspose")}
    assert set(priced) == set(floats) == {"up1", "up2", "up3"}
    for name, lay in priced.items():
        assert lay.macs() == floats[name].macs() > 0, name
        assert (lay.act_bits, lay.weight_bits, lay.batch) == (8, 8, 3)
    assert "float_island" in uncosted_ops(program)
