"""Fused conv/linear + requantization equals the unfused kernels exactly, on both paths."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels import (
    conv2d_int,
    conv2d_requantize_dyadic,
    conv2d_requantize_float32,
    dyadic_multiplier,
    linear_int,
    linear_requantize_dyadic,
    linear_requantize_float32,
    requantize_dyadic,
    requantize_float32,
)
from tests.test_kernels_conv import conv_cases, linear_cases

FAST = settings(max_examples=50, deadline=None)


def _requant_args(data, k):
    per_channel = data.draw(st.booleans())
    n = k if per_channel else 1
    mult = np.array([data.draw(st.floats(1e-4, 0.5)) for _ in range(n)])
    scale = mult.astype(np.float32) if per_channel else np.float32(mult[0])
    m, shift = dyadic_multiplier(mult if per_channel else mult[0])
    qmin, qmax = data.draw(st.sampled_from([(0, 255), (-128, 127), (0, 6), (-(2**15), 2**15 - 1)]))
    return scale, m, shift, data.draw(st.integers(qmin, qmax)), qmin, qmax


@FAST
@given(case=conv_cases(), data=st.data())
def test_conv_fused_equals_unfused(case, data):
    k = case["w"].shape[0]
    scale, m, shift, zp, qmin, qmax = _requant_args(data, k)
    base = conv2d_int(**case)
    args = [case[n] for n in ("x", "x_zp", "w", "w_zp", "bias", "stride", "padding", "dilation", "groups", "acc")]
    got = conv2d_requantize_float32(*args, scale, zp, qmin, qmax)
    np.testing.assert_array_equal(got.codes, requantize_float32(base.values, scale, zp, qmin, qmax, axis=1))
    assert got.codes.dtype == requantize_float32(base.values, scale, zp, qmin, qmax).dtype
    assert got.overflow_count == base.overflow_count
    got = conv2d_requantize_dyadic(*args, m, shift, zp, qmin, qmax)
    np.testing.assert_array_equal(got.codes, requantize_dyadic(base.values, m, shift, zp, qmin, qmax, axis=1))
    assert got.overflow_count == base.overflow_count


@FAST
@given(case=linear_cases(), data=st.data())
def test_linear_fused_equals_unfused(case, data):
    k = case["w"].shape[0]
    scale, m, shift, zp, qmin, qmax = _requant_args(data, k)
    base = linear_int(**case)
    args = [case[n] for n in ("x", "x_zp", "w", "w_zp", "bias", "acc")]
    got = linear_requantize_float32(*args, scale, zp, qmin, qmax)
    np.testing.assert_array_equal(got.codes, requantize_float32(base.values, scale, zp, qmin, qmax, axis=1))
    assert got.overflow_count == base.overflow_count
    got = linear_requantize_dyadic(*args, m, shift, zp, qmin, qmax)
    np.testing.assert_array_equal(got.codes, requantize_dyadic(base.values, m, shift, zp, qmin, qmax, axis=1))
    assert got.overflow_count == base.overflow_count
