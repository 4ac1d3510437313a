"""APoT format: integer levels, validation, nearest-level quantization, alpha fits, torch STE.

``pytest -s`` prints the N(0, 1) MSE figures (APoT vs uniform, 3/4/5 bits) the README quotes.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quant.errors import QuantError
from quant.formats.apot import (APoTFormat, APoTParams, apot_fake_quant, apot_levels,
                                apot_term_sets, apot_terms, fit_apot, fit_apot_output_error)
from quant.formats.uniform import IntFormat
from quant.formats.uniform_fit import fit_int_params

# --------------------------------------------------------------------------------------------
# Integer levels
# --------------------------------------------------------------------------------------------

OFFICIAL_LEVELS = {
    2: [0, 1, 2, 4],
    3: [0, 1, 2, 3, 4, 6, 8, 10],
    4: [0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 33, 36, 48],
}


@pytest.mark.parametrize("b", sorted(OFFICIAL_LEVELS))
def test_levels_match_the_official_construction(b):
    levels = apot_levels(b)
    assert levels.dtype == np.int64
    assert levels.tolist() == OFFICIAL_LEVELS[b]


@pytest.mark.parametrize(("b", "count", "lmax", "terms"),
                         [(2, 4, 4, 1), (3, 8, 10, 2), (4, 16, 48, 2), (5, 32, 100, 3),
                          (6, 64, 448, 3)])
def test_level_counts_maxima_and_terms(b, count, lmax, terms):
    levels = apot_levels(b)
    assert len(levels) == len(set(levels.tolist())) == count
    assert int(levels[-1]) == lmax and int(levels[0]) == 0
    assert np.all(np.diff(levels) > 0)
    assert apot_terms(b) == terms == len(apot_term_sets(b))


def test_term_sets_are_the_official_ones():
    assert apot_term_sets(3) == ((0, 1, 4, 8), (0, 2))
    assert apot_term_sets(5) == ((0, 2, 16, 64), (0, 1, 8, 32), (0, 4))
    assert apot_term_sets(6) == ((0, 4, 32, 256), (0, 2, 16, 128), (0, 1, 8, 64))


@given(st.integers(2, 6))
def test_every_level_has_at_most_n_set_bits(b):
    n = apot_terms(b)
    assert max(bin(int(lv)).count("1") for lv in apot_levels(b)) <= n


def test_levels_are_read_only():
    with pytest.raises(ValueError):
        apot_levels(3)[0] = 5
    with pytest.raises(ValueError):
        APoTFormat().levels[1] = 0


@pytest.mark.parametrize("b", [1, 7, 0, True, 3.0])
def test_levels_outside_2_to_6_raise(b):
    with pytest.raises(QuantError, match=r"'magnitude_bits' parameter of apot_levels must be an "
                                         r"int in \[2, 6\]"):
        apot_levels(b)
    with pytest.raises(QuantError, match="'magnitude_bits' parameter of apot_terms"):
        apot_terms(b)


# --------------------------------------------------------------------------------------------
# Format validation and properties
# --------------------------------------------------------------------------------------------

def test_signed_8_bits_is_b7_and_rejected_clearly():
    with pytest.raises(QuantError) as info:
        APoTFormat(bits=8)
    msg = str(info.value)
    assert "The 'bits' parameter of APoTFormat must be an int in [3, 7]" in msg
    assert "B = bits-1 magnitude bits" in msg and "B = 2..6" in msg
    assert msg.endswith("Got 8 instead.")


@pytest.mark.parametrize("kwargs", [{"bits": 2}, {"bits": 0}, {"bits": True}, {"bits": 4.0},
                                    {"bits": "4"}, {"bits": 7, "signed": False},
                                    {"bits": 1, "signed": False}])
def test_bad_bits_raise_naming_the_parameter(kwargs):
    with pytest.raises(QuantError, match=r"The 'bits' parameter of APoTFormat must be an int"):
        APoTFormat(**kwargs)


@pytest.mark.parametrize(("kwargs", "param"), [({"signed": 1}, "signed"),
                                               ({"per_channel": "yes"}, "per_channel"),
                                               ({"clipping": "minmax"}, "clipping")])
def test_other_bad_parameters_raise(kwargs, param):
    with pytest.raises(QuantError, match=f"The '{param}' parameter of APoTFormat"):
        APoTFormat(**kwargs)


def test_format_properties():
    f = APoTFormat()
    assert (f.bits, f.signed, f.per_channel, f.clipping) == (4, True, True, "mse")
    assert f.magnitude_bits == 3 and f.terms == 2 and f.level_max == 10
    assert (f.qmin, f.qmax) == (-10, 10) and f.storage_bits == 4
    assert f.code_dtype == np.int8
    assert f.describe() == "apot4-pc"
    assert APoTFormat(per_channel=False).describe() == "apot4"
    assert APoTFormat(signed=False, per_channel=False).describe() == "uapot4"
    assert APoTFormat(bits=7).code_dtype == np.int16 and APoTFormat(bits=7).level_max == 448
    assert APoTFormat(bits=6).code_dtype == np.int8 and APoTFormat(bits=6).level_max == 100
    u6 = APoTFormat(bits=6, signed=False)
    assert u6.code_dtype == np.uint16 and (u6.qmin, u6.qmax) == (0, 448) and u6.terms == 3
    assert APoTFormat(bits=5, signed=False).code_dtype == np.uint8
    assert APoTFormat(bits=2, signed=False).levels.tolist() == [0, 1, 2, 4]
    assert APoTFormat(bits=3).magnitude_bits == 2


# --------------------------------------------------------------------------------------------
# Params validation and conventions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("alpha", "axis", "match"), [
    (0.0, None, "finite and > 0"), (-1.0, None, "finite and > 0"),
    (np.nan, None, "finite and > 0"), (np.inf, None, "finite and > 0"),
    ([1.0, 0.0], 0, "finite and > 0"), (np.ones((2, 2)), 0, r"shape \(\) or \(K,\)"),
    (1.0, 0, "axis must be None"), ([1.0, 2.0], None, "axis must be None"),
    ([1.0], -1, "non-negative int"),
])
def test_params_validation(alpha, axis, match):
    with pytest.raises(QuantError, match=match):
        APoTParams(alpha=alpha, axis=axis, fmt=APoTFormat())


def test_params_need_an_apot_format():
    with pytest.raises(QuantError, match="APoTParams.fmt must be an APoTFormat"):
        APoTParams(alpha=1.0, axis=None, fmt=IntFormat())


def test_scale_and_zero_point():
    p = APoTParams(alpha=[2.0, 5.0], axis=0, fmt=APoTFormat())
    assert p.scale.dtype == np.float64 and np.array_equal(p.scale, [0.2, 0.5])
    assert p.zero_point.dtype == np.int64 and p.zero_point.tolist() == [0, 0]
    p1 = APoTParams(alpha=3.0, axis=None, fmt=APoTFormat(per_channel=False))
    assert p1.scale.shape == () and p1.zero_point.shape == ()
    assert not p.alpha.flags.writeable


def test_ties_go_to_the_smaller_magnitude_and_values_beyond_alpha_clip():
    # B = 3, alpha = L_max = 10: scale 1, so x is directly in integer-level units.
    p = APoTParams(alpha=10.0, axis=None, fmt=APoTFormat(per_channel=False))
    x = np.array([2.5, -2.5, 0.5, -0.5, 5.0, 7.0, 9.0, 5.0000001, 11.0, 1e300, -np.inf, np.inf,
                  -0.0, 0.49])
    assert p.quantize(x).tolist() == [2, -2, 0, 0, 4, 6, 8, 6, 10, 10, -10, 10, 0, 0]
    assert p.quantize(x).dtype == np.int8


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("k", [-3, 0, 5])
def test_every_midpoint_ties_to_the_lower_level(bits, k):
    fmt = APoTFormat(bits=bits, per_channel=False)
    lv = fmt.levels
    scale = 2.0**k                                   # exact: x = mid * scale is an exact tie
    p = APoTParams(alpha=fmt.level_max * scale, axis=None, fmt=fmt)
    mids = (lv[:-1] + lv[1:]) / 2.0
    assert p.quantize(mids * scale).tolist() == lv[:-1].tolist()
    assert p.quantize(-mids * scale).tolist() == (-lv[:-1]).tolist()


def test_unsigned_maps_negatives_to_zero():
    fmt = APoTFormat(bits=4, signed=False, per_channel=False)   # B = 4, L_max = 48
    p = APoTParams(alpha=48.0, axis=None, fmt=fmt)
    codes = p.quantize([-5.0, -0.0, 0.4, 10.0, 34.5, 47.0, 100.0])
    assert codes.dtype == np.uint8
    assert codes.tolist() == [0, 0, 0, 9, 33, 48, 48]


def test_quantize_rejects_nan_and_channel_mismatch():
    p = APoTParams(alpha=[1.0, 2.0], axis=0, fmt=APoTFormat())
    with pytest.raises(QuantError, match=r"NaN \(1 of 4 values\)"):
        p.quantize(np.array([[0.1, np.nan], [0.2, 0.3]]))
    with pytest.raises(QuantError, match="2 channels on axis 0 cannot apply to a tensor of shape"):
        p.quantize(np.zeros((3, 2)))
    with pytest.raises(QuantError, match="2 channels"):
        p.dequantize(np.zeros((3,), dtype=np.int8))


def test_dequantize_checks_codes():
    p = APoTParams(alpha=10.0, axis=None, fmt=APoTFormat(per_channel=False))
    assert p.dequantize(np.array([-10, 3, 0], dtype=np.int8)).tolist() == [-10.0, 3.0, 0.0]
    with pytest.raises(QuantError, match="integer codes"):
        p.dequantize(np.array([1.0]))
    with pytest.raises(QuantError, match=r"2 of 3 codes are not levels of apot4"):
        p.dequantize(np.array([5, 3, -11]))             # 5 and -11 are not B = 3 levels
    pu = APoTParams(alpha=10.0, axis=None, fmt=APoTFormat(bits=3, signed=False,
                                                          per_channel=False))
    with pytest.raises(QuantError, match="1 of 2 codes"):
        pu.dequantize(np.array([-1, 1]))


# --------------------------------------------------------------------------------------------
# Hypothesis: quantize is the nearest level (brute force), idempotent, codes in +-levels
# --------------------------------------------------------------------------------------------

formats = st.builds(APoTFormat, bits=st.integers(3, 7), signed=st.just(True),
                    per_channel=st.booleans()) | st.builds(
    APoTFormat, bits=st.integers(2, 6), signed=st.just(False), per_channel=st.booleans())
values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
alphas = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def params_and_data(draw):
    fmt = draw(formats)
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    x = draw(hnp.arrays(np.float64, shape, elements=values))
    if fmt.per_channel:
        alpha = draw(hnp.arrays(np.float64, (shape[0],), elements=alphas))
        return APoTParams(alpha=alpha, axis=0, fmt=fmt), x
    return APoTParams(alpha=draw(alphas), axis=None, fmt=fmt), x


def _brute_force_codes(p: APoTParams, x: np.ndarray) -> np.ndarray:
    """argmin over ALL levels of |u - L|, u = |x| / scale; first (smallest) level on ties."""
    scale = p.scale if p.axis is None else p.scale.reshape((-1,) + (1,) * (x.ndim - 1))
    mags = np.abs(x) if p.fmt.signed else np.maximum(x, 0.0)
    u = mags / scale
    lv = p.fmt.levels
    best = lv[np.argmin(np.abs(u[..., None] - lv.astype(np.float64)), axis=-1)]
    return np.where(x < 0, -best, best) if p.fmt.signed else best


@settings(max_examples=300)
@given(params_and_data())
def test_quantize_is_the_nearest_level(pd):
    p, x = pd
    codes = p.quantize(x)
    assert codes.shape == x.shape and codes.dtype == p.fmt.code_dtype
    assert np.array_equal(codes.astype(np.int64), _brute_force_codes(p, x))
    allowed = set(p.fmt.levels.tolist())
    if p.fmt.signed:
        allowed |= {-v for v in allowed}
    else:
        assert np.all(codes >= 0)
    assert set(codes.ravel().tolist()) <= allowed


@settings(max_examples=200)
@given(params_and_data())
def test_quantize_is_idempotent_and_dequantize_is_codes_times_scale(pd):
    p, x = pd
    codes = p.quantize(x)
    real = p.dequantize(codes)
    assert real.dtype == np.float64
    scale = p.scale if p.axis is None else p.scale.reshape((-1,) + (1,) * (x.ndim - 1))
    assert np.array_equal(real, codes.astype(np.int64) * scale)
    assert np.array_equal(p.fake_quantize(x), real)
    assert np.array_equal(p.quantize(real), codes)
    # |real| <= alpha, up to the rounding of L_max · (alpha / L_max)
    assert np.all(np.abs(real) <= scale * p.fmt.level_max * (1 + 1e-15))


@settings(max_examples=100)
@given(st.data())
def test_fit_shapes_and_mse_never_worse_than_max(data):
    fmt = data.draw(formats)
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    x = data.draw(hnp.arrays(np.float64, shape, elements=values))
    p_mse = fit_apot(x, fmt)
    p_max = fit_apot(x, APoTFormat(bits=fmt.bits, signed=fmt.signed,
                                   per_channel=fmt.per_channel, clipping="max"))
    if fmt.per_channel:
        assert p_mse.alpha.shape == (shape[0],) and p_mse.axis == 0
    else:
        assert p_mse.alpha.shape == () and p_mse.axis is None
    assert np.all(np.isfinite(p_mse.alpha)) and np.all(p_mse.alpha > 0)
    assert np.array_equal(p_mse.alpha.astype(np.float32).astype(np.float64), p_mse.alpha)
    rows = x.reshape(shape[0], -1) if fmt.per_channel else x.reshape(1, -1)
    err_mse = ((rows - p_mse.fake_quantize(x).reshape(rows.shape)) ** 2).sum(axis=1)
    err_max = ((rows - p_max.fake_quantize(x).reshape(rows.shape)) ** 2).sum(axis=1)
    assert np.all(err_mse <= err_max)


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------

def test_fit_rejects_nan_inf_empty():
    x = np.ones((3, 4))
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    with pytest.raises(QuantError, match=r"NaN or inf \(2 of 12 values\)"):
        fit_apot(x, APoTFormat())
    with pytest.raises(QuantError, match="empty tensor"):
        fit_apot(np.zeros((0, 3)), APoTFormat())
    with pytest.raises(QuantError, match="channel axis 0"):
        fit_apot(np.float64(1.0), APoTFormat())
    with pytest.raises(QuantError, match="needs an APoTFormat"):
        fit_apot(np.ones(3), IntFormat())


@pytest.mark.parametrize("clipping", ["mse", "max"])
def test_all_zero_slices_get_alpha_one(clipping):
    x = np.array([[0.0, 0.0, 0.0], [0.5, -1.0, 0.25], [-0.0, 0.0, 0.0]])
    p = fit_apot(x, APoTFormat(clipping=clipping))
    assert p.alpha[0] == 1.0 and p.alpha[2] == 1.0 and np.all(np.isfinite(p.alpha))
    assert np.all(p.quantize(x)[[0, 2]] == 0)
    pu = fit_apot(-np.abs(x), APoTFormat(signed=False, clipping=clipping))
    assert np.array_equal(pu.alpha, [1.0, 1.0, 1.0])
    assert fit_apot(x, APoTFormat(clipping="max")).alpha[1] == 1.0     # max|x| of row 1


def test_fit_per_channel_fits_each_channel():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 3, 3, 3)) * np.array([0.01, 1.0, 5.0, 100.0])[:, None, None, None]
    p = fit_apot(w, APoTFormat())
    per_row = [float(fit_apot(w[k], APoTFormat(per_channel=False)).alpha) for k in range(4)]
    assert np.array_equal(p.alpha, per_row)
    assert p.fake_quantize(w).shape == w.shape


@pytest.mark.parametrize("dist", ["normal", "laplace", "uniform", "student"])
@pytest.mark.parametrize("bits", [3, 4, 5, 7])
def test_mse_alpha_beats_max_alpha_on_realistic_data(dist, bits):
    rng = np.random.default_rng(bits)
    x = {"normal": lambda size: rng.standard_normal(size),
         "laplace": lambda size: rng.laplace(size=size),
         "uniform": lambda size: rng.random(size),
         "student": lambda size: rng.standard_t(3, size)}[dist]((16, 200))
    fmt = APoTFormat(bits=bits)
    err = {c: ((x - fit_apot(x, APoTFormat(bits=bits, clipping=c)).fake_quantize(x)) ** 2)
           .mean(axis=1) for c in ("mse", "max")}
    assert np.all(err["mse"] <= err["max"])
    assert err["mse"].sum() < err["max"].sum() or dist == "uniform"
    assert fit_apot(x, fmt).alpha.shape == (16,)


def _mse(x: np.ndarray, xq: np.ndarray) -> float:
    return float(np.mean((x - xq) ** 2))


def _uniform_best(x: np.ndarray, bits: int) -> tuple[float, float]:
    """(alpha, MSE) of signed-symmetric uniform ``bits`` (levels k · alpha / (2^(b-1) - 1),
    |k| <= 2^(b-1) - 1) with the best alpha: a 64-point grid over (0, max|x|], then golden
    section between the grid neighbours of the best point (60 iterations)."""
    qmax = 2 ** (bits - 1) - 1
    a = np.abs(x)

    def mse(alpha: float) -> float:
        s = alpha / qmax
        return _mse(a, np.minimum(np.rint(a / s), qmax) * s)

    grid = a.max() * np.arange(1, 65) / 64
    j = int(np.argmin([mse(g) for g in grid]))
    lo, hi = grid[max(j - 1, 0)] if j else 0.0, grid[min(j + 1, 63)]
    g = (np.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = mse(c), mse(d)
    for _ in range(60):
        if fc <= fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = mse(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = mse(d)
    best = min([(fc, c), (fd, d), (mse(grid[j]), grid[j])])
    return float(best[1]), float(best[0])


# Published / reference figures for N(0, 1): (APoT, uniform) best-alpha MSE per bit width.
REFERENCE_MSE = {3: (0.04767, 0.04701), 4: (0.01214, 0.01291), 5: (0.00601, 0.00370)}


@pytest.fixture(scope="module")
def gaussian_figures():
    x = np.random.default_rng(0).standard_normal(1_000_000)
    out = {}
    for bits in (3, 4, 5):
        t0 = time.perf_counter()
        p = fit_apot(x, APoTFormat(bits=bits, per_channel=False))
        seconds = time.perf_counter() - t0
        apot_mse = _mse(x, p.fake_quantize(x))
        u_alpha, u_mse = _uniform_best(x, bits)
        sk = fit_int_params(x, IntFormat(bits=bits, clipping="mse"))
        sk_mse = _mse(x, sk.fake_quantize(x))
        out[bits] = dict(x=x, p=p, apot=apot_mse, alpha=float(p.alpha), uniform=u_mse,
                         u_alpha=u_alpha, uniform_fit=sk_mse, seconds=seconds)
        print(f"\nN(0,1) 1e6 samples, signed {bits}-bit: APoT MSE {apot_mse:.5f} "
              f"(alpha {float(p.alpha):.4f}, fit {seconds * 1e3:.0f} ms) | uniform MSE "
              f"{u_mse:.5f} (alpha {u_alpha:.4f}; uniform_fit 'mse' grid: {sk_mse:.5f}) | "
              f"reference APoT {REFERENCE_MSE[bits][0]} uniform {REFERENCE_MSE[bits][1]}")
    return out


def test_gaussian_4bit_apot_beats_uniform(gaussian_figures):
    f = gaussian_figures[4]
    assert f["apot"] == pytest.approx(0.01214, rel=0.01)
    assert f["alpha"] == pytest.approx(2.63, abs=0.03)
    assert f["uniform"] == pytest.approx(0.01291, rel=0.01)
    assert f["apot"] < f["uniform"]


def test_gaussian_5bit_apot_is_worse_than_uniform(gaussian_figures):
    f = gaussian_figures[5]
    assert f["apot"] == pytest.approx(0.00601, rel=0.02)
    assert f["uniform"] == pytest.approx(0.00370, rel=0.02)
    assert f["apot"] > f["uniform"]


def test_gaussian_3bit_matches_published_figures(gaussian_figures):
    f = gaussian_figures[3]
    assert f["apot"] == pytest.approx(0.04767, rel=0.03)
    assert f["uniform"] == pytest.approx(0.04701, rel=0.03)


@pytest.mark.parametrize("bits", [3, 4, 5])
def test_gaussian_fit_is_a_local_minimum_and_fast(gaussian_figures, bits):
    f = gaussian_figures[bits]
    x, p = f["x"], f["p"]
    for factor in (0.99, 1.01):
        q = APoTParams(alpha=float(p.alpha) * factor, axis=None, fmt=p.fmt)
        assert _mse(x, q.fake_quantize(x)) >= f["apot"]
    # the uniform reference search is careful: no worse than quant's own uniform MSE grid
    assert f["uniform"] <= f["uniform_fit"] * (1 + 1e-9)
    assert f["seconds"] < 2.0


# --------------------------------------------------------------------------------------------
# Output-error fit
# --------------------------------------------------------------------------------------------

def _output_error(w: np.ndarray, x_cols: np.ndarray, p: APoTParams) -> np.ndarray:
    e = w - p.fake_quantize(w)
    return ((e @ x_cols) ** 2).sum(axis=1)


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("p_cols", [40, 300])           # P < D (x_cols used) and P > D (Gram)
@pytest.mark.parametrize("bits", [3, 4, 6])
def test_output_error_fit_beats_the_mse_alpha(per_channel, p_cols, bits):
    rng = np.random.default_rng(p_cols + bits)
    d = 72
    w = rng.standard_normal((12, d)) * rng.uniform(0.1, 2.0, (12, 1))
    # correlated, non-centred inputs: the output error weighs weight errors unequally
    x_cols = rng.standard_normal((d, d)) @ rng.standard_normal((d, p_cols)) * 0.2 + 0.5
    fmt = APoTFormat(bits=bits, per_channel=per_channel)
    p_out = fit_apot_output_error(w, x_cols, fmt)
    p_mse = fit_apot(w, fmt)
    p_max = fit_apot(w, APoTFormat(bits=bits, per_channel=per_channel, clipping="max"))
    assert p_out.alpha.shape == p_mse.alpha.shape and p_out.axis == p_mse.axis
    e_out, e_mse, e_max = (_output_error(w, x_cols, p) for p in (p_out, p_mse, p_max))
    if per_channel:
        assert np.all(e_out <= e_mse * (1 + 1e-9)) and np.all(e_out <= e_max * (1 + 1e-9))
    else:
        assert e_out.sum() <= min(e_mse.sum(), e_max.sum()) * (1 + 1e-9)
    assert e_out.sum() < e_mse.sum()                    # it does optimize something else


def test_output_error_fit_validates_inputs():
    w = np.ones((4, 6))
    with pytest.raises(QuantError, match=r"x_cols must have shape \(D, P\) = \(6, P >= 1\)"):
        fit_apot_output_error(w, np.ones((5, 3)), APoTFormat())
    bad = np.ones((6, 3))
    bad[0, 0] = np.nan
    with pytest.raises(QuantError, match=r"x_cols has NaN or inf \(1 of 18"):
        fit_apot_output_error(w, bad, APoTFormat())
    w_nan = w.copy()
    w_nan[2, 3] = np.nan
    with pytest.raises(QuantError, match=r"NaN or inf \(1 of 24"):
        fit_apot_output_error(w_nan, np.ones((6, 3)), APoTFormat())
    with pytest.raises(QuantError, match=r"weights \(K, D\)"):
        fit_apot_output_error(np.ones(6), np.ones((6, 3)), APoTFormat())
    p = fit_apot_output_error(np.zeros((2, 6)), np.ones((6, 3)), APoTFormat())
    assert p.alpha.tolist() == [1.0, 1.0]


# --------------------------------------------------------------------------------------------
# torch straight-through fake quant
# --------------------------------------------------------------------------------------------

def test_importing_apot_does_not_import_torch():
    code = "import quant.formats.apot, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fmt", [APoTFormat(bits=4), APoTFormat(bits=7, per_channel=False),
                                 APoTFormat(bits=4, signed=False)])
def test_fake_quant_forward_equals_numpy(dtype, fmt):
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=dtype) * 2
    w_np = w.to(torch.float64).numpy()
    p = fit_apot(w_np, fmt)
    alpha = torch.tensor(p.alpha, dtype=dtype)     # fitted alphas are float32-representable
    out = apot_fake_quant(w, alpha, fmt)
    assert out.dtype == dtype and out.shape == w.shape
    # Tolerance: none.  Both compute the same float64 value; the only rounding is the final cast
    # to w.dtype, applied to the numpy result here too.
    expected = torch.from_numpy(p.fake_quantize(w_np)).to(dtype)
    assert torch.equal(out, expected)


def test_fake_quant_gradients_signed_per_tensor():
    fmt = APoTFormat(bits=4, per_channel=False)          # levels {0,1,2,3,4,6,8,10}/10
    w = torch.tensor([-3.0, -1.3, -0.45, 0.0, 0.13, 0.5, 1.1, 2.0, 2.6], dtype=torch.float64,
                     requires_grad=True)
    alpha = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    out = apot_fake_quant(w, alpha, fmt)
    # w/alpha = -1.5 -0.65 -0.225 0 0.065 0.25 0.55 1 1.3 -> q = -1 -0.6 -0.2 0 0.1 0.2 0.6 1 1
    assert torch.allclose(out, 2.0 * torch.tensor([-1, -0.6, -0.2, 0, 0.1, 0.2, 0.6, 1, 1],
                                                  dtype=torch.float64))
    g = torch.tensor([1.0, 2.0, -1.0, 3.0, 0.5, 1.0, -2.0, 1.5, 4.0], dtype=torch.float64)
    out.backward(g)
    assert w.grad.tolist() == [0.0, 2.0, -1.0, 3.0, 0.5, 1.0, -2.0, 1.5, 0.0]
    # d w_hat / d alpha: sign(w) outside, q(w/alpha) - w/alpha inside (|w| = alpha is inside).
    d_alpha = [-1.0, -0.6 + 0.65, -0.2 + 0.225, 0.0, 0.1 - 0.065, 0.2 - 0.25, 0.6 - 0.55,
               0.0, 1.0]
    assert alpha.grad.item() == pytest.approx(float(np.dot(g.numpy(), d_alpha)), abs=1e-12)


def test_fake_quant_gradients_match_the_official_autograd_form():
    # The authors' form: alpha * ((q - c).detach() + c), c = clamp(w / alpha, -1, 1).
    fmt = APoTFormat(bits=5)
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64) * 1.5
    alpha = torch.tensor([0.8, 1.7, 3.5], dtype=torch.float64)
    g = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)

    w1, a1 = w.clone().requires_grad_(), alpha.clone().requires_grad_()
    apot_fake_quant(w1, a1, fmt).backward(g)

    w2, a2 = w.clone().requires_grad_(), alpha.clone().requires_grad_()
    a_b = a2.reshape(3, 1, 1)
    c = torch.clamp(w2 / a_b, -1, 1)
    lv = torch.tensor(fmt.levels.tolist(), dtype=torch.float64) / fmt.level_max
    q = torch.sign(c) * lv[torch.argmin((c.detach().abs()[..., None] - lv).abs(), dim=-1)]
    (a_b * ((q - c).detach() + c)).backward(g)

    assert torch.allclose(w1.grad, w2.grad, atol=1e-12)
    assert torch.allclose(a1.grad, a2.grad, atol=1e-10)
    assert a1.grad.shape == (3,)


def test_fake_quant_gradients_unsigned():
    fmt = APoTFormat(bits=3, signed=False, per_channel=False)   # B = 3
    w = torch.tensor([-1.0, 0.3, 0.95, 1.5], requires_grad=True)
    alpha = torch.tensor(1.0, requires_grad=True)
    out = apot_fake_quant(w, alpha, fmt)
    assert torch.allclose(out, torch.tensor([0.0, 0.3, 1.0, 1.0]))
    out.sum().backward()
    assert w.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    # below 0: 0; inside: q - t (0 + 0.05); above alpha: 1
    assert alpha.grad.item() == pytest.approx(0.0 + 0.0 + 0.05 + 1.0, abs=1e-6)
    assert alpha.grad.dtype == torch.float32


def test_fake_quant_rejects_bad_inputs():
    fmt = APoTFormat()
    w = torch.ones(3, 2)
    with pytest.raises(QuantError, match=r"alpha must have shape \(\) or \(3,\)"):
        apot_fake_quant(w, torch.ones(2), fmt)
    with pytest.raises(QuantError, match="finite and > 0"):
        apot_fake_quant(w, torch.tensor([1.0, 0.0, 1.0]), fmt)
    with pytest.raises(QuantError, match=r"NaN \(1 of 6"):
        apot_fake_quant(torch.tensor([[1.0, float("nan")], [0.0, 0.0], [0.0, 0.0]]), 1.0, fmt)
    with pytest.raises(QuantError, match="floating-point torch.Tensor"):
        apot_fake_quant(np.ones(3), 1.0, fmt)
    with pytest.raises(QuantError, match="needs an APoTFormat"):
        apot_fake_quant(w, 1.0, IntFormat())
