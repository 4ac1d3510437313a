"""hwsim.analysis accumulator widths: the never-overflow bound is sound and tight, and the
width measured on data is exactly the width at which the layer stops overflowing."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.analysis import (
    AnalysisError,
    accumulator_bound,
    accumulator_report,
    exact_accumulators,
    node_accumulator_bound,
    signed_bits,
)
from hwsim.ir import IntProgram, Node, TensorQuant
from hwsim.kernels import AccumulatorSpec, conv2d_int, linear_int
from tests._programs import random_input, random_program


@given(st.integers(-(1 << 40), 1 << 40), st.integers(0, 1 << 40))
def test_signed_bits_is_the_smallest_twos_complement_width(lo, span):
    hi = lo + span
    b = signed_bits(lo, hi)
    assert -(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1
    if b > 1:
        assert lo < -(1 << (b - 2)) or hi > (1 << (b - 2)) - 1


def test_signed_bits_known_values_and_empty_range():
    assert signed_bits(-128, 127) == 8
    assert signed_bits(-129, 0) == 9 and signed_bits(0, 128) == 9 and signed_bits(0, 0) == 1
    with pytest.raises(AnalysisError, match="empty range"):
        signed_bits(1, 0)


@settings(max_examples=60)
@given(st.data())
def test_bound_equals_brute_force_min_and_max_over_every_input(data):
    k = data.draw(st.integers(1, 3))
    n_l = data.draw(st.integers(1, 4))
    lo = data.draw(st.integers(-3, 0))
    hi = data.draw(st.integers(0, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    w = rng.integers(-8, 8, (k, n_l)).astype(np.int8)
    zp = rng.integers(-2, 3, k)
    bias = rng.integers(-50, 50, k)
    bound = accumulator_bound(w, zp, bias, lo, hi)
    xs = np.array(list(itertools.product(range(lo, hi + 1), repeat=n_l)), dtype=np.int64)  # every input
    acc = bias[None, :] + xs @ (w.astype(np.int64) - zp[:, None]).T
    np.testing.assert_array_equal(bound.acc_max, acc.max(axis=0))
    np.testing.assert_array_equal(bound.acc_min, acc.min(axis=0))
    assert bound.bits == signed_bits(acc.min(), acc.max()) <= bound.simple_bits


def _check_report_rows(program, x):
    report = accumulator_report(program, x)
    from hwsim.executor import execute

    run = execute(program, x, record=True)
    dense = [n for n in program.nodes() if n.op in ("conv2d", "linear")]
    assert list(report["node"]) == [n.name for n in dense]
    for node, row in zip(dense, report.itertuples()):
        assert row.bound_min <= row.observed_min <= row.observed_max <= row.bound_max
        assert row.needed_bits <= row.never_overflow_bits <= row.simple_bound_bits
        assert row.headroom_bits == row.never_overflow_bits - row.needed_bits
        assert row.configured_overflows == run.overflow_counts[node.name]
        # (b) exactly `needed` bits never overflow on this data; one bit less does.
        xin = run.tensors[node.inputs[0]]
        args = (xin, int(node.attrs["input_zero_point"]), node.arrays["weight"],
                node.arrays["weight_zero_point"], node.arrays.get("bias"))

        def overflows(bits):
            spec = AccumulatorSpec(bits=bits, mode="wrap")
            if node.op == "linear":
                return linear_int(*args, acc=spec).overflow_count
            a = node.attrs
            return conv2d_int(*args, tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]),
                              int(a["groups"]), acc=spec).overflow_count
        if row.needed_bits >= 8:
            assert overflows(row.needed_bits) == 0
        if row.needed_bits > 8:
            assert overflows(row.needed_bits - 1) > 0
    return report


@pytest.mark.parametrize("seed", range(6))
def test_report_on_random_programs_needed_within_bound_and_exact_at_the_edge(seed):
    program = random_program(seed, acc_bits=32)
    report = _check_report_rows(program, random_input(program, seed))
    assert (report["needed_bits"] > 8).any()  # the one-bit-less check above ran


def test_report_counts_the_programs_own_overflows_with_a_narrow_accumulator():
    program = random_program(3, acc_bits=10)
    report = _check_report_rows(program, random_input(program, 3))
    too_narrow = report["needed_bits"] > 10
    assert too_narrow.any()
    assert (report.loc[too_narrow, "configured_overflows"] > 0).all()
    assert (report.loc[~too_narrow, "configured_overflows"] == 0).all()


def _conv_program(rng, *, groups, stride, pad, dilation, x_q, with_bias) -> IntProgram:
    n, c, h, w = 2, 2 * groups, 7, 8
    k, r = 2 * groups, 3
    p = IntProgram("one_conv")
    p.add(Node("x", "input", (), (n, c, h, w), x_q))
    weight = rng.integers(-127, 128, (k, c // groups, r, r)).astype(np.int8)
    arrays = {"weight": weight, "weight_zero_point": rng.integers(-3, 4, k).astype(np.int64),
              "rq_scale_f32": np.full(k, 1e-3, np.float32)}
    if with_bias:
        arrays["bias"] = rng.integers(-5000, 5000, k).astype(np.int64)
    oh = (h + 2 * pad - dilation * (r - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dilation * (r - 1) - 1) // stride + 1
    out_q = TensorQuant(0.1, 0, 0, 255)
    p.add(Node("conv", "conv2d", ("x",), (n, k, oh, ow), out_q,
               attrs={"stride": [stride] * 2, "padding": [pad] * 4, "dilation": [dilation] * 2,
                      "groups": groups, "accumulator": {"bits": 32, "mode": "wrap"},
                      "input_zero_point": x_q.zero_point,
                      "requant": {"mode": "float32", "clamp": [0, 255]}, "weight_bits": 8},
               arrays=arrays))
    return p


@settings(max_examples=25)
@given(groups=st.sampled_from([1, 2]), stride=st.integers(1, 2), pad=st.integers(0, 1),
       dilation=st.integers(1, 2), signed=st.booleans(), with_bias=st.booleans(),
       seed=st.integers(0, 2**31))
def test_bound_is_reached_by_extreme_inputs(groups, stride, pad, dilation, signed, with_bias, seed):
    """(c) image 0 drives the channel with the largest bound_max to it, image 1 the channel with
    the smallest bound_min: the report then observes exactly the bound, headroom 0."""
    rng = np.random.default_rng(seed)
    lo_q, hi_q = (-128, 127) if signed else (0, 255)
    x_q = TensorQuant(0.05, int(rng.integers(lo_q, hi_q + 1)), lo_q, hi_q)
    program = _conv_program(rng, groups=groups, stride=stride, pad=pad, dilation=dilation,
                            x_q=x_q, with_bias=with_bias)
    node = program.node("conv")
    bound = node_accumulator_bound(program, node)
    c = node.arrays["weight"].astype(np.int64) - node.arrays["weight_zero_point"][:, None, None, None]
    kg = c.shape[0] // groups
    x = rng.integers(lo_q, hi_q + 1, program.input.out_shape)
    oy, ox = 1, 1  # an output whose window lies inside the image for every geometry drawn
    iy, ix = oy * stride - pad, ox * stride - pad
    taps = np.arange(3) * dilation
    for img, k, sign in ((0, int(bound.acc_max.argmax()), 1), (1, int(bound.acc_min.argmin()), -1)):
        g = k // kg
        chans = np.arange(g * c.shape[1], (g + 1) * c.shape[1])
        ck = sign * c[k]
        window = np.where(ck > 0, hi_q, np.where(ck < 0, lo_q, x_q.zero_point))
        x[img][np.ix_(chans, iy + taps, ix + taps)] = window
    x = x.astype(x_q.dtype)
    acc = exact_accumulators(node, x)
    k_max, k_min = int(bound.acc_max.argmax()), int(bound.acc_min.argmin())
    assert acc[0, k_max, oy, ox] == bound.acc_max[k_max]
    assert acc[1, k_min, oy, ox] == bound.acc_min[k_min]
    row = accumulator_report(program, x).iloc[0]
    assert (row.observed_min, row.observed_max) == (row.bound_min, row.bound_max)
    assert row.needed_bits == row.never_overflow_bits and row.headroom_bits == 0


def test_errors_name_the_layer_and_the_field():
    w = np.ones((4, 3), np.int8)
    with pytest.raises(AnalysisError, match=r"fc1.*weight_zero_point.*4 entries"):
        accumulator_bound(w, np.zeros(3, np.int64), None, 0, 255, layer="fc1")
    with pytest.raises(AnalysisError, match=r"fc1.*bias.*4 entries"):
        accumulator_bound(w, 0, np.zeros(2, np.int64), 0, 255, layer="fc1")
    with pytest.raises(AnalysisError, match=r"fc1.*must contain 0"):
        accumulator_bound(w, 0, None, 1, 255, layer="fc1")
    with pytest.raises(AnalysisError, match=r"fc1.*integer array"):
        accumulator_bound(w.astype(np.float32), 0, None, 0, 255, layer="fc1")
    program = random_program(0)
    with pytest.raises(AnalysisError, match=r"'pool'.*maxpool2d.*no accumulator"):
        node_accumulator_bound(program, program.node("pool"))


@pytest.mark.slow
def test_mobilenet_v2_report_table():
    from hwsim.flows import quantize_zoo_model
    from hwsim.verify import codes_from_values

    flow = quantize_zoo_model("mobilenet_v2")
    inp = flow.program.input.out
    x = codes_from_values(flow.calib_images[:2].numpy(), inp).astype(inp.dtype)
    report = accumulator_report(flow.program, x)
    assert len(report) == 53  # 52 convs and the classifier
    assert (report["needed_bits"] <= report["never_overflow_bits"]).all()
    assert (report["never_overflow_bits"] <= 32).all() and report["configured_overflows"].sum() == 0
    cols = ["node", "reduction_length", "never_overflow_bits", "simple_bound_bits", "needed_bits",
            "headroom_bits"]
    print("\n" + report[cols].head(4).to_string())
    print(report.sort_values("never_overflow_bits", ascending=False)[cols].head(3).to_string())


def test_apot_layers_are_reported_and_their_bound_holds():
    import torch
    from torch import nn

    import quant
    from hwsim.lower import lower

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 4)).eval()
    x = torch.randn(6, 3, 6, 6)
    qm = quant.quantize(model, quant.QuantConfig(weight=quant.APoTFormat(5)), [x])
    program = lower(qm)
    table = accumulator_report(program, qm.quantize_input(x))
    assert list(table["op"]) == ["apot_conv2d", "apot_linear"]
    assert (table["needed_bits"] <= table["never_overflow_bits"]).all()
    assert (table["configured_overflows"] == 0).all()
