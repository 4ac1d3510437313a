"""Least-squares binary fits on rows: LS-1, GF-k, LS-2 (optimal), LS-T (optimal ternary).

Every function takes ``rows``: a float64 array of shape (R, n) with finite values and n >= 1,
and returns ``(v, b)``: the scales ``v`` float64 (R, T), ``v >= 0``, and the sign planes ``b``
int8 (T, R, n) in {-1, +1}, such that row r is approximated by ``sum_i v[r, i] * b[i, r]``.
Algorithms: "Least squares binary quantization of neural networks" (Pouransari, Tu, Tuzel;
CVPR Workshops 2020).

All work is vectorized over rows; the only Python loops run over the (at most 4) terms.
"""

from __future__ import annotations

import numpy as np


def _signs(r: np.ndarray) -> np.ndarray:
    """sign(r) as int8 with sign(0) = sign(-0.0) = +1."""
    return np.where(r >= 0, np.int8(1), np.int8(-1))


def fit_greedy_rows(rows: np.ndarray, terms: int) -> tuple[np.ndarray, np.ndarray]:
    """GF-k (k = ``terms``): ``v_i = mean|r_{i-1}|``, ``b_i = sign(r_{i-1})``; LS-1 is GF-1."""
    n_rows, n = rows.shape
    v = np.empty((n_rows, terms), dtype=np.float64)
    b = np.empty((terms, n_rows, n), dtype=np.int8)
    resid = rows.copy()
    for i in range(terms):
        v[:, i] = np.mean(np.abs(resid), axis=1)
        b[i] = _signs(resid)
        resid -= v[:, i, None] * b[i]
    return v, b


def _sorted_magnitudes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|rows| sorted ascending per row, rank of each element of ``rows`` in that order)."""
    mags = np.abs(rows)
    order = np.argsort(mags, axis=1)  # tie order is irrelevant: tied values are interchangeable
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(rows.shape[1]), order.shape), axis=1)
    return np.take_along_axis(mags, order, axis=1), ranks


def _suffix_sums(sorted_mags: np.ndarray) -> np.ndarray:
    """``out[:, k] = sum(sorted_mags[:, k:])``, shape (R, n); computed from the large end."""
    return np.cumsum(sorted_mags[:, ::-1], axis=1)[:, ::-1]


def _group_means(sorted_mags: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means of the low group ``[:split]`` and high group ``[split:]`` of each sorted row.

    Each mean is taken as ``ref + mean(a - ref)`` with ``ref`` the group's largest element, so a
    group of equal values has exactly that value as its mean.  An empty low group (split 0) gets
    the high group's mean.
    """
    n_rows, n = sorted_mags.shape
    idx = np.arange(n)
    high = idx[None, :] >= split[:, None]
    ref_hi = sorted_mags[:, -1]
    m_hi = ref_hi + np.where(high, sorted_mags - ref_hi[:, None], 0.0).sum(axis=1) / (n - split)
    has_low = split > 0
    ref_lo = sorted_mags[np.arange(n_rows), np.maximum(split - 1, 0)]
    low_sum = np.where(~high, sorted_mags - ref_lo[:, None], 0.0).sum(axis=1)
    m_lo = np.where(has_low, ref_lo + low_sum / np.maximum(split, 1), m_hi)
    return m_lo, m_hi


def _split_planes(rows: np.ndarray, ranks: np.ndarray, split: np.ndarray) -> np.ndarray:
    """b1 = sign(x); b2 = b1 on the high group (rank >= split), -b1 on the low group."""
    b1 = _signs(rows)
    b2 = np.where(ranks >= split[:, None], b1, -b1).astype(np.int8)
    return np.stack([b1, b2])


def _normalized(sorted_mags: np.ndarray) -> np.ndarray:
    """Rows divided by their largest magnitude (all-zero rows unchanged): keeps squares finite."""
    peak = sorted_mags[:, -1:]
    return sorted_mags / np.where(peak > 0, peak, 1.0)


def fit_ls2_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LS-2: the best split of sorted |x| into a low and a high group (1-D 2-means on |x|).

    For low-group size k in 0..n-1 the error is ``sum a^2 - S_lo^2/k - S_hi^2/(n-k)``; the split
    maximizing ``S_lo^2/k + S_hi^2/(n-k)`` is taken (ties: the smallest k).  Then
    ``v1 = (m_lo + m_hi)/2``, ``v2 = (m_hi - m_lo)/2``: levels ``±m_lo``, ``±m_hi``.
    """
    n = rows.shape[1]
    sorted_mags, ranks = _sorted_magnitudes(rows)
    a = _normalized(sorted_mags)
    hi_sums = _suffix_sums(a)                        # S_hi for k = 0..n-1
    lo_sums = hi_sums[:, :1] - hi_sums               # S_lo for k = 0..n-1 (k = 0 -> 0)
    k = np.arange(n, dtype=np.float64)
    gain = hi_sums**2 / (n - k) + np.where(k > 0, lo_sums**2 / np.maximum(k, 1.0), 0.0)
    split = np.argmax(gain, axis=1)
    m_lo, m_hi = _group_means(sorted_mags, split)
    v = np.stack([0.5 * m_lo + 0.5 * m_hi, 0.5 * m_hi - 0.5 * m_lo], axis=1)
    return np.maximum(v, 0.0), _split_planes(rows, ranks, split)


def fit_lst_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LS-T: x ≈ v (b1 + b2), levels {0, ±2v}; the best split of sorted |x| into zero / nonzero.

    For zero-group size k in 0..n-1 the error is ``sum a^2 - S_hi^2/(n-k)``; the split maximizing
    ``S_hi^2/(n-k)`` is taken (ties: the smallest k).  ``v = m_hi / 2`` on both terms.
    """
    n = rows.shape[1]
    sorted_mags, ranks = _sorted_magnitudes(rows)
    hi_sums = _suffix_sums(_normalized(sorted_mags))
    gain = hi_sums**2 / (n - np.arange(n, dtype=np.float64))
    split = np.argmax(gain, axis=1)
    _, m_hi = _group_means(sorted_mags, split)
    half = 0.5 * m_hi
    return np.stack([half, half], axis=1), _split_planes(rows, ranks, split)
