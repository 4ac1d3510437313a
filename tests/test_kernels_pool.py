"""Pooling kernels against the reference and against torch's pooling conventions."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels import global_sum_pool, max_pool2d, max_pool2d_reference, sum_pool2d, sum_pool2d_reference

FAST = settings(max_examples=60, deadline=None)


@st.composite
def pool_cases(draw, symmetric):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if symmetric:  # torch: pad <= kernel / 2
        ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
        pads = (ph, pw, ph, pw)
    else:
        pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, kh - pads[0] - pads[2]), 8))
    w = draw(st.integers(max(1, kw - pads[1] - pads[3]), 8))
    signed = draw(st.booleans())
    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(info.min, info.max + 1, (2, 3, h, w)).astype(dtype)
    return dict(x=x, zp=draw(st.integers(int(info.min), int(info.max))), kernel=(kh, kw), stride=(sh, sw),
                padding=pads, ceil_mode=draw(st.booleans()))


@FAST
@given(case=pool_cases(symmetric=False), include_pad=st.booleans())
def test_sum_pool_matches_reference(case, include_pad):
    args = (case["x"], case["zp"], case["kernel"], case["stride"], case["padding"], include_pad, case["ceil_mode"])
    got, ref = sum_pool2d(*args), sum_pool2d_reference(*args)
    np.testing.assert_array_equal(got.values, ref.values)
    np.testing.assert_array_equal(got.count, ref.count)


@FAST
@given(case=pool_cases(symmetric=True), include_pad=st.booleans())
def test_sum_pool_over_count_is_torch_avg_pool(case, include_pad):
    x, zp = case["x"], case["zp"]
    got = sum_pool2d(x, zp, case["kernel"], case["stride"], case["padding"], include_pad, case["ceil_mode"])
    real = torch.from_numpy(x.astype(np.float64) - zp)
    expect = torch.nn.functional.avg_pool2d(real, case["kernel"], case["stride"], case["padding"][:2],
                                            ceil_mode=case["ceil_mode"], count_include_pad=include_pad).numpy()
    np.testing.assert_allclose(got.values / got.count, expect, rtol=1e-12, atol=1e-12)


@FAST
@given(case=pool_cases(symmetric=False), dilation=st.integers(1, 2))
def test_max_pool_matches_reference(case, dilation):
    x = case["x"]
    span_ok = all(s + p1 + p2 >= dilation * (k - 1) + 1 for s, p1, p2, k in
                  ((x.shape[2], case["padding"][0], case["padding"][2], case["kernel"][0]),
                   (x.shape[3], case["padding"][1], case["padding"][3], case["kernel"][1])))
    if not span_ok:
        dilation = 1
    args = (x, case["kernel"], case["stride"], case["padding"], dilation, case["ceil_mode"])
    got = max_pool2d(*args)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, max_pool2d_reference(*args))
    np.testing.assert_array_equal(max_pool2d(*args, pad_value=0), max_pool2d_reference(*args, pad_value=0))


@FAST
@given(case=pool_cases(symmetric=True), dilation=st.integers(1, 2))
def test_max_pool_matches_torch(case, dilation):
    x = case["x"]
    kh, kw = case["kernel"]
    if x.shape[2] + 2 * case["padding"][0] < dilation * (kh - 1) + 1 or x.shape[3] + 2 * case["padding"][1] < dilation * (kw - 1) + 1:
        dilation = 1
    got = max_pool2d(x, case["kernel"], case["stride"], case["padding"], dilation, case["ceil_mode"])
    expect = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(np.float32)), case["kernel"], case["stride"],
                                            case["padding"][:2], dilation, ceil_mode=case["ceil_mode"]).numpy()
    finite = np.isfinite(expect)  # torch gives -inf where a (dilated) window holds only padding
    np.testing.assert_array_equal(got.astype(np.float32)[finite], expect[finite])
    assert np.all(got[~finite] == np.iinfo(x.dtype).min)


def test_global_sum_pool():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 5, 7, 7), dtype=np.uint8)
    got = global_sum_pool(x, 100)
    assert got.values.shape == (2, 5, 1, 1) and got.count.tolist() == [[49]]
    np.testing.assert_array_equal(got.values[..., 0, 0], (x.astype(np.int64) - 100).sum(axis=(2, 3)))
    ref = sum_pool2d_reference(x, 100, 7, 1, 0)
    np.testing.assert_array_equal(got.values, ref.values)
