"""Capture of more ops real networks use, through quantize -> lower -> execute -> verify:
per-channel affine steps (standalone BatchNorm2d, * + - / by a constant) as depthwise 1x1
convs, F.conv2d / F.conv_transpose2d with parameter weights, avg pools whose divisor varies
(count_include_pad=False with padding, ceil_mode), split / chunk / slicing, and local response
norm; and the gallery converter's ONNX mappings for them."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import quant
from hwsim.executor import execute, execute_node
from hwsim.ir import Node, TensorQuant
from hwsim.kernels import dyadic_multiplier, sum_pool2d_reference
from hwsim.kernels.lrn import lrn_codes, lrn_codes_reference
from hwsim.kernels.pool import pool_counts
from hwsim.lower import lower
from hwsim.verify import verify
from hwsim.workloads import uncosted_ops
from quant.errors import QuantError, UnsupportedOpError
from quant.execute import float_params, run_graph


def _flow(model: nn.Module, x: torch.Tensor) -> tuple:
    """quantize, lower (both requantization modes), verify: (qm, {mode: program}); asserts
    integer vs fake-quant within 1 LSB on every layer and fast == int64 reference."""
    qm = quant.quantize(model.eval(), quant.QuantConfig(), [x])
    programs = {}
    for mode in ("dyadic", "float32"):
        program = lower(qm, requant=mode)
        summary = verify(qm, program, x).summary
        assert summary["max_lsb_diff_any_layer"] <= 1, (mode, summary)
        codes = qm.quantize_input(x)
        fast = execute(program, codes, backend="fast").output
        ref = execute(program, codes, backend="reference").output
        np.testing.assert_array_equal(fast, ref)
        programs[mode] = program
    return qm, programs


def _float_matches(model: nn.Module, x: torch.Tensor) -> quant.LayerGraph:
    graph = quant.capture(model, x)
    with torch.no_grad():
        want = model.eval()(x)
    got = run_graph(graph, x, float_params(graph))[graph.output_name]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    return graph


# ------------------------------------------------------------------------------------------------
# 1. per-channel affine steps

class _Affine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.bn2 = nn.BatchNorm2d(4)
        self.register_buffer("scale", torch.tensor([0.5, 1.5, -2.0, 0.75]).reshape(1, 4, 1, 1))
        self.register_buffer("shift", torch.tensor([0.1, -0.2, 0.3, 0.0]).reshape(4, 1, 1))
        for bn in (self.bn, self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
            bn.running_var.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))

    def forward(self, x):
        y = self.bn(F.relu(self.conv(x)))            # BN after a ReLU: standalone
        y = F.relu((2.0 - y * self.scale + self.shift) / 3.0)  # folds into it, ReLU fused
        z = self.bn2(y + y)
        return z - 0.25                              # after an add: its own depthwise conv


def test_affine_steps_are_depthwise_convs_and_fold_into_their_producer():
    torch.manual_seed(0)
    model, x = _Affine().eval(), torch.randn(2, 3, 6, 6)
    graph = _float_matches(model, x)
    convs = {r.name: r for r in graph if r.op == "conv2d"}
    assert set(convs) == {"conv", "bn", "bn2"}
    for name in ("bn", "bn2"):  # depthwise 1x1: one weight per channel
        assert convs[name].attrs["groups"] == 4 and convs[name].weight.shape == (4, 1, 1, 1)
    assert convs["bn"].activation == (0.0, float("inf"))  # relu after the folded steps
    # bn's weight is BN's factor times -scale / 3 (the product, sum and quotient folded in)
    bn = model.bn
    factor = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    np.testing.assert_allclose(convs["bn"].weight.reshape(-1),
                               factor * -model.scale.reshape(-1).double().numpy() / 3, rtol=1e-6)
    assert graph.count("add") == 1
    _flow(model, x)


@pytest.mark.parametrize("fn, match", [
    (lambda m, x: x * m.full, r"fx node 'mul'.*constant of shape \(2, 4, 5, 5\).*the batch"),
    (lambda m, x: 1.0 / x, r"constant divided by a tensor"),
    (lambda m, x: x / x, r"div of two tensors"),
    (lambda m, x: torch.div(x, 2.0, rounding_mode="floor"), r"rounding_mode"),
])
def test_constants_that_are_not_a_per_channel_affine_name_the_node(fn, match):
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.register_buffer("full", torch.ones(2, 4, 5, 5))  # varies over the batch

        def forward(self, x):
            return fn(self, F.relu(self.conv(x)))

    with pytest.raises(UnsupportedOpError, match=match) as err:
        quant.capture(Bad(), torch.randn(1, 3, 5, 5))
    assert isinstance(err.value, QuantError) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# 5. functional convolutions with parameter weights

class _Functional(nn.Module):
    def __init__(self, modules: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.modules_ = modules
        self.conv = nn.Conv2d(4, 6, 3, padding="same", groups=2)
        self.up = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
        with torch.no_grad():
            for p in (*self.conv.parameters(), *self.up.parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        if self.modules_:
            return self.up(F.relu(self.conv(x)))
        c, u = self.conv, self.up
        y = F.relu(F.conv2d(x, c.weight, c.bias, 1, "same", 1, 2))
        return F.conv_transpose2d(y, u.weight, u.bias, stride=2, padding=1, output_padding=1,
                                  groups=2)


def test_functional_convs_are_the_module_layers():
    x = torch.randn(2, 4, 5, 5)
    fn, mod = _Functional(False), _Functional(True)
    g_fn, g_mod = _float_matches(fn, x), _float_matches(mod, x)
    (c1, t1), (c2, t2) = ([r for r in g if r.weight is not None] for g in (g_fn, g_mod))
    for a, b in ((c1, c2), (t1, t2)):
        assert a.op == b.op and a.attrs == b.attrs and a.activation == b.activation
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)
    assert t1.op == "conv_transpose2d"
    _flow(fn, x)


# ------------------------------------------------------------------------------------------------
# 2. avg pools whose divisor varies by position

@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), k=st.integers(1, 3), s=st.integers(1, 3),
       pad=st.tuples(*[st.integers(0, 1)] * 4), include=st.booleans(), ceil=st.booleans())
def test_pool_counts_are_the_reference_divisors(h, w, k, s, pad, include, ceil):
    if h + pad[0] + pad[2] < k or w + pad[1] + pad[3] < k:
        return
    x = np.zeros((1, 1, h, w), dtype=np.uint8)
    want = sum_pool2d_reference(x, 0, k, s, pad, count_include_pad=include, ceil_mode=ceil).count
    got = pool_counts((h, w), (k, k), (s, s), pad, include, ceil)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), k=st.integers(1, 3), s=st.integers(1, 2),
       pad=st.integers(0, 1), include=st.booleans(), ceil=st.booleans(),
       dyadic=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_avgpool_node_with_per_position_multipliers_fast_equals_reference(
        h, w, k, s, pad, include, ceil, dyadic, seed):
    if h + 2 * pad < k or w + 2 * pad < k or 2 * pad > k:
        return
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (2, 3, h, w)).astype(np.uint8)
    counts = pool_counts((h, w), (k, k), (s, s), (pad,) * 4, include, ceil)
    real = 0.9 / counts.reshape(-1)
    if dyadic:
        m, shift = dyadic_multiplier(real)
        arrays = {"rq_multiplier": np.asarray(m, np.int64), "rq_shift": np.asarray(shift, np.int64)}
    else:
        arrays = {"rq_scale_f32": real.astype(np.float32)}
    attrs = {"kernel": [k, k], "stride": [s, s], "padding": [pad] * 4, "global": False,
             "count_include_pad": include, "ceil_mode": ceil,
             "input_zero_point": int(rng.integers(0, 256)),
             "requant": {"mode": "dyadic" if dyadic else "float32", "clamp": [0, 255]}}
    node = Node("pool", "avgpool2d", ("x",), (2, 3, *counts.shape),
                TensorQuant(0.1, 128, 0, 255), attrs, arrays)
    fast, _ = execute_node(node, [x], backend="fast")
    ref, _ = execute_node(node, [x], backend="reference")
    np.testing.assert_array_equal(fast, ref)
    # the divisor at every position: the output is the window mean requantized, within 1
    sums = sum_pool2d_reference(x, attrs["input_zero_point"], k, s, (pad,) * 4,
                                count_include_pad=include, ceil_mode=ceil)
    want = np.clip(np.rint(sums.values * 0.9 / sums.count) + 128, 0, 255)
    assert np.abs(fast.astype(np.int64) - want).max() <= 1


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), count_include_pad=False,
         ceil_mode=True),
    dict(kernel_size=2, stride=2, ceil_mode=True),
])
def test_avg_pool_with_varying_divisors_lowers_within_one_lsb(kw):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AvgPool2d(**kw))
    torch.manual_seed(4)
    x = torch.randn(2, 3, 9, 8)
    qm, programs = _flow(model, x)
    node = programs["dyadic"].node("1")
    assert node.arrays["rq_multiplier"].size == int(np.prod(node.out_shape[2:]))


# ------------------------------------------------------------------------------------------------
# 3. split / chunk / slicing, 4. local response norm

class _SplitLrn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=1.0)
        self.head = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.lrn(F.relu(self.conv(x)))
        a, b = y.split((3, 5), 1)
        c, d = torch.chunk(b, 2, dim=1)
        z = torch.cat([self.head(a), c, F.local_response_norm(d, 3), y[:, 1:4]], 1)
        return z[:, :, 1:4]


def test_split_chunk_slices_and_lrn_through_the_flow():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 9, 8) * 3
    graph = _float_matches(_SplitLrn(), x)
    slices = [(r.inputs[0], r.attrs["axis"], r.attrs["start"], r.attrs["stop"])
              for r in graph if r.op == "slice"]
    assert slices == [("lrn", 1, 0, 3), ("lrn", 1, 3, 8), ("slice_1", 1, 0, 3),
                      ("slice_1", 1, 3, 5), ("lrn", 1, 1, 4), ("cat", 2, 1, 4)]
    assert graph.count("lrn") == 2
    qm, programs = _flow(_SplitLrn(), x)
    reasons = uncosted_ops(programs["dyadic"])
    assert "vector-unit" in reasons["lrn"] and "slice" in reasons


@pytest.mark.parametrize("index", ["x[:, ::2]", "x[0]", "x[:, 1:1]", "x[1:]"])
def test_slices_other_than_one_step_one_dim_are_refused(index):
    class Index(nn.Module):
        def forward(self, x):
            return eval(index)  # noqa: S307  (the parametrized indexing expression)

    with pytest.raises(UnsupportedOpError, match="getitem") as err:
        quant.capture(Index(), torch.randn(2, 4, 3, 3))
    assert "\n" not in str(err.value)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 7), size=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
       zp=st.integers(0, 255), beta=st.sampled_from([0.5, 0.75, 1.0]))
def test_lrn_fast_equals_reference(c, size, seed, zp, beta):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (2, c, 3, 2)).astype(np.uint8)
    args = (codes, 0.05, zp, size, 1e-2, beta, 1.0, 0.02, 128, (0, 255), np.uint8)
    np.testing.assert_array_equal(lrn_codes(*args), lrn_codes_reference(*args))


def test_lrn_codes_are_torchs_lrn_rounded():
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 256, (1, 6, 4, 4)).astype(np.uint8)
    real = torch.from_numpy((codes.astype(np.float64) - 100) * 0.05)
    want = F.local_response_norm(real, 5, 1e-2, 0.75, 2.0) / 0.02 + 128
    got = lrn_codes(codes, 0.05, 100, 5, 1e-2, 0.75, 2.0, 0.02, 128, (0, 255))
    assert np.abs(got - np.clip(np.rint(want.numpy()), 0, 255)).max() == 0


# ------------------------------------------------------------------------------------------------
# the gallery converter

def _onnx_model() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    inits = {
        "w": rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32),
        "s": rng.uniform(0.5, 1.5, (6, 1, 1)).astype(np.float32),
        "t": rng.normal(0, 0.1, (1, 6, 1, 1)).astype(np.float32),
        "split": np.array([2, 4], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "s"], ["m"], name="mul_const"),
        helper.make_node("Sub", ["t", "m"], ["a"], name="sub_const"),
        helper.make_node("LRN", ["a"], ["l"], name="lrn", size=3, alpha=1e-3, beta=0.75),
        helper.make_node("Split", ["l", "split"], ["p", "q"], name="split", axis=1),
        helper.make_node("AveragePool", ["q"], ["avg"], name="pool", kernel_shape=[6, 6],
                         pads=[0, 0, 1, 1]),
        helper.make_node("AveragePool", ["p"], ["avg2"], name="pool2", kernel_shape=[3, 3],
                         pads=[1, 0, 0, 1]),  # asymmetric: symmetric pads, then a crop
        helper.make_node("MaxPool", ["avg2"], ["mx"], name="pool3", kernel_shape=[2, 2],
                         pads=[0, 1, 1, 0]),
        helper.make_node("AveragePool", ["mx"], ["avg3"], name="pool4", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["avg3"], ["g2"], name="gap"),
        helper.make_node("Concat", ["avg", "g2"], ["y"], name="cat", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)])


def test_converter_maps_constant_operands_split_lrn_and_whole_input_pools():
    from tests._onnx_torch import check_against_ort, to_torch

    proto = _onnx_model()
    x = np.random.default_rng(8).normal(size=(1, 3, 5, 5)).astype(np.float32)
    model = to_torch(proto)
    assert check_against_ort(model, proto, x) < 1e-5
    graph = quant.capture(model, torch.from_numpy(x))
    assert [r.attrs["groups"] for r in graph if r.op == "conv2d"] == [1, 6]  # mul + sub: one
    assert graph.count("lrn") == 1 and graph.count("slice") == 6  # split 2, 2 crops of H and W
    assert graph.count("avgpool2d") == 4 and graph.count("maxpool2d") == 1
    _flow(model, torch.from_numpy(x))


def test_converter_refuses_even_lrn_and_a_spatial_constant_naming_the_node():
    from tests._onnx_torch import OnnxToTorchError, to_torch

    proto = _onnx_model()
    proto.graph.node[4].attribute[-1].CopyFrom(helper.make_attribute("size", 4))
    with pytest.raises(OnnxToTorchError, match="LRN 'lrn': even size 4"):
        to_torch(proto)
    proto = _onnx_model()
    proto.graph.initializer[1].CopyFrom(numpy_helper.from_array(
        np.ones((7, 5, 5), np.float32), "s"))
    with pytest.raises(OnnxToTorchError, match=r"Mul 'mul_const': a constant of shape "
                                               r"\(7, 5, 5\) does not broadcast"):
        to_torch(proto)
