"""Depthwise conv + requantization on many channels (the channels-last kernel, C >= 128) equals
the int64 reference exactly, for every geometry and both requantization modes."""
import numpy as np
from hypothesis import given, settings, strategies as st

from hwsim.kernels import (AccumulatorSpec, conv2d_int_reference, dyadic_multiplier, prepare_conv2d,
                           requantize_dyadic_reference, requantize_float32_reference)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), channels=st.sampled_from([128, 131]),
       hw=st.tuples(st.integers(3, 9), st.integers(3, 9)), kernel=st.sampled_from([1, 3, 5]),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.tuples(*[st.integers(0, 2)] * 4), signed=st.booleans(),
       per_channel=st.booleans(), mode=st.sampled_from(["dyadic", "float32"]))
def test_many_channel_depthwise_equals_reference(seed, channels, hw, kernel, stride, dilation,
                                                 padding, signed, per_channel, mode):
    rng = np.random.default_rng(seed)
    h, w = hw
    if h + padding[0] + padding[2] < dilation[0] * (kernel - 1) + 1 or \
            w + padding[1] + padding[3] < dilation[1] * (kernel - 1) + 1:
        return  # kernel larger than the padded input: not a valid layer
    lo, hi = (-128, 127) if signed else (0, 255)
    x = rng.integers(lo, hi + 1, (2, channels, h, w)).astype(np.int8 if signed else np.uint8)
    x_zp = int(rng.integers(lo, hi + 1))
    wts = rng.integers(-127, 128, (channels, 1, kernel, kernel)).astype(np.int8)
    bias = rng.integers(-5000, 5000, channels).astype(np.int64)
    n_rq = channels if per_channel else 1
    real = rng.uniform(1e-4, 0.05, n_rq)
    acc = AccumulatorSpec()
    ref = conv2d_int_reference(x, x_zp, wts, None, bias, stride, padding, dilation, channels, acc)
    out = dict(out_zero_point=int(rng.integers(0, 20)), qmin=0, qmax=255)
    if mode == "dyadic":
        m, shift = dyadic_multiplier(real)
        layer = prepare_conv2d(wts, None, bias, stride, padding, dilation, channels, acc,
                               requant="dyadic", m=m, shift=shift, **out)
        expected = requantize_dyadic_reference(ref.values, m if per_channel else m[0],
                                               shift if per_channel else shift[0],
                                               out["out_zero_point"], 0, 255, axis=1)
    else:
        scale = real.astype(np.float32)
        layer = prepare_conv2d(wts, None, bias, stride, padding, dilation, channels, acc,
                               requant="float32", scale_f32=scale, **out)
        expected = requantize_float32_reference(ref.values, scale if per_channel else scale[0],
                                                out["out_zero_point"], 0, 255, axis=1)
    got = layer(x, x_zp)
    np.testing.assert_array_equal(got.codes, expected)
    assert got.overflow_count == ref.overflow_count == 0
