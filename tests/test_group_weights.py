"""Group-wise (block) weight scales end to end: the format (``quant.GroupIntFormat``) and its
registry entry, the integer form (one accumulator per (output channel, group), summed exactly in
the multipoint requantization and rounded once) with fast kernels equal to the int64 reference,
lowering, execution and verification against fake quant, save/load, the cost of the scales, and
the command line."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import quant
from hwsim.cli import main
from hwsim.cli.main import GROUP_SIZES, WEIGHT_BITS
from hwsim.errors import KernelError, ProgramError, WorkloadError
from hwsim.executor import execute, execute_node
from hwsim.ir import Node, TensorQuant, load_program, save_program
from hwsim.ir.check import node_errors
from hwsim.kernels import AccumulatorSpec
from hwsim.kernels.group import (group_conv2d_rows, group_linear_rows, group_rows,
                                 requantize_groups)
from hwsim.kernels.multipoint import multipoint_multipliers
from hwsim.kernels.reference.group import (group_conv2d_rows_reference,
                                           group_linear_rows_reference,
                                           requantize_groups_reference)
from hwsim.lower import lower
from hwsim.verify import verify
from hwsim.workloads import LayerShape, program_workload
from hwsim.workloads.group import GROUP_SCALE_BITS, group_layer_shape, group_scale_bytes
from quant.formats import GroupIntFormat, GroupParams, fit_group, format_entry
from tests._cli_helpers import no_quantizing, one_error_line  # noqa: F401  (fixture)

HW = "hw_configs/int8_systolic.yaml"


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32), nn.ReLU6(),
                         nn.Linear(32, 10)).eval()


def convnet() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 8, 1, bias=False), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 10)).eval()


@pytest.fixture(scope="module")
def rows_in() -> torch.Tensor:
    return torch.randn(32, 64, generator=torch.Generator().manual_seed(2))


def quantized_mlp(rows_in, fmt):
    return quant.quantize(mlp(), quant.QuantConfig(weight=fmt), [rows_in],
                          example_input=rows_in[:1])


# ---- 1. the format ---------------------------------------------------------------------------

def test_registry_entry_and_fake_quant_use_the_same_scales(rows_in):
    fmt = quant.GroupIntFormat(bits=4, group_size=32)
    entry = format_entry(fmt)
    assert entry.name == "group" and "group" in quant.registered_formats()
    assert entry.storage_bits(fmt) == 4 and fmt.describe() == "int4-g32"
    qm = quantized_mlp(rows_in, fmt)
    w = qm.graph["0"].weight
    params = qm.weight_params("0")
    assert isinstance(params, GroupParams) and params.scale.shape == (96, 2)
    codes = qm.weight_codes("0")
    assert codes.dtype == np.int8 and codes.shape == w.shape and np.abs(codes).max() <= 7
    assert entry.code_scale(params) is None and qm.bias_codes("0") is None   # float bias
    blocks = w.reshape(96, 2, 32)
    decoded = entry.decode(params, codes).reshape(96, 2, 32)
    np.testing.assert_array_equal(decoded, params.scale[..., None] * codes.reshape(96, 2, 32))
    assert np.all(np.abs(decoded - blocks) <= params.scale[..., None] / 2 + 1e-12)
    fq = entry.fake_quant(torch.from_numpy(w.copy()).requires_grad_(), fmt)
    np.testing.assert_allclose(fq.detach().numpy(), decoded.reshape(w.shape).astype(np.float32))
    # the integer program holds exactly these scales
    node = lower(qm).node("0")
    np.testing.assert_array_equal(node.arrays["weight_scale"], params.scale)
    np.testing.assert_array_equal(node.arrays["weight"], codes)


def test_w4_group32_beats_w4_per_channel_on_outliers():
    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 0.02, (64, 256))
    rows, cols = rng.integers(0, 64, 40), rng.integers(0, 256, 40)
    w[rows, cols] = rng.choice([-1.0, 1.0], 40) * rng.uniform(0.5, 1.0, 40)   # outliers
    per_channel = quant.fit_int_params(w, quant.IntFormat(4, per_channel=True))
    grouped = fit_group(w, GroupIntFormat(4, 32))
    err_pc = np.linalg.norm(w - per_channel.fake_quantize(w))
    err_g = np.linalg.norm(w - grouped.dequantize(grouped.quantize(w)))
    assert err_g < 0.75 * err_pc


def test_all_zero_blocks_take_a_usable_scale():
    w = np.random.default_rng(1).normal(size=(4, 16))
    w[1, 8:] = 0.0
    params = fit_group(w, GroupIntFormat(4, 8))
    assert params.scale[1, 1] == params.scale.max()       # not the placeholder 1.0
    np.testing.assert_array_equal(params.quantize(w)[1, 8:], 0)


def test_asymmetric_blocks_have_zero_points():
    w = np.random.default_rng(2).uniform(0.0, 1.0, (4, 16))
    params = fit_group(w, GroupIntFormat(3, 4, symmetric=False))
    codes = params.quantize(w)
    assert codes.min() >= -4 and codes.max() <= 3 and np.any(params.zero_point != 0)
    assert np.abs(params.dequantize(codes) - w).max() <= params.scale.max() / 2 + 1e-12


@pytest.mark.parametrize("kwargs, needle", [
    (dict(bits=1), "'bits' parameter of GroupIntFormat must be an int in [2, 8]"),
    (dict(bits=9), "'bits' parameter of GroupIntFormat must be an int in [2, 8]"),
    (dict(group_size=0), "'group_size' parameter of GroupIntFormat must be an int in [1, "),
    (dict(group_size=8.0), "'group_size' parameter"),
    (dict(symmetric=1), "'symmetric' parameter"),
    (dict(clipping="max"), "'clipping' parameter"),
])
def test_format_rejects_bad_values(kwargs, needle):
    with pytest.raises(quant.QuantError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        quant.GroupIntFormat(**kwargs)


def test_group_size_must_divide_the_input_features(rows_in):
    with pytest.raises(quant.QuantError) as err:
        quantized_mlp(rows_in, quant.GroupIntFormat(4, 24))
    assert "layer '0'" in str(err.value) and "group size 24" in str(err.value) \
        and "64 input features" in str(err.value)
    with pytest.raises(quant.QuantError, match="group-wise weights need"):
        fit_group(np.ones(8), GroupIntFormat(4, 4))
    params = fit_group(np.ones((2, 8)), GroupIntFormat(4, 4))
    with pytest.raises(quant.QuantError, match="cannot apply to a tensor of shape"):
        params.quantize(np.ones((2, 12)))
    with pytest.raises(quant.QuantError, match="one shape"):
        GroupParams(np.ones((2, 2)), np.zeros((2, 3), np.int64), GroupIntFormat())


# ---- 2. kernels: fast == int64 reference -----------------------------------------------------

ACCS = [(32, "wrap"), (12, "wrap"), (12, "saturate"), (64, "wrap")]


def _block_zero_points(rng, k, groups, bits, asym):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return rng.integers(lo, hi + 1, (k, groups)).astype(np.int64) if asym else None


def _requant_constants(rng, k, groups, bias):
    mult = rng.uniform(1e-4, 3e-2, (k, groups))
    mult[rng.random((k, groups)) < 0.2] = 0.0
    rq = multipoint_multipliers(mult.T.reshape(-1), np.tile(np.arange(k), groups), k,
                                rng.uniform(-50, 50, k) if bias else None)
    return rq.m.reshape(groups, k).T.copy(), rq.shift, rq.bias if bias else None


@settings(max_examples=60)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(1, 9), st.integers(2, 8),
       st.booleans(), st.booleans(), st.booleans(), st.sampled_from(ACCS),
       st.integers(0, 2**16))
def test_group_linear_fast_equals_reference(k, groups, gs, bits, asym, signed_x, bias, acc,
                                            seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    w = rng.integers(lo, hi + 1, (k, groups * gs)).astype(np.int8)
    w_zp = _block_zero_points(rng, k, groups, bits, asym)
    info = np.iinfo(np.int8 if signed_x else np.uint8)
    x = rng.integers(info.min, info.max + 1, (2, 3, groups * gs)).astype(info.dtype)
    x_zp = int(rng.integers(info.min, info.max + 1))
    spec = AccumulatorSpec(*acc)
    flat = x.reshape(-1, groups * gs)
    a = group_linear_rows(flat, x_zp, group_rows(w, w_zp, gs), spec)
    b = group_linear_rows_reference(flat, x_zp, w, w_zp, gs, spec)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.overflow_count == b.overflow_count and a.values.shape == (6, groups * k)
    m, shift, rq_bias = _requant_constants(rng, k, groups, bias)
    arrays = {"weight": w, "rq_multiplier": m, "rq_shift": shift}
    if w_zp is not None:
        arrays["weight_zero_point"] = w_zp
    if rq_bias is not None:
        arrays["requant_bias"] = rq_bias
    node = Node("g", "group_linear", ("x",), (2, 3, k), TensorQuant(0.1, 3, -128, 127),
                {"accumulator": {"bits": acc[0], "mode": acc[1]}, "input_zero_point": x_zp,
                 "requant": {"mode": "dyadic", "clamp": [-100, 127]}, "weight_bits": bits,
                 "group_size": gs}, arrays)
    assert node_errors(None, node) == []
    fast, ref = execute_node(node, [x]), execute_node(node, [x], backend="reference")
    np.testing.assert_array_equal(fast[0], ref[0])
    assert fast[0].shape == (2, 3, k) and fast[1] == ref[1]


@settings(max_examples=30)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
       st.integers(2, 8), st.booleans(), st.sampled_from(ACCS[:3]),
       st.tuples(st.integers(1, 2), st.integers(0, 1)), st.integers(0, 2**16))
def test_group_conv_fast_equals_reference(k, groups, gs, kernel, bits, asym, acc, geometry,
                                          seed):
    rng = np.random.default_rng(seed)
    stride, pad = geometry
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    w = rng.integers(lo, hi + 1, (k, groups * gs, kernel, kernel)).astype(np.int8)
    w_zp = _block_zero_points(rng, k, groups, bits, asym)
    x = rng.integers(0, 256, (2, groups * gs, 5, 4)).astype(np.uint8)
    spec = AccumulatorSpec(*acc)
    a = group_conv2d_rows(x, 100, group_rows(w, w_zp, gs), stride, pad, 1, spec)
    b = group_conv2d_rows_reference(x, 100, w, w_zp, gs, stride, pad, 1, spec)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.overflow_count == b.overflow_count
    m, shift, rq_bias = _requant_constants(rng, k, groups, True)
    np.testing.assert_array_equal(requantize_groups(a.values, m, shift, rq_bias, 7, 0, 255),
                                  requantize_groups_reference(b.values, m, shift, rq_bias, 7, 0,
                                                              255))


@pytest.mark.parametrize("acc", [(64, "wrap"), (24, "wrap"), (24, "saturate")])
def test_linear_blocks_beyond_float32_exactness(acc):
    # 255 x 127 x 600 > 2^24: the per-group integer path, not one batched float32 GEMM
    rng = np.random.default_rng(5)
    w = rng.choice(np.array([-127, 127], np.int8), (3, 1200))
    x = rng.choice(np.array([0, 255], np.uint8), (4, 1200))
    spec = AccumulatorSpec(*acc)
    rows = group_rows(w, None, 600)
    assert rows.block_bound * 255 >= 1 << 24
    a = group_linear_rows(x, 0, rows, spec)
    b = group_linear_rows_reference(x, 0, w, None, 600, spec)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.overflow_count == b.overflow_count


def test_requantization_beyond_int64_is_exact():
    # acc up to 2^40 times multipliers near 2^31: sums beyond int64, summed in Python integers
    rng = np.random.default_rng(3)
    k, groups = 3, 4
    acc = rng.integers(-(1 << 40), 1 << 40, (2, groups * k), dtype=np.int64)
    m = rng.integers(1 << 30, 1 << 31, (k, groups), dtype=np.int64)
    shift = np.array([62, 40, 5], dtype=np.int64)
    top = (1 << 62) - 1
    fast = requantize_groups(acc, m, shift, None, 0, -top, top)
    ref = requantize_groups_reference(acc, m, shift, None, 0, -top, top)
    np.testing.assert_array_equal(fast, ref)
    t = sum(int(acc[0, g * k + 1]) * int(m[1, g]) for g in range(groups))
    assert abs(t) >= 1 << 63 and int(fast[0, 1]) == (t + (1 << 39)) >> 40


def test_kernels_name_bad_operands():
    w = np.zeros((4, 12), np.int8)
    with pytest.raises(KernelError, match="group_size must be >= 1 and divide the 12"):
        group_rows(w, None, 5)
    with pytest.raises(KernelError, match=r"w_zp must be None or integers of shape \(4, 3\)"):
        group_rows(w, np.zeros((4, 2), np.int64), 4)
    with pytest.raises(KernelError, match="x has 8 input features"):
        group_linear_rows(np.zeros((2, 8), np.uint8), 0, group_rows(w, None, 4))
    with pytest.raises(KernelError, match=r"m must be integers of shape \(K, G\)"):
        requantize_groups(np.zeros((1, 12), np.int64), np.zeros(12, np.int64),
                          np.zeros(4, np.int64), None, 0, 0, 255)


# ---- 3. lowering, execution, verification, save/load ----------------------------------------

@pytest.mark.parametrize("fmt", [GroupIntFormat(4, 32), GroupIntFormat(3, 16, symmetric=False),
                                 GroupIntFormat(4, 8, clipping="mse")])
def test_mlp_integer_within_one_lsb_of_fake_quant(rows_in, fmt):
    qm = quantized_mlp(rows_in, fmt)
    program = lower(qm)
    assert {n.op for n in program.nodes()} >= {"group_linear"}
    codes = qm.quantize_input(rows_in)
    np.testing.assert_array_equal(execute(program, codes).output,
                                  execute(program, codes, backend="reference").output)
    report = verify(qm, program, rows_in)
    assert int(report.per_layer["max_lsb_diff"].max()) <= 1
    assert report.per_layer["cosine"].min() > 0.9


def test_conv_layers_lower_and_run():
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    cfg = quant.QuantConfig(weight=GroupIntFormat(4, 8),
                            layer_weight={"0": quant.IntFormat(8, per_channel=True)})
    qm = quant.quantize(convnet(), cfg, [x], example_input=x[:1])
    program = lower(qm)
    assert [n.op for n in program.nodes() if n.op.startswith("group")] == \
        ["group_conv2d", "group_conv2d", "group_linear"]
    codes = qm.quantize_input(x)
    np.testing.assert_array_equal(execute(program, codes).output,
                                  execute(program, codes, backend="reference").output)
    assert int(verify(qm, program, x).per_layer["max_lsb_diff"].max()) <= 1


def test_accumulator_report_counts_the_blocks(rows_in):
    from hwsim.analysis import accumulator_report

    qm = quantized_mlp(rows_in, GroupIntFormat(4, 16, symmetric=False))
    program = lower(qm, accumulator_bits=12)
    report = accumulator_report(program, qm.quantize_input(rows_in)).set_index("node")
    assert report["reduction_length"].tolist() == [16, 16, 16]      # one block, not a row
    assert (report["headroom_bits"] >= 0).all()
    for name in ("0", "2", "4"):   # the program's own overflow count agrees with the widths
        row = report.loc[name]
        assert (row["configured_overflows"] > 0) == (row["needed_bits"] > 12)


def test_lowering_refuses_what_the_form_cannot_run(rows_in):
    qm = quantized_mlp(rows_in, GroupIntFormat(4, 32))
    with pytest.raises(ProgramError, match="requantize dyadically"):
        lower(qm, requant="float32")
    with pytest.raises(ProgramError, match="int16_pairs"):
        lower(qm, accumulator_mode="int16_pairs")
    depthwise = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4)).eval()
    x = torch.randn(2, 4, 5, 5)
    dq = quant.quantize(depthwise, quant.QuantConfig(weight=GroupIntFormat(4, 1)), [x],
                        example_input=x[:1])
    with pytest.raises(ProgramError, match="grouped or depthwise conv"):
        lower(dq)


def test_node_checks_name_the_problem(rows_in):
    node = lower(quantized_mlp(rows_in, GroupIntFormat(4, 32))).node("0")
    assert node_errors(None, node) == []

    def broken(attrs=None, **arrays):
        return node_errors(None, Node("g", node.op, node.inputs, node.out_shape, node.out,
                                      {**node.attrs, **(attrs or {})}, {**node.arrays, **arrays}))
    assert any("group_size must be an int >= 1 dividing the weight's 64" in e
               for e in broken({"group_size": 24}))
    assert any("signed 4-bit codes" in e for e in broken(weight=node.arrays["weight"] * 3))
    assert any("rq_multiplier must be integers of shape (96, 2)" in e
               for e in broken(rq_multiplier=node.arrays["rq_multiplier"].reshape(-1)))
    assert any("weight_zero_point must be integers of shape (96, 2)" in e
               for e in broken(weight_zero_point=np.zeros(96, np.int64)))
    assert any("requant mode must be 'dyadic'" in e
               for e in broken({"requant": {"mode": "float32", "clamp": [0, 255]}},
                               rq_scale_f32=np.ones(96, np.float32)))


def test_saved_program_round_trips(rows_in, tmp_path):
    qm = quantized_mlp(rows_in, GroupIntFormat(4, 16, symmetric=False))
    program = lower(qm)
    save_program(program, tmp_path / "g")
    again = load_program(tmp_path / "g.json")
    for name in ("0", "2", "4"):
        a, b = program.node(name), again.node(name)
        assert a.op == b.op == "group_linear" and a.attrs == b.attrs
        for key, arr in a.arrays.items():
            np.testing.assert_array_equal(arr, b.arrays[key])
    codes = qm.quantize_input(rows_in)
    np.testing.assert_array_equal(execute(program, codes).output, execute(again, codes).output)


# ---- 4. cost: the scales in the weight traffic -----------------------------------------------

def test_weight_bytes_grow_by_the_scales(rows_in):
    from hwsim.arch import load_accelerator
    from hwsim.cost import cost_network
    from hwsim.cost.layer_table import LayerTable
    from hwsim.cost.traffic import operand_bytes

    accel = load_accelerator(HW)
    per_channel = program_workload(lower(quantized_mlp(rows_in, quant.IntFormat(
        4, per_channel=True))))
    grouped = program_workload(lower(quantized_mlp(rows_in, GroupIntFormat(4, 16))))
    scale_bytes = GROUP_SCALE_BITS // 8
    expected = [k * (c // 16) * scale_bytes for k, c in ((96, 64), (32, 96), (10, 32))]
    assert [s.weight_scale_bytes for s in grouped] == expected
    assert [s.weight_format for s in grouped] == ["int"] * 3
    grow = (operand_bytes(LayerTable.from_layers(grouped))["filter"]
            - operand_bytes(LayerTable.from_layers(per_channel))["filter"])
    np.testing.assert_array_equal(grow, expected)
    a = cost_network(accel, per_channel).per_layer
    b = cost_network(accel, grouped).per_layer
    np.testing.assert_array_equal(b["dram_read_bytes"] - a["dram_read_bytes"], expected)
    np.testing.assert_array_equal(b["macs"], a["macs"])
    np.testing.assert_array_equal(b["compute_cycles"], a["compute_cycles"])
    assert group_scale_bytes(10, 3, asymmetric=True) == 10 * 3 * 5


def test_group_layer_shape_checks_the_group_size():
    base = LayerShape(name="c", kind="conv", in_h=8, in_w=8, in_channels=24, out_channels=16,
                      kernel_h=3, kernel_w=3)
    shaped = group_layer_shape(base, 8)
    assert shaped.weight_scale_bytes == 16 * 3 * 4 and shaped.macs() == base.macs()
    with pytest.raises(WorkloadError, match="group size 16 does not divide its 24 input"):
        group_layer_shape(base, 16)
    with pytest.raises(WorkloadError, match="weight_scale_bytes"):
        LayerShape(name="c", kind="linear", in_h=1, in_w=1, in_channels=4, out_channels=4,
                   kernel_h=1, kernel_w=1, weight_scale_bytes=-1)


# ---- 5. the command line ---------------------------------------------------------------------

GV = ["verify", "--model", "mobilenet_v2", "--weight-format", "group"]


@pytest.mark.parametrize("args, needle", [
    (GV + ["--bits", "9"], "--weight-format group takes 2..8 bits, got 9"),
    (GV + ["--group-size", "0"], "argument --group-size: expected an integer in [1, 1048576]"),
    (GV + ["--group-size", "x"], "argument --group-size"),
    (GV + ["--per-tensor"], "--per-tensor: --weight-format group has one scale per output"),
    (["verify", "--model", "mobilenet_v2", "--group-size", "32"],
     "--group-size: applies to --weight-format group, not int"),
    (["verify", "--model", "mobilenet_v2", "--weight-format", "apot", "--group-size", "32"],
     "--group-size: applies to --weight-format group, not apot"),
    (["verify", "--onnx", "m.onnx", "--group-size", "32"],
     "--group-size: the quantization options apply to --model"),
])
def test_bad_group_options(args, needle, capsys, no_quantizing):
    assert main(args) == 2
    assert needle in one_error_line(capsys)


def test_simulate_group_options(capsys, rows_in, tmp_path):
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--group-size", "8"]) == 2
    assert "--group-size: applies to --weight-format group" in one_error_line(capsys, "simulate")
    assert main(["simulate", "--hw", HW, "--model", "resnet18", "--weight-format", "group"]) == 2
    assert "group size 32 does not divide its 3 input features" in one_error_line(capsys,
                                                                                  "simulate")
    program = lower(quantized_mlp(rows_in, GroupIntFormat(4, 16)))
    save_program(program, tmp_path / "g")
    out = tmp_path / "cost.json"
    assert main(["-q", "simulate", "--hw", HW, "--model", str(tmp_path / "g.json"),
                 "--json", str(out)]) == 0
    capsys.readouterr()
    from hwsim.arch import load_accelerator
    from hwsim.cost import cost_network

    expected = cost_network(load_accelerator(HW), program_workload(program)).per_layer
    rows = json.loads(out.read_text())["per_layer"]
    assert [r["dram_read_bytes"] for r in rows] == expected["dram_read_bytes"].tolist()
    plain = cost_network(load_accelerator(HW), [replace(s, weight_scale_bytes=0) for s in
                                                program_workload(program)]).per_layer
    assert [r["dram_read_bytes"] - p for r, p in zip(rows, plain["dram_read_bytes"])] == \
        [96 * 4 * 4, 32 * 6 * 4, 10 * 2 * 4]


def test_simulate_prices_planned_group_layers(capsys, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text('layers:\n  "layer1.*": {weight_format: group, weight_bits: 4}\n')
    runs = {}
    for name, extra in (("int", []), ("group", ["--plan", str(plan), "--group-size", "16"])):
        out = tmp_path / f"{name}.json"
        assert main(["-q", "simulate", "--hw", HW, "--model", "resnet18", "--bits", "4",
                     "--json", str(out), *extra]) == 0
        runs[name] = {r["name"]: r for r in json.loads(out.read_text())["per_layer"]}
    capsys.readouterr()
    for layer, row in runs["group"].items():
        grow = row["dram_read_bytes"] - runs["int"][layer]["dram_read_bytes"]
        assert grow == (64 * (64 // 16) * 4 if layer.startswith("layer1.") else 0), layer
        assert row["compute_cycles"] == runs["int"][layer]["compute_cycles"]


def test_plan_gives_layers_group_weights(rows_in, tmp_path, capsys, monkeypatch):
    from hwsim.errors import HwsimError
    from hwsim.flows import quantize_model
    from hwsim.workloads.plan import load_plan

    path = tmp_path / "plan.yaml"
    path.write_text('layers:\n  "2": {weight_format: group, weight_bits: 4}\n')
    qm = quantize_model(mlp(), rows_in, plan=load_plan(str(path)), group_size=16)
    assert qm.weight_format("2") == GroupIntFormat(4, 16)
    assert qm.weight_family("0") == qm.weight_family("4") == "int"
    assert lower(qm).node("2").op == "group_linear"
    # with a plan, --group-size is accepted whatever --weight-format (the plan may name group)
    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise HwsimError("stopped before quantizing")

    monkeypatch.setattr("hwsim.flows.quantize_zoo_model", stop)
    assert main(["verify", "--model", "mobilenet_v2", "--plan", str(path),
                 "--group-size", "8"]) == 2
    assert "stopped before quantizing" in one_error_line(capsys)
    assert seen["group_size"] == 8 and seen["weight_family"] == "int"


@pytest.mark.parametrize("bits, size", [
    (WEIGHT_BITS["group"][0], GROUP_SIZES[0]), (WEIGHT_BITS["group"][1], GROUP_SIZES[1]),
    (WEIGHT_BITS["group"][0] - 1, None), (WEIGHT_BITS["group"][1] + 1, None),
    (None, GROUP_SIZES[0] - 1), (None, GROUP_SIZES[1] + 1)])
def test_the_cli_ranges_are_the_format_ranges(bits, size):
    if bits is not None and size is not None:                   # the ends of both ranges
        assert quant.GroupIntFormat(bits, size).group_size == size
        return
    with pytest.raises(quant.QuantError):                       # one step beyond either
        quant.GroupIntFormat(4 if bits is None else bits, 8 if size is None else size)
