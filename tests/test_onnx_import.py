"""hwsim.onnx: int8 ONNX models (QOperator and QDQ) imported into integer programs that equal
ONNX Runtime bit for bit; the "int16_pairs" accumulator mode; float ONNX models as cost-model
workloads; the importer's errors.

How equality with ONNX Runtime is checked: ORT runs the model (CPU, graph optimizations on, as
deployed) with every tensor the program computes added as a graph output. Each program node is
run on ORT's own inputs (isolation: the node's semantics), then the whole program from the
input codes (the chain: composition, shapes, batch). The chain runs through `hwsim.execute`,
and also node by node with ORT's QLinearAdd order for the adds (`hwsim.onnx.qlinear_add`):
hwsim's float32 `add` rounds before adding the output zero point and sums in another float
order, so it differs from QLinearAdd on ties and on rare rounding boundaries (see
test_qlinear_add_is_ort_on_every_pair_of_codes and test_execute_equals_ort_on_mobilenet).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hwsim import KernelError, ProgramError, execute  # noqa: E402
from hwsim.executor import execute_node  # noqa: E402
from hwsim.ir import IntProgram, Node, TensorQuant, load_program, save_program  # noqa: E402
from hwsim.kernels import (Int16PairsAccumulator, conv2d_int_pairs,  # noqa: E402
                           conv2d_int_pairs_reference, linear_int_pairs, linear_int_pairs_reference)
from hwsim.onnx import (OnnxImportError, load_onnx_program, load_onnx_workload,  # noqa: E402
                        ort_reference_outputs, ort_saturates_int16_pairs, qlinear_add,
                        quantize_input)

F32 = np.float32
ACT_STD = 74.0  # standard deviation of uniform full-range 8-bit codes around their middle


# ------------------------------------------------------------------------------------------------
# Comparing an imported program with ONNX Runtime

@dataclass
class Comparison:
    """Per program node: output elements compared and mismatches, in isolation (the node run on
    ORT's inputs) and along the chain (from the input codes)."""

    compared: dict[str, int] = field(default_factory=dict)
    isolated: dict[str, int] = field(default_factory=dict)
    chain_ort_adds: dict[str, int] = field(default_factory=dict)
    chain_execute: dict[str, int] = field(default_factory=dict)
    executor_add_isolated: dict[str, int] = field(default_factory=dict)
    final_float_mismatches: int = 0
    overflows: dict[str, int] = field(default_factory=dict)  # per node, from `execute`


def _ort_add(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    za, zb = node.attrs["input_zero_points"]
    r = node.arrays["rq_scale_f32"]
    lo, hi = node.attrs["requant"]["clamp"]
    return qlinear_add(a, za, r[0], b, zb, r[1], node.out.zero_point, lo, hi).astype(node.out.dtype)


def _run_with_ort_adds(program: IntProgram, codes: np.ndarray) -> dict[str, np.ndarray]:
    """The program node by node (hwsim's executor), adds in ONNX Runtime's QLinearAdd order."""
    values = {program.input_name: codes}
    for node in program.nodes():
        if node.op == "input":
            continue
        ins = [values[s] for s in node.inputs]
        values[node.name] = _ort_add(node, *ins) if node.op == "add" else execute_node(node, ins)[0]
    return values


def compare_with_ort(program: IntProgram, model, x: np.ndarray) -> Comparison:
    codes = quantize_input(program, x)
    names = [n.name for n in program.nodes()]
    ref = ort_reference_outputs(model, x, names)
    plain = ort_reference_outputs(model, x)  # no extra outputs: the model as deployed
    cmp = Comparison()
    for node in program.nodes():
        want = ref[node.name]
        cmp.compared[node.name] = want.size
        if node.op == "input":
            got = codes
        elif node.op == "add":
            got = _ort_add(node, *(ref[s] for s in node.inputs))
            hw, _ = execute_node(node, [ref[s] for s in node.inputs])
            cmp.executor_add_isolated[node.name] = int(np.count_nonzero(hw != want))
        else:
            got, _ = execute_node(node, [ref[s] for s in node.inputs])
        assert got.dtype == want.dtype and got.shape == want.shape, node.name
        cmp.isolated[node.name] = int(np.count_nonzero(got != want))
    chain = _run_with_ort_adds(program, codes)
    run = execute(program, codes, record=True)
    cmp.overflows = dict(run.overflow_counts)
    for node in program.nodes():
        cmp.chain_ort_adds[node.name] = int(np.count_nonzero(chain[node.name] != ref[node.name]))
        cmp.chain_execute[node.name] = int(np.count_nonzero(run.tensors[node.name] != ref[node.name]))
    out = program.output
    (float_name,) = plain.keys()
    deq = (chain[out.name].astype(F32) - F32(out.out.zero_point)) * F32(out.out.scale)
    cmp.final_float_mismatches = int(np.count_nonzero(deq != plain[float_name]))
    return cmp


def assert_execute_matches(program: IntProgram, cmp: Comparison) -> None:
    """`execute` equals ORT at every node (the whole chain, each node fed by hwsim itself)."""
    bad = {name: n for name, n in cmp.chain_execute.items() if n}
    assert not bad, f"execute differs from ONNX Runtime at {len(bad)} nodes, first: " + (
        next(f"{n.name} ({n.op}): {bad[n.name]} elements" for n in program.nodes() if n.name in bad))


# ------------------------------------------------------------------------------------------------
# Synthetic models: the same small network in QOperator or QDQ form

class _Net:
    """conv 3x3 (per-channel, bias) -> depthwise 3x3 (per tensor) -> maxpool 3x3/2 -> grouped
    dilated conv (per channel) -> 1x1 conv (per tensor, bias) -> add(., maxpool) -> global avg
    pool -> flatten or reshape -> matmul (per column) or gemm (per channel, bias)."""

    def __init__(self, form: str, act, seed: int) -> None:
        self.form, self.act = form, np.dtype(act)
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0
        self.channels = 4  # of the latest activation; the input has 4

    # --- plumbing
    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs) -> str:
        out = self._name(op_type.lower() + "_out")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self._name(op_type + "_"),
                                           domain=domain, **attrs))
        return out

    def act_zp(self):
        return self.act.type(int(self.rng.integers(100, 156)) if self.act == np.uint8
                             else int(self.rng.integers(-20, 20)))

    def qparams(self, scale, zp) -> list[str]:
        return [self.const(F32(scale), "scale"), self.const(zp, "zp")]

    def weights(self, shape, dtype, per_channel: bool, axis: int = 0):
        info = np.iinfo(dtype)
        w = self.rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
        n = shape[axis] if per_channel else 1
        s = self.rng.uniform(0.002, 0.02, size=n).astype(F32)
        zp = np.full(n, 128 if dtype == np.uint8 else 0, dtype=dtype)
        return w, (s if per_channel else s[0]), (zp if per_channel else zp[0])

    def dq(self, t) -> str:
        name, s, zp = t
        return self.op("DequantizeLinear", [name, *self.qparams(s, zp)])

    def q(self, float_name: str, s, zp) -> tuple:
        return self.op("QuantizeLinear", [float_name, *self.qparams(s, zp)]), s, zp

    # --- layers on quantized tensors t = (name, scale, zero point)
    def quantize_input(self, s, zp) -> tuple:
        return self.q("x", s, zp)

    def conv(self, t, k: int, kernel: int, wdtype, per_channel: bool, bias: bool, **attrs):
        name, s_x, zp_x = t
        cin = self.channels
        groups = attrs.get("group", 1)
        w, s_w, zp_w = self.weights((k, cin // groups, kernel, kernel), wdtype, per_channel)
        fan_in = cin // groups * kernel * kernel
        s_y = F32(float(s_x) * float(np.max(s_w)) * np.sqrt(fan_in) * ACT_STD * ACT_STD / 40.0)
        zp_y = self.act_zp()
        b = self.rng.integers(-3000, 3000, size=k).astype(np.int32) if bias else None
        self.channels = k
        if self.form == "qoperator":
            ins = [name, *self.qparams(s_x, zp_x), self.const(w, "w"), self.const(s_w, "w_scale"),
                   self.const(zp_w, "w_zp"), *self.qparams(s_y, zp_y)]
            if bias:
                ins.append(self.const(b, "bias"))
            return self.op("QLinearConv", ins, **attrs), s_y, zp_y
        w_dq = self.op("DequantizeLinear", [self.const(w, "w"), self.const(s_w, "w_scale"),
                                            self.const(zp_w, "w_zp")], axis=0)
        ins = [self.dq(t), w_dq]
        if bias:
            s_b = (F32(s_x) * np.asarray(s_w, dtype=F32)).astype(F32)
            zp_b = np.zeros(s_b.shape, dtype=np.int32)
            ins.append(self.op("DequantizeLinear", [self.const(b, "bias"), self.const(s_b, "b_scale"),
                                                    self.const(zp_b, "b_zp")], axis=0))
        return self.q(self.op("Conv", ins, **attrs), s_y, zp_y)

    def maxpool(self, t, **attrs):
        if self.form == "qoperator":
            return (self.op("MaxPool", [t[0]], **attrs),) + t[1:]
        return self.q(self.op("MaxPool", [self.dq(t)], **attrs), *t[1:])

    def add(self, a, b):
        s_y, zp_y = F32(max(a[1], b[1]) * 1.5), self.act_zp()
        if self.form == "qoperator":
            ins = [a[0], *self.qparams(*a[1:]), b[0], *self.qparams(*b[1:]), *self.qparams(s_y, zp_y)]
            return self.op("QLinearAdd", ins, domain="com.microsoft"), s_y, zp_y
        return self.q(self.op("Add", [self.dq(a), self.dq(b)]), s_y, zp_y)

    def global_avgpool(self, t):
        s_y, zp_y = F32(t[1] / 3.0), self.act_zp()
        if self.form == "qoperator":
            return self.op("QLinearGlobalAveragePool", [t[0], *self.qparams(*t[1:]),
                                                        *self.qparams(s_y, zp_y)],
                           domain="com.microsoft"), s_y, zp_y
        return self.q(self.op("GlobalAveragePool", [self.dq(t)]), s_y, zp_y)

    def flatten(self, t, reshape: bool):
        make = ((lambda x: self.op("Reshape", [x, self.const(np.array([0, -1], np.int64), "shape")]))
                if reshape else (lambda x: self.op("Flatten", [x], axis=1)))
        if self.form == "qoperator":
            return (make(t[0]),) + t[1:]
        return self.q(make(self.dq(t)), *t[1:])

    def dense(self, t, n_out: int, kind: str):
        name, s_x, zp_x = t
        k = self.channels
        per_axis = 0 if kind == "gemm" else 1
        shape = (n_out, k) if kind == "gemm" else (k, n_out)
        w, s_w, zp_w = self.weights(shape, np.int8, per_channel=True, axis=per_axis)
        s_y = F32(float(s_x) * float(np.max(s_w)) * np.sqrt(k) * ACT_STD * ACT_STD / 40.0)
        zp_y = self.act_zp()
        bias = self.rng.integers(-3000, 3000, size=n_out).astype(np.int32)
        if self.form == "qoperator" and kind == "matmul":
            ins = [name, *self.qparams(s_x, zp_x), self.const(w, "w"), self.const(s_w, "w_scale"),
                   self.const(zp_w, "w_zp"), *self.qparams(s_y, zp_y)]
            return self.op("QLinearMatMul", ins), s_y, zp_y
        if self.form == "qoperator":
            ins = [name, *self.qparams(s_x, zp_x), self.const(w, "w"), self.const(s_w, "w_scale"),
                   self.const(zp_w, "w_zp"), self.const(bias, "bias"), *self.qparams(s_y, zp_y)]
            return self.op("QGemm", ins, domain="com.microsoft", transB=1), s_y, zp_y
        w_dq = self.op("DequantizeLinear", [self.const(w, "w"), self.const(s_w, "w_scale"),
                                            self.const(zp_w, "w_zp")], axis=per_axis)
        if kind == "matmul":
            return self.q(self.op("MatMul", [self.dq(t), w_dq]), s_y, zp_y)
        s_b = (F32(s_x) * s_w).astype(F32)
        b_dq = self.op("DequantizeLinear", [self.const(bias, "bias"), self.const(s_b, "b_scale"),
                                            self.const(np.zeros_like(bias), "b_zp")], axis=0)
        return self.q(self.op("Gemm", [self.dq(t), w_dq, b_dq], transB=1), s_y, zp_y)

    def output(self, t) -> bytes:
        out = self.op("DequantizeLinear", [t[0], *self.qparams(*t[1:])])
        graph = helper.make_graph(
            self.nodes, f"synthetic_{self.form}",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 12, 12])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 9
        return model.SerializeToString()


def synthetic_model(form: str, act, dense: str, reshape: bool, seed: int) -> bytes:
    net = _Net(form, act, seed)
    wide = np.uint8 if net.act == np.uint8 else np.int8  # u8 weights need u8 activations in ORT
    x = net.quantize_input(F32(0.02), net.act_zp())
    y1 = net.conv(x, 8, 3, np.int8, True, True, pads=[1, 1, 1, 1])
    y2 = net.conv(y1, 8, 3, np.int8, False, False, pads=[1, 1, 1, 1], group=8)
    y3 = net.maxpool(y2, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y4 = net.conv(y3, 8, 3, np.int8, True, False, pads=[2, 2, 2, 2], dilations=[2, 2], group=2)
    y5 = net.conv(y4, 8, 1, wide, False, True)
    y6 = net.add(y5, y3)
    y7 = net.flatten(net.global_avgpool(y6), reshape)
    return net.output(net.dense(y7, 5, dense))


SYNTHETIC = {  # (form, activations, dense op, reshape instead of flatten)
    "qoperator-u8-matmul-flatten": ("qoperator", np.uint8, "matmul", False),
    "qoperator-s8-gemm-reshape": ("qoperator", np.int8, "gemm", True),
    "qoperator-u8-gemm-reshape": ("qoperator", np.uint8, "gemm", True),
    "qdq-u8-gemm-flatten": ("qdq", np.uint8, "gemm", False),
    "qdq-u8-matmul-reshape": ("qdq", np.uint8, "matmul", True),
}


def _synthetic_input(seed: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2.8, 2.8, size=(n, 4, 12, 12)).astype(F32)


@pytest.mark.parametrize("case", list(SYNTHETIC))
def test_synthetic_models_equal_ort_bit_for_bit(case):
    form, act, dense, reshape = SYNTHETIC[case]
    model = synthetic_model(form, act, dense, reshape, seed=len(case))
    program = load_onnx_program(model)
    ops = sorted({n.op for n in program.nodes()})
    assert ops == ["add", "avgpool2d", "conv2d", "flatten", "input", "linear", "maxpool2d"]
    cmp = compare_with_ort(program, model, _synthetic_input(seed=len(case)))
    n_out = sum(cmp.compared.values())
    print(f"\n{case}: {len(program)} nodes, {n_out} outputs compared, isolated mismatches "
          f"{sum(cmp.isolated.values())}, chain {sum(cmp.chain_ort_adds.values())}")
    assert cmp.isolated == dict.fromkeys(cmp.isolated, 0)
    assert cmp.chain_ort_adds == dict.fromkeys(cmp.chain_ort_adds, 0)
    assert cmp.final_float_mismatches == 0
    saturated = 0
    for node in program.nodes():  # the node's ONNX name is kept; pairs where ORT saturates
        if node.op in ("conv2d", "linear"):
            assert node.source and node.source != node.name
            pairs = (act == np.uint8 and node.arrays["weight"].dtype == np.int8
                     and node.attrs.get("groups", 1) != node.arrays["weight"].shape[0]
                     and ort_saturates_int16_pairs())
            assert node.attrs["accumulator"] == {"bits": 32, "mode": "int16_pairs" if pairs else "wrap"}
            saturated += cmp.overflows[node.name] if pairs else 0
    if act == np.uint8 and ort_saturates_int16_pairs():
        assert saturated > 0  # the pair saturation really happened, and was reproduced
    assert_execute_matches(program, cmp)


# ------------------------------------------------------------------------------------------------
# MobileNetV2 (real ImageNet weights) exported, quantized by ONNX Runtime, imported

class _CalibrationImages:
    """onnxruntime.quantization CalibrationDataReader over the zoo's calibration images."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches = iter([{"input": images[i : i + 1]} for i in range(len(images))])

    def get_next(self):
        return next(self._batches, None)


@pytest.fixture(scope="module")
def mobilenet_paths(tmp_path_factory) -> dict:
    """Float ONNX export and its static int8 quantizations (per-channel s8 weights, u8
    activations), cached for the module."""
    torch = pytest.importorskip("torch")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from hwsim.zoo import mobilenet_v2, sample_images

    folder = tmp_path_factory.mktemp("mobilenet_onnx")
    paths = {"float": folder / "mobilenet_v2.onnx"}
    calib = sample_images("calib")
    with torch.no_grad(), _quiet():
        torch.onnx.export(mobilenet_v2(), calib[:1], str(paths["float"]), opset_version=17,
                          dynamo=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    for form, fmt, act in (("qoperator", QuantFormat.QOperator, QuantType.QUInt8),
                           ("qdq", QuantFormat.QDQ, QuantType.QUInt8),
                           ("qoperator-s8", QuantFormat.QOperator, QuantType.QInt8)):
        paths[form] = folder / f"mobilenet_v2.{form}.onnx"
        with _quiet():
            quantize_static(str(paths["float"]), str(paths[form]), _CalibrationImages(calib.numpy()),
                            quant_format=fmt, per_channel=True, activation_type=act,
                            weight_type=QuantType.QInt8)
    return paths


class _quiet:
    """Silence the exporter's and the quantizer's warnings and log lines."""

    def __enter__(self):
        import logging
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc):
        import logging

        logging.getLogger().setLevel(self._level)
        self._warnings.__exit__(*exc)


@pytest.fixture(scope="module")
def mobilenet_eval_images() -> np.ndarray:
    from hwsim.zoo import sample_images

    return sample_images("eval").numpy()[::5]  # 10 images: every source, two crops each


@pytest.fixture(scope="module")
def mobilenet(mobilenet_paths, mobilenet_eval_images):
    """Per form: (program, Comparison with ORT on the eval images), computed once."""
    @functools.cache
    def get(form: str):
        program = load_onnx_program(mobilenet_paths[form])
        images = mobilenet_eval_images[::2] if form == "qoperator-s8" else mobilenet_eval_images
        return program, compare_with_ort(program, mobilenet_paths[form], images)
    return get


def _op_totals(program, cmp: Comparison, counts: dict) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for node in program.nodes():
        tot = out.setdefault(node.op, [0, 0])
        tot[0] += cmp.compared[node.name]
        tot[1] += counts[node.name]
    return {op: tuple(v) for op, v in out.items()}


@pytest.mark.parametrize("form", ["qoperator", "qdq", "qoperator-s8"])
def test_mobilenet_every_conv_gemm_and_the_output_equal_ort(mobilenet, form):
    program, cmp = mobilenet(form)
    ops = [n.op for n in program.nodes()]
    assert (ops.count("conv2d"), ops.count("linear"), ops.count("add"), ops.count("avgpool2d")) == (52, 1, 10, 1)
    iso, chain = _op_totals(program, cmp, cmp.isolated), _op_totals(program, cmp, cmp.chain_ort_adds)
    print(f"\nMobileNetV2 {form}, {cmp.compared[program.input_name] // (3 * 224 * 224)} images: "
          "op: outputs compared, mismatches isolated / along the chain")
    for op in iso:
        print(f"  {op:10s} {iso[op][0]:10d}  {iso[op][1]} / {chain[op][1]}")
    print(f"  final float output: {cmp.final_float_mismatches} mismatches; int16-pair overflows "
          f"reproduced: {sum(cmp.overflows.values())}")
    assert cmp.isolated == dict.fromkeys(cmp.isolated, 0)
    assert cmp.chain_ort_adds == dict.fromkeys(cmp.chain_ort_adds, 0)
    assert cmp.final_float_mismatches == 0
    modes = {(n.op, n.attrs.get("groups", 1) > 1): n.attrs["accumulator"]["mode"]
             for n in program.nodes() if n.op in ("conv2d", "linear")}
    pairs = "int16_pairs" if ort_saturates_int16_pairs() and form != "qoperator-s8" else "wrap"
    assert modes == {("conv2d", True): "wrap", ("conv2d", False): pairs, ("linear", False): pairs}
    assert (sum(cmp.overflows.values()) > 0) == (pairs == "int16_pairs")


@pytest.mark.parametrize("form", ["qoperator", "qdq", "qoperator-s8"])
def test_execute_equals_ort_on_mobilenet(mobilenet, form):
    program, cmp = mobilenet(form)
    print(f"\n{form}: hwsim float32 add vs ORT QLinearAdd given ORT's inputs: "
          f"{sum(cmp.executor_add_isolated.values())} of "
          f"{sum(cmp.compared[n] for n in cmp.executor_add_isolated)} differ; execute() chain "
          f"mismatches {sum(cmp.chain_execute.values())}")
    assert_execute_matches(program, cmp)


def test_qdq_and_qoperator_imports_are_the_same_program(mobilenet_paths):
    a, b = (load_onnx_program(mobilenet_paths[f]) for f in ("qoperator", "qdq"))
    assert len(a) == len(b)
    for na, nb in zip(a.nodes(), b.nodes()):  # same ops, shapes, quantization, constants
        assert (na.op, na.out, na.out_shape, na.attrs) == (nb.op, nb.out, nb.out_shape, nb.attrs)
        assert sorted(na.arrays) == sorted(nb.arrays)
        for key in na.arrays:
            assert np.array_equal(na.arrays[key], nb.arrays[key]), (na.name, key)


# ------------------------------------------------------------------------------------------------
# The int16-pairs accumulator mode

def _codes(rng, dtype, shape, lo=None, hi=None) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min if lo is None else lo, (info.max if hi is None else hi) + 1,
                        size=shape).astype(dtype)


def test_int16_pairs_by_hand():
    x = np.array([[255, 255, 3]], dtype=np.uint8)
    w = np.array([[127, 127, -5]], dtype=np.int8)
    res = linear_int_pairs(x, 0, w)  # pairs (255*127 + 255*127) -> 32767, then 3*-5 alone
    assert res.values.tolist() == [[32767 - 15]] and res.overflow_count == 1
    exact = 2 * 255 * 127 - 15
    assert linear_int_pairs(x, 0, w, acc=Int16PairsAccumulator(16)).values.tolist() == [[32767 - 15]]
    ref = linear_int_pairs_reference(x, 10, w, None, np.array([40000]), Int16PairsAccumulator(16))
    want = 40000 + (exact + 15 - 10 * 249) - 15 - (2 * 255 * 127 - 32767)  # wraps at 16 bits
    assert ref.values.tolist() == [[((want + 2**15) % 2**16) - 2**15]] and ref.overflow_count == 1
    with pytest.raises(KernelError, match="Int16PairsAccumulator.bits must be an int in"):
        Int16PairsAccumulator(12)
    with pytest.raises(KernelError, match="x must hold 8-bit codes"):
        linear_int_pairs(x.astype(np.int16), 0, w)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), groups=st.integers(1, 3), c_per_group=st.integers(1, 5),
       k_per_group=st.integers(1, 3), r=st.integers(1, 3), s=st.integers(1, 3),
       stride=st.integers(1, 2), dil=st.integers(1, 2), pads=st.tuples(*[st.integers(0, 2)] * 4),
       dtypes=st.sampled_from([(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)]),
       bits=st.sampled_from([16, 20, 32]), per_channel=st.booleans(), with_bias=st.booleans())
def test_int16_pairs_conv_fast_equals_int64_reference(seed, groups, c_per_group, k_per_group, r, s,
                                                     stride, dil, pads, dtypes, bits, per_channel,
                                                     with_bias):
    rng = np.random.default_rng(seed)
    xdt, wdt = dtypes
    h, w_ = ((max(r, s) - 1) * dil + 1 + int(rng.integers(0, 4)) for _ in range(2))
    k = k_per_group * groups
    x = _codes(rng, xdt, (2, c_per_group * groups, h, w_))
    w = _codes(rng, wdt, (k, c_per_group, r, s))
    x_zp = int(_codes(rng, xdt, ()))
    w_zp = _codes(rng, wdt, (k,) if per_channel else (), -3 if wdt == np.int8 else 125,
                  3 if wdt == np.int8 else 131)
    bias = rng.integers(-2**17, 2**17, size=k) if with_bias else None
    args = (x, x_zp, w, w_zp, bias, stride, pads, dil, groups, Int16PairsAccumulator(bits))
    fast, ref = conv2d_int_pairs(*args), conv2d_int_pairs_reference(*args)
    assert np.array_equal(fast.values, ref.values)
    assert fast.overflow_count == ref.overflow_count


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), n_in=st.integers(1, 40),
       n_out=st.integers(1, 6), dtypes=st.sampled_from([(np.uint8, np.int8), (np.int8, np.uint8)]),
       bits=st.sampled_from([16, 24, 32]), with_bias=st.booleans())
def test_int16_pairs_linear_fast_equals_int64_reference(seed, n, n_in, n_out, dtypes, bits, with_bias):
    rng = np.random.default_rng(seed)
    xdt, wdt = dtypes
    x, w = _codes(rng, xdt, (n, n_in), *((200, 255) if xdt == np.uint8 else (None, None))), _codes(rng, wdt, (n_out, n_in))
    bias = rng.integers(-2**16, 2**16, size=n_out) if with_bias else None
    args = (x, int(_codes(rng, xdt, ())), w, _codes(rng, wdt, (n_out,)), bias, Int16PairsAccumulator(bits))
    fast, ref = linear_int_pairs(*args), linear_int_pairs_reference(*args)
    assert np.array_equal(fast.values, ref.values) and fast.overflow_count == ref.overflow_count


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), groups=st.integers(1, 2), c_per_group=st.integers(1, 6),
       r=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 2), per_channel=st.booleans())
def test_int16_pairs_node_equals_hwsim_engines_ort(seed, groups, c_per_group, r, stride, pad, per_channel):
    """The executor's int16_pairs conv node == hwsim.engines.ort.qlinear_conv(int16_pairs=True),
    whose pair arithmetic is hwsim.engines._pairs (reduction order (r, s, c), padding = x_zp)."""
    from hwsim.engines import qlinear_conv
    from hwsim.kernels import ort_output_scale

    rng = np.random.default_rng(seed)
    k = 3 * groups
    x = _codes(rng, np.uint8, (2, c_per_group * groups, 6, 7))
    w = _codes(rng, np.int8, (k, c_per_group, r, r))
    x_zp, y_zp = np.uint8(rng.integers(0, 256)), np.uint8(rng.integers(100, 156))
    s_x, s_y = F32(0.02), F32(rng.uniform(0.5, 4.0))
    s_w = rng.uniform(0.002, 0.02, size=k if per_channel else 1).astype(F32)
    bias = rng.integers(-5000, 5000, size=k).astype(np.int32)
    geom = dict(strides=(stride, stride), pads=(pad, pad, pad, pad), dilations=(1, 1), group=groups)
    want = qlinear_conv(x, s_x, x_zp, w, s_w if per_channel else s_w[0], np.int8(0), s_y, y_zp, bias,
                        int16_pairs=True, **geom)
    node = Node("conv", "conv2d", ("x",), want.shape, TensorQuant(float(s_y), int(y_zp), 0, 255),
                {"stride": [stride] * 2, "padding": [pad] * 4, "dilation": [1, 1], "groups": groups,
                 "accumulator": {"bits": 32, "mode": "int16_pairs"}, "input_zero_point": int(x_zp),
                 "requant": {"mode": "float32", "clamp": [0, 255]}},
                {"weight": w, "weight_zero_point": np.zeros(k, np.int64), "bias": bias.astype(np.int64),
                 "rq_scale_f32": np.asarray(ort_output_scale(s_x, s_w, s_y), F32).reshape(-1)})
    for backend in ("fast", "reference"):
        assert np.array_equal(execute_node(node, [x], backend=backend)[0], want)


def _single_qlinear_conv_model(rng, c: int, k: int) -> tuple[bytes, np.ndarray]:
    """x -> QuantizeLinear (s = 2^-6, zp 128) -> QLinearConv 3x3 (u8 x s8, full-range weights)
    -> DequantizeLinear, and float inputs whose codes cover the full u8 range."""
    w = _codes(rng, np.int8, (k, c, 3, 3))
    s_w = rng.uniform(0.002, 0.01, size=k).astype(F32)
    s_y = F32(float(s_w.max()) * 2.0**-6 * np.sqrt(9 * c) * ACT_STD * ACT_STD / 40)
    inits = [numpy_helper.from_array(v, n) for n, v in (
        ("x_scale", F32(2.0**-6)), ("x_zp", np.uint8(128)), ("w", w), ("w_scale", s_w),
        ("w_zp", np.zeros(k, np.int8)), ("y_scale", s_y), ("y_zp", np.uint8(128)))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="quantize"),
             helper.make_node("QLinearConv", ["xq", "x_scale", "x_zp", "w", "w_scale", "w_zp",
                                              "y_scale", "y_zp"], ["yq"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="dequantize")]
    graph = helper.make_graph(nodes, "one_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 20, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    x = ((_codes(rng, np.uint8, (2, c, 20, 20)).astype(F32) - 128) * F32(2.0**-6)).astype(F32)
    return model.SerializeToString(), x


def test_int16_pairs_is_what_makes_a_full_range_u8_s8_conv_match_ort():
    model, x = _single_qlinear_conv_model(np.random.default_rng(5), c=16, k=32)
    auto, exact_math = load_onnx_program(model), load_onnx_program(model, int16_pairs=False)
    forced = load_onnx_program(model, int16_pairs=True)
    conv = auto.output
    want = ort_reference_outputs(model, x, [conv.name])[conv.name]
    codes = quantize_input(auto, x)
    assert codes.min() == 0 and codes.max() == 255  # the full u8 range
    got = {name: execute(p, codes).output for name, p in
           (("auto", auto), ("exact math", exact_math), ("int16 pairs", forced))}
    bad = {name: int(np.count_nonzero(v != want)) for name, v in got.items()}
    saturates = ort_saturates_int16_pairs()
    print(f"\nfull-range u8 x s8 QLinearConv, {want.size} outputs; mismatches vs ORT: {bad}; "
          f"ORT saturates int16 pairs here: {saturates}; recorded: {conv.attrs['accumulator_reason']!r}")
    assert conv.attrs["accumulator"]["mode"] == ("int16_pairs" if saturates else "wrap")
    assert bad["auto"] == 0
    assert (bad["int16 pairs"] == 0) == saturates and (bad["exact math"] == 0) != saturates
    if saturates:
        assert bad["exact math"] > want.size // 100


def test_reference_backend_equals_fast_on_an_imported_program():
    model = synthetic_model("qoperator", np.uint8, "matmul", False, seed=3)
    program = load_onnx_program(model)
    codes = quantize_input(program, _synthetic_input(seed=3, n=1))
    fast = execute(program, codes, record=True)
    ref = execute(program, codes, record=True, backend="reference")
    for name in fast.tensors:
        assert np.array_equal(fast.tensors[name], ref.tensors[name]), name
    assert fast.overflow_counts == ref.overflow_counts


def test_imported_program_saves_and_loads(tmp_path):
    model = synthetic_model("qdq", np.uint8, "gemm", True, seed=4)
    program = load_onnx_program(model)
    loaded = load_program(save_program(program, tmp_path / "net"))
    codes = quantize_input(program, _synthetic_input(seed=4))
    assert np.array_equal(execute(loaded, codes).output, execute(program, codes).output)
    assert [n.source for n in loaded.nodes()] == [n.source for n in program.nodes()]


# ------------------------------------------------------------------------------------------------
# The input QuantizeLinear

def _quantize_only_model(dtype, scale, zp) -> bytes:
    inits = [numpy_helper.from_array(F32(scale), "s"), numpy_helper.from_array(np.asarray(zp, dtype), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["y"], name="dq")]
    graph = helper.make_graph(nodes, "quantize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_input_is_ort_quantize_linear(dtype):
    rng = np.random.default_rng(8)
    for scale in (F32(0.0123), F32(2.0**-5)):
        zp = 131 if dtype == np.uint8 else -7
        model = _quantize_only_model(dtype, scale, zp)
        program = load_onnx_program(model)
        assert len(program) == 1 and program.output_name == program.input_name == "xq"
        x = rng.normal(0, 3, size=(50, 64)).astype(F32)
        x[:20] = ((rng.integers(-300, 300, size=(20, 64)) + 0.5) * scale).astype(F32)  # exact ties
        x[20, :6] = [np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0]
        want = ort_reference_outputs(model, x, ["xq"])["xq"]
        got = quantize_input(program, x)
        assert got.dtype == want.dtype and np.array_equal(got, want)
        assert np.array_equal(quantize_input(model, x), want)  # from the model itself


# ------------------------------------------------------------------------------------------------
# Errors

def test_corrupt_empty_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(OnnxImportError, match=rf"{bad}: not an ONNX model: the file does not parse"):
        load_onnx_program(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxImportError, match=rf"{empty}: not an ONNX model: it has no graph"):
        load_onnx_program(empty)
    with pytest.raises(OnnxImportError, match=rf"{tmp_path / 'missing.onnx'}: no such file"):
        load_onnx_program(tmp_path / "missing.onnx")
    with pytest.raises(OnnxImportError, match="not an ONNX model: the bytes do not parse"):
        load_onnx_program(b"\xff\xff\xff not protobuf")
    with pytest.raises(OnnxImportError, match="no such file"):
        load_onnx_workload(tmp_path / "missing.onnx")


def test_unsupported_op_names_the_file_node_and_supported_ops(tmp_path):
    inits = [numpy_helper.from_array(F32(0.05), "s"), numpy_helper.from_array(np.uint8(128), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xf"], name="dq"),
             helper.make_node("Erf", ["xf"], ["yf"], name="the_erf"),
             helper.make_node("QuantizeLinear", ["yf", "s", "zp"], ["y"], name="q2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], initializer=inits)
    path = tmp_path / "tanh.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(OnnxImportError, match=rf"{path}: node 'the_erf' \(Erf\): op type Erf "
                                              r"cannot be imported\. Supported: QOperator: .*QLinearConv.*QDQ"):
        load_onnx_program(path)


def test_float_model_is_not_an_int8_model(mobilenet_paths):
    with pytest.raises(OnnxImportError, match=r"mobilenet_v2.onnx: node '/features/features.0/features.0.0/Conv' "
                                              r"\(Conv\): a float Conv is importable only between DequantizeLinear "
                                              r"and QuantizeLinear; an operand is the float model input 'input'"):
        load_onnx_program(mobilenet_paths["float"])


def test_input_codes_of_the_wrong_shape(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(synthetic_model("qoperator", np.uint8, "matmul", False, seed=1))
    program = load_onnx_program(path)
    with pytest.raises(ProgramError, match=r"program 'net.onnx', input '.*': expected shape "
                                           r"\(N, 4, 12, 12\), got \(2, 4, 10, 12\)"):
        execute(program, np.zeros((2, 4, 10, 12), np.uint8))
    with pytest.raises(OnnxImportError, match=r"program 'net.onnx', input 'x': expected a float array "
                                              r"of shape \(N, 4, 12, 12\); got \(4, 12, 12\)"):
        quantize_input(program, np.zeros((4, 12, 12), F32))
    with pytest.raises(OnnxImportError, match=r"net.onnx: no tensor named \['nope'\]"):
        ort_reference_outputs(path, np.zeros((1, 4, 12, 12), F32), ["nope"])


def test_missing_onnx_package_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "net.onnx"
    path.write_bytes(synthetic_model("qoperator", np.uint8, "matmul", False, seed=1))
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(OnnxImportError, match=r"reading ONNX models needs the 'onnx' package.*"
                                              r"pip install 'hwsim\[onnx\]'"):
        load_onnx_program(path)


# ------------------------------------------------------------------------------------------------
# Float models as cost-model workloads

def test_mobilenet_onnx_workload_equals_the_builtin_one(mobilenet_paths):
    from dataclasses import replace

    from hwsim.workloads import builtin_workload

    layers = load_onnx_workload(mobilenet_paths["float"], batch=2)
    builtin = builtin_workload("mobilenet_v2", batch=2)
    assert [replace(a, name="") for a in layers] == [replace(b, name="") for b in builtin]
    assert layers[0].name == "/features/features.0/features.0.0/Conv"
    assert sum(a.macs() for a in layers) == 2 * 300_774_272  # MobileNetV2's 300.8 M MACs/image
    assert load_onnx_workload(mobilenet_paths["qdq"], batch=2) == layers  # DQ weights count too


def test_workload_of_a_synthetic_float_model():
    rng = np.random.default_rng(0)
    shapes = {"w_same": (8, 3, 3, 3), "w_grouped": (8, 4, 3, 3), "w_fc": (10, 120), "w_mm": (10, 4)}
    inits = [numpy_helper.from_array(rng.normal(size=shape).astype(F32), name) for name, shape in shapes.items()]
    inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat"))
    nodes = [
        helper.make_node("Conv", ["x", "w_same"], ["c1"], name="same_upper", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Conv", ["c1", "w_grouped"], ["c2"], name="grouped", group=2, dilations=[2, 2],
                         pads=[1, 2, 1, 2]),
        helper.make_node("Reshape", ["c2", "flat"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w_fc"], ["g"], name="fc", transB=1),
        helper.make_node("MatMul", ["g", "w_mm"], ["m"], name="weights_mm"),
        helper.make_node("Transpose", ["m"], ["mt"], name="t"),
        helper.make_node("MatMul", ["m", "mt"], ["y"], name="activation_mm"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    layers = load_onnx_workload(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), batch=3)
    got = [(l.name, l.kind, l.in_h, l.in_channels, l.out_channels, l.kernel_h, l.stride_h,
            (l.pad_top, l.pad_left, l.pad_bottom, l.pad_right), l.dilation_h, l.groups, l.batch) for l in layers]
    assert got == [
        ("same_upper", "conv", 9, 3, 8, 3, 2, (1, 1, 1, 1), 1, 1, 3),   # out 5x5
        ("grouped", "conv", 5, 8, 8, 3, 1, (1, 2, 1, 2), 2, 2, 3),      # out 3x5
        ("fc", "linear", 1, 120, 10, 1, 1, (0, 0, 0, 0), 1, 1, 3),
        ("weights_mm", "linear", 1, 10, 4, 1, 1, (0, 0, 0, 0), 1, 1, 3),
    ]  # the activation x activation MatMul multiplies no weights: not a layer


# ------------------------------------------------------------------------------------------------
# ONNX Runtime's QLinearAdd, and the package's import weight

def _qlinear_add_model(dtype, n: int, s_a, z_a, s_b, z_b, s_c, z_c) -> bytes:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(v, name) for name, v in (
        ("s_a", F32(s_a)), ("z_a", np.asarray(z_a, dtype)), ("s_b", F32(s_b)), ("z_b", np.asarray(z_b, dtype)),
        ("s_c", F32(s_c)), ("z_c", np.asarray(z_c, dtype)))]
    node = helper.make_node("QLinearAdd", ["a", "s_a", "z_a", "b", "s_b", "z_b", "s_c", "z_c"], ["y"],
                            domain="com.microsoft")
    graph = helper.make_graph([node], "qlinear_add", [helper.make_tensor_value_info(v, elem, [n]) for v in "ab"],
                              [helper.make_tensor_value_info("y", elem, [n])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    return model.SerializeToString()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_add_is_ort_on_every_pair_of_codes(dtype):
    """hwsim.onnx.qlinear_add == ONNX Runtime's QLinearAdd on all 65536 (a, b) codes, random and
    tie-heavy (power-of-two) scales; hwsim's float32 add kernel rounds before adding the output
    zero point and differs (counted, printed)."""
    import onnxruntime as ort

    from hwsim.kernels import add_requantize_float32
    from hwsim.onnx.ort_semantics import add_ratios

    rng = np.random.default_rng(21)
    info = np.iinfo(dtype)
    a = (np.arange(256).repeat(256) + info.min).astype(dtype)
    b = (np.tile(np.arange(256), 256) + info.min).astype(dtype)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    total = kernel_bad = 0
    for case in range(12):
        if case % 2:
            s_a, s_b = (F32(2.0 ** -int(rng.integers(3, 7))) for _ in range(2))
            s_c = F32(max(s_a, s_b) * float(rng.choice([0.5, 1.0, 2.0, 4.0])))
        else:
            s_a, s_b, s_c = (F32(rng.uniform(0.005, 0.3)) for _ in range(3))
        z_a, z_b, z_c = (int(rng.integers(info.min, info.max + 1)) for _ in range(3))
        model = _qlinear_add_model(dtype, a.size, s_a, z_a, s_b, z_b, s_c, z_c)
        want = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})[0]
        r = add_ratios(s_a, s_b, s_c)
        got = qlinear_add(a, z_a, r[0], b, z_b, r[1], z_c, int(info.min), int(info.max))
        assert np.array_equal(got, want.astype(np.int64)), case
        kernel = add_requantize_float32(a, z_a, r[0], b, z_b, r[1], z_c, int(info.min), int(info.max))
        kernel_bad += int(np.count_nonzero(kernel != want))
        total += want.size
    print(f"\nQLinearAdd {np.dtype(dtype)}: {total} outputs, 0 mismatches; hwsim's float32 add "
          f"kernel differs on {kernel_bad}")


def test_importing_hwsim_onnx_loads_neither_onnx_nor_torch():
    import subprocess
    from pathlib import Path

    code = "import sys, hwsim.onnx; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    loaded = {m.split(".")[0] for m in out.stdout.split()}
    assert not loaded & {"onnx", "onnxruntime", "torch", "quant"}
