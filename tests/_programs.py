"""Random integer programs for executor tests: every op, random shapes, formats and constants."""
from __future__ import annotations

import numpy as np

from hwsim.ir import IntProgram, Node, TensorQuant
from hwsim.kernels import dyadic_multiplier, dyadic_multiplier_pair


def _tq(rng, bits: int, signed: bool) -> TensorQuant:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return TensorQuant(float(rng.uniform(0.01, 0.2)), int(rng.integers(lo, hi + 1)), lo, hi)


def _requant(rng, mode: str, real: np.ndarray, out: TensorQuant, relu: bool) -> tuple[dict, dict]:
    lo = max(out.qmin, out.zero_point) if relu else out.qmin
    attrs = {"mode": mode, "clamp": [int(lo), int(out.qmax)]}
    if mode == "dyadic":
        m, s = dyadic_multiplier(real)
        arrays = {"rq_multiplier": np.asarray(m, np.int64).reshape(-1),
                  "rq_shift": np.asarray(s, np.int64).reshape(-1)}
    else:
        arrays = {"rq_scale_f32": np.asarray(real, np.float32).reshape(-1)}
    return attrs, arrays


def random_program(seed: int, *, mode: str = "dyadic", acc_bits: int = 32,
                   acc_mode: str = "wrap", act_bits: int = 8, w_bits: int = 8) -> IntProgram:
    """input -> conv (grouped, strided, padded) -> {conv 1x1 , maxpool} -> add -> concat ->
    clamp -> avgpool (global) -> flatten -> linear."""
    rng = np.random.default_rng(seed)
    n, c, h, w = 2, int(rng.choice([2, 4])), int(rng.integers(5, 9)), int(rng.integers(5, 9))
    p = IntProgram(f"random{seed}")
    x_q = _tq(rng, act_bits, bool(rng.integers(2)))
    p.add(Node("x", "input", (), (n, c, h, w), x_q))
    acc = {"bits": acc_bits, "mode": acc_mode}

    def conv(name, src, src_q, cin, hin, win, cout, k, stride, pad, groups, relu):
        wmax = (1 << (w_bits - 1)) - 1
        weight = rng.integers(-wmax, wmax + 1, (cout, cin // groups, k, k)).astype(np.int8 if w_bits <= 8 else np.int16)
        zp_w = np.zeros(cout, np.int64) if rng.integers(2) else rng.integers(-3, 4, cout).astype(np.int64)
        s_w = rng.uniform(0.001, 0.05, cout)
        out_q = _tq(rng, act_bits, False)
        attrs_rq, arrays_rq = _requant(rng, mode, src_q.scale * s_w / out_q.scale, out_q, relu)
        oh = (hin + 2 * pad - k) // stride + 1
        ow = (win + 2 * pad - k) // stride + 1
        arrays = {"weight": weight, "weight_zero_point": zp_w, **arrays_rq}
        if rng.integers(2):
            arrays["bias"] = rng.integers(-2000, 2000, cout).astype(np.int64)
        p.add(Node(name, "conv2d", (src,), (n, cout, oh, ow), out_q,
                   attrs={"stride": [stride, stride], "padding": [pad] * 4, "dilation": [1, 1],
                          "groups": groups, "accumulator": acc, "input_zero_point": src_q.zero_point,
                          "requant": attrs_rq, "weight_bits": w_bits}, arrays=arrays))
        return out_q, oh, ow

    groups = int(rng.choice([1, c]))
    c1 = c * int(rng.choice([1, 2]))
    q1, h1, w1 = conv("conv1", "x", x_q, c, h, w, c1, 3, int(rng.integers(1, 3)), 1, groups, True)
    q2, _, _ = conv("conv2", "conv1", q1, c1, h1, w1, c1, 1, 1, 0, 1, False)
    p.add(Node("pool", "maxpool2d", ("conv1",), (n, c1, h1, w1), q1,
               attrs={"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1],
                      "dilation": [1, 1], "ceil_mode": False}))
    q_add = _tq(rng, act_bits, False)
    attrs = {"mode": mode, "clamp": [q_add.qmin, q_add.qmax]}
    if mode == "dyadic":
        ma, mb, shift = dyadic_multiplier_pair(q2.scale / q_add.scale, q1.scale / q_add.scale)
        arrays = {"rq_multiplier": np.array([ma, mb], np.int64), "rq_shift": np.array([shift], np.int64)}
    else:
        arrays = {"rq_scale_f32": np.array([q2.scale / q_add.scale, q1.scale / q_add.scale], np.float32)}
    p.add(Node("add", "add", ("conv2", "pool"), (n, c1, h1, w1), q_add,
               attrs={"input_zero_points": [q2.zero_point, q1.zero_point], "requant": attrs},
               arrays=arrays))
    q_cat = _tq(rng, act_bits, False)
    ra, aa = _requant(rng, mode, np.array([q_add.scale, q1.scale]) / q_cat.scale, q_cat, False)
    p.add(Node("cat", "concat", ("add", "conv1"), (n, 2 * c1, h1, w1), q_cat,
               attrs={"axis": 1, "requant": ra, "input_zero_points": [q_add.zero_point, q1.zero_point]},
               arrays=aa))
    q_cl = _tq(rng, act_bits, False)
    ra, aa = _requant(rng, mode, np.array([q_cat.scale / q_cl.scale]), q_cl, True)
    p.add(Node("clamp", "clamp", ("cat",), (n, 2 * c1, h1, w1), q_cl,
               attrs={"requant": ra, "input_zero_point": q_cat.zero_point}, arrays=aa))
    q_avg = _tq(rng, act_bits, False)
    ra, aa = _requant(rng, mode, np.array([q_cl.scale / (h1 * w1 * q_avg.scale)]), q_avg, False)
    p.add(Node("avg", "avgpool2d", ("clamp",), (n, 2 * c1, 1, 1), q_avg,
               attrs={"global": True, "kernel": [h1, w1], "stride": [1, 1], "padding": [0, 0, 0, 0],
                      "input_zero_point": q_cl.zero_point, "requant": ra},
               arrays=aa))
    p.add(Node("flat", "flatten", ("avg",), (n, 2 * c1), q_avg, attrs={"start_dim": 1}))
    q_fc = _tq(rng, act_bits, True)
    s_w = rng.uniform(0.001, 0.05, 5)
    ra, aa = _requant(rng, mode, q_avg.scale * s_w / q_fc.scale, q_fc, False)
    p.add(Node("fc", "linear", ("flat",), (n, 5), q_fc,
               attrs={"accumulator": acc, "input_zero_point": q_avg.zero_point, "requant": ra,
                      "weight_bits": 8},
               arrays={"weight": rng.integers(-127, 128, (5, 2 * c1)).astype(np.int8),
                       "weight_zero_point": np.zeros(5, np.int64),
                       "bias": rng.integers(-100, 100, 5).astype(np.int64), **aa}))
    return p


def random_input(program: IntProgram, seed: int) -> np.ndarray:
    inp = program.input
    rng = np.random.default_rng(seed + 1)
    return rng.integers(inp.out.qmin, inp.out.qmax + 1, inp.out_shape).astype(inp.out.dtype)
