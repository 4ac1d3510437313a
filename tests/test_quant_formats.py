"""IntFormat / QuantParams: validation messages and hypothesis properties of the uniform format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quant import IntFormat, QuantError, QuantParams, fit_int_params, fit_params
from quant.formats import params_from_range, quantization_mse, registered_formats

formats = st.builds(
    IntFormat,
    bits=st.integers(2, 16),
    signed=st.booleans(),
    symmetric=st.booleans(),
    per_channel=st.booleans(),
    clipping=st.sampled_from(["minmax", "percentile", "mse"]),
    percentile=st.floats(90.0, 100.0),
)
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
tensors = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1,
                                                  max_side=6), elements=finite)


def _fit(x: np.ndarray, fmt: IntFormat) -> QuantParams:
    return fit_int_params(x, fmt)


def test_validation_messages_follow_sklearn_template():
    with pytest.raises(QuantError, match=r"The 'bits' parameter of IntFormat must be an int in "
                                         r"\[2, 16\]. Got 0 instead."):
        IntFormat(bits=0)
    with pytest.raises(QuantError, match="'clipping' parameter of IntFormat"):
        IntFormat(clipping="max")
    with pytest.raises(QuantError, match="'signed' parameter"):
        IntFormat(signed=1)
    with pytest.raises(QuantError, match="'percentile' parameter"):
        IntFormat(percentile=40.0)
    with pytest.raises(QuantError, match="'bits'"):
        IntFormat(bits=True)


@pytest.mark.parametrize("fmt, qmin, qmax, dtype", [
    (IntFormat(8, signed=True, symmetric=True), -127, 127, np.int8),
    (IntFormat(8, signed=True, symmetric=False), -128, 127, np.int8),
    (IntFormat(8, signed=False, symmetric=False), 0, 255, np.uint8),
    (IntFormat(4, signed=False, symmetric=True), 0, 15, np.uint8),
    (IntFormat(9, signed=True, symmetric=False), -256, 255, np.int16),
    (IntFormat(16, signed=False), 0, 65535, np.uint16),
    (IntFormat(2, signed=True, symmetric=True), -1, 1, np.int8),
])
def test_code_ranges_and_dtypes(fmt, qmin, qmax, dtype):
    assert (fmt.qmin, fmt.qmax) == (qmin, qmax)
    assert fmt.code_dtype == np.dtype(dtype)


def test_int_format_is_registered():
    assert "int" in registered_formats()
    with pytest.raises(QuantError, match="not a registered format; known: int"):
        fit_params(np.ones(3), object())


def test_quantparams_rejects_inconsistent_values():
    fmt = IntFormat(8, signed=True, symmetric=True)
    with pytest.raises(QuantError, match="zero_point must be 0"):
        QuantParams(np.float64(0.1), np.int64(3), None, fmt)
    with pytest.raises(QuantError, match="scale must be finite and > 0"):
        QuantParams(np.float64(0.0), np.int64(0), None, fmt)
    with pytest.raises(QuantError, match="axis must be None"):
        QuantParams(np.ones(3), np.zeros(3), None, fmt)
    p = QuantParams(np.ones(3), np.zeros(3), 0, fmt)
    with pytest.raises(QuantError, match="3 channels on axis 0"):
        p.quantize(np.ones((4, 2)))
    with pytest.raises(QuantError, match="NaN"):
        p.quantize(np.full((3, 1), np.nan))


def test_quantize_matches_pure_python_reference():
    rng = np.random.default_rng(0)
    fmt = IntFormat(5, signed=False, symmetric=False)
    p = params_from_range(np.float64(-0.7), np.float64(2.3), fmt)
    # include exact ties: multiples of scale/2
    x = np.concatenate([rng.uniform(-1, 3, 500), (np.arange(-20, 80) + 0.5) * p.scale])
    codes = p.quantize(x)
    s, zp = float(p.scale), int(p.zero_point)
    ref = [max(fmt.qmin, min(fmt.qmax, round(float(v) / s) + zp)) for v in x]  # half-even
    assert codes.dtype == np.uint8
    assert codes.astype(np.int64).tolist() == ref


@settings(max_examples=150, deadline=None)
@given(x=tensors, fmt=formats)
def test_codes_in_range_and_dtype_and_roundtrip(x, fmt):
    p = _fit(x, fmt)
    codes = p.quantize(x)
    assert codes.dtype == fmt.code_dtype
    assert codes.shape == x.shape
    assert codes.min() >= fmt.qmin and codes.max() <= fmt.qmax
    assert np.array_equal(p.quantize(p.dequantize(codes)), codes)
    if fmt.per_channel:
        assert p.scale.shape == (x.shape[0],) and p.axis == 0
    else:
        assert p.scale.shape == () and p.axis is None
    # scales are float32-representable
    assert np.array_equal(p.scale.astype(np.float32).astype(np.float64), p.scale)


@settings(max_examples=150, deadline=None)
@given(x=tensors, fmt=formats)
def test_zero_exact_and_symmetric_zero_point(x, fmt):
    p = _fit(x, fmt)
    zeros = np.zeros_like(x)
    assert np.all(p.dequantize(p.quantize(zeros)) == 0.0)
    if fmt.symmetric:
        assert np.all(p.zero_point == 0)
    assert np.all((p.zero_point >= fmt.qmin) & (p.zero_point <= fmt.qmax))


@settings(max_examples=150, deadline=None)
@given(x=tensors, fmt=formats)
def test_error_at_most_half_step_inside_clipping_range(x, fmt):
    p = _fit(x, fmt)
    lo, hi = p.representable_range()
    axis_shape = (-1,) + (1,) * (x.ndim - 1) if fmt.per_channel else ()
    lo_b, hi_b = np.reshape(lo, axis_shape), np.reshape(hi, axis_shape)
    s_b = np.reshape(p.scale, axis_shape)
    xf = x.astype(np.float64)
    inside = (xf >= lo_b) & (xf <= hi_b)
    err = np.abs(xf - p.fake_quantize(xf))
    bound = np.broadcast_to(s_b / 2 * (1 + 1e-9), x.shape)
    assert np.all(err[inside] <= bound[inside])


@settings(max_examples=100, deadline=None)
@given(x=tensors, bits=st.integers(2, 16), signed=st.booleans(), symmetric=st.booleans(),
       per_channel=st.booleans())
def test_minmax_covers_data_within_half_step(x, bits, signed, symmetric, per_channel):
    fmt = IntFormat(bits, signed, symmetric, per_channel, "minmax")
    p = _fit(x, fmt)
    xf = x.astype(np.float64)
    if not signed and symmetric:
        xf = np.maximum(xf, 0.0)  # unsigned symmetric represents [0, qmax·s] only
    err = np.abs(xf - p.fake_quantize(xf))
    s_b = np.reshape(p.scale, (-1,) + (1,) * (x.ndim - 1)) if per_channel else p.scale
    # 16-bit grids accumulate the float32 rounding of the scale over 65535 steps
    assert np.all(err <= np.broadcast_to(s_b, x.shape) * (0.5 + 1e-3))


@settings(max_examples=60, deadline=None)
@given(x=tensors, bits=st.integers(2, 16), signed=st.booleans(), symmetric=st.booleans(),
       per_channel=st.booleans())
def test_mse_clipping_never_worse_than_minmax(x, bits, signed, symmetric, per_channel):
    mm = _fit(x, IntFormat(bits, signed, symmetric, per_channel, "minmax"))
    mse = _fit(x, IntFormat(bits, signed, symmetric, per_channel, "mse"))
    assert np.all(quantization_mse(x, mse) <= quantization_mse(x, mm) * (1 + 1e-12))


def test_mse_clipping_beats_minmax_on_heavy_tails():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=20000), [60.0, -55.0]])
    mm = _fit(x, IntFormat(4, True, True, False, "minmax"))
    mse = _fit(x, IntFormat(4, True, True, False, "mse"))
    assert float(mse.scale) < float(mm.scale)
    assert quantization_mse(x, mse) < 0.5 * quantization_mse(x, mm)


def test_percentile_clipping_ignores_outliers():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0, 1, 100000), [1000.0]])
    p = _fit(x, IntFormat(8, False, False, False, "percentile", percentile=99.9))
    assert float(p.scale) * 255 < 1.01
    assert int(p.zero_point) == 0


def test_per_channel_uses_axis_zero():
    w = np.stack([np.linspace(-1, 1, 27), np.linspace(-4, 2, 27)]).reshape(2, 3, 3, 3)
    p = _fit(w, IntFormat(8, True, True, True))
    np.testing.assert_allclose(p.scale, [1 / 127, 4 / 127], rtol=1e-7)
    codes = p.quantize(w)
    assert codes[0].max() == 127 and codes[1].min() == -127


def test_degenerate_range_gets_unit_scale():
    p = _fit(np.zeros((3, 4)), IntFormat(8, False, False, True))
    assert np.all(p.scale == 1.0) and np.all(p.zero_point == 0)
    with pytest.raises(QuantError, match="empty tensor"):
        _fit(np.zeros((0,)), IntFormat())
    with pytest.raises(QuantError, match="NaN or inf"):
        _fit(np.array([1.0, np.inf]), IntFormat())
