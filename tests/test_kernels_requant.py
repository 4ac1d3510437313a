"""Requantization: dyadic against Python-int/Fraction arithmetic, float32 against a plain numpy
float32 implementation of ONNX Runtime's order, multiplier error bounds, 1-LSB accuracy."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels import (
    add_requantize_dyadic,
    add_requantize_dyadic_reference,
    add_requantize_float32,
    add_requantize_float32_reference,
    dyadic_multiplier,
    dyadic_multiplier_pair,
    ort_output_scale,
    output_dtype,
    requantize_dyadic,
    requantize_dyadic_reference,
    requantize_float32,
    requantize_float32_reference,
)

FAST = settings(max_examples=80, deadline=None)
multipliers = st.floats(min_value=2.0**-33, max_value=2.0**31 - 1, allow_nan=False)
small_multipliers = st.floats(min_value=1e-2, max_value=4.0, allow_nan=False)
out_ranges = st.sampled_from([(0, 255), (-128, 127), (0, 6), (-8, 7), (0, 15), (-32768, 32767)])


def _round_half_up(q: Fraction) -> int:
    return (q + Fraction(1, 2)).__floor__()


@FAST
@given(mult=st.lists(multipliers, min_size=1, max_size=6))
def test_dyadic_multiplier_range_and_error_bound(mult):
    m, shift = dyadic_multiplier(np.array(mult))
    assert m.shape == shift.shape == (len(mult),)
    for mi, si, real in zip(m.tolist(), shift.tolist(), mult):
        assert 2**30 <= mi < 2**31 and 0 <= si <= 63
        assert abs(Fraction(mi, 2**si) - Fraction(real)) <= Fraction(1, 2 ** (si + 1))


def test_dyadic_multiplier_handles_one_and_large_and_tiny():
    m, s = dyadic_multiplier(1.0)
    assert (int(m), int(s)) == (2**30, 30)
    m, s = dyadic_multiplier(3.0)  # M >= 1: fewer fractional bits
    assert Fraction(int(m), 2 ** int(s)) == 3
    m, s = dyadic_multiplier(np.nextafter(1.0, 0.0))  # rounds up to 2^31 and carries
    assert int(m) == 2**30 and int(s) == 30
    m, s = dyadic_multiplier(2.0**-33)
    assert int(s) == 63


@FAST
@given(
    data=st.data(),
    shape=st.sampled_from([(2, 3, 4, 4), (5, 3), (7,), (1, 4, 2, 3)]),
    per_channel=st.booleans(),
    out_range=out_ranges,
)
def test_requantize_dyadic_matches_fraction_reference(data, shape, per_channel, out_range):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    acc_bits = data.draw(st.sampled_from([8, 16, 24, 32]))
    acc = rng.integers(-(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1), size=shape, dtype=np.int64)
    axis = 1 if len(shape) > 1 else 0
    channels = shape[axis] if per_channel else 1
    mult = np.array([data.draw(small_multipliers) for _ in range(channels)]) * 2.0 ** -acc_bits * 256
    m, shift = dyadic_multiplier(mult if per_channel else mult[0])
    qmin, qmax = out_range
    zp = data.draw(st.integers(qmin, qmax))
    got = requantize_dyadic(acc, m, shift, zp, qmin, qmax, axis=axis)
    assert got.dtype == output_dtype(qmin, qmax)
    np.testing.assert_array_equal(got, requantize_dyadic_reference(acc, m, shift, zp, qmin, qmax, axis=axis))
    mb = np.broadcast_to(np.moveaxis(np.broadcast_to(m.reshape(-1, *([1] * (len(shape) - axis - 1))), shape), 0, 0), shape)
    sb = np.broadcast_to(shift.reshape(-1, *([1] * (len(shape) - axis - 1))), shape)
    mr = np.broadcast_to(mult.reshape(-1, *([1] * (len(shape) - axis - 1))), shape)
    for idx in np.ndindex(shape):
        a, mi, si = int(acc[idx]), int(mb[idx]), int(sb[idx])
        expect = min(max(_round_half_up(Fraction(a * mi, 2**si)) + zp, qmin), qmax)
        assert int(got[idx]) == expect
        # Within 1 LSB of the exact rational result round(acc * M).
        exact = min(max(round(Fraction(a) * Fraction(float(mr[idx]))) + zp, qmin), qmax)
        assert abs(int(got[idx]) - exact) <= 1


def test_requantize_dyadic_rounds_half_up():
    acc = np.array([-3, -1, 1, 3, 5], dtype=np.int64)
    got = requantize_dyadic(acc, 2**30, 31, 0, -100, 100, axis=0)  # M = 1/2 exactly
    assert got.tolist() == [-1, 0, 1, 2, 3]


def test_requantize_dyadic_split_path_for_wide_accumulators():
    rng = np.random.default_rng(5)
    acc = rng.integers(-(2**44), 2**44, size=(3, 4, 5), dtype=np.int64)
    m, shift = dyadic_multiplier(np.array([3e-10, 1e-9, 5e-10, 2e-10]))
    assert int(np.abs(acc).max()) * int(m.max()) >= 2**63  # the plain int64 product would overflow
    got = requantize_dyadic(acc, m, shift, 7, -(2**15), 2**15 - 1, axis=1)
    np.testing.assert_array_equal(got, requantize_dyadic_reference(acc, m, shift, 7, -(2**15), 2**15 - 1, axis=1))


def _ort_numpy(acc, scale, zp, qmin, qmax):
    """Plain numpy float32 transcription of ONNX Runtime's requantization."""
    v = acc.astype(np.float32) * scale.astype(np.float32)
    v = np.clip(v, np.float32(qmin - zp), np.float32(qmax - zp))
    return (np.rint(v).astype(np.int64) + zp)


@FAST
@given(data=st.data(), out_range=out_ranges, per_channel=st.booleans())
def test_requantize_float32_matches_numpy_ort(data, out_range, per_channel):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    acc = rng.integers(-(2**20), 2**20, size=(2, 6, 3, 5), dtype=np.int64)
    s_x = np.float32(data.draw(st.floats(1e-3, 1.0)))
    s_w = rng.uniform(1e-4, 1e-1, size=6 if per_channel else ()).astype(np.float32)
    s_y = np.float32(data.draw(st.floats(1e-2, 10.0)))
    scale = ort_output_scale(s_x, s_w, s_y)
    assert scale.dtype == np.float32 and scale == pytest.approx(s_x * s_w / s_y, rel=1e-6)
    qmin, qmax = out_range
    zp = data.draw(st.integers(qmin, qmax))
    got = requantize_float32(acc, scale, zp, qmin, qmax, axis=1)
    expect = _ort_numpy(acc, scale.reshape(-1, 1, 1) if per_channel else scale, zp, qmin, qmax)
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(got[:, :, :1], requantize_float32_reference(acc[:, :, :1], scale, zp, qmin, qmax, axis=1))
    # Within 1 LSB of round(acc * M) with M the exact rational s_x s_w / s_y.
    m_exact = [Fraction(float(s_x)) * Fraction(float(sw)) / Fraction(float(s_y)) for sw in np.atleast_1d(s_w)]
    for idx in list(np.ndindex(acc.shape))[::7]:
        mm = m_exact[idx[1] if per_channel else 0]
        exact = min(max(round(int(acc[idx]) * mm) + zp, qmin), qmax)
        assert abs(int(got[idx]) - exact) <= 1


def test_requantize_float32_ties_round_half_even():
    acc = np.arange(-7, 8, dtype=np.int64)
    got = requantize_float32(acc, np.float32(0.5), 0, -128, 127, axis=0)
    assert got.tolist() == [-4, -3, -2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2, 3, 4]
    np.testing.assert_array_equal(got, _ort_numpy(acc, np.float32(0.5), 0, -128, 127))
    # Ties created by the float32 product itself, with a zero point and clamping.
    acc = np.array([[3, 5, -5, 1000, -1000, 7]], dtype=np.int64)
    scale = np.array([0.25, 0.5, 0.5, 1.0, 1.0, 0.5], dtype=np.float32)
    got = requantize_float32(acc, scale, 10, 0, 255, axis=1)
    assert got.tolist() == [[11, 12, 8, 255, 0, 14]]


def test_requantize_float32_converts_wide_accumulators_like_float32():
    acc = np.array([2**24 + 1, 2**25 + 3], dtype=np.int64)  # not representable in float32
    got = requantize_float32(acc, np.float32(2.0**-20), 0, -(2**15), 2**15 - 1, axis=0)
    np.testing.assert_array_equal(got, _ort_numpy(acc, np.float32(2.0**-20), 0, -(2**15), 2**15 - 1))


@FAST
@given(data=st.data(), out_range=out_ranges)
def test_add_requantize_matches_references(data, out_range):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    a = rng.integers(0, 256, size=(2, 3, 4), dtype=np.uint8)
    b = rng.integers(-128, 128, size=(2, 3, 4)).astype(np.int8)
    a_zp, b_zp = data.draw(st.integers(0, 255)), data.draw(st.integers(-128, 127))
    ma_real, mb_real = data.draw(st.floats(1e-3, 4.0)), data.draw(st.floats(1e-3, 4.0))
    m_a, m_b, shift = dyadic_multiplier_pair(ma_real, mb_real)
    for mi, real in ((m_a, ma_real), (m_b, mb_real)):
        assert abs(Fraction(mi, 2**shift) - Fraction(real)) <= Fraction(1, 2 ** (shift + 1))
    assert max(m_a, m_b) >= 2**30
    qmin, qmax = out_range
    zp = data.draw(st.integers(qmin, qmax))
    got = add_requantize_dyadic(a, a_zp, m_a, b, b_zp, m_b, shift, zp, qmin, qmax)
    np.testing.assert_array_equal(got, add_requantize_dyadic_reference(a, a_zp, m_a, b, b_zp, m_b, shift, zp, qmin, qmax))
    for idx in np.ndindex(a.shape):
        t = (int(a[idx]) - a_zp) * m_a + (int(b[idx]) - b_zp) * m_b
        assert int(got[idx]) == min(max(_round_half_up(Fraction(t, 2**shift)) + zp, qmin), qmax)
    sa, sb = np.float32(ma_real), np.float32(mb_real)
    got = add_requantize_float32(a, a_zp, sa, b, b_zp, sb, zp, qmin, qmax)
    np.testing.assert_array_equal(got, add_requantize_float32_reference(a, a_zp, sa, b, b_zp, sb, zp, qmin, qmax))
    # QLinearAdd's order (zero points folded in before one rounding) is within 1 LSB of the
    # exactly rounded real sum, and equal to it away from ties
    exact = ((a.astype(np.float64) - a_zp) * np.float64(sa) + (b.astype(np.float64) - b_zp)
             * np.float64(sb) + zp)
    assert np.abs(got.astype(np.int64) - np.clip(np.rint(exact), qmin, qmax)).max() <= 1


def test_add_float32_tie_rounds_half_even():
    a = np.array([1, 3, 5], dtype=np.uint8)
    b = np.array([0, 0, 0], dtype=np.uint8)
    got = add_requantize_float32(a, 0, np.float32(0.5), b, 0, np.float32(1.0), 0, 0, 255)
    assert got.tolist() == [0, 2, 2]


def test_output_dtype_is_smallest():
    assert output_dtype(0, 255) == np.uint8
    assert output_dtype(-128, 127) == np.int8
    assert output_dtype(-1, 255) == np.int16
    assert output_dtype(0, 65535) == np.uint16
    assert output_dtype(-(2**31), 2**31 - 1) == np.int32
