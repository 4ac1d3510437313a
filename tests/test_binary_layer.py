"""Binary (sign-plane) layers end to end: the input binarizer, the layer kernel (XNOR/popcount
fast path == int64 reference), the QuantConfig seam, lowering and execution of binary networks.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import quant
from hwsim import execute, load_program, save_program
from hwsim.flows import program_workload
from hwsim.kernels.binary_layer import BinaryLayer, binary_layer_dots, binary_layer_forward
from hwsim.lower import lower
from hwsim.verify import verify
from quant.binary_input import binarize_codes

_METHODS = [("ls1", None), ("ls2", None), ("lst", None), ("gf", 1), ("gf", 2), ("gf", 3),
            ("gf", 4)]


# ---------------------------------------------------------------------------------------------
# encode_binary: the static (running-scale) binarizer


@settings(max_examples=60, deadline=None)
@given(method=st.sampled_from(["ls1", "ls2", "lst"]), n=st.integers(1, 40),
       seed=st.integers(0, 2**31 - 1))
def test_static_encoding_picks_the_nearest_level(method, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, n)) * rng.uniform(0.1, 5)
    fmt = quant.BinaryFormat(method, axis=0)
    v = np.abs(rng.normal(size=(3, fmt.k))) + 0.01
    if method != "ls1":
        v = -np.sort(-v, axis=1)  # v1 >= v2
    if method == "lst":
        v[:, 1] = v[:, 0]
    enc = quant.encode_binary(x, v, fmt)
    levels = enc.levels()  # (rows, 2^k)
    best = np.abs(x[:, :, None] - levels[:, None, :]).min(axis=2)
    np.testing.assert_allclose(np.abs(x - enc.dequantize()), best, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 4), n=st.integers(1, 30), seed=st.integers(0, 2**31 - 1))
def test_static_encoding_with_a_greedy_fits_own_scales_reproduces_its_planes(k, n, seed):
    x = np.random.default_rng(seed).normal(size=(4, n))
    fmt = quant.BinaryFormat("gf", k=k, axis=0)
    fit = quant.fit_binary(x, fmt)
    np.testing.assert_array_equal(quant.encode_binary(x, fit.v, fmt).b, fit.b)


def test_encode_binary_rejects_bad_scales():
    fmt = quant.BinaryFormat("ls2", axis=0)
    with pytest.raises(quant.QuantError, match="scales must have shape"):
        quant.encode_binary(np.ones((2, 3)), np.ones(3), fmt)
    with pytest.raises(quant.QuantError, match="finite and >= 0"):
        quant.encode_binary(np.ones((2, 3)), np.array([1.0, -1.0]), fmt)


# ---------------------------------------------------------------------------------------------
# the layer kernel


def _binarizer(draw_method, scaling):
    method, k = draw_method
    if method is None:
        return None
    return quant.BinaryInput(quant.BinaryFormat(method, k=k, axis=0), scaling)


@st.composite
def _conv_layers(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c = groups * draw(st.integers(1, 3))
    k_out = groups * draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers((r - 1) * dil[0] + 1, 9))
    w = draw(st.integers((s - 1) * dil[1] + 1, 9))
    n = draw(st.integers(1, 3))
    method = draw(st.sampled_from([(None, None), *_METHODS]))
    scaling = draw(st.sampled_from(["per_sample", "running"]))
    binarizer = _binarizer(method, scaling)
    k_w = draw(st.integers(1, 3))
    zp = int(rng.integers(0, 256))
    x = rng.integers(0, 256, size=(n, c, h, w)).astype(np.uint8)
    layer = BinaryLayer(
        weight_planes=rng.choice(np.array([-1, 1], dtype=np.int8), size=(k_w, k_out, c // groups, r, s)),
        weight_scales=rng.uniform(0.01, 1.0, size=(k_out, k_w)),
        bias=rng.normal(size=k_out) if draw(st.booleans()) else None,
        binarizer=None if binarizer is None else binarizer.to_attrs(),
        input_scales=(None if binarizer is None or scaling != "running"
                      else -np.sort(-rng.uniform(1, 60, size=binarizer.k))),
        input_zero_point=zp, input_scale=float(rng.uniform(0.001, 0.1)),
        output_scale=float(rng.uniform(0.01, 0.5)), output_zero_point=int(rng.integers(0, 256)),
        output_clamp=(0, 255), conv=(stride, pads, dil, groups))
    return layer, x


@settings(max_examples=80, deadline=None)
@given(case=_conv_layers())
def test_binary_conv_fast_equals_the_int64_reference(case):
    layer, x = case
    dots_fast, scales_fast = binary_layer_dots(layer, x, fast=True)
    dots_ref, scales_ref = binary_layer_dots(layer, x, fast=False)
    np.testing.assert_array_equal(dots_fast, dots_ref)
    np.testing.assert_array_equal(scales_fast, scales_ref)
    np.testing.assert_array_equal(binary_layer_forward(layer, x, fast=True),
                                  binary_layer_forward(layer, x, fast=False))


@settings(max_examples=40, deadline=None)
@given(case=_conv_layers())
def test_binary_conv_is_the_float_conv_of_the_dequantized_planes_within_one_lsb(case):
    """The combination of dots and scales means what it says: a float64 torch conv of
    x_hat = s_x sum_i v_i b_i (zero padded) with w_hat = sum_j v_j b_j, plus the bias,
    rounds to the same codes up to 1 LSB (float64 rounding of two different sum orders)."""
    layer, x = case
    centred = x.astype(np.int64) - layer.input_zero_point
    if layer.binarizer is None:
        x_hat = centred * layer.input_scale
    else:
        p = binarize_codes(centred, quant.BinaryInput.from_attrs(layer.binarizer),
                           layer.input_scales)
        x_hat = p.dequantize() * layer.input_scale
    w_hat = np.einsum("jk...,kj->k...", layer.weight_planes.astype(np.float64), layer.weight_scales)
    stride, (top, left, bottom, right), dil, groups = layer.conv
    xp = F.pad(torch.from_numpy(x_hat), (left, right, top, bottom))
    y = F.conv2d(xp, torch.from_numpy(w_hat), None if layer.bias is None
                 else torch.from_numpy(layer.bias), stride=stride, dilation=dil, groups=groups)
    ref = np.clip(np.rint(y.numpy() / layer.output_scale) + layer.output_zero_point, 0, 255)
    got = binary_layer_forward(layer, x)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), method=st.sampled_from([(None, None), *_METHODS]),
       k_in=st.integers(1, 130))
def test_binary_linear_fast_equals_reference(seed, method, k_in):
    rng = np.random.default_rng(seed)
    binarizer = _binarizer(method, "per_sample")
    layer = BinaryLayer(
        weight_planes=rng.choice(np.array([-1, 1], dtype=np.int8), size=(2, 5, k_in)),
        weight_scales=rng.uniform(0.01, 1.0, size=(5, 2)), bias=rng.normal(size=5),
        binarizer=None if binarizer is None else binarizer.to_attrs(), input_scales=None,
        input_zero_point=-3, input_scale=0.05, output_scale=0.2, output_zero_point=0,
        output_clamp=(-128, 127))
    x = rng.integers(-128, 128, size=(4, k_in)).astype(np.int8)
    np.testing.assert_array_equal(binary_layer_dots(layer, x)[0],
                                  binary_layer_dots(layer, x, fast=False)[0])
    np.testing.assert_array_equal(binary_layer_forward(layer, x),
                                  binary_layer_forward(layer, x, fast=False))


# ---------------------------------------------------------------------------------------------
# QuantConfig seam, lowering, execution


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Hardtanh(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardtanh(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, stride=1, padding=(1, 1), bias=False), nn.BatchNorm2d(16),
        nn.Hardtanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.Hardtanh(),
        nn.Linear(32, 10))
    for m in net.modules():  # non-trivial BN statistics, some negative scales
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)
    return net.eval()


_BINARY_LAYERS = ("3", "7", "12")


def _config(binarizer: quant.BinaryInput | None) -> quant.QuantConfig:
    weights = {name: quant.BinaryFormat("ls1") for name in _BINARY_LAYERS}
    weights["12"] = quant.BinaryFormat("gf", k=2)
    inputs = {} if binarizer is None else {name: binarizer for name in _BINARY_LAYERS}
    return quant.QuantConfig(layer_weight=weights, binary_inputs=inputs)


@pytest.fixture(scope="module")
def images():
    return torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(1))


_CASES = [None] + [quant.BinaryInput(quant.BinaryFormat(m, k=k, axis=0), s)
                   for (m, k) in [("ls1", None), ("ls2", None), ("lst", None), ("gf", 3)]
                   for s in ("per_sample", "running")]


@pytest.mark.parametrize("binarizer", _CASES, ids=lambda b: "int-input" if b is None else b.describe())
def test_binary_network_integer_program_matches_fake_quant(binarizer, images, tmp_path):
    qm = quant.quantize(_net(), _config(binarizer), [images[:32]])
    program = lower(qm)
    ops = {n.name: n.op for n in program.nodes()}
    assert [ops[n] for n in _BINARY_LAYERS] == ["binary_conv2d", "binary_conv2d", "binary_linear"]
    report = verify(qm, program, images.numpy())
    assert report.summary["max_lsb_diff_any_layer"] <= 1, report.per_layer
    assert report.summary["top1_agreement_int_vs_fake"] == 1.0
    codes = qm.quantize_input(images)
    fast = execute(program, codes, record=True)
    ref = execute(program, codes, backend="reference", record=True)
    for name in ops:
        np.testing.assert_array_equal(fast.tensors[name], ref.tensors[name], err_msg=name)
    save_program(program, tmp_path / "binary")
    again = execute(load_program(tmp_path / "binary"), codes)
    np.testing.assert_array_equal(again.output, fast.output)


def test_the_fake_quant_model_feeds_binary_layers_their_binarized_inputs(images):
    """Per sample, the input of a binarized conv takes at most 2^k values, which are the
    levels of the fit of that sample's codes."""
    b = quant.BinaryInput(quant.BinaryFormat("ls2", axis=0))
    qm = quant.quantize(_net(), _config(b), [images[:32]])
    seen = []
    qm_pre = qm._pre

    def spy(rec, xs):
        out = qm_pre(rec, xs)
        if rec.name == "3":
            seen.append(out[0])
        return out

    qm._pre = spy
    qm(images[:6])
    x_bin = seen[0]
    for n in range(6):
        assert len(torch.unique(x_bin[n])) <= 4
    producer = qm.act_params("0")  # layer "3" reads record "0" (conv, BN, hardtanh fused)
    codes = producer.quantize(qm.run(images[:6])["0"])
    params = qm.binarize_input("3", codes)
    s_x = float(producer.scale)
    np.testing.assert_allclose(x_bin.numpy(), (params.dequantize() * s_x).astype(np.float32))


def test_running_scales_are_the_mean_per_sample_fit_of_the_float_input(images):
    b = quant.BinaryInput(quant.BinaryFormat("ls2", axis=0), "running")
    qm = quant.quantize(_net(), _config(b), [images[:20], images[20:32]])
    float_in = qm.run(images[:32], mode="float")["0"].astype(np.float64)  # input of layer "3"
    expected = quant.fit_binary(float_in, b.fmt).v.mean(axis=0)
    s_x = float(qm.act_params("0").scale)
    np.testing.assert_allclose(qm.binary_input_scales("3") * s_x, expected, rtol=1e-12)
    assert qm.binary_input_scales("3").shape == (2,)


def test_program_workload_prices_binary_layers_at_their_plane_widths(images):
    b = quant.BinaryInput(quant.BinaryFormat("ls2", axis=0))
    qm = quant.quantize(_net(), _config(b), [images[:32]])
    layers = {l.name: l for l in program_workload(lower(qm))}
    assert (layers["3"].act_bits, layers["3"].weight_bits) == (2, 1)
    assert (layers["12"].act_bits, layers["12"].weight_bits) == (2, 2)
    assert (layers["0"].act_bits, layers["0"].weight_bits) == (8, 8)
    assert layers["3"].in_channels == 8 and layers["3"].out_channels == 16


@pytest.mark.parametrize("kwargs, needle", [
    ({"binary_inputs": {"0": quant.BinaryInput(quant.BinaryFormat("ls1", axis=0))}},
     "layer '0': an input binarizer needs binary weights"),
    ({"binary_inputs": {"nope": quant.BinaryInput(quant.BinaryFormat("ls1", axis=0))}},
     r"binary_inputs names \['nope'\]"),
    ({"layer_weight": {"nope": quant.BinaryFormat("ls1")}}, r"layer_weight names \['nope'\]"),
])
def test_bad_binary_configs_name_the_layer(kwargs, needle, images):
    with pytest.raises(quant.QuantError, match=needle):
        quant.quantize(_net(), quant.QuantConfig(**kwargs), [images[:8]])


def test_bad_binary_formats_are_rejected_up_front():
    with pytest.raises(quant.QuantError, match="axis=0"):
        quant.BinaryInput(quant.BinaryFormat("ls1", axis=None))
    with pytest.raises(quant.QuantError, match="scaling"):
        quant.BinaryInput(quant.BinaryFormat("ls1"), "sometimes")
    with pytest.raises(quant.QuantError, match=r"layer_weight\['3'\].*axis=1"):
        quant.QuantConfig(layer_weight={"3": quant.BinaryFormat("ls1", axis=1)})
    with pytest.raises(quant.QuantError, match="registered number format"):
        quant.QuantConfig(weight="int8")
    with pytest.raises(quant.QuantError, match=r"binary_inputs\['3'\] must be a BinaryInput"):
        quant.QuantConfig(binary_inputs={"3": quant.BinaryFormat("ls1")})


def test_nan_weights_of_a_binary_layer_name_the_layer(images):
    net = _net()
    net[3].weight.data[0, 0, 0, 0] = float("nan")
    with pytest.raises(quant.QuantError, match=r"layer '3' \(3\): 1 of 1152 weights are NaN"):
        quant.quantize(net, _config(None), [images[:8]])


def test_quant_formats_and_the_binary_executor_do_not_import_torch():
    code = ("import sys, quant, quant.formats, quant.binary_input, hwsim.executor, "
            "hwsim.kernels.binary_layer; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_quant_capture_stays_the_function_after_its_module_is_imported():
    import quant.capture  # noqa: F401  (binds the submodule on the package)
    from quant import capture

    assert callable(capture) and capture.__name__ == "capture"
