"""One greedy step of multipoint quantization: the codes of one new point for each residual row.

For a residual row ``r`` (d,) and ``L = 2^(b-1) - 1`` the candidate points are
``c · q(c)`` with ``q(c) = clip(rint(r / c), -L, L)`` (signed, symmetric codes) for a scale
``c`` in ``(0, max|r| / L]`` (Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple
Points: Mixed Precision without Mixed Precision", AAAI 2021).  Three searches:

* ``maxabs_search``: ``c = max|r| / L``: no clipping, ``|r - c q| <= c / 2`` element-wise.
* ``grid_search``: the ``c`` of a grid ``max|r| / L · g / G`` (g = 1..G, the paper's setting
  G = 400) minimizing ``||r - c q(c)||^2``; the first (smallest) ``c`` wins ties.
* ``exact_search``: every code pattern ``q(c)`` the interval yields, ranked by the error left
  after the least-squares refit it will get; the best one exactly (no grid).

The exact search rests on ``q(c)`` being piecewise constant: element ``i`` moves from code
magnitude ``k`` to ``k + 1`` when ``c`` falls below ``|r_i| / (k + 0.5)`` (an *event*).  Sweeping
``c`` down from ``max|r| / L`` through the at most ``d·L`` events, sorted, visits every pattern
with running sums ``S1 = <|r|, |q|>`` and ``S2 = <q, q>`` (and ``U = B q`` for the refit below),
each updated by one element per event.  A pattern's error after its own least-squares scale
``S1 / S2`` is ``||r||^2 - S1^2 / S2``; with earlier points ``B`` (m, d) that are refitted
jointly, and ``r`` orthogonal to them (the previous refit made it so), it is
``||r||^2 - S1^2 / (S2 - U^T (B B^T)^+ U)``.  Each grid point's pattern is among the ones
visited, so from the same residual and earlier points this search, after the refit, is never
worse than the grid (the step's exact optimum over the interval).  A golden-section search
would need ``||r - c q(c)||^2`` to be unimodal in ``c``; it is not (one local minimum per
piece), so it can stop in a local minimum worse than the grid: it is not offered.  Cost:
``O(d L log(d L))`` per row here; ``multipoint_kernels`` has the same search as a numba kernel
(``O(d log d + d L log L)``, no ``d·L`` arrays), which the fit uses by default, and a numba
kernel of the grid search (``grid_search_numba``; ``grid_search`` here is its reference).

Every function takes ``r`` float64 (K, d) (finite) and the largest code ``levels = L >= 1``, and
returns ``(codes, scale)``: ``codes`` int8 (K, d) in ``[-L, L]`` and ``scale`` float64 (K,)
``>= 0``, the scale the search chose (exact: the pattern's least-squares scale
``<r, q> / <q, q>``).  An all-zero row gets zero codes and scale 0, and so does a row whose
largest magnitude is below ``NEGLIGIBLE`` (2^-1000, about 9.3e-302): its scales would be
subnormal floats, too coarse for the search's arithmetic (such a residual is left as it is).
"""

from __future__ import annotations

import numpy as np

# Rows whose largest magnitude is below this count as zero rows (module docstring).
NEGLIGIBLE = 2.0 ** -1000

# Work arrays of the numpy searches are chunked over rows to about this many float64 values.
_CHUNK_VALUES = 1 << 21
# A pattern whose part orthogonal to the earlier points has squared norm below this fraction of
# ``<q, q>`` lies in their span: the refit gains nothing from it.
SPAN_TOLERANCE = 1e-9


def _peaks(r: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|r|, live rows (K,) bool, ``max|r| / L`` per row with 1.0 on zero rows (all below
    ``NEGLIGIBLE``))."""
    mags = np.abs(r)
    amax = mags.max(axis=1)
    live = amax >= NEGLIGIBLE
    return mags, live, np.where(live, amax / levels, 1.0)


def _codes_at(r: np.ndarray, c: np.ndarray, levels: int) -> np.ndarray:
    """``clip(rint(r / c), -L, L)`` as float64, ``c`` (K,) or (K, G) broadcast on the last axis."""
    return np.clip(np.rint(r / c[..., None]), -levels, levels)


def maxabs_search(r: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``max|r| / L`` and its codes (see the module docstring for shapes)."""
    _, live, cmax = _peaks(r, levels)
    codes = np.where(live[:, None], _codes_at(r, cmax, levels), 0.0)
    return codes.astype(np.int8), np.where(live, cmax, 0.0)


def grid_search(r: np.ndarray, levels: int, grid_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """The best of ``grid_points`` scales ``max|r| / L · g / grid_points`` (g = 1..grid_points)
    by ``||r - c q(c)||^2``; the smallest scale wins ties."""
    k_rows, d = r.shape
    _, live, cmax = _peaks(r, levels)
    fractions = np.arange(1, grid_points + 1, dtype=np.float64) / grid_points
    chosen = np.empty(k_rows, dtype=np.float64)
    step = max(1, _CHUNK_VALUES // (grid_points * d))
    for lo in range(0, k_rows, step):
        rows = r[lo:lo + step]
        cs = cmax[lo:lo + step, None] * fractions                     # (k, G)
        err = rows[:, None, :] - cs[..., None] * _codes_at(rows[:, None, :], cs, levels)
        best = np.argmin(np.einsum("kgd,kgd->kg", err, err), axis=1)
        chosen[lo:lo + step] = cs[np.arange(rows.shape[0]), best]
    codes = np.where(live[:, None], _codes_at(r, chosen, levels), 0.0)
    return codes.astype(np.int8), np.where(live, chosen, 0.0)


def psd_pinv(gram: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of symmetric positive semi-definite matrices (K, m, m), float64:
    eigenvalues below ``1e-12`` of a matrix's largest count as zero."""
    vals, vecs = np.linalg.eigh(gram)
    cutoff = 1e-12 * np.max(np.abs(vals), axis=-1, keepdims=True)
    inv = np.where(vals > cutoff, 1.0 / np.where(vals > cutoff, vals, 1.0), 0.0)
    return np.matmul(vecs * inv[..., None, :], np.swapaxes(vecs, -1, -2))


def basis_pinv(basis: np.ndarray | None) -> np.ndarray | None:
    """``(B B^T)^+`` per row, float64 (K, m, m), for earlier codes ``basis`` int8 (K, m, d);
    None when there are none (None or m = 0)."""
    if basis is None or basis.shape[1] == 0:
        return None
    bf = basis.astype(np.float64)
    return psd_pinv(np.matmul(bf, np.swapaxes(bf, 1, 2)))


def refit_gain(s1: np.ndarray, s2: np.ndarray, proj: np.ndarray | float) -> np.ndarray:
    """``S1^2 / (S2 - proj)``: how much a pattern lowers ``||r||^2`` after the refit; 0 where the
    pattern lies in the earlier points' span (or is empty)."""
    denom = s2 - proj
    ok = denom > SPAN_TOLERANCE * s2
    return np.where(ok, s1 * s1 / np.where(ok, denom, 1.0), 0.0)


def exact_search(r: np.ndarray, levels: int, basis: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The code pattern of ``(0, max|r| / L]`` with the least error after the refit, by sorting
    all events (numpy reference of ``multipoint_kernels.exact_search_numba``).

    ``basis``: int8 (K, m, d), the codes of the row's earlier points, refitted jointly with the
    new one (None: the new point gets its own least-squares scale only).  Ties go to the
    largest scale.
    """
    k_rows, d = r.shape
    m = 0 if basis is None else basis.shape[1]
    pinv = basis_pinv(basis)
    codes = np.zeros((k_rows, d), dtype=np.int8)
    scale = np.zeros(k_rows, dtype=np.float64)
    step = max(1, _CHUNK_VALUES // (d * levels * (m + 6)))
    for lo in range(0, k_rows, step):
        sl = slice(lo, lo + step)
        codes[sl], scale[sl] = _exact_chunk(r[sl], levels, None if m == 0 else basis[sl],
                                            None if m == 0 else pinv[sl])
    return codes, scale


def _exact_chunk(r: np.ndarray, levels: int, basis: np.ndarray | None, pinv: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    k_rows, d = r.shape
    mags, live, cmax = _peaks(r, levels)
    signs = np.sign(r)
    k0 = np.minimum(np.rint(mags / cmax[:, None]), levels)          # |q| at c = max|r| / L
    steps = np.arange(levels, dtype=np.float64)
    valid = (steps >= k0[..., None]) & (mags[..., None] > 0)
    keys = np.where(valid, mags[..., None] / (steps + 0.5), -1.0)     # (k, d, L); -1: no event
    flat = keys.reshape(k_rows, d * levels)
    order = np.argsort(-flat, axis=1, kind="stable")                  # largest scale first
    sorted_keys = np.take_along_axis(flat, order, axis=1)
    has_event = sorted_keys > 0
    elem, step_k = np.divmod(order, levels)
    inc1 = np.where(has_event, np.take_along_axis(mags, elem, axis=1), 0.0)
    inc2 = np.where(has_event, 2.0 * step_k + 1.0, 0.0)
    # Column 0 is the pattern at c = max|r| / L; column j + 1 the one after event j.
    s1_0 = (mags * k0).sum(axis=1, keepdims=True)
    s2_0 = (k0 * k0).sum(axis=1, keepdims=True)
    s1 = np.concatenate([s1_0, s1_0 + np.cumsum(inc1, axis=1)], axis=1)
    s2 = np.concatenate([s2_0, s2_0 + np.cumsum(inc2, axis=1)], axis=1)
    proj: np.ndarray | float = 0.0
    if basis is not None:
        bf = basis.astype(np.float64)                                 # (k, m, d)
        u0 = np.einsum("kmd,kd->km", bf, signs * k0)
        moves = np.take_along_axis(bf, elem[:, None, :], axis=2)      # (k, m, E)
        moves *= np.where(has_event, np.take_along_axis(signs, elem, axis=1), 0.0)[:, None, :]
        u = np.concatenate([u0[..., None], u0[..., None] + np.cumsum(moves, axis=2)], axis=2)
        proj = np.einsum("kme,kmn,kne->ke", u, pinv, u)
    gain = refit_gain(s1, s2, proj)
    # A pattern exists for some c only once every event of its scale is applied.
    next_keys = np.concatenate([sorted_keys[:, 1:], np.full((k_rows, 1), -1.0)], axis=1)
    ends = has_event & (next_keys < sorted_keys)
    gain[:, 1:] = np.where(ends, gain[:, 1:], -np.inf)
    best = np.argmax(gain, axis=1)
    rows = np.arange(k_rows)
    c_star = np.where(best == 0, np.inf, sorted_keys[rows, np.maximum(best - 1, 0)])
    mags_q = k0 + np.count_nonzero(valid & (keys >= c_star[:, None, None]), axis=2)
    codes = np.where(live[:, None], signs * mags_q, 0.0).astype(np.int8)
    s1b, s2b = s1[rows, best], s2[rows, best]
    scale = np.where(live, s1b / np.where(s2b > 0, s2b, 1.0), 0.0)
    return codes, scale
