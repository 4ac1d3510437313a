"""The greedy multipoint fit on rows: one new point per step, then the refit of the row's scales.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  For each row ``w`` (d,) (one output channel), with ``r = w``:

1. the codes ``q_n`` of a new point: a 1-D scale search on ``r`` (``multipoint_search``);
2. the scales: with ``refit``, the least-squares fit of all the row's scales to ``w`` given the
   codes ``q_1..q_n`` (never worse than keeping the earlier scales and fitting the new one
   alone, which is the fallback should the joint solve lose to it in floating point); without,
   the earlier scales stay and the new point keeps the scale its search chose;
3. ``r = w - sum_j a_j q_j``.

``||r||`` is non-increasing in ``n``: a step that would raise it by rounding leaves the row's
residual as it was and adds an empty point instead.  Every row is independent; the work is vectorized over
rows.  The codes of the first ``n`` points do not depend on how many points are fitted after
them, so one fit of ``P`` points holds every count ``n <= P``: ``scales[:, n - 1, :n]`` are the
scales of the row's first ``n`` points when it uses ``n`` (with ``refit`` they change with
``n``; without, they are a prefix of ``scales[:, P - 1]``).

The search "best" (``best_ladder``) is a choice between two whole ladders, not a step: each row
keeps the "exact" or the "grid" ladder, whichever leaves the smaller ``||w - w_hat||^2`` with
all ``P`` points.  Greedy paths of the two diverge after the first point, in either direction,
so neither ladder is always the better one at ``P``; the row's pick is.  Its codes of the first
``n`` points do depend on ``P`` (the pick is made at ``P``), but within one fit they are still
a prefix, so the ladder holds every count ``n <= P`` as above.
"""

from __future__ import annotations

import numpy as np

from quant.errors import QuantError
from quant.formats.multipoint_search import (exact_search, grid_search, maxabs_search,
                                             psd_pinv)

SEARCHES = ("best", "exact", "grid", "maxabs")
# The searches of one greedy step ("best" chooses between whole ladders: ``best_ladder``).
STEP_SEARCHES = ("exact", "grid", "maxabs")
KERNELS = ("numba", "numpy")


def search_point(residual: np.ndarray, levels: int, search: str, grid_points: int,
                 basis: np.ndarray | None, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes int8 (K, d) and search scale float64 (K,) of one new point per residual row.

    ``search``: one of ``STEP_SEARCHES`` ("best" is not a step: ``best_ladder``).
    ``basis``: earlier codes int8 (K, m, d) to be refitted jointly (used by "exact" only).
    ``kernel``: "numba" (the kernels in ``multipoint_kernels``) or "numpy" (the reference), for
    "exact" and "grid"; "maxabs" is numpy.
    """
    if search not in STEP_SEARCHES:
        raise QuantError(f"a greedy multipoint step searches with one of {STEP_SEARCHES}; got "
                         f"{search!r} (\"best\" chooses between whole ladders: greedy_ladder)")
    if search == "grid":
        if kernel == "numba":
            from quant.formats.multipoint_kernels import grid_search_numba

            return grid_search_numba(residual, levels, grid_points)
        return grid_search(residual, levels, grid_points)
    if search == "maxabs":
        return maxabs_search(residual, levels)
    if kernel == "numba":
        from quant.formats.multipoint_kernels import exact_search_numba

        return exact_search_numba(residual, levels, basis)
    return exact_search(residual, levels, basis)


def _combine(scales: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``sum_j scales[:, j] * codes[:, j]``: float64 (K, d) from (K, n) and int8 (K, n, d)."""
    return np.einsum("kj,kjd->kd", scales, codes.astype(np.float64))


def joint_scales(rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Least-squares scales (K, n) of codes int8 (K, n, d) for rows (K, d): the minimum-norm
    solution of ``(Q Q^T) a = Q w`` per row (zero for an all-zero code vector)."""
    qf = codes.astype(np.float64)
    gram = np.matmul(qf, np.swapaxes(qf, 1, 2))
    rhs = np.einsum("knd,kd->kn", qf, rows)
    return np.einsum("kij,kj->ki", psd_pinv(gram), rhs)


def _own_scale(residual: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``<r, q> / <q, q>`` per row (K,), 0 where ``q`` is all zero."""
    qf = q.astype(np.float64)
    qq = np.einsum("kd,kd->k", qf, qf)
    return np.where(qq > 0, np.einsum("kd,kd->k", residual, qf) / np.where(qq > 0, qq, 1.0), 0.0)


def greedy_step(rows: np.ndarray, codes: np.ndarray, scales: np.ndarray, residual: np.ndarray,
                levels: int, search: str = "exact", refit: bool = True, grid_points: int = 400,
                kernel: str = "numba") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One greedy step on every row: a new point after the ``n`` a row has.

    Args:
        rows: float64 (K, d), the weight rows being approximated.
        codes: int8 (K, n, d), the codes of the rows' points so far (n may be 0).
        scales: float64 (K, n), their scales.
        residual: float64 (K, d), ``rows - sum_j scales[:, j] codes[:, j]``.
    Returns ``(q, new_scales, new_residual)``: the new codes int8 (K, d), the scales of all
    ``n + 1`` points float64 (K, n + 1) and the new residual float64 (K, d).
    """
    n = codes.shape[1]
    basis = codes if (refit and search == "exact" and n > 0) else None
    q, c = search_point(residual, levels, search, grid_points, basis, kernel)
    all_codes = np.concatenate([codes, q[:, None]], axis=1)
    new = np.concatenate([scales, (_own_scale(residual, q) if refit else c)[:, None]], axis=1)
    fitted = _combine(new, all_codes)
    err_new = _square_norm(rows - fitted)
    if refit and n > 0:
        joint = joint_scales(rows, all_codes)
        fitted_joint = _combine(joint, all_codes)
        err_joint = _square_norm(rows - fitted_joint)
        better = err_joint <= err_new
        new = np.where(better[:, None], joint, new)
        fitted = np.where(better[:, None], fitted_joint, fitted)
        err_new = np.minimum(err_joint, err_new)
    # In exact arithmetic neither candidate raises ||r||; in floating point a point that adds
    # (almost) nothing can, by rounding, when the scales cancel.  Such a row keeps its residual
    # and gets an empty point (zero codes, zero scale), so the norm never rises.
    worse = err_new > _square_norm(residual)
    if np.any(worse):
        q = np.where(worse[:, None], np.int8(0), q)
        new = np.where(worse[:, None], np.concatenate([scales, np.zeros((len(q), 1))], axis=1),
                       new)
        return q, new, np.where(worse[:, None], residual, rows - fitted)
    return q, new, rows - fitted


def _square_norm(r: np.ndarray) -> np.ndarray:
    """``||r_k||^2`` per row, float64 (K,), for r (K, d)."""
    return np.einsum("kd,kd->k", r, r)


def greedy_ladder(rows: np.ndarray, levels: int, points: int, search: str = "best",
                  refit: bool = True, grid_points: int = 400, kernel: str = "numba"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``points`` points to every row of ``rows`` float64 (K, d) (finite).

    Returns ``(codes, scales)``: codes int8 (K, points, d) in ``[-levels, levels]``;
    scales float64 (K, points, points), ``scales[:, n - 1, :n]`` the scales with ``n`` points
    (zeros elsewhere).  Scales may be negative after the refit (rarely); ``MultipointParams``
    folds such a sign into the codes.  ``search``: one of ``SEARCHES`` ("best": ``best_ladder``).
    """
    if search == "best":
        return best_ladder(rows, levels, points, refit, grid_points, kernel)
    k_rows, d = rows.shape
    codes = np.zeros((k_rows, points, d), dtype=np.int8)
    scales = np.zeros((k_rows, points, points), dtype=np.float64)
    residual = rows.copy()
    for n in range(points):
        kept = scales[:, n - 1, :n] if n else np.zeros((k_rows, 0))
        codes[:, n], scales[:, n, :n + 1], residual = greedy_step(
            rows, codes[:, :n], kept, residual, levels, search, refit, grid_points, kernel)
    return codes, scales


def ladder_square_errors(rows: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``||rows_k - sum_j scales[k, P - 1, j] codes[k, j]||^2`` per row, float64 (K,): the
    squared residual with all ``P`` points of a ladder (``greedy_ladder``'s arrays)."""
    return _square_norm(rows - _combine(scales[:, -1], codes))


def best_ladder(rows: np.ndarray, levels: int, points: int, refit: bool = True,
                grid_points: int = 400, kernel: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """The "best" ladder: per row, the "exact" or the "grid" ladder (``greedy_ladder``), whichever
    leaves the smaller squared residual with all ``points`` points (``ladder_square_errors``;
    a tie keeps "exact").  Same arguments and arrays as ``greedy_ladder``.

    Guarantee: each row's squared residual with ``points`` points is the minimum of the two
    ladders' (as ``ladder_square_errors`` computes it, the row's arrays being copied unchanged),
    so at ``points`` it is at most the grid ladder's and at most the exact ladder's, row by
    row, hence also for any sum over rows.  With fewer points ``n < points`` there is no such
    bound (the row keeps the ladder that is better at ``points``); the residual is
    non-increasing in ``n`` as in either ladder.  Cost: both ladders, i.e. about the grid's.
    """
    exact = greedy_ladder(rows, levels, points, "exact", refit, grid_points, kernel)
    grid = greedy_ladder(rows, levels, points, "grid", refit, grid_points, kernel)
    take_grid = ladder_square_errors(rows, *grid) < ladder_square_errors(rows, *exact)
    codes = np.where(take_grid[:, None, None], grid[0], exact[0])
    scales = np.where(take_grid[:, None, None], grid[1], exact[1])
    return codes, scales
