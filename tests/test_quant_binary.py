"""Least-squares binary formats (LS-1, GF-k, LS-2, LS-T): population figures, orderings,
brute force over sign patterns, edge rows, validation messages and the straight-through fake quant.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quant import QuantError
from quant.formats import (
    BinaryFormat,
    BinaryParams,
    IntFormat,
    binary_fake_quant,
    fit_binary,
    fit_params,
    registered_formats,
)

METHODS = [("ls1", None), ("lst", None), ("ls2", None)] + [("gf", k) for k in (1, 2, 3, 4)]

values = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.integers(-3, 3).map(float),  # ties and zeros
)
# Moderate dynamic range, so a wrong split shows up above the tolerance.
moderate = st.one_of(st.floats(-10, 10, allow_nan=False, allow_subnormal=False),
                     st.sampled_from([-2.0, -1.0, 0.0, 1.0, 2.0]))


def matrices(max_rows: int = 5, max_cols: int = 40) -> st.SearchStrategy[np.ndarray]:
    shapes = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return hnp.arrays(np.float64, shapes, elements=values)


def _row_mse(x: np.ndarray, fmt: BinaryFormat) -> np.ndarray:
    """Per-row MSE of fitting the (R, n) matrix ``x`` with ``fmt`` (rows along axis 0)."""
    x_hat = fit_binary(x, fmt).dequantize()
    return np.mean((x - x_hat) ** 2, axis=1)


def _tol(x: np.ndarray) -> np.ndarray:
    return 1e-9 * np.mean(x**2, axis=1) + 1e-300


# --- reference implementations: obviously correct and slow -------------------------------------

def _sign_patterns(n: int) -> np.ndarray:
    """All ±1 vectors of length n whose first entry is +1 (the sign of a term's scale absorbs
    a global flip when scales are unconstrained), shape (2^(n-1), n)."""
    rest = np.array(list(itertools.product((1.0, -1.0), repeat=n - 1)), dtype=np.float64)
    rest = rest.reshape(2 ** (n - 1), n - 1)
    return np.hstack([np.ones((rest.shape[0], 1)), rest])


def _brute_force_mse(row: np.ndarray, ternary: bool) -> float:
    """min over every pattern (b1, b2) of the least-squares residual, scales unconstrained.

    Two-term: x ≈ v1 b1 + v2 b2.  Ternary: x ≈ v (b1 + b2).  Least squares by pseudo-inverse.
    """
    n = row.shape[0]
    pats = _sign_patterns(n)
    i, j = np.meshgrid(np.arange(len(pats)), np.arange(len(pats)), indexing="ij")
    b1, b2 = pats[i.ravel()], pats[j.ravel()]
    # The ternary form is symmetric in b1, b2 only up to sign, so it gets both signs of b2.
    if ternary:
        b2 = np.concatenate([b2, -b2])
        b1 = np.concatenate([b1, b1])
        design = (b1 + b2)[:, :, None]
    else:
        design = np.stack([b1, b2], axis=2)                    # (P, n, terms)
    coef = np.linalg.pinv(design) @ row                        # (P, terms)
    resid = row[None, :] - np.einsum("pnt,pt->pn", design, coef)
    return float(np.min(np.mean(resid**2, axis=1)))


def _greedy_reference(row: np.ndarray, k: int) -> tuple[list[float], list[list[int]]]:
    """GF-k on one row with Python loops, straight from the definition."""
    resid = [float(t) for t in row]
    scales, planes = [], []
    for _ in range(k):
        v = sum(abs(t) for t in resid) / len(resid)
        b = [1 if t >= 0 else -1 for t in resid]
        resid = [t - v * s for t, s in zip(resid, b)]
        scales.append(v)
        planes.append(b)
    return scales, planes


# --- population figures: expected MSE and scales for N(0, 1) inputs ------------------------------
# (e.g. LS-1: v = E|x| = sqrt(2/pi), MSE = 1 - 2/pi; "Least squares binary quantization of neural
# networks", Pouransari, Tu, Tuzel; CVPR Workshops 2020)

@pytest.fixture(scope="module")
def gaussian_fits() -> dict[str, tuple[np.ndarray, float]]:
    x = np.random.default_rng(20240905).standard_normal(10**6)
    out = {}
    for method, k in METHODS:
        params = fit_binary(x, BinaryFormat(method, k, axis=None))
        out[params.fmt.describe()] = (params.v[0], float(np.mean((x - params.dequantize()) ** 2)))
    return out


@pytest.mark.parametrize("name, mse, scales", [
    ("ls1-pt", 0.363380, [0.797885]),
    ("lst-pt", 0.190174, [0.612003, 0.612003]),
    ("ls2-pt", 0.117482, [0.981599, 0.528819]),
    ("gf2-pt", 0.130454, [0.797885, 0.482624]),
])
def test_gaussian_mse_and_scales_match_population(gaussian_fits, name, mse, scales):
    v, got = gaussian_fits[name]
    assert got == pytest.approx(mse, rel=0.005)
    np.testing.assert_allclose(v, scales, rtol=0.005)


@pytest.mark.parametrize("name, mse", [("gf3-pt", 0.0586), ("gf4-pt", 0.0330)])
def test_gaussian_gf3_gf4_near_approximate_figures(gaussian_fits, name, mse):
    # Reference figures known to 3 significant digits only.
    assert gaussian_fits[name][1] == pytest.approx(mse, rel=0.01)


# --- orderings and optimality --------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.one_of(matrices(), hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 40)),
                                        elements=moderate)))
def test_mse_orderings_hold_per_row(x):
    mse = {f"{m}{k or ''}": _row_mse(x, BinaryFormat(m, k)) for m, k in METHODS}
    tol = _tol(x)
    assert np.all(mse["ls2"] <= mse["gf2"] + tol)
    assert np.all(mse["gf2"] <= mse["ls1"] + tol)
    assert np.all(mse["ls2"] <= mse["lst"] + tol)
    assert np.all(mse["lst"] <= mse["ls1"] + tol)
    for k in (1, 2, 3):
        assert np.all(mse[f"gf{k + 1}"] <= mse[f"gf{k}"] + tol)
    np.testing.assert_array_equal(mse["gf1"], mse["ls1"])


def _assert_ls2_lst_equal_brute_force(row: np.ndarray) -> None:
    tol = float(_tol(row[None, :])[0])
    ls2 = float(_row_mse(row[None, :], BinaryFormat("ls2"))[0])
    lst = float(_row_mse(row[None, :], BinaryFormat("lst"))[0])
    assert abs(ls2 - _brute_force_mse(row, ternary=False)) <= tol, row
    assert abs(lst - _brute_force_mse(row, ternary=True)) <= tol, row


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 8), elements=st.one_of(values, moderate)))
def test_ls2_and_lst_equal_brute_force_over_sign_patterns(row):
    _assert_ls2_lst_equal_brute_force(row)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.integers(2, 8), elements=moderate))
def test_ls2_and_lst_equal_brute_force_moderate_range(row):
    _assert_ls2_lst_equal_brute_force(row)


def test_ls2_and_lst_equal_brute_force_on_seeded_rows():
    rng = np.random.default_rng(11)
    for n in range(1, 9):
        for _ in range(6):
            _assert_ls2_lst_equal_brute_force(rng.laplace(size=n) * rng.uniform(0.1, 10.0))


def test_brute_force_reference_finds_known_optimum():
    # |x| = {1, 1, 3, 3}: LS-2 is exact (levels ±1, ±3); LS-T's best is zero for the 1s, ±3
    # otherwise (error 2/4), better than one level 2 for all (error 4/4).
    row = np.array([1.0, -1.0, 3.0, -3.0])
    assert _brute_force_mse(row, ternary=False) == pytest.approx(0.0, abs=1e-12)
    assert _brute_force_mse(row, ternary=True) == pytest.approx(0.5)
    assert _row_mse(row[None, :], BinaryFormat("lst"))[0] == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(matrices(max_rows=3, max_cols=12), st.integers(1, 4))
def test_gf_matches_definition_row_by_row(x, k):
    params = fit_binary(x, BinaryFormat("gf", k))
    for r, row in enumerate(x):
        scales, planes = _greedy_reference(row, k)
        np.testing.assert_allclose(params.v[r], scales, rtol=1e-12, atol=1e-300)
        np.testing.assert_array_equal(params.b[:, r], planes)


# --- structure of the result ---------------------------------------------------------------------

tensors = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
                     elements=values)


@settings(max_examples=80, deadline=None)
@given(tensors, st.sampled_from(METHODS), st.data())
def test_rows_along_axis_equal_single_row_fits(x, method_k, data):
    method, k = method_k
    axis = data.draw(st.integers(0, x.ndim - 1))
    params = fit_binary(x, BinaryFormat(method, k, axis=axis))
    terms = params.fmt.k
    assert params.b.dtype == np.int8 and params.b.shape == (terms, *x.shape)
    assert params.v.shape == (x.shape[axis], terms) and np.all(params.v >= 0)
    x_hat = params.dequantize()
    for r in range(x.shape[axis]):
        single = fit_binary(np.take(x, r, axis=axis), BinaryFormat(method, k, axis=None))
        np.testing.assert_array_equal(params.v[r], single.v[0])
        np.testing.assert_array_equal(np.take(params.b, r, axis=axis + 1), single.b)
        np.testing.assert_array_equal(np.take(x_hat, r, axis=axis), single.dequantize())


@settings(max_examples=60, deadline=None)
@given(matrices(max_rows=3, max_cols=16), st.sampled_from(METHODS))
def test_dequantized_values_are_levels_of_their_row(x, method_k):
    params = fit_binary(x, BinaryFormat(*method_k))
    levels = params.levels()
    assert levels.shape == (x.shape[0], 2 ** params.fmt.k)
    assert np.all(np.diff(levels, axis=1) >= 0)
    x_hat = params.dequantize()
    for r in range(x.shape[0]):
        dist = np.abs(x_hat[r][:, None] - levels[r][None, :]).min(axis=1)
        assert np.all(dist <= 1e-12 * (1.0 + np.abs(x_hat[r])))


@settings(max_examples=40, deadline=None)
@given(matrices(max_rows=3, max_cols=16))
def test_lst_has_ternary_levels_and_ls2_levels_are_symmetric(x):
    lst = fit_binary(x, BinaryFormat("lst"))
    np.testing.assert_array_equal(lst.v[:, 0], lst.v[:, 1])
    mags = np.abs(lst.dequantize())
    assert np.all((mags == 0.0) | (mags == 2.0 * lst.v[:, :1]))
    ls2 = fit_binary(x, BinaryFormat("ls2"))
    assert np.all(ls2.v[:, 0] >= ls2.v[:, 1])  # inner level v1 - v2 is not negative


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), st.integers(1, 50),
       st.integers(1, 4))
def test_lst_reproduces_a_constant_row_exactly(c, n, rows):
    x = np.full((rows, n), c)
    np.testing.assert_array_equal(fit_binary(x, BinaryFormat("lst")).dequantize(), x)


@pytest.mark.parametrize("method, k", METHODS)
def test_single_value_rows_are_exact_and_zero_rows_give_zero_scales(method, k):
    x = np.array([[2.5], [-0.75], [0.0]])
    params = fit_binary(x, BinaryFormat(method, k))
    np.testing.assert_array_equal(params.dequantize(), x)
    zeros = fit_binary(np.zeros((2, 7)), BinaryFormat(method, k))
    np.testing.assert_array_equal(zeros.v, 0.0)
    np.testing.assert_array_equal(zeros.b, 1)  # sign(0) = +1
    np.testing.assert_array_equal(zeros.dequantize(), 0.0)


def test_sign_of_zero_and_negative_zero_is_plus_one():
    params = fit_binary(np.array([[0.0, -0.0, 1.0, -1.0]]), BinaryFormat("ls1"))
    np.testing.assert_array_equal(params.b[0, 0], [1, 1, 1, -1])


def test_ls2_on_a_two_magnitude_row_is_exact():
    x = np.array([[0.5, -2.0, -0.5, 2.0, 0.5, -2.0]])
    params = fit_binary(x, BinaryFormat("ls2"))
    np.testing.assert_allclose(params.v, [[1.25, 0.75]])
    np.testing.assert_allclose(params.dequantize(), x, rtol=1e-15)


def test_format_is_registered_and_fit_params_dispatches():
    assert "binary" in registered_formats()
    x = np.random.default_rng(1).standard_normal((4, 9))
    fmt = BinaryFormat("ls2")
    got = fit_params(x, fmt)
    assert isinstance(got, BinaryParams)
    np.testing.assert_array_equal(got.dequantize(), fit_binary(x, fmt).dequantize())


def test_params_are_read_only():
    params = fit_binary(np.ones((2, 3)), BinaryFormat("ls1"))
    with pytest.raises(ValueError):
        params.v[0, 0] = 3.0
    with pytest.raises(ValueError):
        params.b[0, 0, 0] = -1


# --- validation ----------------------------------------------------------------------------------

def test_k_out_of_range_message():
    with pytest.raises(QuantError, match=r"^The 'k' parameter of BinaryFormat must be an int in "
                                         r"\[1, 4\]. Got 5 instead.$"):
        BinaryFormat("gf", k=5)
    with pytest.raises(QuantError, match=r"'k' parameter of BinaryFormat .* Got 0 instead"):
        BinaryFormat("gf", k=0)
    with pytest.raises(QuantError, match=r"'k' parameter of BinaryFormat .* Got 2.0 instead"):
        BinaryFormat("gf", k=2.0)  # type: ignore[arg-type]


def test_k_of_fixed_methods_and_defaults():
    with pytest.raises(QuantError, match=r"'k' parameter of BinaryFormat must be 2 \(or None\) "
                                         r"for method 'ls2'. Got 3 instead."):
        BinaryFormat("ls2", k=3)
    with pytest.raises(QuantError, match=r"must be 1 \(or None\) for method 'ls1'"):
        BinaryFormat("ls1", k=2)
    assert [BinaryFormat(m).k for m in ("ls1", "ls2", "lst", "gf")] == [1, 2, 2, 2]
    assert BinaryFormat("lst", k=2) == BinaryFormat("lst")
    assert BinaryFormat("gf", 3).describe() == "gf3"
    assert BinaryFormat("ls2", axis=None).describe() == "ls2-pt"


def test_method_and_axis_messages():
    with pytest.raises(QuantError, match=r"The 'method' parameter of BinaryFormat must be a str "
                                         r"among \{'ls1', 'ls2', 'lst', 'gf'\}. Got 'ls3' instead."):
        BinaryFormat("ls3")
    with pytest.raises(QuantError, match=r"'axis' parameter of BinaryFormat must be a "
                                         r"non-negative int or None. Got -1 instead."):
        BinaryFormat("ls1", axis=-1)
    with pytest.raises(QuantError, match=r"axis=2 needs a tensor with at least 3 dims; got "
                                         r"shape \(4, 5\)"):
        fit_binary(np.ones((4, 5)), BinaryFormat("ls1", axis=2))


@pytest.mark.parametrize("x", [np.zeros((0,)), np.zeros((3, 0)), np.zeros((0, 4))])
def test_empty_tensor_is_rejected(x):
    with pytest.raises(QuantError, match=r"cannot fit ls2 binary parameters to an empty tensor "
                                         r"of shape .*expected at least one value"):
        fit_binary(x, BinaryFormat("ls2"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad):
    x = np.ones((2, 3))
    x[1, 2] = bad
    with pytest.raises(QuantError, match=r"cannot fit gf3 binary parameters to a tensor with NaN "
                                         r"or inf \(1 of 6 values\); expected finite values"):
        fit_binary(x, BinaryFormat("gf", 3))


def test_wrong_format_or_data_type_is_rejected():
    with pytest.raises(QuantError, match="fit_binary needs a BinaryFormat; got IntFormat"):
        fit_binary(np.ones(3), IntFormat())  # type: ignore[arg-type]
    with pytest.raises(QuantError, match="expects a real-valued array"):
        fit_binary(np.array(["a", "b"]), BinaryFormat())


def test_binary_params_validation():
    fmt = BinaryFormat("ls1")
    ok_b = np.ones((1, 2, 3), dtype=np.int8)
    with pytest.raises(QuantError, match=r"BinaryParams.v must have shape \(rows, 1\)"):
        BinaryParams(np.ones((2, 2)), ok_b, fmt)
    with pytest.raises(QuantError, match=r"BinaryParams.v must be finite and >= 0"):
        BinaryParams(-np.ones((2, 1)), ok_b, fmt)
    with pytest.raises(QuantError, match=r"BinaryParams.b must hold only -1 and \+1"):
        BinaryParams(np.ones((2, 1)), np.zeros((1, 2, 3), dtype=np.int8), fmt)
    with pytest.raises(QuantError, match=r"BinaryParams.b must be int8"):
        BinaryParams(np.ones((2, 1)), np.ones((1, 2, 3)), fmt)
    with pytest.raises(QuantError, match=r"v has 3 rows but b of shape \(1, 2, 3\) has 2"):
        BinaryParams(np.ones((3, 1)), ok_b, fmt)


# --- straight-through fake quantization ----------------------------------------------------------

@pytest.mark.parametrize("method, k", METHODS)
def test_fake_quant_forward_is_dequantize_and_gradient_is_straight_through(method, k):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 5, 5, generator=gen, requires_grad=True)
    fmt = BinaryFormat(method, k)
    y = binary_fake_quant(x, fmt)
    assert y.dtype == x.dtype and y.shape == x.shape
    expected = fit_binary(x.detach().double().numpy(), fmt).dequantize().astype(np.float32)
    np.testing.assert_array_equal(y.detach().numpy(), expected)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(x.shape, dtype=np.float32))


def test_fake_quant_gradient_reaches_weights_in_a_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 3)
    x = torch.randn(5, 6)
    out = torch.nn.functional.linear(binary_fake_quant(x, BinaryFormat("lst")),
                                     binary_fake_quant(layer.weight, BinaryFormat("ls1")))
    out.pow(2).sum().backward()
    assert layer.weight.grad is not None and torch.count_nonzero(layer.weight.grad) > 0


def test_fake_quant_rejects_bad_input():
    with pytest.raises(QuantError, match="expects a torch.Tensor; got ndarray"):
        binary_fake_quant(np.ones(3), BinaryFormat())  # type: ignore[arg-type]
    with pytest.raises(QuantError, match="expects a floating-point tensor; got torch.int64"):
        binary_fake_quant(torch.ones(3, dtype=torch.int64), BinaryFormat())
    with pytest.raises(QuantError, match="NaN or inf"):
        binary_fake_quant(torch.tensor([[1.0, float("nan")]]), BinaryFormat())
