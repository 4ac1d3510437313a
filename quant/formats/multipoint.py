"""Multipoint weights: ``MultipointFormat`` (what a channel can be) and ``MultipointParams``.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  Each output channel ``w_k`` (a slice along axis 0 of a weight
(K, ...), flattened to d values) is approximated by a sum of ``n_k`` points

    w_k ≈ sum_{j < n_k} a_kj · q_kj,   q_kj in {-L..L}^d,  L = 2^(b-1) - 1,  a_kj >= 0,

built greedily (``multipoint_fit``): each new point approximates what the earlier ones left.
Every point has the same ``b``-bit signed symmetric codes, so a channel with ``n_k`` points is
``n_k`` rows of one ordinary ``b``-bit weight matrix, each row with its own scale ``a_kj``;
the channel's output is the sum of its rows' scaled outputs (a requantization-stage add).
Extra points are extra rows of the same GEMM: no mixed-precision datapath is needed
(``MultipointParams.as_rows``).  How many points each channel gets is chosen on calibration
data by ``multipoint_points``.

``fit_multipoint_ladder`` fits ``max_points`` points to every channel once; any per-channel
count ``n_k <= max_points`` is then a selection (``MultipointLadder.params``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant._validate import check_bool, check_choice, check_int
from quant.errors import QuantError
from quant.formats._shared import finite_tensor
from quant.formats.multipoint_fit import KERNELS, SEARCHES, greedy_ladder

MAX_POINTS_LIMIT = 64


@dataclass(frozen=True)
class MultipointFormat:
    """A multipoint weight format (per output channel, axis 0).

    Attributes:
        bits: code width ``b`` of every point, 2..8; codes in ``[-L, L]``, ``L = 2^(b-1) - 1``.
        max_points: most points one channel may use, 1..64.
        search: how the points are searched, each on the residual ``r`` of the earlier ones:
            "best" (default): per channel, the "exact" or the "grid" ladder of ``max_points``
            points, whichever leaves the smaller ``||w_k - w_hat_k||^2`` with all
            ``max_points`` points (a tie keeps "exact").  Guarantee: at ``max_points`` every
            channel's residual is at most both the grid ladder's and the exact ladder's, so
            any sum over channels is too; with fewer points (a prefix of the channel's ladder,
            as adaptive points use) there is no such bound.  Cost: both ladders, about the
            grid's (``multipoint_fit.best_ladder``).
            "exact": the code pattern, over all scales in ``(0, max|r| / L]``, that
            leaves the least error after the refit, found exactly by a sweep over the
            breakpoints of the piecewise-constant codes.  At every step it is never worse than
            any grid on that interval (each grid scale's pattern is one it ranks); cost
            ``O(d L log L)`` per channel and point.  A golden-section search is not offered:
            the error is not unimodal in the scale (one local minimum per piece), so it can
            end worse than the grid.
            "grid": the best of ``grid_points`` scales ``max|r| / L · g / G`` by
            ``||r - c q(c)||^2`` (the paper's setting, G = 400); cost ``O(G d)`` (numpy),
            ``O(d log d + G min(d, L) log d)`` (numba kernel).  "maxabs": ``max|r| / L`` (no
            clipping; without refit, ``max|r_n| <= max|w| (2L)^-n``).  Whole greedy paths
            can differ after the first point, in either direction (a greedy step that is best
            now is not always best for the later ones): hence "best".
        refit: after each new point, refit all the channel's scales by least squares
            (default); otherwise each point keeps the scale its search chose (exact: its own
            least-squares scale).
        grid_points: number of scales of the "grid" search, 1..100000 (default 400).
        kernel: "numba" (default) or "numpy", the implementation of the "exact" and "grid"
            searches, also inside "best" (numpy is the reference, several times slower; the
            same result, except that the grid kernel ranks the grid's errors with other
            rounding, so scales whose errors tie to about 1e-13 may be ranked the other way).
    """

    bits: int = 4
    max_points: int = 2
    search: str = "best"
    refit: bool = True
    grid_points: int = 400
    kernel: str = "numba"

    def __post_init__(self) -> None:
        owner = "MultipointFormat"
        check_int(self.bits, "bits", owner, 2, 8)
        check_int(self.max_points, "max_points", owner, 1, MAX_POINTS_LIMIT)
        check_choice(self.search, "search", owner, SEARCHES)
        check_bool(self.refit, "refit", owner)
        check_int(self.grid_points, "grid_points", owner, 1, 100_000)
        check_choice(self.kernel, "kernel", owner, KERNELS)

    @property
    def levels(self) -> int:
        """Largest code ``L = 2^(bits-1) - 1``; codes lie in ``[-L, L]``."""
        return 2 ** (self.bits - 1) - 1

    def describe(self) -> str:
        """Short name, e.g. ``mp4x2`` (4-bit points, up to 2 per channel), plus the search
        when it is not "best" (``mp4x2-exact``) and ``-norefit``."""
        name = f"mp{self.bits}x{self.max_points}"
        if self.search != "best":
            name += f"-{self.search}"
        return name + ("" if self.refit else "-norefit")


@dataclass(frozen=True, eq=False)
class MultipointRows:
    """The integer form: the points of all channels as rows of one ``b``-bit weight matrix.

    Attributes:
        codes: int8 (R, *channel_shape), R = total points; rows ``0..K-1`` are the first points
            of channels ``0..K-1`` (the single-point layer), then the extra points ordered by
            point index, then channel.
        scales: float64 (R,), the scale of each row.
        channel: int64 (R,), the output channel each row adds to.

    Output channel ``k`` of the layer is ``sum over rows p with channel[p] == k of
    scales[p] * (codes[p] · x)``.
    """

    codes: np.ndarray
    scales: np.ndarray
    channel: np.ndarray


@dataclass(frozen=True, eq=False)
class MultipointParams:
    """Points of a weight fitted with a ``MultipointFormat``.

    Attributes:
        points: int64 (K,), points channel ``k`` uses, 1..max_points.
        scales: float64 (K, max_points), ``>= 0``; ``scales[k, j]`` is the scale of point
            ``j`` of channel ``k``, 0 for ``j >= points[k]`` (and for an all-zero channel).
        codes: int8 (K, max_points, *channel_shape) in ``[-L, L]``; zero for unused points.
        fmt: the format.
    """

    points: np.ndarray
    scales: np.ndarray
    codes: np.ndarray
    fmt: MultipointFormat

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, MultipointFormat):
            raise QuantError("MultipointParams.fmt must be a MultipointFormat; got "
                             f"{type(self.fmt).__name__}")
        p = self.fmt.max_points
        points = np.array(self.points)
        scales = np.array(self.scales, dtype=np.float64)
        codes = np.array(self.codes)
        if points.ndim != 1 or points.shape[0] == 0 or not np.issubdtype(points.dtype, np.integer):
            raise QuantError(f"MultipointParams.points must be integers of shape (K,), K >= 1; "
                             f"got {points.dtype} of shape {points.shape}")
        k = points.shape[0]
        if np.any(points < 1) or np.any(points > p):
            raise QuantError(f"MultipointParams.points must lie in [1, {p}] for "
                             f"{self.fmt.describe()}; got {points.min()}..{points.max()}")
        if scales.shape != (k, p):
            raise QuantError(f"MultipointParams.scales must have shape ({k}, {p}); got "
                             f"{scales.shape}")
        if not np.all(np.isfinite(scales)) or np.any(scales < 0):
            raise QuantError("MultipointParams.scales must be finite and >= 0")
        if codes.dtype != np.int8 or codes.ndim < 2 or codes.shape[:2] != (k, p):
            raise QuantError(f"MultipointParams.codes must be int8 of shape ({k}, {p}, ...); "
                             f"got {codes.dtype} of shape {codes.shape}")
        lv = self.fmt.levels
        if codes.size and (codes.min() < -lv or codes.max() > lv):
            raise QuantError(f"MultipointParams.codes must lie in [-{lv}, {lv}] for "
                             f"{self.fmt.bits}-bit points")
        unused = np.arange(p)[None, :] >= points[:, None]
        if np.any(scales[unused] != 0) or np.any(codes.reshape(k, p, -1)[unused] != 0):
            raise QuantError("MultipointParams: points beyond points[k] must have scale 0 and "
                             "zero codes")
        for arr in (points, scales, codes):
            arr.setflags(write=False)
        object.__setattr__(self, "points", points.astype(np.int64))
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "codes", codes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the fitted weight (K, *channel_shape)."""
        return (self.codes.shape[0], *self.codes.shape[2:])

    @property
    def rows(self) -> int:
        """Rows of the integer form: the total number of points, ``sum(points)``."""
        return int(self.points.sum())

    @property
    def extra_points(self) -> int:
        """Points beyond one per channel: ``sum(points) - K``."""
        return self.rows - self.points.shape[0]

    def dequantize(self) -> np.ndarray:
        """``sum_j scales[:, j] · codes[:, j]``, float64 of the weight's shape."""
        return decode_multipoint(self)

    def as_rows(self) -> MultipointRows:
        """The points as rows of one ``b``-bit GEMM (see ``MultipointRows``)."""
        k, p = self.scales.shape
        use = np.arange(p)[None, :] < self.points[:, None]          # (K, P)
        point_idx, chan = np.nonzero(use.T)                          # point-major order
        return MultipointRows(codes=self.codes[chan, point_idx].copy(),
                              scales=self.scales[chan, point_idx].copy(),
                              channel=chan.astype(np.int64))

    def __repr__(self) -> str:
        return (f"MultipointParams({self.fmt.describe()}, shape={self.shape}, rows={self.rows}, "
                f"extra_points={self.extra_points})")


def decode_multipoint(params: MultipointParams) -> np.ndarray:
    """The real weight the points stand for: float64 (K, *channel_shape),
    ``w_hat[k] = sum_j scales[k, j] · codes[k, j]``."""
    if not isinstance(params, MultipointParams):
        raise QuantError(f"decode_multipoint expects MultipointParams; got "
                         f"{type(params).__name__}")
    k, p = params.scales.shape
    flat = np.einsum("kj,kjd->kd", params.scales,
                     params.codes.reshape(k, p, -1).astype(np.float64))
    return flat.reshape(params.shape)


@dataclass(frozen=True, eq=False)
class MultipointLadder:
    """``max_points`` points fitted to every channel: every per-channel count at once.

    Attributes:
        weight: float64 (K, d), the fitted weight with each channel flattened.
        codes: int8 (K, P, d), P = ``fmt.max_points``; the codes of point j of each channel (the
            same whatever the count used).
        scales: float64 (K, P, P); ``scales[k, n - 1, :n]`` are channel k's scales when it uses
            ``n`` points (possibly negative: ``params`` folds signs into the codes).
        shape: the weight's original shape (K, *channel_shape).
        fmt: the format.
    """

    weight: np.ndarray
    codes: np.ndarray
    scales: np.ndarray
    shape: tuple[int, ...]
    fmt: MultipointFormat

    @property
    def channels(self) -> int:
        return self.weight.shape[0]

    def _counts(self, points: object) -> np.ndarray:
        p = self.fmt.max_points
        counts = np.broadcast_to(np.asarray(p if points is None else points), (self.channels,))
        if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 1) or np.any(counts > p):
            raise QuantError(f"points must be an int or ({self.channels},) ints in [1, {p}]; "
                             f"got {points!r}")
        return counts.astype(np.int64)

    def approximation(self, points: object = None) -> np.ndarray:
        """float64 (K, d): each channel's sum of its first ``points[k]`` points (None: all)."""
        counts = self._counts(points)
        rows = np.arange(self.channels)
        sc = self.scales[rows, counts - 1]                          # (K, P), zeros past n
        return np.einsum("kj,kjd->kd", sc, self.codes.astype(np.float64))

    def residual(self, points: object = None) -> np.ndarray:
        """float64 (K, d): ``weight - approximation(points)``."""
        return self.weight - self.approximation(points)

    def params(self, points: object = None) -> MultipointParams:
        """``MultipointParams`` with ``points`` (an int, or (K,) ints; None: ``max_points``)
        points per channel."""
        counts = self._counts(points)
        scales = self.scales[np.arange(self.channels), counts - 1]
        return assemble_params(counts, scales, self.codes, self.fmt, self.shape)


def assemble_params(points: np.ndarray, scales: np.ndarray, codes: np.ndarray,
                    fmt: MultipointFormat, shape: tuple[int, ...]) -> MultipointParams:
    """``MultipointParams`` from a fit's arrays: points int64 (K,), scales float64 (K, P)
    (any sign; entries past ``points[k]`` are ignored), codes int8 (K, P, d), ``shape`` the
    weight's (K, *channel_shape).  A negative scale becomes positive with its codes negated;
    unused points and points of scale 0 get zero codes."""
    k, p = scales.shape
    used = np.arange(p)[None, :] < points[:, None]                 # (K, P)
    sc = np.where(used, scales, 0.0)
    flip = sc < 0
    out_codes = np.where(flip[..., None], -codes, codes)
    out_codes = np.where((used & (sc != 0))[..., None], out_codes, 0).astype(np.int8)
    return MultipointParams(points=points, scales=np.abs(sc),
                            codes=out_codes.reshape((k, p, *shape[1:])), fmt=fmt)


def weight_rows(w: object, what: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """``w`` (K, ...) as float64 rows (K, d) (finite, K >= 1, d >= 1) and its shape."""
    wf = finite_tensor(w, what, "multipoint points")
    if wf.ndim == 0:
        raise QuantError(f"{what} expects a weight with an output-channel axis 0, (K, ...); got "
                         "a scalar")
    if wf.shape[0] == 0 or wf.size == 0:
        raise QuantError(f"{what} expects at least one channel with at least one value; got "
                         f"shape {wf.shape}")
    return wf.reshape(wf.shape[0], -1), wf.shape


def fit_multipoint_ladder(w: np.ndarray, fmt: MultipointFormat) -> MultipointLadder:
    """Fit ``fmt.max_points`` points to every output channel of ``w`` (K, ...), finite.

    Cost per channel and point (d values per channel, G = grid_points): "exact"
    ``O(d log d + d L log L)``, "grid" ``O(d log d + G min(d, L) log d)`` (numba kernel;
    numpy ``O(G d)``), "best" both.
    """
    if not isinstance(fmt, MultipointFormat):
        raise QuantError(f"fit_multipoint needs a MultipointFormat; got {type(fmt).__name__}")
    rows, shape = weight_rows(w, "fit_multipoint")
    codes, scales = greedy_ladder(rows, fmt.levels, fmt.max_points, fmt.search, fmt.refit,
                                  fmt.grid_points, fmt.kernel)
    for arr in (rows, codes, scales):
        arr.setflags(write=False)
    return MultipointLadder(weight=rows, codes=codes, scales=scales, shape=tuple(shape), fmt=fmt)


def fit_multipoint(w: np.ndarray, fmt: MultipointFormat, points: object = None
                   ) -> MultipointParams:
    """Multipoint parameters of ``w`` (K, ...): ``points`` per channel (an int or (K,) ints in
    ``[1, max_points]``; None: ``max_points`` for every channel)."""
    return fit_multipoint_ladder(w, fmt).params(points)
