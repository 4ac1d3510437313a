"""Multipoint weights (Liu et al., "Post-training Quantization with Multiple Points: Mixed
Precision without Mixed Precision", AAAI 2021): the relative-error table of the paper's setting
against an independent reference, the exact scale search against the 400-point grid, the
default search ("best" of the exact and grid ladders) against both, greedy properties, the
integer (extra rows) form, adaptive points, and bad input.

``pytest -s`` prints the table (bits 2/3/4, n = 1..4 points, a seeded (64, 1152) N(0, 1) matrix).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from quant.errors import QuantError
from quant.formats.multipoint import (MultipointFormat, MultipointLadder, MultipointParams,
                                      decode_multipoint, fit_multipoint, fit_multipoint_ladder)
from quant.formats.multipoint_fit import greedy_ladder, greedy_step, joint_scales, search_point
from quant.formats.multipoint_kernels import exact_search_numba, grid_search_numba
from quant.formats.multipoint_points import CalibrationStats, allocate_points
from quant.formats.multipoint_search import exact_search, grid_search

TABLE_BITS = (4, 3, 2)
TABLE_POINTS = 4


def _levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1


@pytest.fixture(scope="module")
def gaussian_matrix() -> np.ndarray:
    return np.random.default_rng(2021).standard_normal((64, 1152))


# --------------------------------------------------------------------------------------------
# Independent reference: the paper's greedy with a 400-point grid and a least-squares refit,
# written with plain loops over rows and steps (no code shared with quant.formats).
# --------------------------------------------------------------------------------------------

def reference_relative_errors(w: np.ndarray, bits: int, points: int,
                              grid: int = 400) -> list[float]:
    """||W - W_hat_n||_F / ||W||_F for n = 1..points."""
    big_l = 2 ** (bits - 1) - 1
    sq_err = [0.0] * points
    for row in w:
        chosen_codes = []
        residual = row.copy()
        for n in range(points):
            peak = np.max(np.abs(residual))
            if peak == 0.0:
                codes = np.zeros_like(row)
            else:                                               # every grid scale at once
                candidates = (peak / big_l * np.arange(1, grid + 1) / grid)[:, None]
                q_all = np.clip(np.round(residual / candidates), -big_l, big_l)
                err = np.sum((residual - candidates * q_all) ** 2, axis=1)
                codes = q_all[int(np.argmin(err))]
            chosen_codes.append(codes)
            basis = np.stack(chosen_codes, axis=1)                 # (d, n + 1)
            scales, *_ = np.linalg.lstsq(basis, row, rcond=None)
            residual = row - basis @ scales
            sq_err[n] += float(residual @ residual)
    total = float(np.sum(w * w))
    return [float(np.sqrt(e / total)) for e in sq_err]


def population_relative_error(bits: int) -> float:
    """sqrt(min_c E[(x - c clip(round(x / c), -L, L))^2]) for x ~ N(0, 1), by closed-form
    Gaussian integrals over the rounding cells."""
    big_l = _levels(bits)

    def mse(c: float) -> float:
        total = 0.0
        for k in range(-big_l, big_l + 1):
            lo = -np.inf if k == -big_l else (k - 0.5) * c
            hi = np.inf if k == big_l else (k + 0.5) * c
            level = k * c
            p = norm.cdf(hi) - norm.cdf(lo)
            pdf_lo, pdf_hi = norm.pdf(lo), norm.pdf(hi)
            x_pdf_lo = 0.0 if np.isinf(lo) else lo * pdf_lo
            x_pdf_hi = 0.0 if np.isinf(hi) else hi * pdf_hi
            # int (x - m)^2 phi = [Phi - x phi] + 2 m [phi] + m^2 [Phi]
            total += p - (x_pdf_hi - x_pdf_lo) + 2 * level * (pdf_hi - pdf_lo) + level ** 2 * p
        return total

    res = minimize_scalar(mse, bounds=(1e-3, 4.0), method="bounded",
                          options={"xatol": 1e-10})
    return float(np.sqrt(res.fun))


def _ladder_errors(w: np.ndarray, ladder: MultipointLadder) -> list[float]:
    norm_w = np.linalg.norm(w)
    return [float(np.linalg.norm(ladder.residual(n)) / norm_w)
            for n in range(1, ladder.fmt.max_points + 1)]


@pytest.fixture(scope="module")
def grid_ladders(gaussian_matrix) -> dict[int, MultipointLadder]:
    return {bits: fit_multipoint_ladder(gaussian_matrix,
                                        MultipointFormat(bits, TABLE_POINTS, search="grid"))
            for bits in TABLE_BITS}


@pytest.fixture(scope="module")
def error_table(gaussian_matrix, grid_ladders) -> dict[str, dict[int, list[float]]]:
    table: dict[str, dict[int, list[float]]] = {"grid": {}, "exact": {}, "reference": {},
                                                "maxabs": {}, "default": {}}
    w = gaussian_matrix
    for bits in TABLE_BITS:
        table["grid"][bits] = _ladder_errors(w, grid_ladders[bits])
        table["exact"][bits] = _ladder_errors(
            w, fit_multipoint_ladder(w, MultipointFormat(bits, TABLE_POINTS, search="exact")))
        # The default search, as the README table shows it: cell n is a fit of max_points = n
        # (the default picks each channel's ladder by its residual at max_points).
        table["default"][bits] = [
            _ladder_errors(w, fit_multipoint_ladder(w, MultipointFormat(bits, n)))[-1]
            for n in range(1, TABLE_POINTS + 1)]
        table["reference"][bits] = reference_relative_errors(gaussian_matrix, bits, TABLE_POINTS)
        table["maxabs"][bits] = _ladder_errors(
            w, fit_multipoint_ladder(w, MultipointFormat(bits, 1, search="maxabs", refit=False)))
    return table


def test_relative_error_table_matches_the_independent_reference(error_table):
    print("\nrelative error ||W - W_hat||_F / ||W||_F, (64, 1152) N(0, 1), seed 2021")
    print("bits  search      " + "".join(f"   n={n}  " for n in range(1, TABLE_POINTS + 1))
          + "  N(0,1) n=1  max-abs n=1")
    for bits in TABLE_BITS:
        for search in ("reference", "grid", "exact", "default"):
            cells = "".join(f"  {e:.4f} " for e in error_table[search][bits])
            extra = (f"   {population_relative_error(bits):.4f}      "
                     f"{error_table['maxabs'][bits][0]:.4f}") if search == "reference" else ""
            print(f"  {bits}   {search:10s}{cells}{extra}")
    for bits in TABLE_BITS:
        np.testing.assert_allclose(error_table["grid"][bits], error_table["reference"][bits],
                                   rtol=0.01)
        # The exact search is never worse step by step (test below) and from the same start
        # (n = 1); later cells follow different greedy paths, within a few percent either way.
        exact, grid = np.array(error_table["exact"][bits]), np.array(error_table["grid"][bits])
        assert exact[0] <= grid[0] * (1 + 1e-12)
        assert np.all(exact <= grid * 1.02)


def test_default_search_is_at_least_as_good_as_the_grid_in_every_cell(error_table):
    # The acceptance: the default search at least as good as the 400-point grid in
    # every cell (each channel's residual is at most the grid's; sums of per-channel squares
    # of equal rows can differ by rounding only, hence the 1e-12).
    assert MultipointFormat().search == "best"
    for bits in TABLE_BITS:
        default, grid = np.array(error_table["default"][bits]), np.array(error_table["grid"][bits])
        exact = np.array(error_table["exact"][bits])
        assert np.all(default <= grid * (1 + 1e-12)), (bits, default, grid)
        assert np.all(default <= exact * (1 + 1e-12)), (bits, default, exact)


@pytest.mark.parametrize("bits", TABLE_BITS)
def test_one_point_error_is_the_gaussian_optimum(error_table, bits):
    # One point per row with the best scale: the optimal (2L+1)-level uniform quantizer of
    # N(0, 1), up to the row's sampling (1152 values, scale fitted to them).
    expected = population_relative_error(bits)
    assert error_table["grid"][bits][0] == pytest.approx(expected, rel=0.02)
    assert error_table["exact"][bits][0] <= error_table["grid"][bits][0] * (1 + 1e-12)
    assert error_table["default"][bits][0] <= error_table["grid"][bits][0] * (1 + 1e-12)
    assert error_table["maxabs"][bits][0] > error_table["grid"][bits][0]


@pytest.mark.parametrize("bits", TABLE_BITS)
def test_exact_search_step_is_never_worse_than_the_grid_step(gaussian_matrix, grid_ladders,
                                                            bits):
    # Each greedy step from the same state (the grid path's first n - 1 points): the exact
    # search's new point, after the joint refit, leaves at most the grid point's error.
    # (Whole greedy paths diverge after the first step, so the table cells may differ either
    # way by a few percent: the greedy is not globally optimal.)
    w = gaussian_matrix
    ladder = grid_ladders[bits]
    big_l = _levels(bits)
    for n in range(TABLE_POINTS):
        residual = ladder.residual(n) if n else w.copy()
        basis = ladder.codes[:, :n]
        q_exact, _ = exact_search_numba(residual, big_l, basis if n else None)
        errs = []
        for q_new in (ladder.codes[:, n], q_exact):
            codes = np.concatenate([basis, q_new[:, None]], axis=1)
            approx = np.einsum("kj,kjd->kd", joint_scales(w, codes), codes.astype(np.float64))
            errs.append(np.sum((w - approx) ** 2, axis=1))
        grid_err, exact_err = errs
        assert np.all(exact_err <= grid_err * (1 + 1e-12) + 1e-300), (n, bits)


def test_exact_search_beats_a_dense_grid_on_its_own_objective():
    # Brute force: the exact search's pattern is at least as good (after its own least-squares
    # scale) as every pattern a dense grid of scales yields.
    rng = np.random.default_rng(5)
    r = rng.standard_normal((20, 40)) * rng.uniform(0.1, 3, size=(20, 1))
    for big_l in (1, 3, 7):
        q, _ = exact_search(r, big_l)
        dense, _ = grid_search(r, big_l, grid_points=20000)

        def ls_error(codes):
            qf = codes.astype(np.float64)
            a = np.sum(r * qf, axis=1) / np.sum(qf * qf, axis=1)
            return np.sum((r - a[:, None] * qf) ** 2, axis=1)

        assert np.all(ls_error(q) <= ls_error(dense) * (1 + 1e-12))


# --------------------------------------------------------------------------------------------
# numba kernel == numpy reference
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("big_l", [1, 3, 7, 127])
@pytest.mark.parametrize("basis_points", [0, 1, 3])
def test_numba_exact_search_equals_the_numpy_reference(big_l, basis_points):
    rng = np.random.default_rng(big_l * 10 + basis_points)
    r = rng.standard_normal((12, 50))
    r[0] = 0.0                                                   # all-zero row
    r[1, :25] = 0.0                                              # zeros
    r[2] = np.round(r[2] * 2) / 2                                # many equal magnitudes (ties)
    basis = (rng.integers(-big_l, big_l + 1, size=(12, basis_points, 50)).astype(np.int8)
             if basis_points else None)
    q_np, s_np = exact_search(r, big_l, basis)
    q_nb, s_nb = exact_search_numba(r, big_l, basis)
    np.testing.assert_array_equal(q_nb, q_np)
    np.testing.assert_allclose(s_nb, s_np, rtol=1e-12, atol=0)


@pytest.mark.parametrize("big_l", [1, 3, 7, 127])
@pytest.mark.parametrize("grid_points", [1, 7, 400])
def test_numba_grid_search_equals_the_numpy_reference(big_l, grid_points):
    rng = np.random.default_rng(big_l * 1000 + grid_points)
    r = rng.standard_normal((16, 60)) * rng.uniform(0.1, 3, size=(16, 1))
    r[0] = 0.0                                                   # all-zero row
    r[1, :30] = 0.0                                              # zeros
    r[2] = np.round(r[2] * 2) / 2                                # many equal magnitudes
    r[3, :5] *= 1e-200                                           # tiny values beside large
    r[4] = rng.standard_normal(60) * 1e-150                      # squares below 1e-300
    q_np, c_np = grid_search(r, big_l, grid_points)
    q_nb, c_nb = grid_search_numba(r, big_l, grid_points)
    np.testing.assert_array_equal(q_nb, q_np)
    np.testing.assert_array_equal(c_nb, c_np)


def test_numba_and_numpy_kernels_give_the_same_fit():
    w = np.random.default_rng(3).standard_normal((16, 72))
    a = fit_multipoint(w, MultipointFormat(3, 3, kernel="numba"))       # "best": both ladders
    b = fit_multipoint(w, MultipointFormat(3, 3, kernel="numpy"))
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_allclose(a.scales, b.scales, rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Greedy properties (hypothesis)
# --------------------------------------------------------------------------------------------

values = st.one_of(
    # Magnitudes below 1e-250 become 0: the searches treat rows below 2^-1000 as zero rows, and
    # four points of 254x less residual each must stay above that for the bounds to apply.
    st.floats(-100, 100, allow_nan=False, allow_infinity=False, allow_subnormal=False).map(
        lambda v: 0.0 if abs(v) < 1e-250 else v),
    st.integers(-3, 3).map(float),                               # ties and zeros
)


def weights(max_rows: int = 4, max_cols: int = 24) -> st.SearchStrategy[np.ndarray]:
    shapes = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return hnp.arrays(np.float64, shapes, elements=values)


formats = st.builds(MultipointFormat, bits=st.integers(2, 8), max_points=st.integers(1, 4),
                    search=st.sampled_from(["best", "exact", "grid", "maxabs"]),
                    refit=st.booleans(),
                    grid_points=st.sampled_from([7, 400]))


@settings(max_examples=80)
@given(weights(), formats)
def test_residual_norm_is_non_increasing_in_the_number_of_points(w, fmt):
    # Underflow is allowed: rows near the smallest normal float have subnormal scales.
    with np.errstate(all="raise", under="ignore"):
        ladder = fit_multipoint_ladder(w, fmt)
    norms = [np.linalg.norm(w, axis=1)]
    norms += [np.linalg.norm(ladder.residual(n), axis=1) for n in range(1, fmt.max_points + 1)]
    scale = np.linalg.norm(w, axis=1) + 1e-300
    for before, after in zip(norms, norms[1:]):
        assert np.all(after <= before + 1e-12 * scale)


def test_a_step_that_would_raise_the_residual_adds_an_empty_point():
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((6, 20))
    q1, s1, r1 = greedy_step(rows, np.zeros((6, 0, 20), np.int8), np.zeros((6, 0)), rows, 3)
    # Claim a residual smaller than any second point can reach for rows 0 and 3: the step must
    # keep it (an empty point) rather than return a larger one.
    claimed = r1.copy()
    claimed[[0, 3]] *= 1e-3
    q2, s2, r2 = greedy_step(rows, q1[:, None], s1, claimed, 3)
    np.testing.assert_array_equal(r2[[0, 3]], claimed[[0, 3]])
    assert np.all(q2[[0, 3]] == 0) and np.all(s2[[0, 3], 1] == 0)
    np.testing.assert_array_equal(s2[[0, 3], :1], s1[[0, 3]])
    others = [1, 2, 4, 5]
    assert np.all(np.linalg.norm(r2[others], axis=1) < np.linalg.norm(r1[others], axis=1))


@settings(max_examples=60)
@given(weights(max_rows=6, max_cols=40), st.integers(1, 127), st.sampled_from([1, 7, 400]))
def test_numba_grid_search_picks_a_grid_minimum(r, big_l, grid_points):
    # Whatever the data, the kernel's scale is a grid scale whose error ties the reference's
    # minimum (the two rank errors with different rounding, so exact ties may go either way).
    q_np, c_np = grid_search(r, big_l, grid_points)
    q_nb, c_nb = grid_search_numba(r, big_l, grid_points)
    live = c_nb > 0
    np.testing.assert_array_equal(live, c_np > 0)
    cmax = np.max(np.abs(r[live]), axis=1) / big_l
    g = np.rint(c_nb[live] / cmax * grid_points)
    np.testing.assert_array_equal(c_nb[live], cmax * (g / grid_points))
    assert np.all((g >= 1) & (g <= grid_points))
    err = [np.sum((r - c[:, None] * q) ** 2, axis=1) for q, c in ((q_np, c_np), (q_nb, c_nb))]
    assert np.all(np.abs(err[1] - err[0]) <= 1e-12 * np.sum(r * r, axis=1) + 1e-300)


@settings(max_examples=60)
@given(weights(), st.integers(2, 8), st.integers(1, 4))
def test_max_abs_scale_halves_the_step_every_point(w, bits, points):
    fmt = MultipointFormat(bits, points, search="maxabs", refit=False)
    ladder = fit_multipoint_ladder(w, fmt)
    big_l = fmt.levels
    peak = np.max(np.abs(w), axis=1)
    for n in range(1, points + 1):
        bound = peak * (2.0 * big_l) ** (-n)
        assert np.all(np.max(np.abs(ladder.residual(n)), axis=1) <= bound * (1 + 1e-9))


@settings(max_examples=60)
@given(weights(), formats)
def test_params_decode_to_the_fit_and_codes_stay_in_range(w, fmt):
    ladder = fit_multipoint_ladder(w, fmt)
    params = ladder.params()
    big_l = fmt.levels
    assert params.codes.dtype == np.int8 and params.codes.shape == (w.shape[0], fmt.max_points,
                                                                    w.shape[1])
    assert params.codes.min() >= -big_l and params.codes.max() <= big_l
    assert np.all(params.scales >= 0) and params.scales.shape == (w.shape[0], fmt.max_points)
    np.testing.assert_allclose(decode_multipoint(params), ladder.approximation(),
                               rtol=1e-12, atol=1e-12 * (np.abs(w).max() + 1))
    # Re-validated through the constructor: decode(encode(w)) is the same weight.
    again = MultipointParams(params.points, params.scales, params.codes, fmt)
    np.testing.assert_array_equal(again.dequantize(), params.dequantize())


@settings(max_examples=40)
@given(weights(), st.integers(2, 8), st.integers(1, 3), st.integers(0, 2),
       st.sampled_from(["exact", "grid"]))
def test_fewer_points_are_a_prefix_of_more(w, bits, fewer, more, search):
    # A step search's fit does not depend on max_points ("best" does: its test below).
    many = fit_multipoint(w, MultipointFormat(bits, fewer + more, search=search))
    few = fit_multipoint(w, MultipointFormat(bits, fewer, search=search))
    trimmed = fit_multipoint_ladder(w, MultipointFormat(bits, fewer + more,
                                                        search=search)).params(fewer)
    np.testing.assert_array_equal(np.abs(many.codes[:, :fewer]), np.abs(few.codes))
    np.testing.assert_allclose(trimmed.dequantize(), few.dequantize(), rtol=1e-12, atol=1e-12)


@settings(max_examples=60)
@given(weights(max_rows=6), st.integers(2, 8), st.integers(1, 4), st.booleans(),
       st.sampled_from([7, 400]))
def test_best_search_is_never_worse_than_either_ladder_at_max_points(w, bits, points, refit,
                                                                     grid_points):
    fmt = MultipointFormat(bits, points, search="best", refit=refit, grid_points=grid_points)
    best = fit_multipoint_ladder(w, fmt)
    last, ladders = {}, {}
    for search in ("exact", "grid"):
        ladders[search] = fit_multipoint_ladder(w, MultipointFormat(
            bits, points, search=search, refit=refit, grid_points=grid_points))
        last[search] = np.sum(ladders[search].residual() ** 2, axis=1)
    mine = np.sum(best.residual() ** 2, axis=1)
    # Per channel: at most both (up to the rounding of a sum of the same terms).
    slack = 1e-12 * np.sum(w * w, axis=1) + 1e-300
    assert np.all(mine <= last["exact"] + slack) and np.all(mine <= last["grid"] + slack)
    # Prefixes: each channel's whole ladder (codes, and scales at every n) is one of the two,
    # so its n-point fit is the first n points of that ladder.
    for k in range(w.shape[0]):
        assert any(np.array_equal(best.codes[k], ladders[s].codes[k])
                   and np.array_equal(best.scales[k], ladders[s].scales[k])
                   for s in ("exact", "grid")), k
    # Non-increasing in the number of points.
    norms = [np.sum(w * w, axis=1)] + [np.sum(best.residual(n) ** 2, axis=1)
                                       for n in range(1, points + 1)]
    for before, after in zip(norms, norms[1:]):
        assert np.all(after <= before + slack)
    # Deterministic: the same fit again, bit for bit.
    again = fit_multipoint_ladder(w, fmt)
    np.testing.assert_array_equal(again.codes, best.codes)
    np.testing.assert_array_equal(again.scales, best.scales)


@settings(max_examples=40)
@given(weights(max_rows=5, max_cols=12), st.integers(2, 5), st.integers(1, 3),
       st.integers(0, 2**31 - 1))
def test_rows_form_sums_to_the_decoded_weight(w, bits, max_points, seed):
    rng = np.random.default_rng(seed)
    fmt = MultipointFormat(bits, max_points)
    points = rng.integers(1, max_points + 1, size=w.shape[0])
    params = fit_multipoint(w, fmt, points)
    rows = params.as_rows()
    assert rows.codes.shape == (params.rows, w.shape[1]) and params.rows == points.sum()
    np.testing.assert_array_equal(rows.channel[:w.shape[0]], np.arange(w.shape[0]))
    x = rng.standard_normal((w.shape[1], 3))
    per_row = rows.scales[:, None] * (rows.codes.astype(np.int64) @ np.rint(x * 100).astype(
        np.int64))                                               # integer GEMM, scaled rows
    out = np.zeros((w.shape[0], 3))
    np.add.at(out, rows.channel, per_row)
    np.testing.assert_allclose(out, params.dequantize() @ np.rint(x * 100), rtol=1e-9,
                               atol=1e-9 * (1 + np.abs(out).max()))


@pytest.mark.parametrize("search", ["best", "exact", "grid", "maxabs"])
@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_negligible_rows_are_zero_rows(search, kernel):
    w = np.array([[6.6e-307, -1e-310, 0.0], [1.0, 6.6e-307, -0.5]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        params = fit_multipoint(w, MultipointFormat(8, 3, search=search, kernel=kernel))
    assert np.all(params.scales[0] == 0) and np.all(params.codes[0] == 0)
    assert params.scales[1, 0] > 0 and params.codes[1, 0, 1] == 0


@pytest.mark.parametrize("search", ["best", "exact", "grid", "maxabs"])
@pytest.mark.parametrize("refit", [True, False])
def test_all_zero_channels_get_zero_scales(search, refit):
    w = np.zeros((3, 2, 3, 3))
    w[1, 0, 1, 1] = 2.5
    with np.errstate(all="raise"):
        params = fit_multipoint(w, MultipointFormat(3, 3, search=search, refit=refit))
    assert np.all(params.scales[[0, 2]] == 0) and np.all(params.codes[[0, 2]] == 0)
    assert params.dequantize().shape == w.shape
    np.testing.assert_allclose(params.dequantize(), w, atol=1e-12)


def test_conv_weights_are_fitted_per_output_channel():
    w = np.random.default_rng(1).standard_normal((8, 4, 3, 3))
    w[3] *= 100.0
    params = fit_multipoint(w, MultipointFormat(4, 2))
    assert params.codes.shape == (8, 2, 4, 3, 3)
    flat = fit_multipoint(w.reshape(8, -1), MultipointFormat(4, 2))
    np.testing.assert_array_equal(params.codes.reshape(8, 2, -1), flat.codes)
    err = (params.dequantize() - w).reshape(8, -1)
    rel = np.linalg.norm(err, axis=1) / np.linalg.norm(w.reshape(8, -1), axis=1)
    assert rel.max() < 0.05


# --------------------------------------------------------------------------------------------
# Adaptive points
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def layer() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    w = rng.standard_normal((24, 40)) * rng.uniform(0.2, 2.0, size=(24, 1))
    x = rng.standard_normal((300, 40)) * rng.uniform(0.1, 3.0, size=40)
    return w, x


@pytest.mark.parametrize("samples", [300, 25, 40])  # more inputs than d, fewer, as many
def test_output_errors_are_the_mean_square_of_the_residual_outputs(layer, samples):
    w, x = layer
    x = x[:samples]
    ladder = fit_multipoint_ladder(w, MultipointFormat(3, 3))
    stats = CalibrationStats.from_inputs(x)
    for n in (1, 2, 3):
        direct = np.mean((x @ ladder.residual(n).T) ** 2, axis=0)
        np.testing.assert_allclose(stats.mean_square(ladder.residual(n)), direct, rtol=1e-10)
        k = 5
        assert stats.channel_mean_square(ladder.residual(n)[k], k, w.shape[0]) == pytest.approx(
            direct[k], rel=1e-10)


def test_grouped_inputs_use_each_groups_own_columns():
    rng = np.random.default_rng(4)
    groups, d, per_group = 6, 9, 2                               # depthwise-like, multiplier 2
    w = rng.standard_normal((groups * per_group, d))
    x = rng.standard_normal((200, groups * d))
    stats = CalibrationStats.from_inputs(x, groups=groups)
    r = rng.standard_normal(w.shape)
    direct = [np.mean((x[:, (k // per_group) * d:(k // per_group + 1) * d] @ r[k]) ** 2)
              for k in range(w.shape[0])]
    np.testing.assert_allclose(stats.mean_square(r), direct, rtol=1e-10)
    np.testing.assert_allclose([stats.channel_mean_square(r[k], k, w.shape[0])
                                for k in range(w.shape[0])], direct, rtol=1e-10)


def test_worst_channel_gets_the_point_first_and_each_pop_is_the_worst(layer):
    w, x = layer
    fmt = MultipointFormat(3, 3)
    ladder = fit_multipoint_ladder(w, fmt)                       # every count, fitted eagerly
    stats = CalibrationStats.from_inputs(x)
    alloc = allocate_points(w, fmt, stats, budget=15)
    assert alloc.order[0] == int(np.argmax(alloc.base_errors))
    # Replay: every extra point went to the channel with the largest current error.
    points = np.ones(w.shape[0], dtype=int)
    errors = alloc.base_errors.copy()
    for c in alloc.order:                                        # (no point was refused here)
        eligible = np.where(points < 3, errors, -np.inf)
        assert c == int(np.argmax(eligible))
        points[c] += 1
        errors[c] = stats.mean_square(ladder.residual(points))[c]
    np.testing.assert_array_equal(alloc.params.points, points)
    np.testing.assert_allclose(alloc.errors, errors, rtol=1e-10)
    # The channels' points, fitted one by one when chosen, are the eager ladder's.
    np.testing.assert_array_equal(alloc.base_params.codes, ladder.params(1).codes)
    np.testing.assert_allclose(alloc.base_errors, stats.mean_square(ladder.residual(1)),
                               rtol=1e-10)
    expected = ladder.params(points)
    np.testing.assert_array_equal(alloc.params.codes, expected.codes)
    np.testing.assert_allclose(alloc.params.scales, expected.scales, rtol=1e-10)
    assert alloc.params.extra_points == 15 and alloc.spent == 15


def test_a_given_ladder_is_used_as_is_and_checked(layer):
    """allocate_points with the "best" search and the caller's ladder gives the allocation it
    fits itself; a ladder of another weight or format is refused."""
    w, x = layer
    fmt = MultipointFormat(3, 3)
    assert fmt.search == "best"
    stats = CalibrationStats.from_inputs(x)
    ladder = fit_multipoint_ladder(w, fmt)
    own, given = (allocate_points(w, fmt, stats, budget=15, ladder=lad) for lad in (None, ladder))
    np.testing.assert_array_equal(own.params.codes, given.params.codes)
    np.testing.assert_array_equal(own.params.scales, given.params.scales)
    np.testing.assert_array_equal(own.order, given.order)
    for wrong in (fit_multipoint_ladder(w * 2, fmt),
                  fit_multipoint_ladder(w, MultipointFormat(3, 2)),
                  "ladder"):
        with pytest.raises(QuantError, match="'ladder' must be fit_multipoint_ladder"):
            allocate_points(w, fmt, stats, budget=15, ladder=wrong)


def test_a_point_that_raises_its_channels_output_error_is_not_kept():
    # Small layer with badly scaled inputs where the weight-space refit of channel 1 raises its
    # output error with a second point.
    rng = np.random.default_rng(76)
    assert rng.integers(2, 6) == 4                               # as drawn where it was found
    w = rng.standard_normal((8, 4))
    x = rng.standard_normal((50, 4)) * rng.uniform(0.01, 10, size=4)
    fmt = MultipointFormat(2, 3)
    stats = CalibrationStats.from_inputs(x)
    ladder = fit_multipoint_ladder(w, fmt)
    one, two = stats.mean_square(ladder.residual(1)), stats.mean_square(ladder.residual(2))
    assert two[1] > one[1]
    alloc = allocate_points(w, fmt, stats, budget=16)
    assert alloc.params.points[1] == 1 and 1 not in alloc.order
    assert np.all(alloc.errors <= alloc.base_errors)
    assert alloc.order.size == alloc.params.extra_points <= 16


def test_budget_is_never_exceeded_with_any_costs(layer):
    w, x = layer
    fmt = MultipointFormat(4, 3)
    stats = CalibrationStats.from_inputs(x)
    rng = np.random.default_rng(8)
    cap = w.shape[0] * 2
    steps = np.where(np.arange(1, cap + 1) % 8 == 1, 5.0, 0.25)    # a new fold every 8 rows
    for cost in (rng.uniform(0, 3, size=cap), steps, lambda m: 1.0 + (m % 3),
                 np.zeros(cap)):
        costs = np.array([cost(m) for m in range(1, cap + 1)]) if callable(cost) else cost
        total = float(np.cumsum(costs)[-1])
        for budget in [b for b in (0.0, 0.7, 4.0, 13.5) if b <= total] + [total]:
            alloc = allocate_points(w, fmt, stats, budget=budget, cost=cost)
            m = alloc.order.size
            assert alloc.spent <= budget
            assert alloc.spent == pytest.approx(np.sum(costs[:m]), abs=1e-12)
            if m < cap and np.max(alloc.errors) > 0:              # stopped by the budget
                assert np.sum(costs[:m + 1]) > budget


def test_errors_are_non_increasing_as_the_budget_grows(layer):
    w, x = layer
    fmt = MultipointFormat(2, 4)
    stats = CalibrationStats.from_inputs(x)
    cap = w.shape[0] * 3
    totals = [allocate_points(w, fmt, stats, budget=b).errors.sum() for b in range(0, cap + 1, 3)]
    assert np.all(np.diff(totals) <= 1e-12 * totals[0])
    costs = np.random.default_rng(2).uniform(0.5, 2.0, size=cap)
    priced = [allocate_points(w, fmt, stats, budget=b, cost=costs).errors.sum()
              for b in np.linspace(0, costs.sum(), 25)]
    assert np.all(np.diff(priced) <= 1e-12 * priced[0])
    assert totals[-1] < 0.05 * totals[0]


def test_threshold_stops_the_allocation(layer):
    w, x = layer
    fmt = MultipointFormat(3, 4)
    stats = CalibrationStats.from_inputs(x)
    base = allocate_points(w, fmt, stats, budget=0)
    threshold = float(np.median(base.base_errors))
    alloc = allocate_points(w, fmt, stats, threshold=threshold)
    capped = alloc.params.points < 4
    assert np.all(alloc.errors[capped] <= threshold)
    assert np.all(alloc.params.points[base.base_errors <= threshold] == 1)
    both = allocate_points(w, fmt, stats, budget=3, threshold=threshold)
    assert both.order.size == 3


# --------------------------------------------------------------------------------------------
# Bad input: one clear line, naming the parameter
# --------------------------------------------------------------------------------------------

def _one_line_error(fn, *words):
    with pytest.raises(QuantError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"bits": 1}, ("'bits'", "[2, 8]", "Got 1")),
    ({"bits": 9}, ("'bits'", "[2, 8]")),
    ({"bits": 4.0}, ("'bits'",)),
    ({"max_points": 0}, ("'max_points'", "[1, 64]", "Got 0")),
    ({"max_points": True}, ("'max_points'",)),
    ({"search": "golden"}, ("'search'", "'exact'")),
    ({"refit": 1}, ("'refit'", "bool")),
    ({"grid_points": 0}, ("'grid_points'",)),
    ({"kernel": "cuda"}, ("'kernel'",)),
])
def test_bad_format_parameters(kwargs, words):
    _one_line_error(lambda: MultipointFormat(**kwargs), *words)


def test_bad_weights():
    fmt = MultipointFormat()
    _one_line_error(lambda: fit_multipoint(np.array([[1.0, np.nan]]), fmt), "NaN")
    _one_line_error(lambda: fit_multipoint(np.zeros((0, 4)), fmt), "empty")
    _one_line_error(lambda: fit_multipoint(np.float64(3.0), fmt), "channel")
    _one_line_error(lambda: fit_multipoint(np.ones((2, 3)), "int4"), "MultipointFormat")
    _one_line_error(lambda: fit_multipoint(np.ones((2, 3)), MultipointFormat(4, 2), points=3),
                    "points")


def test_bad_params():
    fmt = MultipointFormat(3, 2)
    codes = np.zeros((2, 2, 4), dtype=np.int8)
    scales = np.array([[1.0, 0.0], [1.0, 0.5]])
    MultipointParams(np.array([1, 2]), scales, codes, fmt)
    _one_line_error(lambda: MultipointParams(np.array([0, 2]), scales, codes, fmt), "points")
    bad = codes.copy()
    bad[0, 0, 0] = 4
    _one_line_error(lambda: MultipointParams(np.array([1, 2]), scales, bad, fmt), "[-3, 3]")
    _one_line_error(lambda: MultipointParams(np.array([1, 2]), -scales, codes, fmt), ">= 0")
    _one_line_error(lambda: MultipointParams(np.array([1, 1]), scales, codes, fmt), "beyond")
    _one_line_error(lambda: MultipointParams(np.array([1, 2]), scales, codes.astype(np.int16),
                                             fmt), "int8")


def test_bad_budgets_and_inputs(layer):
    w, x = layer
    fmt = MultipointFormat(3, 2)                                 # 24 extra points at most
    stats = CalibrationStats.from_inputs(x)
    cap = w.shape[0]
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=-1), "'budget'", "[0, 24]")
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=25), "'budget'", "Got 25")
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=2.5), "'budget'")
    costs = np.full(cap, 2.0)
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=48.5, cost=costs),
                    "'budget'", "48")
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=-0.1, cost=costs), "'budget'")
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=1.0, cost=-costs), ">= 0")
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=1.0, cost=costs[:5]),
                    "shape (24,)")
    _one_line_error(lambda: allocate_points(w, fmt, stats, budget=1.0, cost=lambda m: "x"),
                    "cost")
    _one_line_error(lambda: allocate_points(w, fmt, stats), "budget", "threshold")
    _one_line_error(lambda: allocate_points(w, fmt, stats, threshold=-1.0), "'threshold'")
    _one_line_error(lambda: allocate_points(w, fmt, x, budget=1), "CalibrationStats")
    _one_line_error(lambda: allocate_points(w, fmt, CalibrationStats.from_inputs(x[:, :20]),
                                            budget=1), "do not match")
    _one_line_error(lambda: CalibrationStats.from_inputs(x, groups=3), "shape")
    _one_line_error(lambda: CalibrationStats.from_inputs(x[0]), "shape")
    _one_line_error(lambda: CalibrationStats.from_inputs(x, groups=0), "'groups'")
    nan_x = x.copy()
    nan_x[3, 3] = np.nan
    _one_line_error(lambda: CalibrationStats.from_inputs(nan_x), "NaN")


def test_search_point_routes_every_search():
    r = np.random.default_rng(0).standard_normal((3, 10))
    for search in ("exact", "grid", "maxabs"):
        q, c = search_point(r, 3, search, 400, None, "numpy")
        assert q.shape == (3, 10) and c.shape == (3,) and np.all(c > 0)
    # "best" is a choice between whole ladders, not a step.
    _one_line_error(lambda: search_point(r, 3, "best", 400, None, "numpy"), "'best'",
                    "greedy_ladder")
    codes, scales = greedy_ladder(r, 3, 2, "best")
    assert codes.shape == (3, 2, 10) and scales.shape == (3, 2, 2)


def test_describe_names_the_search_unless_it_is_the_default():
    assert MultipointFormat(4, 2).describe() == "mp4x2"
    assert MultipointFormat(4, 2, search="exact").describe() == "mp4x2-exact"
    assert MultipointFormat(3, 4, search="grid", refit=False).describe() == "mp3x4-grid-norefit"


def test_the_multipoint_modules_import_neither_torch_nor_numba():
    code = ("import sys, quant.formats.multipoint, quant.formats.multipoint_points\n"
            "print(' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    mods = set(out.stdout.split())
    assert "torch" not in mods and "numba" not in mods
