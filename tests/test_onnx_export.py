"""hwsim.onnx.export_onnx: integer programs written as QOperator ONNX models that ONNX Runtime
computes bit for bit like hwsim.execute.

How equality is checked: the model is exported with every node's codes as an extra graph output
(named after the node), ONNX Runtime runs it on the program's input codes (CPU, one thread,
graph optimizations on, as deployed), and every tensor is compared with
`execute(program, codes, record=True).tensors`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

import onnx  # noqa: E402

from hwsim import execute  # noqa: E402
from hwsim.ir import IntProgram, Node, TensorQuant  # noqa: E402
from hwsim.kernels import dyadic_multiplier, dyadic_multiplier_pair, ort_output_scale  # noqa: E402
from hwsim.onnx import (OnnxExportError, export_onnx, load_onnx_program, onnx_model,  # noqa: E402
                        ort_saturates_int16_pairs, quantize_input, with_ort_accumulators)
from hwsim.onnx import ort_semantics as ort  # noqa: E402
from tests._programs import random_program  # noqa: E402

F32 = np.float32


# ------------------------------------------------------------------------------------------------
# A SmallNet-like integer program, built by hand

def small_program(seed: int, act=np.uint8, *, bits: int = 8, weights=np.int8, batch: int = 2,
                  narrow_clamps: bool = True, requant: str = "float32",
                  accumulator: str = "wrap") -> IntProgram:
    """input (N, 3, 12, 12) -> conv 3x3 + ReLU -> depthwise 3x3 + ReLU6 -> conv 1x1 ->
    add(., conv1) + ReLU -> maxpool 3x3/2 -> global avgpool -> flatten -> linear (5).

    Activations: `bits`-bit codes stored as `act` (uint8 or int8), per tensor, with zero points
    inside the range, so ReLU and ReLU6 narrow the requantization clamp when `narrow_clamps`
    (7-bit codes narrow every clamp). Weights per channel with bias: int8 symmetric, or uint8
    with zero point 128. float32 requantization constants follow ONNX Runtime's formulas;
    `requant="dyadic"` stores dyadic multipliers instead. Every conv/linear accumulates as
    `accumulator`."""
    rng = np.random.default_rng(seed)
    signed = np.dtype(act) == np.int8
    qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    program = IntProgram(f"smallnet_{np.dtype(act).name}_{bits}bit_{seed}")

    def tq(scale: float) -> TensorQuant:
        zp = int(rng.integers(qmin + 40, qmax - 40))
        return TensorQuant(float(F32(scale)), zp, qmin, qmax)

    def weight_codes(shape) -> np.ndarray:
        w = rng.integers(-127, 128, shape)
        return (w + 128).astype(np.uint8) if weights == np.uint8 else w.astype(np.int8)

    def clamp(out: TensorQuant, activation: str | None) -> list[int]:
        if not narrow_clamps or activation is None:
            return [out.qmin, out.qmax]
        hi = out.qmax
        if activation == "relu6":
            hi = min(out.qmax, out.zero_point + int(np.rint(F32(6.0) / F32(out.scale))))
        return [out.zero_point, hi]

    def rq(real, f32_scale) -> dict:
        if requant == "dyadic":
            m, shift = dyadic_multiplier(np.asarray(real, dtype=np.float64))
            return {"rq_multiplier": np.asarray(m).reshape(-1), "rq_shift": np.asarray(shift).reshape(-1)}
        return {"rq_scale_f32": np.asarray(f32_scale, dtype=F32).reshape(-1)}

    def dense(name, op, src, weight, out_shape, activation, extra_attrs):
        x = program.node(src).out
        k = weight.shape[0]
        s_w = rng.uniform(0.002, 0.02, k).astype(F32)
        fan_in = int(np.prod(weight.shape[1:]))
        out = tq(float(x.scale) * float(s_w.max()) * np.sqrt(fan_in) * 74 / 40)
        w_zp = 128 if weight.dtype == np.uint8 else 0
        arrays = {"weight": weight, "weight_zero_point": np.full(k, w_zp, np.int64),
                  "weight_scale": s_w.astype(np.float64),
                  "bias": rng.integers(-3000, 3000, k).astype(np.int64),
                  **rq(x.scale * s_w.astype(np.float64) / out.scale,
                       ort_output_scale(x.scale, s_w, out.scale))}
        attrs = {"accumulator": {"bits": 32, "mode": accumulator}, "input_zero_point": x.zero_point,
                 "weight_bits": 8,
                 "requant": {"mode": requant, "clamp": clamp(out, activation)}, **extra_attrs}
        program.add(Node(name, op, (src,), out_shape, out, attrs, arrays))

    def conv(name, src, cout, kernel, groups, activation):
        n, cin, h, w = program.node(src).out_shape
        weight = weight_codes((cout, cin // groups, kernel, kernel))
        pad = kernel // 2
        dense(name, "conv2d", src, weight, (n, cout, h, w), activation,
              {"stride": [1, 1], "padding": [pad] * 4, "dilation": [1, 1], "groups": groups})

    program.add(Node("x", "input", (), (batch, 3, 12, 12), tq(0.02)))
    conv("conv1", "x", 8, 3, 1, "relu")
    conv("dw", "conv1", 8, 3, 8, "relu6")
    conv("pw", "dw", 8, 1, 1, None)
    a, b = program.node("pw").out, program.node("conv1").out
    out = tq(max(a.scale, b.scale) * 1.5)
    if requant == "dyadic":
        m_a, m_b, shift = dyadic_multiplier_pair(a.scale / out.scale, b.scale / out.scale)
        arrays = {"rq_multiplier": np.array([m_a, m_b]), "rq_shift": np.array([shift])}
    else:
        arrays = {"rq_scale_f32": ort.add_ratios(a.scale, b.scale, out.scale)}
    program.add(Node("add", "add", ("pw", "conv1"), (batch, 8, 12, 12), out,
                     {"input_zero_points": [a.zero_point, b.zero_point],
                      "requant": {"mode": requant, "clamp": clamp(out, "relu")}}, arrays))
    program.add(Node("pool", "maxpool2d", ("add",), (batch, 8, 6, 6), out,
                     {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1],
                      "dilation": [1, 1], "ceil_mode": False}))
    g = tq(out.scale / 3)
    program.add(Node("gap", "avgpool2d", ("pool",), (batch, 8, 1, 1), g,
                     {"global": True, "kernel": [6, 6], "stride": [1, 1], "padding": [0, 0, 0, 0],
                      "input_zero_point": out.zero_point,
                      "requant": {"mode": requant, "clamp": [g.qmin, g.qmax]}},
                     rq(np.array([out.scale / (36 * g.scale)]),
                        ort.global_avgpool_scale(out.scale, g.scale, 36))))
    program.add(Node("flat", "flatten", ("gap",), (batch, 8), g, {"start_dim": 1}))
    dense("fc", "linear", "flat", weight_codes((5, 8)), (batch, 5), None, {})
    return program


def random_codes(program: IntProgram, n: int, seed: int) -> np.ndarray:
    q = program.input.out
    shape = (n, *program.input.out_shape[1:])
    return np.random.default_rng(seed).integers(q.qmin, q.qmax + 1, shape).astype(q.dtype)


def ort_session(model):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return onnxruntime.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def ort_tensors(model, feed: np.ndarray) -> dict[str, np.ndarray]:
    """Every graph output of `model` (a ModelProto or a path) on the single input `feed`."""
    sess = ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: feed})))


def mismatches(program: IntProgram, codes: np.ndarray) -> tuple[dict[str, int], int, object]:
    """(per node: elements where ORT differs from hwsim, elements compared, hwsim's run)."""
    model = onnx_model(program, intermediate_outputs=True)
    theirs = ort_tensors(model, codes)
    run = execute(program, codes, record=True)
    bad, compared = {}, 0
    for name, value in theirs.items():
        ours = run.tensors[name]
        assert value.dtype == ours.dtype and value.shape == ours.shape, name
        bad[name] = int(np.count_nonzero(value != ours))
        compared += value.size
    return bad, compared, run


# ------------------------------------------------------------------------------------------------
# Synthetic programs

SMALL_CASES = {  # activations, activation bits, weights
    "u8-s8": (np.uint8, 8, np.int8), "s8-s8": (np.int8, 8, np.int8),
    "u8-u8zp128": (np.uint8, 8, np.uint8), "u7-s8": (np.uint8, 7, np.int8),
}


@pytest.mark.parametrize("case", list(SMALL_CASES))
def test_small_program_equals_ort_at_every_node(case):
    act, bits, weights = SMALL_CASES[case]
    program = with_ort_accumulators(small_program(seed=7, act=act, bits=bits, weights=weights))
    codes = random_codes(program, n=4, seed=7)
    bad, compared, run = mismatches(program, codes)
    names = {n.name for n in program.nodes()} - {"x"}  # the graph input itself is not an output
    assert set(bad) == names
    print(f"\nsmallnet {case}: {compared} outputs compared over {len(bad)} nodes, "
          f"{sum(bad.values())} mismatches; {run.total_overflows} int16-pair overflows reproduced")
    assert bad == dict.fromkeys(bad, 0)
    if case == "u8-s8" and ort_saturates_int16_pairs():
        assert run.total_overflows > 0  # pairs really saturated, and ORT agreed


def test_narrow_clamps_become_clips_that_change_the_codes():
    narrow = with_ort_accumulators(small_program(seed=7))
    wide = with_ort_accumulators(small_program(seed=7, narrow_clamps=False))
    model = onnx_model(narrow)
    clips = [n.output[0] for n in model.graph.node if n.op_type == "Clip"]
    assert sorted(clips) == ["add", "conv1", "dw"]  # the ReLU / ReLU6 nodes, nothing else
    assert not [n for n in onnx_model(wide).graph.node if n.op_type == "Clip"]
    codes = random_codes(narrow, n=4, seed=7)
    ours = execute(narrow, codes, record=True)
    theirs = ort_tensors(onnx_model(narrow, intermediate_outputs=True), codes)
    unclamped = execute(wide, codes, record=True)
    for name in clips:
        lo, hi = narrow.node(name).attrs["requant"]["clamp"]
        clipped = int(np.count_nonzero(unclamped.tensors[name] != ours.tensors[name]))
        assert clipped > 0, name  # the clamp bites...
        assert theirs[name].min() >= lo and theirs[name].max() <= hi
        assert np.array_equal(theirs[name], ours.tensors[name])  # ...and the Clip is exact


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), act=st.sampled_from([np.uint8, np.int8]),
       bits=st.sampled_from([8, 7]), batch=st.integers(1, 5), narrow=st.booleans())
def test_random_small_programs_equal_ort(seed, act, bits, batch, narrow):
    """Any weights, scales, zero points, code type and width, clamps and batch size (the
    exported batch dimension is symbolic; the program was built for batch 2)."""
    program = with_ort_accumulators(small_program(seed, act, bits=bits, narrow_clamps=narrow))
    bad, _, _ = mismatches(program, random_codes(program, n=batch, seed=seed))
    assert bad == dict.fromkeys(bad, 0)


def test_maxpool_with_ceil_mode():
    program = with_ort_accumulators(small_program(seed=9))
    pool = program.node("pool")  # 12x12 -> 6x6 also with kernel 3, stride 2, no padding, ceil
    ceil = dataclasses.replace(pool, attrs={**pool.attrs, "padding": [0, 0, 0, 0], "ceil_mode": True})
    program = _replaced(program, ceil)
    bad, compared, _ = mismatches(program, random_codes(program, n=2, seed=9))
    assert compared > 0 and bad == dict.fromkeys(bad, 0)


def test_weight_scales_are_found_when_the_program_has_none():
    program = with_ort_accumulators(small_program(seed=3))
    stripped = IntProgram(program.name)
    for node in program.nodes():
        arrays = {k: v for k, v in node.arrays.items() if k != "weight_scale"}
        stripped.add(dataclasses.replace(node, arrays=arrays))
    model = onnx_model(stripped, intermediate_outputs=True)
    for node in stripped.nodes():
        if node.op in ("conv2d", "linear"):
            s_w = onnx.numpy_helper.to_array(
                next(t for t in model.graph.initializer if t.name == f"{node.name}.weight_scale"))
            s_x = program.node(node.inputs[0]).out.scale
            got = ort_output_scale(s_x, s_w, node.out.scale)  # ORT's formula on what was written
            assert got.view(np.int32).tolist() == node.arrays["rq_scale_f32"].view(np.int32).tolist()
    codes = random_codes(stripped, n=2, seed=3)
    theirs, ours = ort_tensors(model, codes), execute(stripped, codes, record=True)
    assert all(np.array_equal(theirs[k], ours.tensors[k]) for k in theirs)


@pytest.mark.parametrize("bits", [8, 7])
def test_float_input_and_output_variant(bits):
    """Float in: ORT's QuantizeLinear (then a Clip for 7-bit codes); float out: ORT's
    DequantizeLinear of the output codes."""
    program = with_ort_accumulators(small_program(seed=5, bits=bits))
    x = np.random.default_rng(5).normal(0.0, 1.5, size=(3, 3, 12, 12)).astype(F32)
    model = onnx_model(program, float_input=True, float_output=True, intermediate_outputs=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    theirs = ort_tensors(model, x)
    codes = quantize_input(program, x)  # ORT's QuantizeLinear, in numpy
    assert codes.min() == program.input.out.qmin and codes.max() == program.input.out.qmax
    assert np.array_equal(theirs["x"], codes)
    run = execute(program, codes)
    out = program.output
    assert np.array_equal(theirs["fc"], run.output)
    deq = (run.output.astype(F32) - F32(out.out.zero_point)) * F32(out.out.scale)
    assert np.array_equal(theirs["fc.float"], deq)


@pytest.mark.parametrize("act", [np.uint8, np.int8], ids=["u8", "s8"])
def test_round_trip_through_load_onnx_program(tmp_path, act):
    program = with_ort_accumulators(small_program(seed=11, act=act, narrow_clamps=False))
    path = export_onnx(program, tmp_path / "small.onnx", float_input=True, float_output=True)
    back = load_onnx_program(path)
    def same(p):  # the batch is symbolic in the model: the import records 1
        return [(n.name, n.op, n.out, n.out_shape[1:]) for n in p.nodes()]
    assert same(back) == same(program)
    for a, b in zip(program.nodes(), back.nodes()):
        if a.op in ("conv2d", "linear"):
            assert a.attrs["accumulator"] == b.attrs["accumulator"], a.name
        for key in ("rq_scale_f32", "weight", "bias"):
            if key in a.arrays:
                assert np.array_equal(a.arrays[key], b.arrays[key]), (a.name, key)
    codes = random_codes(program, n=3, seed=11)
    ours, back_run = execute(program, codes, record=True), execute(back, codes, record=True)
    for name in ours.tensors:
        assert np.array_equal(ours.tensors[name], back_run.tensors[name]), name


# ------------------------------------------------------------------------------------------------
# What cannot be exported: one error naming every node

def test_dyadic_program_is_refused_naming_every_requantizing_node():
    program = small_program(seed=1, requant="dyadic")
    with pytest.raises(OnnxExportError) as err:
        onnx_model(program)
    msg = str(err.value)
    for name, op in (("conv1", "conv2d"), ("dw", "conv2d"), ("pw", "conv2d"), ("add", "add"),
                     ("gap", "avgpool2d"), ("fc", "linear")):
        assert f"node {name!r} ({op}): requantization mode 'dyadic'" in msg
    assert "requant='float32'" in msg
    assert "'pool'" not in msg and "'flat'" not in msg


def test_unsupported_ops_are_named():
    program = random_program(seed=2, mode="float32")
    with pytest.raises(OnnxExportError) as err:
        onnx_model(program)
    msg = str(err.value)
    assert "'cat'" not in msg  # concat is QLinearConcat, whose tables give these codes
    assert "node 'clamp' (clamp): op 'clamp' has no bit-exact ONNX Runtime" in msg
    assert "exportable ops: input, conv2d, linear" in msg


def test_accumulators_that_differ_from_ort_are_refused():
    """A CPU that saturates u8 x s8 pairs (int16_pairs=True): exact accumulators are refused
    for the GEMM-based convs and the linear layer; int16 pairs are refused for the depthwise
    conv, which ORT computes exactly. with_ort_accumulators gives what is accepted."""
    wrap = small_program(seed=1, accumulator="wrap")
    pairs = small_program(seed=1, accumulator="int16_pairs")
    with pytest.raises(OnnxExportError) as err:
        onnx_model(wrap, int16_pairs=True)
    msg = str(err.value)
    for name in ("conv1", "pw", "fc"):
        assert f"node {name!r}" in msg
    assert "'dw'" not in msg and "with_ort_accumulators" in msg
    with pytest.raises(OnnxExportError, match=r"node 'dw' \(conv2d\): accumulator .*'int16_pairs'"):
        onnx_model(pairs, int16_pairs=True)
    fixed = with_ort_accumulators(pairs, int16_pairs=True)
    modes = {n.name: n.attrs["accumulator"]["mode"] for n in fixed.nodes() if "accumulator" in n.attrs}
    assert modes == {"conv1": "int16_pairs", "dw": "wrap", "pw": "int16_pairs", "fc": "int16_pairs"}
    onnx_model(fixed, int16_pairs=True)
    onnx_model(wrap, int16_pairs=False)  # a CPU with exact accumulation (VNNI) takes "wrap"
    narrow = dataclasses.replace(fixed.node("fc"), attrs={**fixed.node("fc").attrs,
                                                         "accumulator": {"bits": 24, "mode": "wrap"}})
    with pytest.raises(OnnxExportError, match=r"'fc' \(linear\): accumulator \{'bits': 24"):
        onnx_model(_replaced(fixed, narrow), int16_pairs=False)


def test_exact_accumulators_are_accepted_where_no_pair_can_saturate():
    """7-bit activations: 2 * 127 * 127 < 2^15, so "wrap" and "int16_pairs" give the same sums
    and a program lowered with exact accumulators exports as it is (and equals ORT)."""
    program = small_program(seed=4, bits=7, accumulator="wrap")
    assert onnx_model(program, int16_pairs=True)  # no error
    if ort_saturates_int16_pairs():
        bad, _, _ = mismatches(program, random_codes(program, n=3, seed=4))
        assert bad == dict.fromkeys(bad, 0)
    full = small_program(seed=4, bits=8, accumulator="wrap")
    with pytest.raises(OnnxExportError, match="'conv1'"):
        onnx_model(full, int16_pairs=True)


def test_nodes_lowered_for_a_pytorch_engine_are_refused():
    program = with_ort_accumulators(small_program(seed=1))
    conv = program.node("pw")
    torch_node = dataclasses.replace(conv, attrs={**conv.attrs, "engine": "fbgemm",
                                                  "engine_int16_pairs": True})
    with pytest.raises(OnnxExportError, match=r"'pw' \(conv2d\): computed as PyTorch's fbgemm"):
        onnx_model(_replaced(program, torch_node))


def _replaced(program: IntProgram, new: Node) -> IntProgram:
    out = IntProgram(program.name)
    for node in program.nodes():
        out.add(new if node.name == new.name else node)
    return out


def test_code_types_ort_has_no_kernel_for_are_refused():
    s8_u8 = with_ort_accumulators(small_program(seed=1, act=np.int8, weights=np.uint8))
    with pytest.raises(OnnxExportError) as err:
        onnx_model(s8_u8)
    for name, op in (("conv1", "QLinearConv"), ("dw", "QLinearConv"), ("fc", "QGemm")):
        assert f"node {name!r}" in str(err.value) and f"{op} on this CPU takes" in str(err.value)
    assert "got int8 x uint8" in str(err.value)
    program = with_ort_accumulators(small_program(seed=1))
    fc = program.node("fc")
    signed_out = dataclasses.replace(fc, out=TensorQuant(fc.out.scale, 0, -128, 127),
                                     attrs={**fc.attrs, "requant": {"mode": "float32", "clamp": [-128, 127]}})
    with pytest.raises(OnnxExportError, match=r"'fc' \(linear\): QGemm writes codes of its "
                                              r"input's type uint8; the node's output is int8"):
        onnx_model(_replaced(program, signed_out))


def test_other_unexportable_nodes_are_named():
    program = with_ort_accumulators(small_program(seed=1))
    gap = program.node("gap")
    local = dataclasses.replace(gap, attrs={**gap.attrs, "global": False})
    with pytest.raises(OnnxExportError, match=r"'gap' \(avgpool2d\): only global average pooling"):
        onnx_model(_replaced(program, local))
    add = program.node("add")
    off = dataclasses.replace(add, arrays={"rq_scale_f32": add.arrays["rq_scale_f32"] * F32(1.001)})
    with pytest.raises(OnnxExportError, match=r"'add' \(add\): rq_scale_f32 .* QLinearAdd's ratios"):
        onnx_model(_replaced(program, off))
    conv = program.node("pw")
    zp = conv.attrs["input_zero_point"]
    wrong_zp = dataclasses.replace(conv, attrs={**conv.attrs, "input_zero_point": zp + 1})
    with pytest.raises(OnnxExportError, match=r"'pw' \(conv2d\): input zero point"):
        onnx_model(_replaced(program, wrong_zp))


def test_a_requantization_scale_no_weight_scale_reaches_is_refused():
    """With s_x / s_y = 3, s_w -> f32(f32(s_x s_w) / s_y) is monotone and skips float32 values:
    a skipped value between two reached ones is reached by no weight scale at all."""
    program = with_ort_accumulators(small_program(seed=1))
    fc = program.node("fc")
    s_x = F32(program.node("flat").out.scale)
    s_y = F32(s_x / F32(3.0))
    s_w = (F32(0.004).view(np.int32) + np.arange(-100, 100, dtype=np.int32)).view(F32)
    reached = ort_output_scale(s_x, s_w, s_y).view(np.int32)
    target = next(v for v in range(int(reached[10]), int(reached[-10])) if v not in set(reached.tolist()))
    k = fc.arrays["weight"].shape[0]
    node = dataclasses.replace(
        fc, out=dataclasses.replace(fc.out, scale=float(s_y)),
        arrays={**{a: v for a, v in fc.arrays.items() if a != "weight_scale"},
                "rq_scale_f32": np.full(k, target, dtype=np.int32).view(F32)})
    with pytest.raises(OnnxExportError, match=r"'fc' \(linear\): no float32 weight scales"):
        onnx_model(_replaced(program, node))
    ok = dataclasses.replace(node, arrays={**node.arrays, "rq_scale_f32": np.full(k, reached[50]).view(F32)})
    onnx_model(_replaced(program, ok))  # a reached value is accepted


# ------------------------------------------------------------------------------------------------
# MobileNetV2 with ImageNet weights, quantized and lowered by hwsim

@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    pytest.importorskip("torch")
    from hwsim.flows import quantize_zoo_model

    flow = quantize_zoo_model("mobilenet_v2", requant="float32", accumulator_mode="int16_pairs")
    images = flow.eval_images[::5]  # 10 images: every source image, two crops each
    return flow, with_ort_accumulators(flow.program), flow.qm.quantize_input(images), images


def test_mobilenet_export_equals_hwsim_bit_for_bit(mobilenet, tmp_path):
    flow, program, codes, _ = mobilenet
    path = export_onnx(program, tmp_path / "mobilenet_v2.int8.onnx", intermediate_outputs=True)
    theirs = ort_tensors(path, codes)
    run = execute(program, codes, record=True)
    bad = {name: int(np.count_nonzero(v != run.tensors[name])) for name, v in theirs.items()}
    compared = sum(v.size for v in theirs.values())
    out = theirs[program.output_name]
    ops = [n.op for n in program.nodes()]
    print(f"\nMobileNetV2 (hwsim int8, float32 requant) in ORT, {codes.shape[0]} images: "
          f"{len(theirs)} tensors, {compared} output codes compared, {sum(bad.values())} "
          f"mismatches; final output {out.size} codes, "
          f"{int(np.count_nonzero(out != run.output))} mismatches; "
          f"{run.total_overflows} int16-pair overflows reproduced")
    assert (ops.count("conv2d"), ops.count("add"), ops.count("linear")) == (52, 10, 1)
    assert len(theirs) == len(program) - 1  # every node but the graph input
    assert bad == dict.fromkeys(bad, 0)
    assert out.shape == (codes.shape[0], 1000)
    if ort_saturates_int16_pairs():
        assert run.total_overflows > 0


def test_mobilenet_lowered_for_ort_is_the_same_model(mobilenet):
    """lower(qm, requant="float32", engine="ort") builds ORT's accumulators itself: its export
    is byte for byte the export of with_ort_accumulators(lower(..., "int16_pairs"))."""
    from hwsim.lower import lower

    flow, program, _, _ = mobilenet
    for_ort = lower(flow.qm, requant="float32", engine="ort", name=program.name)
    modes = [(n.name, n.attrs.get("accumulator")) for n in for_ort.nodes()]
    assert modes == [(n.name, n.attrs.get("accumulator")) for n in program.nodes()]
    assert onnx_model(for_ort).SerializeToString() == onnx_model(program).SerializeToString()


def test_mobilenet_lowered_with_pairs_everywhere_needs_ort_accumulators(mobilenet):
    """lower(accumulator_mode="int16_pairs") also saturates the depthwise convs, which ORT
    computes exactly: the export refuses it and with_ort_accumulators fixes exactly those."""
    if not ort_saturates_int16_pairs():
        pytest.skip("this CPU's ONNX Runtime does not saturate int16 pairs")
    flow, program, codes, _ = mobilenet
    with pytest.raises(OnnxExportError) as err:
        onnx_model(flow.program)
    depthwise = [n.name for n in flow.program.nodes() if n.op == "conv2d" and n.attrs["groups"] > 1]
    assert len(depthwise) == 17
    assert all(f"node {name!r} (conv2d): accumulator" in str(err.value) for name in depthwise)
    changed = [a.name for a, b in zip(flow.program.nodes(), program.nodes())
               if a.attrs.get("accumulator") != b.attrs.get("accumulator")]
    assert changed == depthwise


def test_mobilenet_round_trip(mobilenet, tmp_path):
    flow, program, codes, images = mobilenet
    path = export_onnx(program, tmp_path / "rt.onnx", float_input=True, float_output=True)
    back = load_onnx_program(path)
    assert len(back) == len(program)
    few = codes[:2]
    assert np.array_equal(execute(back, few).output, execute(program, few).output)
    ort_out = ort_tensors(path, images[:2].numpy())[f"{program.output_name}.float"]
    out = program.output.out
    deq = (execute(program, quantize_input(program, images[:2].numpy())).output.astype(F32)
           - F32(out.zero_point)) * F32(out.scale)
    assert np.array_equal(ort_out, deq)
