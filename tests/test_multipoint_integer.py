"""Multipoint weights end to end (Liu et al., "Post-training Quantization with Multiple Points:
Mixed Precision without Mixed Precision", AAAI 2021): the format's registry entry, the
adaptive-points calibration step, the integer form (extra rows of one b-bit layer summed in the
requantization stage) with its fast kernels equal to the int64 reference, lowering and
verification against fake quant, the cost of extra rows, and MobileNetV2 within 1 LSB.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import quant
from hwsim.errors import KernelError, ProgramError, WorkloadError
from hwsim.executor import execute, execute_node
from hwsim.ir import Node, TensorQuant
from hwsim.ir.check import node_errors
from hwsim.kernels import AccumulatorSpec
from hwsim.kernels.multipoint import (conv2d_rows, linear_rows, multipoint_multipliers,
                                      requantize_rows)
from hwsim.kernels.reference.multipoint import (conv2d_rows_reference, linear_rows_reference,
                                                requantize_rows_reference)
from hwsim.lower import lower
from hwsim.verify import verify
from hwsim.workloads import LayerShape, program_workload
from hwsim.workloads.multipoint import rows_layer_shape
from quant.calibrate.multipoint import assign_points, multipoint_layers
from quant.formats import (CalibrationStats, MultipointFormat, MultipointParams, allocate_points,
                           fit_multipoint, format_entry)
from quant.model import initial_state

HW = "hw_configs/int8_systolic.yaml"


# ---- a small network with every kind of layer ----------------------------------------------

def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2, groups=8), nn.ReLU6(),   # depthwise
        nn.Conv2d(8, 6, 1, groups=2), nn.ReLU(),                          # grouped 1x1
        nn.Conv2d(6, 6, 1), nn.Flatten(), nn.Linear(6 * 4 * 4, 10)).eval()


@pytest.fixture(scope="module")
def batches() -> torch.Tensor:
    return torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def state(batches):
    return initial_state(small_net(), quant.QuantConfig(weight=MultipointFormat(3, 3)),
                         [batches])


# ---- 1. the registry entry -------------------------------------------------------------------

def test_registry_entry_fits_encodes_decodes(batches):
    fmt = MultipointFormat(4, 2)
    qm = quant.quantize(small_net(), quant.QuantConfig(weight=fmt), [batches])
    entry = format_entry(fmt)
    assert entry.name == "multipoint" and entry.storage_bits(fmt) == 4
    for name in multipoint_layers(qm):
        w = qm.graph[name].weight
        params = qm.weight_params(name)
        assert isinstance(params, MultipointParams)
        assert np.all(params.points == 2)       # no calibration data: max_points per channel
        codes = qm.weight_codes(name)
        assert codes.shape == (w.shape[0], 2, *w.shape[1:]) and codes.dtype == np.int8
        assert entry.code_scale(params) is None and qm.bias_codes(name) is None
        np.testing.assert_array_equal(entry.decode(params, codes), params.dequantize())
        np.testing.assert_array_equal(params.dequantize(), fit_multipoint(w, fmt).dequantize())
    fq = entry.fake_quant(torch.from_numpy(w.copy()).requires_grad_(), fmt)
    np.testing.assert_allclose(fq.detach().numpy(), params.dequantize().astype(np.float32))
    with pytest.raises(quant.QuantError):
        entry.encode(params, np.zeros((3, 3)))


# ---- 2. the calibration step -----------------------------------------------------------------

def test_assign_points_fraction_count_and_allocate_points(state, batches):
    names = multipoint_layers(state)
    k = sum(state.graph[n].weight.shape[0] for n in names)
    for budget, expected in ((0, 0), (0.25, int(0.25 * k)), (7, 7), (2.0, 2 * k)):
        fixed = assign_points(state, [batches], budget=budget).weight_params
        assert sum(fixed[n].extra_points for n in names) == expected
    # each layer's points are allocate_points' with its share of the budget
    from quant.calibrate.multipoint_inputs import layer_input_stats

    fixed = assign_points(state, [batches], budget=0.3).weight_params
    stats = layer_input_stats(state.graph, names, [batches])
    for n in names:
        again = allocate_points(state.graph[n].weight, state.config.weight_format(n), stats[n],
                                budget=fixed[n].extra_points).params
        np.testing.assert_array_equal(again.points, fixed[n].points)
        np.testing.assert_array_equal(again.codes, fixed[n].codes)


def test_planner_equals_assign_points(state, batches):
    from quant.calibrate.multipoint import plan_points

    planner = plan_points(state, [batches])
    for budget in (0.1, 3):
        a = planner.assign(budget).weight_params
        b = assign_points(state, [batches], budget=budget).weight_params
        for n in multipoint_layers(state):
            np.testing.assert_array_equal(a[n].points, b[n].points)
            np.testing.assert_array_equal(a[n].scales, b[n].scales)


def test_layer_input_stats_are_the_unfolded_patches(state, batches):
    from quant.calibrate.multipoint_inputs import layer_input_stats

    names = multipoint_layers(state)
    stats = layer_input_stats(state.graph, names, [batches[:5], batches[5:]])
    outs = state.model().run(batches, mode="float")
    for n in names:
        rec = state.graph[n]
        x = torch.from_numpy(outs[rec.inputs[0]])
        if rec.op == "linear":
            rows = x.reshape(x.shape[0], -1)
        else:
            top, left, bottom, right = rec.attrs["padding"]
            cols = torch.nn.functional.unfold(
                torch.nn.functional.pad(x, (left, right, top, bottom)), rec.weight.shape[2:],
                dilation=rec.attrs["dilation"], stride=rec.attrs["stride"])
            rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        ref = CalibrationStats.from_inputs(rows.double().numpy(),
                                           rec.attrs.get("groups", 1))
        r = np.random.default_rng(0).standard_normal((rec.weight.shape[0], ref.width))
        np.testing.assert_allclose(stats[n].mean_square(r), ref.mean_square(r), rtol=1e-6)


def test_assign_points_priced_and_threshold(state, batches):
    names = multipoint_layers(state)
    price = {n: 1.0 + i for i, n in enumerate(names)}
    fixed = assign_points(state, [batches], budget=20.0,
                          cost=lambda n, m: price[n]).weight_params
    spent = sum(fixed[n].extra_points * price[n] for n in names)
    assert 20.0 - max(price.values()) < spent <= 20.0
    loose = assign_points(state, [batches], threshold=1.0).weight_params
    tight = assign_points(state, [batches], threshold=1e-4).weight_params
    assert all(tight[n].extra_points >= loose[n].extra_points for n in names)
    assert sum(tight[n].extra_points for n in names) > 0


def test_assign_points_free_rows_come_first(state, batches):
    """A zero-cost row with a benefit is always taken (ratio inf)."""
    names = multipoint_layers(state)
    free = names[0]
    fixed = assign_points(state, [batches], budget=0.0,
                          cost=lambda n, m: 0.0 if n == free else 1.0).weight_params
    capacity = state.graph[free].weight.shape[0] * 2
    assert fixed[free].extra_points > capacity // 2
    assert all(fixed[n].extra_points == 0 for n in names if n != free)


@pytest.mark.parametrize("kwargs, needle", [
    ({"budget": -0.1}, "extra-row fraction in [0, 2]"),
    ({"budget": 2.5}, "extra-row fraction in [0, 2]"),
    ({"budget": 10_000}, "count in [0,"),
    ({"budget": True}, "Got True"),
    ({"budget": float("nan")}, "Got nan"),
    ({"budget": "0.1"}, "Got '0.1'"),
    ({}, "needs a budget, a threshold, or both"),
    ({"threshold": -1.0}, "'threshold' parameter"),
    ({"budget": 1.0, "cost": 3}, "'cost' parameter"),
    ({"budget": 1.0, "cost": lambda n, m: -1.0}, "finite number >= 0"),
    ({"budget": 1e12, "cost": lambda n, m: 1.0}, "the cost of every extra row"),
])
def test_assign_points_bad_input(state, batches, kwargs, needle):
    with pytest.raises(quant.QuantError) as err:
        assign_points(state, [batches], **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_assign_points_needs_multipoint_layers(batches):
    plain = initial_state(small_net(), quant.QuantConfig(), [batches])
    with pytest.raises(quant.QuantError, match="no layer has multipoint weights"):
        assign_points(plain, [batches], budget=0.1)


# ---- 3. the integer form: multipliers and the requantization sum ----------------------------

@settings(max_examples=60)
@given(st.data())
def test_multipliers_within_half_a_step(data):
    k = data.draw(st.integers(1, 5))
    rows = data.draw(st.integers(k, 3 * k))
    rc = np.concatenate([np.arange(k), np.array(data.draw(st.lists(
        st.integers(0, k - 1), min_size=rows - k, max_size=rows - k)), dtype=np.int64)])
    exps = data.draw(st.lists(st.floats(-40, 20), min_size=rows, max_size=rows))
    mult = np.ldexp(1.0, np.array(exps).astype(int)) * data.draw(
        st.floats(0.5, 1.0, exclude_max=True))
    mult[data.draw(st.integers(0, rows - 1))] = 0.0
    bias = np.array(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=k, max_size=k)))
    rq = multipoint_multipliers(mult, rc, k, bias)
    assert rq.m.min() >= 0 and rq.m.max() < 2**31 and 0 <= rq.shift.min() <= rq.shift.max() <= 63
    for p in range(rows):
        s = int(rq.shift[rc[p]])
        assert abs(Fraction(int(rq.m[p]), 2**s) - Fraction(mult[p])) <= Fraction(1, 2**(s + 1))
    for c in range(k):
        s = int(rq.shift[c])
        assert abs(Fraction(int(rq.bias[c]), 2**s) - Fraction(bias[c])) <= Fraction(1, 2**(s + 1))
        top = mult[rc == c].max()
        if top > 0 and s == 31 - np.frexp(top)[1]:       # not capped by the bias or at 63
            assert 2**30 <= rq.m[rc == c].max() < 2**31    # 31 significant bits
        elif top > 0 and s == 30 - np.frexp(top)[1]:     # rounding carried to 2^31
            assert rq.m[rc == c].max() == 2**30


def test_multipliers_out_of_range():
    with pytest.raises(KernelError, match="2\\^31 or more"):
        multipoint_multipliers(np.array([2.0**31]), np.array([0]), 1)
    with pytest.raises(KernelError, match="2\\^62 output steps"):
        multipoint_multipliers(np.array([1.0]), np.array([0]), 1, np.array([2.0**62]))
    with pytest.raises(KernelError, match="finite and >= 0"):
        multipoint_multipliers(np.array([-1.0]), np.array([0]), 1)


@settings(max_examples=60)
@given(st.data())
def test_requantize_rows_rounds_once(data):
    """The integer output is round-half-up of the exact real sum, except within the constants'
    rounding error (2^-(s+1) (1 + sum |acc|)) of a tie."""
    k = data.draw(st.integers(1, 3))
    extra = data.draw(st.lists(st.integers(0, k - 1), max_size=4))
    rc = np.concatenate([np.arange(k), np.array(extra, dtype=np.int64)])
    mult = np.array(data.draw(st.lists(st.floats(1e-6, 4.0), min_size=rc.size,
                                       max_size=rc.size)))
    bias = np.array(data.draw(st.lists(st.floats(-50, 50), min_size=k, max_size=k)))
    acc = np.array(data.draw(st.lists(st.integers(-2**20, 2**20), min_size=3 * rc.size,
                                      max_size=3 * rc.size)), dtype=np.int64).reshape(3, rc.size)
    rq = multipoint_multipliers(mult, rc, k, bias)
    zp = data.draw(st.integers(-5, 5))
    out = requantize_rows(acc, rc, rq.m, rq.shift, rq.bias, zp, -2**40, 2**40)
    np.testing.assert_array_equal(out, requantize_rows_reference(
        acc, rc, rq.m, rq.shift, rq.bias, zp, -2**40, 2**40))
    for n in range(3):
        for c in range(k):
            rows = np.flatnonzero(rc == c)
            exact = Fraction(bias[c]) + sum(Fraction(mult[p]) * int(acc[n, p]) for p in rows)
            eps = Fraction(1 + sum(abs(int(acc[n, p])) for p in rows), 2**(int(rq.shift[c]) + 1))
            lo = int(np.floor(exact - eps + Fraction(1, 2)))
            hi = int(np.floor(exact + eps + Fraction(1, 2)))
            assert lo <= int(out[n, c]) - zp <= hi


def test_requantize_rows_beyond_int64_uses_exact_integers():
    rc = np.array([0, 0, 1, 0])
    m = np.array([2**31 - 1, 2**31 - 3, 5, 2**30])
    shift = np.array([63, 2])
    acc = np.array([[2**62, 2**62 - 7, -3, -(2**63)], [-(2**62), 12345, 2**40, 2**62]],
                   dtype=np.int64)
    bias = np.array([2**61, -(2**61)])
    fast = requantize_rows(acc, rc, m, shift, bias, 3, -2**62, 2**62 - 1)
    np.testing.assert_array_equal(fast, requantize_rows_reference(acc, rc, m, shift, bias, 3,
                                                                  -2**62, 2**62 - 1))
    t = 2**61 + 2**62 * (2**31 - 1) + (2**62 - 7) * (2**31 - 3) - 2**63 * 2**30 + 2**62
    assert int(fast[0, 0]) == (t >> 63) + 3


# ---- 4. fast rows == int64 reference (hypothesis) -------------------------------------------

@st.composite
def conv_layers(draw):
    groups_kind = draw(st.sampled_from(["one", "depthwise", "grouped"]))
    if groups_kind == "one":
        g, cg, kg = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif groups_kind == "depthwise":
        g, cg, kg = draw(st.integers(1, 5)), 1, draw(st.integers(1, 2))
    else:
        g, cg, kg = draw(st.integers(2, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = g * kg
    bits = draw(st.integers(2, 8))
    points = draw(st.lists(st.integers(1, 4), min_size=k, max_size=k))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh = draw(st.integers(1, 2))
    h, w = draw(st.integers(dh * (kh - 1) + 1, 7)), draw(st.integers(kw, 7))
    return dict(g=g, cg=cg, k=k, bits=bits, points=points, kh=kh, kw=kw, h=h, w=w,
                n=draw(st.integers(1, 2)),
                stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                dilation=(dh, 1),
                padding=tuple(draw(st.integers(0, 1)) for _ in range(4)),
                signed_input=draw(st.booleans()), zp=draw(st.integers(-3, 3)),
                out_zp=draw(st.integers(0, 255)), acc=draw(st.sampled_from(
                    [(32, "wrap"), (12, "wrap"), (12, "saturate"), (10, "saturate")])),
                shuffle=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def _rows(cfg: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows laid out as MultipointParams.as_rows (first points, then extra points), or shuffled."""
    top = 2 ** (cfg["bits"] - 1) - 1
    channel = np.concatenate([np.arange(cfg["k"])] + [
        np.flatnonzero(np.array(cfg["points"]) > j) for j in range(1, 4)]).astype(np.int64)
    if cfg["shuffle"]:
        channel = rng.permutation(channel)
    shape = (channel.size, cfg["cg"], cfg["kh"], cfg["kw"])
    return rng.integers(-top, top + 1, shape).astype(np.int8), channel


def multipoint_node(cfg: dict, rng: np.random.Generator) -> tuple[Node, np.ndarray]:
    w, channel = _rows(cfg, rng)
    info = np.iinfo(np.int8 if cfg["signed_input"] else np.uint8)
    x = rng.integers(info.min, info.max + 1,
                     (cfg["n"], cfg["g"] * cfg["cg"], cfg["h"], cfg["w"])).astype(info.dtype)
    zp = int(np.clip(cfg["zp"] + (0 if cfg["signed_input"] else 128), info.min, info.max))
    mult = rng.uniform(1e-4, 2e-2, channel.size) * np.where(channel < cfg["k"], 1.0, 0.1)
    bias = rng.uniform(-40, 40, cfg["k"])
    rq = multipoint_multipliers(mult, channel, cfg["k"], bias)
    bits, mode = cfg["acc"]
    geometry = dict(stride=list(cfg["stride"]), padding=list(cfg["padding"]),
                    dilation=list(cfg["dilation"]), groups=cfg["g"])
    pad, st_, dl = cfg["padding"], cfg["stride"], cfg["dilation"]
    oh = (cfg["h"] + pad[0] + pad[2] - dl[0] * (cfg["kh"] - 1) - 1) // st_[0] + 1
    ow = (cfg["w"] + pad[1] + pad[3] - dl[1] * (cfg["kw"] - 1) - 1) // st_[1] + 1
    node = Node("mp", "multipoint_conv2d", ("x",), (cfg["n"], cfg["k"], oh, ow),
                TensorQuant(0.1, cfg["out_zp"], 0, 255),
                {"accumulator": {"bits": bits, "mode": mode}, "input_zero_point": zp,
                 "requant": {"mode": "dyadic", "clamp": [0, 255]}, "weight_bits": cfg["bits"],
                 **geometry},
                {"weight_rows": w, "row_channel": channel, "rq_multiplier": rq.m,
                 "rq_shift": rq.shift, "requant_bias": rq.bias})
    return node, x


@settings(max_examples=80)
@given(conv_layers())
def test_multipoint_conv_fast_equals_reference(cfg):
    rng = np.random.default_rng(cfg["seed"])
    node, x = multipoint_node(cfg, rng)
    pad = cfg["padding"]
    assert node_errors(None, node) == []
    fast = execute_node(node, [x])
    ref = execute_node(node, [x], backend="reference")
    np.testing.assert_array_equal(fast[0], ref[0])
    assert fast[1] == ref[1]
    acc = AccumulatorSpec(*cfg["acc"])
    args = (x, node.attrs["input_zero_point"], node.arrays["weight_rows"],
            node.arrays["row_channel"], cfg["k"], cfg["stride"], pad, cfg["dilation"], cfg["g"])
    a, b = conv2d_rows(*args, acc=acc), conv2d_rows_reference(*args, acc=acc)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.overflow_count == b.overflow_count


@settings(max_examples=40)
@given(st.integers(1, 5), st.integers(1, 9), st.integers(2, 8), st.integers(0, 2**16),
       st.sampled_from([(32, "wrap"), (10, "wrap"), (10, "saturate")]))
def test_multipoint_linear_fast_equals_reference(k, n_in, bits, seed, acc):
    rng = np.random.default_rng(seed)
    top = 2 ** (bits - 1) - 1
    channel = np.concatenate([np.arange(k), rng.integers(0, k, rng.integers(0, 2 * k + 1))])
    w = rng.integers(-top, top + 1, (channel.size, n_in)).astype(np.int8)
    x = rng.integers(0, 256, (3, n_in)).astype(np.uint8)
    spec = AccumulatorSpec(*acc)
    a, b = linear_rows(x, 77, w, spec), linear_rows_reference(x, 77, w, spec)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.overflow_count == b.overflow_count
    rq = multipoint_multipliers(rng.uniform(1e-3, 1e-1, channel.size), channel, k,
                                rng.uniform(-9, 9, k))
    node = Node("mp", "multipoint_linear", ("x",), (3, k), TensorQuant(0.1, 0, -128, 127),
                {"accumulator": {"bits": acc[0], "mode": acc[1]}, "input_zero_point": 77,
                 "requant": {"mode": "dyadic", "clamp": [-100, 127]}, "weight_bits": bits},
                {"weight_rows": w, "row_channel": channel, "rq_multiplier": rq.m,
                 "rq_shift": rq.shift, "requant_bias": rq.bias})
    assert node_errors(None, node) == []
    np.testing.assert_array_equal(execute_node(node, [x])[0],
                                  execute_node(node, [x], backend="reference")[0])


def test_node_checks_name_the_problem():
    cfg = dict(g=2, cg=2, k=4, bits=3, points=[1, 2, 1, 3], kh=3, kw=3, h=5, w=5, n=1,
               stride=(1, 1), dilation=(1, 1), padding=(1, 1, 1, 1), signed_input=False, zp=0,
               out_zp=0, acc=(32, "wrap"), shuffle=False, seed=0)
    node, _ = multipoint_node(cfg, np.random.default_rng(0))

    def broken(**arrays):
        return node_errors(None, Node(node.name, node.op, node.inputs, node.out_shape, node.out,
                                      dict(node.attrs), {**node.arrays, **arrays}))
    assert any("signed 3-bit codes" in e for e in broken(
        weight_rows=np.full(node.arrays["weight_rows"].shape, 4, np.int8)))
    assert any("row_channel must lie in [0, 3]" in e for e in broken(
        row_channel=np.full(node.arrays["row_channel"].shape, 4)))
    assert any("rq_shift must be integers of shape (4,)" in e for e in broken(
        rq_shift=np.zeros(3, np.int64)))
    float32 = dict(node.attrs, requant={"mode": "float32", "clamp": [0, 255]})
    errs = node_errors(None, Node(node.name, node.op, node.inputs, node.out_shape, node.out,
                                  float32, {**node.arrays, "rq_scale_f32": np.ones(4, np.float32)}))
    assert any("requant mode must be 'dyadic'" in e for e in errs)


# ---- 5. lowering, execution, verification, cost ----------------------------------------------

def test_lowered_program_runs_within_one_lsb(state, batches):
    qm = assign_points(state, [batches], budget=0.5).model()
    program = lower(qm)
    ops = {n.op for n in program.nodes()}
    assert {"multipoint_conv2d", "multipoint_linear"} <= ops
    codes = qm.quantize_input(batches)
    fast = execute(program, codes)
    np.testing.assert_array_equal(fast.output,
                                  execute(program, codes, backend="reference").output)
    report = verify(qm, program, batches)
    assert int(report.per_layer["max_lsb_diff"].max()) <= 1
    for node in program.nodes():
        if node.op.startswith("multipoint"):
            assert node.arrays["weight_rows"].shape[0] == qm.weight_params(node.name).rows
    with pytest.raises(ProgramError, match="requantize dyadically"):
        lower(qm, requant="float32")
    with pytest.raises(ProgramError, match="int16_pairs"):
        lower(qm, accumulator_mode="int16_pairs")


def test_saved_program_round_trips(state, batches, tmp_path):
    from hwsim.ir import load_program, save_program

    qm = assign_points(state, [batches], budget=0.2).model()
    program = lower(qm)
    save_program(program, tmp_path / "mp")
    again = load_program(tmp_path / "mp.json")
    codes = qm.quantize_input(batches)
    np.testing.assert_array_equal(execute(program, codes).output, execute(again, codes).output)


def test_workload_prices_the_rows(state, batches):
    qm = assign_points(state, [batches], budget=0.5).model()
    program = lower(qm)
    shapes = {s.name: s for s in program_workload(program)}
    for name in multipoint_layers(qm):
        rec, params = qm.graph[name], qm.weight_params(name)
        s = shapes[name]
        assert s.weight_bits == 3 and s.weight_format == "int"
        if rec.op == "linear" or rec.attrs["groups"] == 1:
            assert s.out_channels == params.rows
        elif rec.weight.shape[1] == 1:                         # depthwise: one group per row
            assert s.out_channels == s.in_channels == s.groups == params.rows
        else:
            g = rec.attrs["groups"]
            busiest = np.bincount(params.as_rows().channel // (rec.weight.shape[0] // g)).max()
            assert s.out_channels == g * busiest
    base = LayerShape(name="l", kind="conv", in_h=8, in_w=8, in_channels=8, out_channels=8,
                      kernel_h=3, kernel_w=3, groups=8)
    assert rows_layer_shape(base, 11).macs() == 11 * base.macs() // 8
    with pytest.raises(WorkloadError, match="at least 8 weight rows"):
        rows_layer_shape(base, 7)


def test_extra_row_cost_is_the_layer_with_one_more_row(state, batches):
    from hwsim.arch import load_accelerator
    from hwsim.codesign.multipoint import extra_row_cost, one_point_totals
    from hwsim.cost import cost_network

    accel = load_accelerator(HW)
    cost = extra_row_cost(accel, state, "latency_cycles")
    base = one_point_totals(cost)
    for name, layer in cost.layers.items():
        totals = cost.totals(name, range(layer.out_channels, 2 * layer.out_channels + 1))
        prices = cost.row_costs(name, layer.out_channels)
        assert np.all(prices >= 0)
        if np.all(np.diff(totals) >= 0):
            np.testing.assert_array_equal(np.cumsum(prices), totals[1:] - totals[0])
    budget = 0.3 * sum(base.values())
    fixed = assign_points(state, [batches], budget=budget, cost=cost)
    program = lower(fixed.model())
    realized = cost_network(accel, program_workload(program)).per_layer.set_index("name")
    spent = 0.0
    for name, layer in cost.layers.items():
        extra = fixed.weight_params[name].extra_points
        priced = float(cost.row_costs(name, extra).sum()) if extra else 0.0
        spent += priced
        if layer.groups == 1 or layer.in_channels == layer.groups:   # rows placed as priced
            assert float(realized.loc[name, "total_cycles"]) <= base[name] + priced
    assert spent <= budget
    with pytest.raises(WorkloadError, match="not a multipoint layer"):
        cost("nope", 1)


# ---- 6. MobileNetV2 (real weights) -----------------------------------------------------------

@pytest.mark.slow
def test_mobilenet_v2_integer_within_one_lsb_of_fake_quant():
    from hwsim.flows import quantize_zoo_model

    flow = quantize_zoo_model("mobilenet_v2", bits=4, act_bits=8, weight_family="multipoint",
                              first_last_int8=True, points_budget=0.1)
    qm, program = flow.qm, flow.program
    names = multipoint_layers(qm)
    k = sum(qm.graph[n].weight.shape[0] for n in names)
    assert sum(qm.weight_params(n).extra_points for n in names) == int(0.1 * k)
    report = verify(qm, program, flow.eval_images[:6])
    mp = report.per_layer[report.per_layer["op"].str.startswith("multipoint")]
    assert len(mp) == len(names) and int(mp["max_lsb_diff"].max()) <= 1
    assert int(report.per_layer["max_lsb_diff"].max()) <= 1
    # the reference on real data: the last depthwise conv (7x7) and the 1x1 after it
    run = execute(program, qm.quantize_input(flow.eval_images[:1]), record=True)
    node = program.node([n for n in names if qm.graph[n].weight.shape[1] == 1][-1])
    x = run.tensors[node.inputs[0]]
    np.testing.assert_array_equal(execute_node(node, [x])[0],
                                  execute_node(node, [x], backend="reference")[0])
    # Costed with its extra rows: every multipoint layer's MACs grow by its rows / channels
    # (a depthwise row reads one channel; these have no other grouped convs).
    from hwsim.workloads import builtin_workload, program_workload

    plain = {layer.name: layer for layer in builtin_workload("mobilenet_v2")}
    priced = {layer.name: layer for layer in program_workload(program)}
    assert set(priced) == set(plain)
    for name in names:
        rows = qm.graph[name].weight.shape[0] + qm.weight_params(name).extra_points
        assert priced[name].macs() * qm.graph[name].weight.shape[0] == plain[name].macs() * rows
    for name in set(plain) - set(names):
        assert priced[name].macs() == plain[name].macs()
