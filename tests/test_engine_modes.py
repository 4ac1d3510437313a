"""Engine modes of the integer program: conv/linear layers computed exactly as ONNX Runtime or
PyTorch's qnnpack / onednn / fbgemm compute them, chosen per program or per layer at lowering.

The engine models themselves are checked against the real engines over > 10^6 outputs each
(tests/test_engine_ort.py, tests/test_engine_pytorch.py); here: the lowering hands them the
model's own quantization (scales, zero points, float bias from the QuantizedModel, not from the
node), the executor runs them, per-layer choices touch only those layers, and the effect of
int16 pair saturation shows up where expected."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import quant
from hwsim.engines import qlinear_conv
from hwsim.engines.pytorch import torch_quantized_conv2d, torch_quantized_linear
from hwsim.errors import ProgramError
from hwsim.executor import execute
from hwsim.lower import lower
from tests.test_lower import _net


@pytest.fixture(scope="module")
def qmodel():
    g = torch.Generator().manual_seed(1)
    calib = torch.randn(16, 3, 16, 16, generator=g)
    qm = quant.quantize(_net(), quant.QuantConfig(), [calib], example_input=calib[:1])
    return qm, qm.quantize_input(torch.randn(4, 3, 16, 16, generator=g))


def _model_params(qm, name):
    """The layer's quantization as the QuantizedModel states it (independent of the node)."""
    rec = qm.graph[name]
    wp = qm.weight_params(name)
    x_p, y_p = qm.act_params(rec.inputs[0]), qm.act_params(name)
    k = qm.weight_codes(name).shape[0]
    s_w = np.broadcast_to(np.asarray(wp.scale, dtype=np.float64), (k,))
    bias = qm.bias_codes(name)
    bias_f32 = None if bias is None else (bias * float(x_p.scale) * s_w).astype(np.float32)
    return dict(x_scale=float(x_p.scale), x_zp=int(x_p.zero_point), w=qm.weight_codes(name),
                w_scale=s_w, w_zp=np.zeros(k, dtype=np.int64), bias_f32=bias_f32,
                y_scale=float(y_p.scale), y_zp=int(y_p.zero_point))


@pytest.mark.parametrize("engine", ["qnnpack", "onednn", "fbgemm"])
def test_pytorch_engine_layers_compute_what_the_engine_computes(qmodel, engine):
    qm, codes = qmodel
    base = execute(lower(qm), codes, record=True).tensors
    program = lower(qm, layer_engines={"side": engine, "head": engine})
    run = execute(program, codes, record=True).tensors
    side, head = program.node("side"), program.node("head")
    assert side.attrs["engine"] == head.attrs["engine"] == engine
    p = _model_params(qm, "side")
    a = qm.graph["side"].attrs
    want = torch_quantized_conv2d(base["pool"], **p, stride=a["stride"], padding=a["padding"][:2],
                                  dilation=a["dilation"], groups=a["groups"], engine=engine,
                                  int16_pairs=side.attrs["engine_int16_pairs"])
    lo, hi = side.attrs["requant"]["clamp"]  # the fused ReLU
    np.testing.assert_array_equal(run["side"], np.clip(want, lo, hi))
    want = torch_quantized_linear(run[program.node("head").inputs[0]],
                                  **_model_params(qm, "head"), engine=engine,
                                  int16_pairs=head.attrs["engine_int16_pairs"])
    np.testing.assert_array_equal(run["head"], want)
    for name in ("stem.0", "dw.0", "pw", "pool"):  # layers before the chosen ones are untouched
        np.testing.assert_array_equal(run[name], base[name])
    if engine == "qnnpack":  # exact accumulation: only the rounding order differs from hwsim's
        assert abs(run["head"].astype(int) - base["head"].astype(int)).max() <= 1


def test_ort_engine_layers_equal_onnx_runtimes_qlinear_conv(qmodel):
    qm, codes = qmodel
    program = lower(qm, engine="ort", int16_pairs=True)
    run = execute(program, codes, record=True).tensors
    node = program.node("side")
    assert node.attrs["requant"]["mode"] == "float32"
    assert node.attrs["accumulator"]["mode"] == "int16_pairs"
    assert program.node("dw.0").attrs["accumulator"]["mode"] == "wrap"  # depthwise: exact kernel
    p = _model_params(qm, "side")
    bias = qm.bias_codes("side").astype(np.int32)
    a = qm.graph["side"].attrs
    want = qlinear_conv(run["pool"], np.float32(p["x_scale"]), np.uint8(p["x_zp"]), p["w"],
                        p["w_scale"].astype(np.float32), np.zeros(len(bias), np.int8),
                        np.float32(p["y_scale"]), np.uint8(p["y_zp"]), bias,
                        strides=a["stride"], pads=a["padding"], dilations=a["dilation"],
                        group=a["groups"], int16_pairs=True)
    lo, hi = node.attrs["requant"]["clamp"]
    np.testing.assert_array_equal(run["side"], np.clip(want, lo, hi))


@pytest.mark.parametrize("engine", ["qnnpack", "onednn", "fbgemm"])
@pytest.mark.parametrize("pairs", [True, False])
def test_the_cpus_int16_pairs_reach_the_engine_model(qmodel, engine, pairs):
    """Every layer carries the CPU's pair saturation (int16_pairs=False models a VNNI CPU); the
    engine model decides per kernel what saturates (qnnpack: nothing; onednn: not depthwise;
    fbgemm: adjacent taps of depthwise kernels too), so the depthwise layer's codes equal the
    engine function's with that flag."""
    qm, codes = qmodel
    program = lower(qm, engine=engine, int16_pairs=pairs)
    assert {n.attrs["engine_int16_pairs"] for n in program.nodes()
            if n.op in ("conv2d", "linear")} == {pairs}
    run = execute(program, codes, record=True).tensors
    a = qm.graph["dw.0"].attrs
    want = torch_quantized_conv2d(run[program.node("dw.0").inputs[0]], **_model_params(qm, "dw.0"),
                                  stride=a["stride"], padding=a["padding"][:2],
                                  dilation=a["dilation"], groups=a["groups"], engine=engine,
                                  int16_pairs=pairs)
    lo, hi = program.node("dw.0").attrs["requant"]["clamp"]
    np.testing.assert_array_equal(run["dw.0"], np.clip(want, lo, hi))


@pytest.mark.parametrize("kwargs, needle", [
    ({"engine": "tensorrt"}, "engine must be one of"),
    ({"layer_engines": {"nope": "fbgemm"}}, r"layer_engines names \['nope'\]"),
])
def test_bad_engine_choices_are_named(qmodel, kwargs, needle):
    with pytest.raises(ProgramError, match=needle):
        lower(qmodel[0], **kwargs)


def test_pytorch_engines_need_uint8_activations():
    g = torch.Generator().manual_seed(2)
    calib = torch.randn(8, 3, 16, 16, generator=g)
    qm = quant.quantize(_net(), quant.QuantConfig(activation=quant.IntFormat(
        bits=8, signed=True, symmetric=False)), [calib], example_input=calib[:1])
    with pytest.raises(ProgramError, match="layer .stem\\.0. on engine 'qnnpack': PyTorch's quantized "
                                           "engines take uint8 activations"):
        lower(qm, engine="qnnpack")


def test_cli_verify_model_with_an_engine(tmp_path):
    """`hwsim verify --model mobilenet_v2 --engine E`: qnnpack (exact accumulation) stays within
    1 LSB of the fake-quant model at every layer; fbgemm on this CPU saturates int16 pairs of
    full-range uint8 activations, and layers move by many LSBs."""
    import json

    from hwsim.cli import main
    from hwsim.engines.cpu import cpu_saturates_int16_pairs

    worst = {}
    for engine in ("qnnpack", "fbgemm"):
        out = tmp_path / f"{engine}.json"
        assert main(["verify", "--model", "mobilenet_v2", "--engine", engine, "--images", "2",
                     "--json", str(out)]) == 0
        worst[engine] = json.loads(out.read_text())["summary"]["max_lsb_diff_any_layer"]
    assert worst["qnnpack"] <= 1
    if cpu_saturates_int16_pairs():
        assert worst["fbgemm"] > 1
