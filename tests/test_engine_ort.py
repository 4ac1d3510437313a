"""hwsim.engines.ort against ONNX Runtime itself: QLinearConv, QLinearMatMul, ConvInteger and
MatMulInteger, 0 mismatches over >= 10^6 outputs per op, including tie-heavy scales
(s_y = s_x s_w / r, small weights, so v = acc * r lands on exact .5 cases).

ONNX Runtime's u8 x s8 GEMM saturates adjacent product pairs to int16 on CPUs without VNNI; the
tests probe which behaviour this ORT build has and compare with the matching hwsim mode.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'test' extra; install hwsim[test]")

from hwsim.engines import EngineError, conv_integer, matmul_integer, qlinear_conv, qlinear_matmul  # noqa: E402
from hwsim.engines._pairs import pair_saturation_excess  # noqa: E402
from hwsim.kernels import conv2d_int, linear_int, ort_output_scale  # noqa: E402
from tests import _onnx_models as om  # noqa: E402

TIE_RATIOS = (0.5, 0.25, 0.75, 0.125, 1.5, 2.5)
MIN_OUTPUTS_PER_OP = 10**6
DTYPE_PAIRS = ((np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8))


@functools.lru_cache(maxsize=1)
def ort_pairs_saturate() -> bool:
    """True when this ORT build sums u8 x s8 products in saturating int16 pairs (no VNNI)."""
    a = np.array([[255, 255]], dtype=np.uint8)
    b = np.array([[127], [127]], dtype=np.int8)
    y = int(om.run(om.matmul_integer_model(a, b, np.uint8(0), np.int8(0)), a=a, b=b)[0, 0])
    assert y in (2 * 255 * 127, 32767), f"ONNX Runtime gave {y} for 255*127*2: neither exact nor int16-saturated"
    return y == 32767


def _codes(rng, dtype, shape, lo=None, hi=None) -> np.ndarray:
    info = np.iinfo(dtype)
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def _scales(rng, tie: bool, n_w: int):
    """(s_x, s_w (n_w,), s_y) as float32. Tie-heavy: powers of two so f32(s_x s_w) / s_y == r."""
    if tie:
        s_x = np.float32(2.0 ** -int(rng.integers(4, 9)))
        s_w = (2.0 ** -rng.integers(5, 10, size=n_w)).astype(np.float32)
        r = float(rng.choice(TIE_RATIOS))
        s_y = np.float32(float(s_x) * float(s_w.max()) / r)
        return s_x, s_w, s_y
    s_x = np.float32(rng.uniform(0.005, 0.05))
    s_w = rng.uniform(0.001, 0.02, size=n_w).astype(np.float32)
    return s_x, s_w, np.float32(rng.uniform(0.02, 0.5))


def _exact_halves(acc: np.ndarray, scale_f32: np.ndarray, y_zp: int, qmin: int, qmax: int) -> int:
    """How many outputs requantize from an exact .5 inside the output range (acc (N, K, ...),
    scale per tensor or per axis 1): the cases where the rounding rule decides the code."""
    sc = np.asarray(scale_f32, dtype=np.float32).reshape((1, -1) + (1,) * (acc.ndim - 2))
    v = acc.astype(np.float32) * sc
    inside = (v >= qmin - y_zp) & (v <= qmax - y_zp)
    return int(np.count_nonzero(inside & (v - np.floor(v) == np.float32(0.5))))


def _mismatch_report(op: str, case: dict, got: np.ndarray, want: np.ndarray) -> str:
    bad = np.argwhere(got != want)
    i = tuple(bad[0])
    return f"{op} {case}: {len(bad)} of {want.size} differ; first at {i}: hwsim {got[i]} vs ORT {want[i]}"


CONV_CASES = [  # (N, C, H, W, K, R, S, group, stride, pads, dilation)
    (2, 32, 28, 28, 64, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),
    (2, 64, 28, 28, 64, 3, 3, 64, (1, 1), (1, 1, 1, 1), (1, 1)),       # depthwise
    (1, 48, 31, 29, 96, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (2, 32, 33, 30, 64, 3, 3, 4, (2, 2), (1, 0, 2, 1), (1, 1)),        # grouped, asymmetric pads
    (2, 24, 30, 30, 48, 3, 3, 1, (1, 2), (2, 2, 2, 2), (2, 2)),        # dilated
    (1, 96, 20, 20, 96, 5, 5, 96, (2, 2), (2, 2, 2, 2), (1, 1)),       # depthwise 5x5 stride 2
    (2, 16, 40, 40, 32, 3, 3, 2, (1, 1), (0, 1, 1, 0), (1, 3)),
    (1, 64, 14, 14, 128, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),
]


def _conv_case(rng, shape, xdt, wdt, per_channel: bool, with_bias: bool, tie: bool):
    n, c, h, w_, k, r, s, g, stride, pads, dil = shape
    x = _codes(rng, xdt, (n, c, h, w_))
    # Small weights on tie-heavy cases keep acc * r near the output range: many exact .5 values.
    w = _codes(rng, wdt, (k, c // g, r, s), *((-3, 3) if tie and wdt == np.int8 else (120, 136) if tie else (None, None)))
    x_zp = xdt(rng.integers(np.iinfo(xdt).min // 2 + 64, np.iinfo(xdt).max // 2 + 1) if xdt == np.uint8 else rng.integers(-10, 10))
    w_zp = wdt(128 if wdt == np.uint8 else 0)
    s_x, s_w, s_y = _scales(rng, tie, k if per_channel else 1)
    y_zp = xdt(rng.integers(100, 156) if xdt == np.uint8 else rng.integers(-20, 20))
    bias = rng.integers(-300 if tie else -20000, 300 if tie else 20000, size=k).astype(np.int32) if with_bias else None
    geom = dict(strides=stride, pads=pads, dilations=dil, group=g)
    return x, w, s_x, x_zp, (s_w if per_channel else s_w[0]), w_zp, s_y, y_zp, bias, geom


def test_qlinear_conv_bit_exact_with_ort():
    rng = np.random.default_rng(20240401)
    pairs = ort_pairs_saturate()
    total, i, halves = 0, 0, 0
    for shape in CONV_CASES:
        for xdt, wdt in DTYPE_PAIRS:
            per_channel, with_bias, tie = bool(i % 2), bool((i // 2) % 2), i % 3 != 2
            i += 1
            x, w, sx, xzp, sw, wzp, sy, yzp, b, geom = _conv_case(rng, shape, xdt, wdt, per_channel, with_bias, tie)
            model = om.qlinear_conv_model(x, w, sx, xzp, sw, wzp, sy, yzp, b, geom["strides"], geom["pads"], geom["dilations"], geom["group"])
            want = om.run(model, x=x, w=w)
            got = qlinear_conv(x, sx, xzp, w, sw, wzp, sy, yzp, b, int16_pairs=pairs, **geom)
            case = dict(shape=shape, x=xdt.__name__, w=wdt.__name__, per_channel=per_channel, bias=with_bias, tie=tie)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want), _mismatch_report("QLinearConv", case, got, want)
            total += want.size
            acc = conv2d_int(x, int(xzp), w, int(wzp), None if b is None else b.astype(np.int64), geom["strides"],
                             geom["pads"], geom["dilations"], geom["group"]).values
            info = np.iinfo(want.dtype)
            halves += _exact_halves(acc, ort_output_scale(sx, sw, sy), int(yzp), int(info.min), int(info.max))
    print(f"QLinearConv: {total} outputs, 0 mismatches, {halves} exact .5 cases (int16 pairs: {pairs})")
    assert total >= MIN_OUTPUTS_PER_OP
    assert halves >= total // 100  # the tie-heavy scales really exercise round-half-even


def test_conv_integer_bit_exact_with_ort():
    rng = np.random.default_rng(7)
    total = 0
    for j, shape in enumerate(CONV_CASES):
        n, c, h, w_, k, r, s, g, stride, pads, dil = shape
        for xdt, wdt in DTYPE_PAIRS:
            x, w = _codes(rng, xdt, (n, c, h, w_)), _codes(rng, wdt, (k, c // g, r, s))
            x_zp = xdt(rng.integers(0, 100))
            w_zp = wdt(rng.integers(0, 20))  # ORT 1.32 rejects per-channel w_zero_point here
            geom = dict(strides=stride, pads=pads, dilations=dil, group=g)
            want = om.run(om.conv_integer_model(x, w, x_zp, w_zp, stride, pads, dil, g), x=x, w=w)
            got = conv_integer(x, w, x_zp, w_zp, **geom)
            case = dict(shape=shape, x=xdt.__name__, w=wdt.__name__)
            assert got.dtype == want.dtype == np.int32
            assert np.array_equal(got, want), _mismatch_report("ConvInteger", case, got, want)
            total += want.size
    print(f"ConvInteger: {total} outputs, 0 mismatches")
    assert total >= MIN_OUTPUTS_PER_OP


MATMUL_CASES = [(512, 256, 128), (300, 577, 64), (1024, 96, 200), (257, 1023, 33), (1024, 64, 100)]  # (M, K, N)


def test_qlinear_matmul_bit_exact_with_ort():
    rng = np.random.default_rng(11)
    pairs = ort_pairs_saturate()
    total, i, halves = 0, 0, 0
    for m, kk, n in MATMUL_CASES:
        for adt, bdt in DTYPE_PAIRS:
            per_column, tie = bool(i % 2), i % 3 != 2
            i += 1
            a = _codes(rng, adt, (m, kk))
            b = _codes(rng, bdt, (kk, n), *((-2, 2) if tie and bdt == np.int8 else (125, 131) if tie else (None, None)))
            a_zp = adt(rng.integers(0, 30))
            b_zp = (rng.integers(-3, 4, size=n) + (128 if bdt == np.uint8 else 0)).astype(bdt) if per_column else bdt(128 if bdt == np.uint8 else 0)
            s_a, s_b, s_y = _scales(rng, tie, n if per_column else 1)
            s_b = s_b if per_column else s_b[0]
            y_zp = adt(rng.integers(100, 156) if adt == np.uint8 else rng.integers(-20, 20))
            want = om.run(om.qlinear_matmul_model(a, b, s_a, a_zp, s_b, b_zp, s_y, y_zp), a=a, b=b)
            got = qlinear_matmul(a, s_a, a_zp, b, s_b, b_zp, s_y, y_zp, int16_pairs=pairs)
            case = dict(shape=(m, kk, n), a=adt.__name__, b=bdt.__name__, per_column=per_column, tie=tie)
            assert got.dtype == want.dtype
            assert np.array_equal(got, want), _mismatch_report("QLinearMatMul", case, got, want)
            total += want.size
            acc = linear_int(a, int(a_zp), np.ascontiguousarray(b.T), b_zp.astype(np.int64) if per_column else int(b_zp)).values
            info = np.iinfo(want.dtype)
            if not (pairs and adt == np.uint8 and bdt == np.int8 and not tie):  # exact acc == ORT's acc
                halves += _exact_halves(acc, ort_output_scale(s_a, s_b, s_y), int(y_zp), int(info.min), int(info.max))
    print(f"QLinearMatMul: {total} outputs, 0 mismatches, {halves} exact .5 cases (int16 pairs: {pairs})")
    assert total >= MIN_OUTPUTS_PER_OP
    assert halves >= 5000  # thousands of outputs where round-half-even decides


def test_matmul_integer_bit_exact_with_ort():
    rng = np.random.default_rng(13)
    pairs = ort_pairs_saturate()
    total = 0
    for j, (m, kk, n) in enumerate(MATMUL_CASES):
        for adt, bdt in DTYPE_PAIRS:
            a = _codes(rng, adt, (2, m // 2, kk))  # batched a: (..., M, K)
            b = _codes(rng, bdt, (kk, n))
            a_zp = adt(rng.integers(0, 50))
            b_zp = rng.integers(0, 9, size=n).astype(bdt) if j % 2 else bdt(rng.integers(0, 9))
            want = om.run(om.matmul_integer_model(a, b, a_zp, b_zp), a=a, b=b)
            got = matmul_integer(a, b, a_zp, b_zp, int16_pairs=pairs)
            assert got.dtype == want.dtype == np.int32
            assert np.array_equal(got, want), _mismatch_report("MatMulInteger", dict(shape=(m, kk, n), a=adt.__name__, b=bdt.__name__), got, want)
            total += want.size
    print(f"MatMulInteger: {total} outputs, 0 mismatches (int16 pairs: {pairs})")
    assert total >= MIN_OUTPUTS_PER_OP


def test_pair_mode_is_needed_on_this_cpu_or_absent():
    """Full-range u8 x s8: exact math differs from a pair-saturating ORT, the pair mode does not."""
    rng = np.random.default_rng(3)
    a, b = _codes(rng, np.uint8, (64, 300)), _codes(rng, np.int8, (300, 40))
    want = om.run(om.matmul_integer_model(a, b, np.uint8(0), np.int8(0)), a=a, b=b)
    exact = matmul_integer(a, b, np.uint8(0), np.int8(0))
    assert np.array_equal(matmul_integer(a, b, np.uint8(0), np.int8(0), int16_pairs=ort_pairs_saturate()), want)
    assert np.array_equal(exact, want) != ort_pairs_saturate()


# --- the pair-saturation emulation against a pure int64 definition ---------------------------

def _pair_excess_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m_n, l_n = a.shape
    out = np.zeros((m_n, b.shape[1]), dtype=np.int64)
    for i in range(m_n):
        for j in range(b.shape[1]):
            for k in range(0, l_n, 2):
                p = int(a[i, k]) * int(b[k, j]) + (int(a[i, k + 1]) * int(b[k + 1, j]) if k + 1 < l_n else 0)
                out[i, j] += min(max(p, -32768), 32767) - p
    return out


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 5), l=st.integers(1, 9), n=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_pair_saturation_excess_matches_int64_definition(m, l, n, seed):
    rng = np.random.default_rng(seed)
    a = _codes(rng, np.uint8, (m, l), 200, 255)  # near full scale: saturation is common
    b = _codes(rng, np.int8, (l, n))
    assert np.array_equal(pair_saturation_excess(a, b), _pair_excess_reference(a, b))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k_per_group=st.integers(1, 4), groups=st.integers(1, 3),
       c_per_group=st.integers(1, 5), r=st.integers(1, 3), s=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.integers(0, 2), dil=st.integers(1, 2), dtypes=st.sampled_from(DTYPE_PAIRS),
       per_channel=st.booleans(), with_bias=st.booleans(), tie=st.booleans())
def test_qlinear_conv_random_small_layers_match_ort(seed, k_per_group, groups, c_per_group, r, s, stride, pad, dil, dtypes,
                                                    per_channel, with_bias, tie):
    rng = np.random.default_rng(seed)
    xdt, wdt = dtypes
    h = w_ = (max(r, s) - 1) * dil + 1 + int(rng.integers(0, 6))
    shape = (2, c_per_group * groups, h, w_, k_per_group * groups, r, s, groups, (stride, stride), (pad, 0, 0, pad), (dil, dil))
    x, w, sx, xzp, sw, wzp, sy, yzp, b, geom = _conv_case(rng, shape, xdt, wdt, per_channel, with_bias, tie)
    model = om.qlinear_conv_model(x, w, sx, xzp, sw, wzp, sy, yzp, b, geom["strides"], geom["pads"], geom["dilations"], geom["group"])
    want = om.run(model, x=x, w=w)
    got = qlinear_conv(x, sx, xzp, w, sw, wzp, sy, yzp, b, int16_pairs=ort_pairs_saturate(), **geom)
    assert np.array_equal(got, want)


# --- bad input ----------------------------------------------------------------------------------

def test_bad_operands_raise_engine_error_naming_the_input():
    x = np.zeros((1, 4, 5, 5), dtype=np.uint8)
    w = np.zeros((8, 4, 3, 3), dtype=np.int8)
    f32 = np.float32
    with pytest.raises(EngineError, match="QLinearConv: input 'x' must be a numpy uint8 or int8"):
        qlinear_conv(x.astype(np.int16), f32(1), np.uint8(0), w, f32(1), np.int8(0), f32(1), np.uint8(0))
    with pytest.raises(EngineError, match=r"'w_scale' must be a scalar or shape \(8,\)"):
        qlinear_conv(x, f32(1), np.uint8(0), w, np.ones(3, f32), np.int8(0), f32(1), np.uint8(0))
    with pytest.raises(EngineError, match="'x_zero_point' must have the dtype of its tensor"):
        qlinear_conv(x, f32(1), np.int8(0), w, f32(1), np.int8(0), f32(1), np.uint8(0))
    with pytest.raises(EngineError, match=r"'B' \(bias\) must be an int32 array of shape \(8,\)"):
        qlinear_conv(x, f32(1), np.uint8(0), w, f32(1), np.int8(0), f32(1), np.uint8(0), np.zeros(8, np.int64))
    with pytest.raises(EngineError, match="'y_scale' must be finite and > 0"):
        qlinear_conv(x, f32(1), np.uint8(0), w, f32(1), np.int8(0), f32(0), np.uint8(0))
    with pytest.raises(EngineError, match="'y_zero_point' must be a uint8 or int8 numpy scalar"):
        qlinear_conv(x, f32(1), np.uint8(0), w, f32(1), np.int8(0), f32(1), 3)
    a, b = np.zeros((4, 6), np.uint8), np.zeros((5, 3), np.int8)
    with pytest.raises(EngineError, match="MatMulInteger: 'a' has K=6 columns but 'b' has 5 rows"):
        matmul_integer(a, b)
    with pytest.raises(EngineError, match="'a_zero_point' must be a scalar"):
        matmul_integer(a, np.zeros((6, 3), np.int8), np.zeros(4, np.uint8))
