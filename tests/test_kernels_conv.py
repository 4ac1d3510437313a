"""Fast conv2d_int / linear_int equal the Python-int reference exactly (values and overflow
counts) over random geometry, bit widths, zero points, accumulator widths and modes."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.kernels import (
    AccumulatorSpec,
    conv2d_int,
    conv2d_int_reference,
    linear_int,
    linear_int_reference,
)
from hwsim.kernels import conv as conv_module

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def codes(draw, shape, role):
    """Integer codes of 2..8 bits (signed or unsigned), plus a zero point in range."""
    bits = draw(st.integers(2, 8))
    signed = draw(st.booleans()) if role == "x" else draw(st.sampled_from([True, True, False]))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    dtype = draw(st.sampled_from([np.int8, np.int16])) if signed else draw(st.sampled_from([np.uint8, np.int16]))
    seed = draw(st.integers(0, 2**32 - 1))
    arr = np.random.default_rng(seed).integers(lo, hi + 1, size=shape).astype(dtype)
    return arr, lo, hi


@st.composite
def accumulators(draw):
    bits = draw(st.sampled_from([8, 10, 12, 14, 16, 20, 32, 64]))
    return AccumulatorSpec(bits=bits, mode=draw(st.sampled_from(["wrap", "saturate"])))


@st.composite
def weight_zero_point(draw, k, lo, hi):
    kind = draw(st.sampled_from(["none", "scalar", "channel"]))
    if kind == "none":
        return None
    if kind == "scalar":
        return draw(st.integers(lo, hi))
    return np.array(draw(st.lists(st.integers(lo, hi), min_size=k, max_size=k)), dtype=np.int32)


@st.composite
def bias_vector(draw, k, acc):
    if draw(st.booleans()):
        return None
    mag = min(1 << (acc.bits - 1), 1 << 20)  # sometimes outside a narrow accumulator on purpose
    return np.array(draw(st.lists(st.integers(-mag, mag), min_size=k, max_size=k)), dtype=np.int32)


@st.composite
def conv_cases(draw):
    n = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    kg = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    if depthwise:  # groups == C == K
        cg, kg = 1, 1
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, dilation[0] * (r - 1) + 1 - pads[0] - pads[2]), 7))
    w = draw(st.integers(max(1, dilation[1] * (s - 1) + 1 - pads[1] - pads[3]), 7))
    c, k = groups * cg, groups * kg
    x, xlo, xhi = draw(codes((n, c, h, w), "x"))
    wt, wlo, whi = draw(codes((k, cg, r, s), "w"))
    acc = draw(accumulators())
    return dict(
        x=x, x_zp=draw(st.integers(xlo, xhi)), w=wt, w_zp=draw(weight_zero_point(k, wlo, whi)),
        bias=draw(bias_vector(k, acc)), stride=stride, padding=pads, dilation=dilation,
        groups=groups, acc=acc,
    )


def assert_same(fast, ref):
    assert fast.values.dtype == np.int64
    assert fast.values.shape == ref.values.shape
    np.testing.assert_array_equal(fast.values, ref.values)
    assert fast.overflow_count == ref.overflow_count


@FAST
@given(case=conv_cases(), direct_threshold=st.sampled_from([0, 48, 10**6]))
def test_conv2d_matches_reference(case, direct_threshold):
    # direct_threshold forces grouped convs through BLAS-per-group (0) or the numba kernel (10**6).
    with patch.object(conv_module, "_DIRECT_MAX_GROUP_REDUCTION", direct_threshold):
        fast = conv2d_int(**case)
    assert_same(fast, conv2d_int_reference(**case))


@pytest.mark.slow
@SLOW
@given(case=conv_cases(), direct_threshold=st.sampled_from([0, 48, 10**6]))
def test_conv2d_matches_reference_many(case, direct_threshold):
    with patch.object(conv_module, "_DIRECT_MAX_GROUP_REDUCTION", direct_threshold):
        fast = conv2d_int(**case)
    assert_same(fast, conv2d_int_reference(**case))


@st.composite
def linear_cases(draw):
    n, n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 24)), draw(st.integers(1, 6))
    x, xlo, xhi = draw(codes((n, n_in), "x"))
    w, wlo, whi = draw(codes((n_out, n_in), "w"))
    acc = draw(accumulators())
    return dict(x=x, x_zp=draw(st.integers(xlo, xhi)), w=w, w_zp=draw(weight_zero_point(n_out, wlo, whi)),
                bias=draw(bias_vector(n_out, acc)), acc=acc)


@FAST
@given(case=linear_cases())
def test_linear_matches_reference(case):
    assert_same(linear_int(**case), linear_int_reference(**case))


@pytest.mark.slow
@SLOW
@given(case=linear_cases())
def test_linear_matches_reference_many(case):
    assert_same(linear_int(**case), linear_int_reference(**case))


def test_narrow_accumulators_really_overflow():
    """The property tests are only meaningful if overflow happens: check it does, and that wrap
    and saturate disagree where it does."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (1, 8, 5, 5), dtype=np.uint8)
    w = rng.integers(-128, 128, (4, 8, 3, 3), dtype=np.int8)
    wrap = conv2d_int(x, 0, w, padding=1, acc=AccumulatorSpec(16, "wrap"))
    sat = conv2d_int(x, 0, w, padding=1, acc=AccumulatorSpec(16, "saturate"))
    exact = conv2d_int(x, 0, w, padding=1, acc=AccumulatorSpec(64, "wrap"))
    assert exact.overflow_count == 0
    assert wrap.overflow_count > 10
    out_of_range = (exact.values < -(2**15)) | (exact.values >= 2**15)
    assert wrap.overflow_count == int(out_of_range.sum())
    np.testing.assert_array_equal(wrap.values, ((exact.values + 2**15) % 2**16) - 2**15)
    assert sat.overflow_count >= wrap.overflow_count
    assert np.all((sat.values >= -(2**15)) & (sat.values < 2**15))
    assert_same(sat, conv2d_int_reference(x, 0, w, padding=1, acc=AccumulatorSpec(16, "saturate")))


def test_saturation_is_order_dependent_in_canonical_order():
    # bias 100, products +100 then -100 at 8 bits: 100 -> clip(200)=127 -> 27 (wrap gives 100).
    x = np.array([[1, 1]], dtype=np.int8)
    w = np.array([[100, -100]], dtype=np.int8)
    bias = np.array([100], dtype=np.int32)
    sat = linear_int(x, 0, w, None, bias, AccumulatorSpec(8, "saturate"))
    wrap = linear_int(x, 0, w, None, bias, AccumulatorSpec(8, "wrap"))
    assert sat.values.tolist() == [[27]] and sat.overflow_count == 1
    assert wrap.values.tolist() == [[100]] and wrap.overflow_count == 0


@pytest.mark.parametrize(
    "x_dtype, x_range, w_range, channels, groups",
    [
        (np.uint8, (0, 256), (-128, 128), 96, 1),    # bound > 2^24: chunked float32 GEMM
        (np.uint8, (0, 256), (-128, 128), 128, 2),   # grouped BLAS path with chunks
        (np.int16, (-32768, 32768), (-32768, 32768), 16, 1),  # float64 path
        (np.int32, (-2**30, 2**30), (-2**20, 2**20), 8, 1),   # beyond 2^53: int64 numba path
        (np.int16, (-32768, 32768), (-128, 128), 12, 12),     # depthwise in float64
    ],
)
@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_wide_reductions_take_exact_paths(x_dtype, x_range, w_range, channels, groups, mode):
    rng = np.random.default_rng(channels)
    x = rng.integers(*x_range, size=(1, channels, 4, 4)).astype(x_dtype)
    w = rng.integers(*w_range, size=(4 if groups == 1 else groups, channels // groups, 3, 3)).astype(
        np.int32 if w_range[1] > 2**15 else np.int16 if w_range[1] > 128 else np.int8
    )
    for acc in (AccumulatorSpec(64, mode), AccumulatorSpec(32, mode), AccumulatorSpec(24, mode)):
        case = dict(x=x, x_zp=int(x_range[0] // 3), w=w, w_zp=None, padding=1, groups=groups, acc=acc)
        assert_same(conv2d_int(**case), conv2d_int_reference(**case))


def test_chunking_splits_reduction_below_float32_limit():
    rng = np.random.default_rng(3)
    abs_w = np.abs(rng.integers(-128, 128, size=(5, 3000)))
    chunks = conv_module._float32_chunks(abs_w, 255)
    assert len(chunks) > 1
    assert chunks[0][0] == 0 and chunks[-1][1] == 3000
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for j0, j1 in chunks:
        assert 255 * abs_w[:, j0:j1].sum(axis=1).max() < 2**24


def test_mobilenet_like_shapes_match_reference_on_a_crop():
    """Depthwise stride-2 and pointwise layers at realistic channel counts (small spatial size)."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (2, 32, 9, 9), dtype=np.uint8)
    dw = rng.integers(-127, 128, (32, 1, 3, 3), dtype=np.int8)
    pw = rng.integers(-127, 128, (24, 32, 1, 1), dtype=np.int8)
    bias = rng.integers(-5000, 5000, 32).astype(np.int32)
    for case in (
        dict(x=x, x_zp=3, w=dw, w_zp=None, bias=bias, stride=2, padding=1, groups=32),
        dict(x=x, x_zp=3, w=pw, w_zp=rng.integers(-3, 4, 24).astype(np.int8), bias=bias[:24]),
    ):
        assert_same(conv2d_int(**case), conv2d_int_reference(**case))
