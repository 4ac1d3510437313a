"""A detection head's box decoding (YOLOv8's: DFL softmax over a non-last axis and a fixed 1x1
conv, anchor grids added / subtracted, a per-position stride product) through quantize -> lower
-> execute -> verify: full-tensor constants as ``constant`` records, ``sub`` of two tensors, the
integer ``sub`` kernel against its int64 reference, and the gallery converter's mappings."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import quant
from hwsim.errors import ProgramError
from hwsim.executor import execute
from hwsim.kernels import dyadic_multiplier_pair
from hwsim.kernels.requant import add_requantize_dyadic
from hwsim.kernels.sub import sub_requantize_dyadic, sub_requantize_dyadic_reference
from hwsim.lower import lower
from hwsim.verify import verify
from hwsim.workloads import uncosted_ops
from quant.errors import QuantError, UnsupportedOpError
from quant.execute import float_params, run_graph

H, W, BINS, CLASSES = 3, 4, 4, 2
L = H * W


def _anchors() -> np.ndarray:
    """(1, 2, L) grid-cell centres (x, y), as YOLOv8 exports them."""
    ys, xs = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    return np.stack([xs.reshape(-1), ys.reshape(-1)])[None].astype(np.float32)


def _strides() -> np.ndarray:
    return np.where(np.arange(L) < 8, 8.0, 16.0).astype(np.float32)[None]  # (1, L)


class _Head(nn.Module):
    """conv -> (box distributions, class logits) -> decoded boxes (centre, size) and scores."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv = nn.Conv2d(3, 4 * BINS + CLASSES, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
        self.dfl = nn.Conv2d(BINS, 1, 1, bias=False)
        with torch.no_grad():
            self.dfl.weight.copy_(torch.arange(BINS, dtype=torch.float32).reshape(1, BINS, 1, 1))
        self.register_buffer("anchors", torch.from_numpy(_anchors()))
        self.register_buffer("strides", torch.from_numpy(_strides()))

    def forward(self, x):
        y = self.conv(x).reshape(-1, 4 * BINS + CLASSES, L)
        box, cls = y.split((4 * BINS, CLASSES), 1)
        d = box.reshape(-1, 4, BINS, L).transpose(2, 1).softmax(1)    # over the bins: dim 1
        d = self.dfl(d).reshape(-1, 4, L)
        lt, rb = d[:, :2], d[:, 2:]
        x1y1 = self.anchors - lt                                     # constant - tensor
        x2y2 = self.anchors + rb                                     # constant + tensor
        centre = (x1y1 + x2y2) / 2                                   # scalar on (N, 2, L)
        size = x2y2 - x1y1                                           # tensor - tensor
        boxes = torch.cat((centre, size), 1) * self.strides         # per-position constant
        return torch.cat((boxes - 1.5, cls.sigmoid()), 1)            # scalar on (N, C, L)


def _x(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, H, W))
                            .astype(np.float32))


def _flow(model: nn.Module, calib: torch.Tensor, x: torch.Tensor):
    """quantize, lower (dyadic), verify within 1 LSB on every layer, fast == reference."""
    qm = quant.quantize(model.eval(), quant.QuantConfig(), [calib])
    program = lower(qm, requant="dyadic")
    summary = verify(qm, program, x).summary
    assert summary["max_lsb_diff_any_layer"] <= 1, summary
    codes = qm.quantize_input(x)
    np.testing.assert_array_equal(execute(program, codes, backend="fast").output,
                                  execute(program, codes, backend="reference").output)
    return qm, program, summary


def test_head_is_captured_with_constant_records_and_sub():
    model, x = _Head().eval(), _x(2, 0)
    graph = quant.capture(model, x)
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(run_graph(graph, x, float_params(graph))[graph.output_name],
                               want, rtol=1e-5, atol=1e-5)
    consts = [r for r in graph if r.op == "constant"]
    # anchors (read twice: one record), 1/2, the strides, -1.5: broadcast to the tensors' shapes
    assert len(consts) == 4
    assert all(r.inputs == (graph.input_name,) and r.weight.shape == (1, *r.out_shape[1:])
               for r in consts)
    assert graph.count("sub") == 2  # anchors - lt, x2y2 - x1y1
    (softmax,) = [r for r in graph if r.op == "softmax"]
    assert softmax.attrs["dim"] == 1
    by_name = {r.name: r for r in graph}
    (strides,) = [r for r in consts if any(by_name[c].op == "mul" and r.name in by_name[c].inputs
                                           for c in graph.consumers(r.name))
                  and r.weight.max() == 16.0]
    np.testing.assert_array_equal(strides.weight, np.broadcast_to(_strides(), (1, 4, L)))


def test_head_runs_bit_accurately_on_another_batch_size():
    model = _Head()
    qm, program, summary = _flow(model, _x(2, 1), _x(3, 2))  # calibrated on 2, run on 3
    assert summary["output_sqnr_db_int_vs_float"] > 15
    # the constant nodes hold the fake-quant model's codes of the constants
    for node in program.nodes():
        if node.op == "constant":
            p = qm.act_params(node.name)
            np.testing.assert_array_equal(node.arrays["codes"],
                                          p.quantize(qm.graph[node.name].weight))
    costs = uncosted_ops(program)
    assert "constant" in costs and "sub" in costs and all(costs.values())


def test_sub_has_no_float32_lowering_and_says_which_layer():
    qm = quant.quantize(_Head().eval(), quant.QuantConfig(), [_x(1, 3)])
    with pytest.raises(ProgramError, match=r"layer '.*sub.*'.*only with requant='dyadic'") as e:
        lower(qm, requant="float32")
    assert "\n" not in str(e.value)


class _Bad(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.register_buffer("c", torch.full((1, 4, L), 2.0))
        self.register_buffer("batchwise", torch.ones(2, 4, L))

    def forward(self, x):
        return self.fn(self, x)


@pytest.mark.parametrize("fn, match", [
    (lambda m, x: m.c / x, r"fx node 'div'.*a constant divided by a tensor"),
    (lambda m, x: x + m.batchwise, r"fx node 'add'.*constant of shape \(2, 4, 12\).*batch"),
    (lambda m, x: x / (x + 1.0), r"fx node 'truediv'.*div of two tensors"),
    (lambda m, x: torch.sub(m.c, x, alpha=2), r"fx node 'sub'.*alpha 2"),
    (lambda m, x: x - x[:, :1], r"fx node 'sub'.*sub with broadcasting"),
])
def test_forms_still_refused_name_the_node(fn, match):
    with pytest.raises(UnsupportedOpError, match=match) as err:
        quant.capture(_Bad(fn), torch.randn(1, 4, L))
    assert isinstance(err.value, QuantError) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# the sub kernel

@st.composite
def _sub_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    bits = draw(st.sampled_from([8, 16]))
    lo, hi = (0, (1 << bits) - 1) if draw(st.booleans()) else (-(1 << (bits - 1)),
                                                                (1 << (bits - 1)) - 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    a, b = (rng.integers(lo, hi + 1, size=shape) for _ in range(2))
    zps = [int(rng.integers(lo, hi + 1)) for _ in range(3)]
    ratios = [draw(st.floats(2.0**-12, 4.0)) for _ in range(2)]
    return a, b, zps, ratios, lo, hi


@settings(max_examples=60, deadline=None)
@given(_sub_case())
def test_sub_kernel_equals_its_int64_reference_and_an_add_of_the_negation(case):
    a, b, (za, zb, zy), (ra, rb), lo, hi = case
    ma, mb, shift = dyadic_multiplier_pair(ra, rb)  # ratios within 2^14: one common shift
    fast = sub_requantize_dyadic(a, za, ma, b, zb, mb, shift, zy, lo, hi)
    ref = sub_requantize_dyadic_reference(a, za, ma, b, zb, mb, shift, zy, lo, hi)
    np.testing.assert_array_equal(fast, ref)
    assert fast.dtype == ref.dtype and fast.shape == a.shape
    # (b - zb) negated is (2 zb - b) - zb: the residual add's kernel on it gives the same codes
    neg = 2 * zb - b
    np.testing.assert_array_equal(fast, add_requantize_dyadic(a, za, ma, neg, zb, mb, shift, zy,
                                                              lo, hi))


# ------------------------------------------------------------------------------------------------
# the gallery converter: YOLOv8's exported head

def _onnx_head():
    """The head's decoding as YOLOv8 exports it (node names from its ONNX file)."""
    rng = np.random.default_rng(6)
    inits = {
        "w": rng.normal(size=(4 * BINS + CLASSES, 3, 1, 1)).astype(np.float32),
        "shape3": np.array([1, 4 * BINS + CLASSES, -1], np.int64),
        "split": np.array([4 * BINS, CLASSES], np.int64),
        "shape4": np.array([1, 4, BINS, L], np.int64),
        "dfl_w": np.arange(BINS, dtype=np.float32).reshape(1, BINS, 1, 1),
        "shape_d": np.array([1, 4, L], np.int64),
        "s0": np.array([0], np.int64), "s2": np.array([2], np.int64),
        "s4": np.array([4], np.int64), "one": np.array([1], np.int64),
        "anchors": _anchors(), "two": np.array(2.0, np.float32), "strides": _strides(),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w"], ["y"], name="conv"),
        n("Reshape", ["y", "shape3"], ["y3"], name="/model.22/Reshape"),
        n("Split", ["y3", "split"], ["box", "cls"], name="/model.22/Split_1", axis=1),
        n("Reshape", ["box", "shape4"], ["b4"], name="/model.22/dfl/Reshape"),
        n("Transpose", ["b4"], ["bt"], name="/model.22/dfl/Transpose", perm=[0, 2, 1, 3]),
        n("Softmax", ["bt"], ["sm"], name="/model.22/dfl/Softmax", axis=1),
        n("Conv", ["sm", "dfl_w"], ["dc"], name="/model.22/dfl/conv/Conv"),
        n("Reshape", ["dc", "shape_d"], ["d"], name="/model.22/dfl/Reshape_1"),
        n("Slice", ["d", "s0", "s2", "one"], ["lt"], name="/model.22/Slice"),
        n("Slice", ["d", "s2", "s4", "one"], ["rb"], name="/model.22/Slice_1"),
        n("Add", ["anchors", "rb"], ["x2y2"], name="/model.22/Add_10"),
        n("Sub", ["anchors", "lt"], ["x1y1"], name="/model.22/Sub"),
        n("Add", ["x1y1", "x2y2"], ["s"], name="/model.22/Add_11"),
        n("Div", ["s", "two"], ["c"], name="/model.22/Div_1"),
        n("Sub", ["x2y2", "x1y1"], ["wh"], name="/model.22/Sub_1"),
        n("Concat", ["c", "wh"], ["bx"], name="/model.22/Concat_24", axis=1),
        n("Mul", ["bx", "strides"], ["bs"], name="/model.22/Mul_5"),
        n("Sigmoid", ["cls"], ["sc"], name="/model.22/Sigmoid"),
        n("Concat", ["bs", "sc"], ["out"], name="/model.22/Concat_25", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    import onnx

    proto = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)])
    return onnx.shape_inference.infer_shapes(proto)


def test_converter_maps_the_exported_head():
    from tests._onnx_torch import check_against_ort, to_torch

    proto = _onnx_head()
    x = _x(1, 7).numpy()
    model = to_torch(proto)
    assert check_against_ort(model, proto, x) < 1e-5
    graph = quant.capture(model, torch.from_numpy(x))
    assert graph.count("constant") == 3 and graph.count("sub") == 2  # anchors, 1/2, strides
    _flow(model, torch.from_numpy(x), torch.from_numpy(x))


def test_converter_refuses_a_constant_that_does_not_broadcast_naming_the_node():
    from tests._onnx_torch import OnnxToTorchError, to_torch

    proto = _onnx_head()
    for t in proto.graph.initializer:
        if t.name == "strides":
            t.CopyFrom(numpy_helper.from_array(np.ones((1, L + 1), np.float32), "strides"))
    with pytest.raises(OnnxToTorchError, match=r"Mul '/model.22/Mul_5': a constant of shape "
                                               r"\(1, 13\) does not broadcast"):
        to_torch(proto)
