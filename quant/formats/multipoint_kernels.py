"""numba kernels of the exact multipoint scale search (``multipoint_search.exact_search``) and of
the grid search (``grid_search_numba``, below).

The exact kernel: the same result as the numpy reference (tested equal), without its
``(K, d·L)`` sorted event arrays.  Per row, ``|r|`` is sorted once (by numpy, before the
kernel: several times faster than numba's sort); the events ``j -> j + 1`` of all elements
then form one list per code magnitude ``j``, already in order (``|r_i| / (j + 0.5)`` falls
with ``|r_i|``), and a max-heap of the ``L`` list heads merges them: ``O(d log d + d L log L)``
time, ``O(d + L)`` memory per row.  Measured on (2000, 1152) N(0, 1) rows, 4-bit: about 5x
faster than the numpy reference.  The grid kernel ranks each grid scale's error from the runs
of equal codes in the sorted ``|r|`` (``grid_search_numba``).
Importing this module imports numba; the multipoint modules import it only when the numba
search runs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from quant.formats.multipoint_search import NEGLIGIBLE, SPAN_TOLERANCE, basis_pinv


@njit(cache=True)
def _sift_down(keys: np.ndarray, idx: np.ndarray, n: int, pos: int) -> None:
    """Restore the max-heap order of ``keys[:n]`` below ``pos`` (``idx`` moves with ``keys``)."""
    key, item = keys[pos], idx[pos]
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and keys[child + 1] > keys[child]:
            child += 1
        if keys[child] <= key:
            break
        keys[pos], idx[pos] = keys[child], idx[child]
        pos = child
    keys[pos], idx[pos] = key, item


@njit(cache=True)
def _gain(s1: float, s2: float, u: np.ndarray, pinv: np.ndarray) -> float:
    """``S1^2 / (S2 - u^T pinv u)``, 0 in the earlier points' span (as ``refit_gain``)."""
    proj = 0.0
    m = u.shape[0]
    for a in range(m):
        acc = 0.0
        for b in range(m):
            acc += pinv[a, b] * u[b]
        proj += u[a] * acc
    denom = s2 - proj
    if denom > SPAN_TOLERANCE * s2:
        return s1 * s1 / denom
    return 0.0


@njit(cache=True)
def _exact_rows(r: np.ndarray, orders: np.ndarray, levels: int, basis: np.ndarray,
                pinv: np.ndarray, codes: np.ndarray, scale: np.ndarray) -> None:
    k_rows, d = r.shape
    m = basis.shape[1]
    mags = np.empty(d, dtype=np.float64)
    ptr = np.empty(levels, dtype=np.int64)
    heap_keys = np.empty(levels, dtype=np.float64)
    heap_lists = np.empty(levels, dtype=np.int64)
    u = np.zeros(m, dtype=np.float64)
    for k in range(k_rows):
        for i in range(d):
            mags[i] = abs(r[k, i])
        order = orders[k]
        amax = mags[order[0]]
        if amax < NEGLIGIBLE:
            codes[k, :] = 0
            scale[k] = 0.0
            continue
        cmax = amax / levels
        s1 = 0.0
        s2 = 0.0
        u[:] = 0.0
        nonzero = 0
        for i in range(d):
            a = mags[i]
            if a > 0.0:
                nonzero += 1
            q0 = min(np.rint(a / cmax), levels)
            s1 += a * q0
            s2 += q0 * q0
            if q0 > 0.0:
                sgn = q0 if r[k, i] > 0 else -q0
                for p in range(m):
                    u[p] += sgn * basis[k, p, i]
        # List j holds the events j -> j + 1 at scales |r_i| / (j + 0.5) of the elements whose
        # code at max|r| / L is <= j: a tail of the descending order, largest scale first.
        n = 0
        pos = 0
        for j in range(levels - 1, -1, -1):
            while pos < nonzero and min(np.rint(mags[order[pos]] / cmax), levels) > j:
                pos += 1
            ptr[j] = pos
        for j in range(levels):
            if ptr[j] < nonzero:
                heap_keys[n] = mags[order[ptr[j]]] / (j + 0.5)
                heap_lists[n] = j
                n += 1
        for p in range(n // 2 - 1, -1, -1):
            _sift_down(heap_keys, heap_lists, n, p)
        pk = pinv[k] if m > 0 else pinv[0]
        best = _gain(s1, s2, u, pk)
        best_c = np.inf
        best_s1, best_s2 = s1, s2
        while n > 0:
            c = heap_keys[0]
            j = heap_lists[0]
            i = order[ptr[j]]
            s1 += mags[i]
            s2 += 2 * j + 1
            if m > 0:
                sgn = 1.0 if r[k, i] > 0 else -1.0
                for p in range(m):
                    u[p] += sgn * basis[k, p, i]
            ptr[j] += 1
            if ptr[j] < nonzero:
                heap_keys[0] = mags[order[ptr[j]]] / (j + 0.5)
            else:
                n -= 1
                heap_keys[0], heap_lists[0] = heap_keys[n], heap_lists[n]
            _sift_down(heap_keys, heap_lists, n, 0)
            if n == 0 or heap_keys[0] < c:  # every event of this scale applied: a pattern
                g = _gain(s1, s2, u, pk)
                if g > best:
                    best, best_c, best_s1, best_s2 = g, c, s1, s2
        for i in range(d):
            a = mags[i]
            q = int(min(np.rint(a / cmax), levels))
            if a > 0.0:
                while q < levels and a / (q + 0.5) >= best_c:
                    q += 1
            codes[k, i] = q if r[k, i] > 0 else -q
        scale[k] = best_s1 / best_s2


def exact_search_numba(r: np.ndarray, levels: int, basis: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``multipoint_search.exact_search`` as a numba kernel: same arguments and result."""
    k_rows, d = r.shape
    pinv = basis_pinv(basis)
    if pinv is None:
        basis = np.zeros((k_rows, 0, d), dtype=np.int8)
        pinv = np.zeros((1, 0, 0), dtype=np.float64)
    codes = np.empty((k_rows, d), dtype=np.int8)
    scale = np.empty(k_rows, dtype=np.float64)
    r = np.ascontiguousarray(r, dtype=np.float64)
    orders = np.argsort(-np.abs(r), axis=1)                    # largest magnitude first
    _exact_rows(r, orders, int(levels),
                np.ascontiguousarray(basis, dtype=np.int8), np.ascontiguousarray(pinv),
                codes, scale)
    return codes, scale


@njit(cache=True)
def _grid_rows(mags: np.ndarray, peak: np.ndarray, levels: int, grid_points: int,
               chosen: np.ndarray) -> None:
    """Per row of ``mags`` (K, d), ascending ``|r|``, and its ``peak = max|r|``: the grid scale
    with the least ``||r - c q(c)||^2`` into ``chosen`` (K,) (the first on ties; rows with
    peak below ``NEGLIGIBLE`` are skipped)."""
    k_rows, d = mags.shape
    p1 = np.empty(d + 1, dtype=np.float64)          # prefix sums of |r| / peak
    p2 = np.empty(d + 1, dtype=np.float64)          # prefix sums of (|r| / peak)^2
    for k in range(k_rows):
        amax = peak[k]
        if amax < NEGLIGIBLE:
            continue
        cmax = amax / levels
        p1[0] = 0.0
        p2[0] = 0.0
        for i in range(d):
            a = mags[k, i] / amax
            p1[i + 1] = p1[i] + a
            p2[i + 1] = p2[i] + a * a
        best = np.inf
        best_c = cmax
        for g in range(1, grid_points + 1):
            c = cmax * (g / grid_points)
            # The code min(rint(|r_i| / c), L) (as the numpy search computes it) is
            # non-decreasing in |r_i|: the elements of one code form a run of the ascending
            # order, its end found by bisection (at most min(d, L + 1) runs).
            s1 = 0.0
            s2 = 0.0
            lo = 0
            while lo < d:
                j = min(np.rint(mags[k, lo] / c), levels)
                hi = d
                if j < levels:
                    a_lo, a_hi = lo + 1, d
                    while a_lo < a_hi:                  # first index with a larger code
                        mid = (a_lo + a_hi) // 2
                        if np.rint(mags[k, mid] / c) > j:
                            a_hi = mid
                        else:
                            a_lo = mid + 1
                    hi = a_lo
                s1 += j * (p1[hi] - p1[lo])
                s2 += j * j * (hi - lo)
                lo = hi
            cn = c / amax
            err = p2[d] - 2.0 * cn * s1 + cn * cn * s2   # ||r - c q||^2 / peak^2
            if err < best:
                best = err
                best_c = c
        chosen[k] = best_c


def grid_search_numba(r: np.ndarray, levels: int, grid_points: int = 400
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``multipoint_search.grid_search`` as a numba kernel: same arguments and result, up to the
    rounding of the errors it ranks (it sums ``||r||^2 - 2 c S1 + c^2 S2`` over the runs of
    equal codes, where the reference sums ``(r_i - c q_i)^2``), so two grid scales whose errors
    tie to about 1e-13 may be ranked the other way.  Per row: ``O(d log d + G R log d)`` (one
    sort; per grid scale, a bisection per run of equal codes, ``R <= min(d, L + 1)`` runs)
    against the reference's ``O(G d)``."""
    r = np.ascontiguousarray(r, dtype=np.float64)
    mags = np.sort(np.abs(r), axis=1)
    peak = mags[:, -1].copy()
    live = peak >= NEGLIGIBLE
    chosen = np.ones(r.shape[0], dtype=np.float64)
    _grid_rows(mags, peak, int(levels), int(grid_points), chosen)
    codes = np.where(live[:, None], np.clip(np.rint(r / chosen[:, None]), -levels, levels), 0.0)
    return codes.astype(np.int8), np.where(live, chosen, 0.0)
