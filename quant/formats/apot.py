"""Additive Powers-of-Two (APoT): ``APoTFormat`` (what a code can be) and ``APoTParams`` (what it
means).

Li, Dong, Wang, "Additive Powers-of-Two Quantization: An Efficient Non-uniform Discretization
for Neural Networks", ICLR 2020.  A magnitude is a sum of ``n`` terms, each drawn from its own
set of powers of two (0 included); the levels are all such sums, normalized so the largest is 1
and scaled by the clipping threshold ``alpha``.  The term sets are those of ``build_power_value``
in the authors' code, which defines them for ``B = 2..6`` magnitude bits only (elsewhere it
silently yields NaN levels; here that is a QuantError).

Conventions (chosen here, relied on by lowering and verification):

* Integer levels: the term sets are written as integers (``2^-k`` becomes ``2^(k_max - k)``),
  so every level ``L`` is an integer with at most ``n`` set bits and ``L_max`` is the largest.
  A real value is ``±L · alpha / L_max``: ``scale = alpha / L_max`` is the real value of integer
  level 1, and an integer program multiplies by ``L`` (or shift-adds its set bits) and folds
  ``scale`` into the requantization multiplier.
* Codes are the signed integer levels ``±L`` themselves (unsigned formats: ``L``), not indices,
  stored in the smallest numpy integer dtype holding ``±L_max``.  Zero point is always 0.
* Signed (weights): a sign bit plus ``B = bits - 1`` magnitude bits, ``2^bits - 1`` distinct
  values.  Unsigned (post-ReLU activations): ``B = bits``, negative values map to 0.
* ``quantize``: ``u = |x| / scale`` in float64, the code is the level nearest to ``u`` with
  ties going to the smaller magnitude, times ``sign(x)``; ``|x| > alpha`` clips to ``L_max``.
* Fitted ``alpha`` values are rounded to the nearest float32 (as uniform scales are), so a float32
  engine given ``alpha`` sees the same number; ``scale`` itself is ``alpha / L_max`` in float64.

``apot_fake_quant`` is the torch straight-through version with the paper's reparameterized
clipping gradient (torch is imported only when it is called, so ``quant.formats`` stays
torch-free).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from quant.formats._shared import broadcast_along, finite_tensor
from quant._validate import check_bool, check_choice
from quant.errors import QuantError

if TYPE_CHECKING:
    import torch

APOT_CLIPPING = ("mse", "max")
MAGNITUDE_BITS_RANGE = (2, 6)

# Exponents k of the nonzero terms 2^-k of each term set, per B (build_power_value of Li et al.).
# Every set also holds 0.
_TERM_EXPONENTS: dict[int, tuple[tuple[int, ...], ...]] = {
    2: ((1, 2, 3),),
    3: ((1, 2, 4), (3,)),
    4: ((1, 3, 5), (2, 4, 6)),
    5: ((1, 3, 6), (2, 4, 7), (5,)),
    6: ((1, 4, 7), (2, 5, 8), (3, 6, 9)),
}

# Alpha search: a coarse grid of ratios j / GRID (j = 1..GRID) of max|x|, then REFINE_PASSES
# local grids of REFINE_POINTS points between the neighbours of the best ratio so far.
MSE_GRID = 128
MSE_REFINE_POINTS = 32
MSE_REFINE_PASSES = 2
OUTPUT_GRID = 32
OUTPUT_REFINE_POINTS = 8
OUTPUT_REFINE_PASSES = 2

# Rows of at most _DIRECT_MAX_N values are evaluated directly (see _mse_objective).
_DIRECT_MAX_N = 48
_DIRECT_CHUNK = 1 << 21

_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)
_ZERO_SLICE_ALPHA = 1.0


# --------------------------------------------------------------------------------------------
# Integer levels
# --------------------------------------------------------------------------------------------

def _check_magnitude_bits(magnitude_bits: object, owner: str) -> int:
    lo, hi = MAGNITUDE_BITS_RANGE
    if (isinstance(magnitude_bits, bool) or not isinstance(magnitude_bits, int)
            or not lo <= magnitude_bits <= hi):
        raise QuantError(
            f"The 'magnitude_bits' parameter of {owner} must be an int in [{lo}, {hi}] (the APoT "
            f"term sets of Li et al. exist for B = {lo}..{hi} magnitude bits only). "
            f"Got {magnitude_bits!r} instead."
        )
    return magnitude_bits


def apot_term_sets(magnitude_bits: int) -> tuple[tuple[int, ...], ...]:
    """The ``n`` integer term sets for ``B = magnitude_bits`` (2..6), each sorted, 0 included.

    B=3 gives ``((0, 1, 4, 8), (0, 2))``: a level is one value of each set, summed.
    """
    b = _check_magnitude_bits(magnitude_bits, "apot_term_sets")
    sets = _TERM_EXPONENTS[b]
    k_max = max(max(s) for s in sets)
    return tuple(tuple(sorted({0, *(1 << (k_max - k) for k in s)})) for s in sets)


def apot_terms(magnitude_bits: int) -> int:
    """Number of additive terms ``n`` for ``B = magnitude_bits`` (2..6): 1, 2, 2, 3, 3."""
    return len(_TERM_EXPONENTS[_check_magnitude_bits(magnitude_bits, "apot_terms")])


@functools.cache
def _levels(magnitude_bits: int) -> np.ndarray:
    sums = {sum(c) for c in itertools.product(*apot_term_sets(magnitude_bits))}
    levels = np.array(sorted(sums), dtype=np.int64)
    levels.setflags(write=False)
    return levels


@functools.cache
def _midpoints(magnitude_bits: int) -> np.ndarray:
    """Midpoints between consecutive integer levels (float64, exact half-integers)."""
    lv = _levels(magnitude_bits).astype(np.float64)
    mids = 0.5 * (lv[:-1] + lv[1:])
    mids.setflags(write=False)
    return mids


def apot_levels(magnitude_bits: int) -> np.ndarray:
    """Sorted distinct integer levels (int64, read-only) for ``B = magnitude_bits`` (2..6).

    All sums of one value per term set (``apot_term_sets``); ``2^B`` levels, 0 first, the largest
    ``L_max`` (4, 10, 48, 100, 448 for B = 2..6) last.
    """
    return _levels(_check_magnitude_bits(magnitude_bits, "apot_levels"))


# --------------------------------------------------------------------------------------------
# Format
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class APoTFormat:
    """An Additive Powers-of-Two number format.

    Attributes:
        bits: bits per code.  Signed: 3..7 (a sign bit plus ``B = bits - 1`` magnitude bits);
            unsigned: 2..6 (``B = bits``).  B must be 2..6.
        signed: codes are ``±L`` (weights); unsigned codes are ``L >= 0`` (post-ReLU values).
        per_channel: one alpha per slice along axis 0 (weights: output channels); False: one
            alpha per tensor.
        clipping: how alpha is fitted: "mse" (the alpha minimizing the mean squared quantization
            error of the tensor / channel) or "max" (``alpha = max|x|``).
    """

    bits: int = 4
    signed: bool = True
    per_channel: bool = True
    clipping: str = "mse"

    def __post_init__(self) -> None:
        owner = "APoTFormat"
        check_bool(self.signed, "signed", owner)
        lo, hi = MAGNITUDE_BITS_RANGE
        if self.signed:
            lo, hi, rule = lo + 1, hi + 1, "a sign bit plus B = bits-1 magnitude bits"
        else:
            rule = "B = bits magnitude bits"
        if (isinstance(self.bits, bool) or not isinstance(self.bits, int)
                or not lo <= self.bits <= hi):
            kind = "signed" if self.signed else "unsigned"
            raise QuantError(
                f"The 'bits' parameter of APoTFormat must be an int in [{lo}, {hi}] for a {kind} "
                f"format ({rule}; APoT defines B = 2..6 only). Got {self.bits!r} instead."
            )
        check_bool(self.per_channel, "per_channel", owner)
        check_choice(self.clipping, "clipping", owner, APOT_CLIPPING)

    @property
    def magnitude_bits(self) -> int:
        """``B``: bits of the magnitude (``bits - 1`` signed, ``bits`` unsigned)."""
        return self.bits - 1 if self.signed else self.bits

    @property
    def terms(self) -> int:
        """Number of additive power-of-two terms ``n`` per level."""
        return apot_terms(self.magnitude_bits)

    @property
    def levels(self) -> np.ndarray:
        """The integer magnitude levels, int64 (2^B,), sorted, read-only."""
        return _levels(self.magnitude_bits)

    @property
    def level_max(self) -> int:
        """``L_max``: the largest integer level (stands for ``alpha``)."""
        return int(self.levels[-1])

    @property
    def qmin(self) -> int:
        """Smallest code: ``-L_max`` (signed) or 0 (unsigned)."""
        return -self.level_max if self.signed else 0

    @property
    def qmax(self) -> int:
        """Largest code: ``L_max``."""
        return self.level_max

    @property
    def code_dtype(self) -> np.dtype:
        """Smallest numpy integer dtype holding ``[qmin, qmax]`` (int8/int16, uint8/uint16)."""
        candidates = (np.int8, np.int16) if self.signed else (np.uint8, np.uint16)
        for dt in candidates:
            if np.iinfo(dt).max >= self.level_max:
                return np.dtype(dt)
        raise QuantError(f"no integer dtype holds ±{self.level_max}")  # unreachable: L_max <= 448

    @property
    def storage_bits(self) -> int:
        """Bits one code takes in memory (an index into the ``2^bits - 1`` (signed) values)."""
        return self.bits

    def describe(self) -> str:
        """Short name: ``apot4-pc`` (signed, per channel), ``apot4`` (per tensor), ``uapot4``
        (unsigned); ``-max`` is appended for max clipping."""
        name = f"{'' if self.signed else 'u'}apot{self.bits}"
        if self.per_channel:
            name += "-pc"
        if self.clipping != "mse":
            name += f"-{self.clipping}"
        return name


# --------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------

@functools.cache
def _level_table(magnitude_bits: int) -> np.ndarray:
    """``T[t]`` = the level nearest to any ``u`` with ``ceil(2u) = t`` (t = 0..2·L_max + 1).

    The midpoints between levels are half-integers, so ``ceil(2u)`` decides the nearest level:
    ``T[t]`` is the level with index ``#{mids : 2·mid < t}``; ``u`` on a midpoint ``m`` has
    ``t = 2m`` and gets the level below ``m`` (ties -> smaller magnitude), ``u`` just above gets
    the one above.  The same choice as ``searchsorted(mids, u, side="left")``, without a search.
    """
    levels = _levels(magnitude_bits)
    twice_mids = 2.0 * _midpoints(magnitude_bits)
    t = np.arange(2 * int(levels[-1]) + 2, dtype=np.float64)
    table = levels[np.searchsorted(twice_mids, t, side="left")]
    table.setflags(write=False)
    return table


def _nearest_codes(xf: np.ndarray, scale: np.ndarray, fmt: APoTFormat) -> np.ndarray:
    """Signed integer levels (int64, shape of ``xf``) nearest to ``xf / scale``; ties -> smaller
    magnitude; beyond ``L_max`` -> ``L_max``.  ``scale`` broadcasts against ``xf``; ``xf``
    float64 without NaN."""
    mags = np.abs(xf) if fmt.signed else np.maximum(xf, 0.0)
    table = _level_table(fmt.magnitude_bits)
    t = np.divide(mags, scale)
    t *= 2.0
    np.ceil(t, out=t)
    np.clip(t, 0.0, table.shape[0] - 1, out=t)
    lv = table[t.astype(np.intp)]
    return np.where(xf < 0, -lv, lv) if fmt.signed else lv


@dataclass(frozen=True, eq=False)
class APoTParams:
    """Clipping threshold(s) giving APoT integer codes a real value.

    Attributes:
        alpha: float64, shape () (per tensor) or (K,) (per channel); the clipping threshold, the
            real value of the largest level.  Finite and > 0.
        axis: the channel axis of the tensors these parameters apply to (None iff per tensor).
        fmt: the format of the codes.
    """

    alpha: np.ndarray
    axis: int | None
    fmt: APoTFormat

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, APoTFormat):
            raise QuantError(f"APoTParams.fmt must be an APoTFormat; got {type(self.fmt).__name__}")
        try:
            alpha = np.array(self.alpha, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise QuantError(f"APoTParams.alpha must be a real array; got {self.alpha!r}") from exc
        if alpha.ndim > 1:
            raise QuantError("APoTParams.alpha must have shape () or (K,); got shape "
                             f"{alpha.shape}")
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, int)
                                      or self.axis < 0):
            raise QuantError(f"APoTParams.axis must be None or a non-negative int; "
                             f"got {self.axis!r}")
        if (self.axis is None) != (alpha.ndim == 0):
            raise QuantError(
                "APoTParams.axis must be None for per-tensor (shape ()) alpha and an int for "
                f"per-channel (shape (K,)) alpha; got axis={self.axis!r} with alpha shape "
                f"{alpha.shape}"
            )
        if not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            raise QuantError(f"APoTParams.alpha must be finite and > 0; got {alpha}")
        alpha.setflags(write=False)
        object.__setattr__(self, "alpha", alpha)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    @property
    def scale(self) -> np.ndarray:
        """``alpha / L_max``: float64, shape of ``alpha``; the real value of integer level 1."""
        return self.alpha / np.float64(self.fmt.level_max)

    @property
    def zero_point(self) -> np.ndarray:
        """int64 zeros of ``alpha``'s shape (APoT is symmetric about 0)."""
        return np.zeros(self.alpha.shape, dtype=np.int64)

    def _broadcast(self, arr: np.ndarray, x: np.ndarray) -> np.ndarray:
        return broadcast_along(arr, x, self.axis, "APoTParams")

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float tensor (any shape) -> codes ``±L`` of the same shape in ``fmt.code_dtype``.

        Computed in float64: ``u = |x| / scale``; the code is the integer level nearest to ``u``
        (ties go to the SMALLER magnitude) with the sign of ``x``.  Values beyond ``±alpha``
        (and ±inf) clip to ``±L_max``; unsigned formats map negative values to 0.  NaN raises
        QuantError.
        """
        xf = np.asarray(x, dtype=np.float64)
        nan = int(np.count_nonzero(np.isnan(xf)))
        if nan:
            raise QuantError(f"cannot quantize a tensor containing NaN ({nan} of {xf.size} "
                             f"values) with {self.fmt.describe()}")
        codes = _nearest_codes(xf, self._broadcast(self.scale, xf), self.fmt)
        return codes.astype(self.fmt.code_dtype)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Integer codes ``±L`` (any shape) -> float64 real values ``codes · scale``.

        Codes that are not APoT levels of ``fmt`` (negative ones for unsigned) raise QuantError.
        """
        c = np.asarray(codes)
        if not np.issubdtype(c.dtype, np.integer):
            raise QuantError(f"dequantize expects integer codes; got dtype {c.dtype}")
        c64 = c.astype(np.int64)
        mags = np.abs(c64) if self.fmt.signed else c64
        valid = np.zeros(self.fmt.level_max + 1, dtype=bool)
        valid[self.fmt.levels] = True
        in_range = (mags >= 0) & (mags <= self.fmt.level_max)
        ok = in_range & valid[np.where(in_range, mags, 0)]
        bad = int(np.count_nonzero(~ok))
        if bad:
            raise QuantError(f"dequantize: {bad} of {c.size} codes are not levels of "
                             f"{self.fmt.describe()} (allowed: ±{self.fmt.levels.tolist()}"
                             f"{'' if self.fmt.signed else ', non-negative'})")
        return c64.astype(np.float64) * self._broadcast(self.scale, c64)

    def fake_quantize(self, x: np.ndarray) -> np.ndarray:
        """``dequantize(quantize(x))`` in float64 (same shape as ``x``)."""
        xf = np.asarray(x, dtype=np.float64)
        return self.quantize(xf).astype(np.float64) * self._broadcast(self.scale, xf)

    def representable_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) real values: ``(-alpha, alpha)`` signed, ``(0, alpha)`` unsigned."""
        lo = -self.alpha if self.fmt.signed else np.zeros_like(self.alpha)
        return lo, self.alpha.copy()

    def __repr__(self) -> str:
        if self.axis is None:
            return f"APoTParams({self.fmt.describe()}, alpha={float(self.alpha):.6g})"
        return (f"APoTParams({self.fmt.describe()}, axis={self.axis}, "
                f"channels={self.alpha.shape[0]})")


# --------------------------------------------------------------------------------------------
# Fitting alpha
# --------------------------------------------------------------------------------------------

def _check_fit_input(x: Any, fmt: APoTFormat, what: str) -> np.ndarray:
    if not isinstance(fmt, APoTFormat):
        raise QuantError(f"{what} needs an APoTFormat; got {type(fmt).__name__}")
    xf = finite_tensor(x, what, f"{fmt.describe()} parameters")
    if fmt.per_channel and xf.ndim == 0:
        raise QuantError(f"per-channel {fmt.describe()} needs a tensor with a channel axis 0; "
                         "got a scalar")
    return xf


def _rows(xf: np.ndarray, per_channel: bool) -> np.ndarray:
    """View ``xf`` as (K, N) (per channel, axis 0) or (1, N) (per tensor)."""
    return xf.reshape(xf.shape[0], -1) if per_channel else xf.reshape(1, -1)


def _magnitudes(rows: np.ndarray, fmt: APoTFormat) -> np.ndarray:
    """What the levels approximate: ``|x|`` (signed) or ``max(x, 0)`` (unsigned)."""
    return np.abs(rows) if fmt.signed else np.maximum(rows, 0.0)


def _to_f32(alpha: np.ndarray) -> np.ndarray:
    """Round alphas to the nearest float32; a float32-subnormal or zero alpha becomes 1.0."""
    if np.any(alpha > _F32_MAX):
        raise QuantError(f"clipping threshold {alpha.max()} is too large for a float32 alpha")
    a32 = np.asarray(alpha, dtype=np.float64).astype(np.float32).astype(np.float64)
    return np.where(a32 < _F32_TINY, _ZERO_SLICE_ALPHA, a32)


def _search(amax: np.ndarray, objective: Callable[[np.ndarray], np.ndarray],
            grid: int, refine_points: int, refine_passes: int) -> np.ndarray:
    """Per group, the alpha in (0, amax] minimizing ``objective``.

    ``amax``: (G,) > 0.  ``objective(alphas (G, C)) -> errors (G, C)``.  A coarse grid
    ``amax · j / grid`` (j = 1..grid), then ``refine_passes`` local grids of ``refine_points``
    equally spaced points strictly between the neighbours of the best alpha so far.  The first
    (smallest) alpha wins ties on the grid; a refinement point must be strictly better.
    """
    ratios = np.arange(1, grid + 1, dtype=np.float64) / grid
    cand = amax[:, None] * ratios[None, :]
    err = objective(cand)
    j = np.argmin(err, axis=1)
    rows = np.arange(amax.shape[0])
    best, best_err = cand[rows, j], err[rows, j]
    half = amax / grid
    inner = np.arange(1, refine_points + 1, dtype=np.float64) / (refine_points + 1)
    for _ in range(refine_passes):
        lo = np.maximum(best - half, 0.0)
        hi = np.minimum(best + half, amax)
        cand = lo[:, None] + (hi - lo)[:, None] * inner[None, :]
        err = objective(cand)
        j = np.argmin(err, axis=1)
        better = err[rows, j] < best_err
        best = np.where(better, cand[rows, j], best)
        best_err = np.where(better, err[rows, j], best_err)
        half = (hi - lo) / (refine_points + 1)
    return best


def _mse_objective(mags: np.ndarray, fmt: APoTFormat) -> Callable[[np.ndarray], np.ndarray]:
    """Sum of squared errors of the magnitudes ``mags`` (G, N) (normalized, values in [0, 1]) for
    candidate alphas (G, C).

    Short rows (N <= ``_DIRECT_MAX_N``) are quantized directly, many rows per numpy call; long
    rows use sorted values and prefix sums: per row and candidate O(2^B log N) work instead of a
    pass over the data.
    """
    if mags.shape[1] <= _DIRECT_MAX_N:
        return _direct_objective(mags, fmt)
    srt = np.sort(mags, axis=1)
    zeros = np.zeros((srt.shape[0], 1))
    c1 = np.concatenate([zeros, np.cumsum(srt, axis=1)], axis=1)
    c2 = np.concatenate([zeros, np.cumsum(srt * srt, axis=1)], axis=1)
    lv = fmt.levels.astype(np.float64) / fmt.level_max
    mids = _midpoints(fmt.magnitude_bits) / fmt.level_max
    n = srt.shape[1]

    def objective(alphas: np.ndarray) -> np.ndarray:
        out = np.empty(alphas.shape, dtype=np.float64)
        for g in range(alphas.shape[0]):
            a = alphas[g]
            bounds = a[:, None] * mids[None, :]
            # side="right": a value on a boundary belongs to the lower level (quantize's ties).
            idx = np.searchsorted(srt[g], bounds.ravel(), side="right").reshape(bounds.shape)
            edges = np.concatenate([np.zeros((a.shape[0], 1), dtype=idx.dtype), idx,
                                    np.full((a.shape[0], 1), n, dtype=idx.dtype)], axis=1)
            cnt = np.diff(edges, axis=1)
            s1 = np.diff(c1[g][edges], axis=1)
            s2 = np.diff(c2[g][edges], axis=1)
            v = a[:, None] * lv[None, :]
            out[g] = (s2 - 2.0 * v * s1 + cnt * v * v).sum(axis=1)
        return out

    return objective


def _direct_objective(mags: np.ndarray, fmt: APoTFormat) -> Callable[[np.ndarray], np.ndarray]:
    """As ``_mse_objective``, by quantizing every (row, candidate, value) triple; chunks of rows
    keep each numpy call near ``_DIRECT_CHUNK`` elements."""
    def objective(alphas: np.ndarray) -> np.ndarray:
        out = np.empty(alphas.shape, dtype=np.float64)
        step = max(1, _DIRECT_CHUNK // (alphas.shape[1] * mags.shape[1]))
        for g0 in range(0, alphas.shape[0], step):
            m = mags[g0:g0 + step, None, :]
            scale = alphas[g0:g0 + step, :, None] / fmt.level_max
            err = m - _nearest_codes(m, scale, fmt) * scale
            out[g0:g0 + step] = np.einsum("gcn,gcn->gc", err, err)
        return out

    return objective


def _row_sq_error(rows: np.ndarray, alpha: np.ndarray, fmt: APoTFormat) -> np.ndarray:
    """Exact ``sum((x - fake_quant(x))^2)`` per row (G,) of ``rows`` (G, N), alpha (G,)."""
    scale = (alpha / fmt.level_max)[:, None]
    err = rows - _nearest_codes(rows, scale, fmt) * scale
    return np.einsum("gn,gn->g", err, err)


def _finish(alpha: np.ndarray, fmt: APoTFormat) -> APoTParams:
    if fmt.per_channel:
        return APoTParams(alpha=alpha, axis=0, fmt=fmt)
    return APoTParams(alpha=alpha[0], axis=None, fmt=fmt)


def fit_apot(x: np.ndarray, fmt: APoTFormat) -> APoTParams:
    """Fit alpha of ``fmt`` to ``x`` (any shape, finite, non-empty); per channel along axis 0.

    * "max": ``alpha = max|x|`` (unsigned: ``max(x)``).
    * "mse": the alpha in ``(0, max|x|]`` minimizing ``mean((x - fake_quant(x))^2)``: a grid of
      ``MSE_GRID`` ratios of ``max|x|``, then ``MSE_REFINE_PASSES`` finer local grids around the
      best (deterministic); finally the max alpha is compared exactly and kept unless the
      searched alpha is strictly better, so "mse" is never worse than "max" on ``x``.
    Alphas are rounded to float32.  A slice with nothing to represent (all zero, or max|x| below
    the smallest normal float32; unsigned: no positive value) gets ``alpha = 1.0``, so all its
    values quantize to code 0 and no alpha is 0 or NaN.  Returns APoTParams with alpha shape (K,)
    and axis 0 per channel, () and None per tensor.  Cost: a sort of each slice plus
    O(2^B log N) per candidate alpha (slices of at most 48 values: quantized directly); 10^6
    values take about 0.1 s.
    """
    xf = _check_fit_input(x, fmt, "fit_apot")
    rows = _rows(xf, fmt.per_channel)
    mags = _magnitudes(rows, fmt)
    amax = mags.max(axis=1)
    alpha_max = _to_f32(amax)
    if fmt.clipping == "max":
        return _finish(alpha_max, fmt)
    live = amax >= _F32_TINY
    alpha = alpha_max.copy()
    if np.any(live):
        a_live = amax[live]
        norm = mags[live] / a_live[:, None]
        ratio = _search(np.ones(a_live.shape[0]), _mse_objective(norm, fmt),
                        MSE_GRID, MSE_REFINE_POINTS, MSE_REFINE_PASSES)
        found = _to_f32(ratio * a_live)
        err_found = _row_sq_error(rows[live], found, fmt)
        err_max = _row_sq_error(rows[live], alpha_max[live], fmt)
        alpha[live] = np.where(err_found < err_max, found, alpha_max[live])
    return _finish(alpha, fmt)


def _search_factor(xc: np.ndarray, gram: np.ndarray | None) -> np.ndarray:
    """float32 F with ``||e @ F||^2 = ||e @ x_cols||^2`` (up to rounding): ``x_cols`` itself, or
    (``gram`` given, P > D) a Cholesky factor of the Gram matrix plus a tiny diagonal jitter
    (1e-9 of its mean diagonal, more if needed) that keeps a singular Gram matrix factorizable."""
    if gram is None:
        return xc.astype(np.float32)
    diag = float(np.trace(gram)) / gram.shape[0]
    if diag <= 0.0:
        return np.zeros_like(gram, dtype=np.float32)
    eye = np.eye(gram.shape[0])
    for jitter in (1e-9, 1e-6, 1e-3):
        try:
            return np.linalg.cholesky(gram + jitter * diag * eye).astype(np.float32)
        except np.linalg.LinAlgError:
            continue
    vals, vecs = np.linalg.eigh(gram)
    return (vecs * np.sqrt(np.maximum(vals, 0.0))).astype(np.float32)


def fit_apot_output_error(w: np.ndarray, x_cols: np.ndarray, fmt: APoTFormat) -> APoTParams:
    """Fit alpha to minimize the layer's OUTPUT error on calibration data.

    ``w``: weights (K, D) (or (K, ...) flattened to (K, D)); ``x_cols``: input columns (D, P),
    e.g. im2col patches, finite.  Per channel the objective of row k is
    ``||(w_k - w_hat_k) @ x_cols||^2``; per tensor the sum over rows.  ``fmt.clipping`` is not
    used: the search is the "mse" one (``OUTPUT_GRID`` ratios of ``max|w_k|`` plus
    ``OUTPUT_REFINE_PASSES`` local grids) on this objective, and the weight-MSE alpha
    (``fit_apot`` with "mse") and the max alpha are candidates too, kept in that order on ties,
    so the result is never worse on this objective than either.  Alphas are rounded to float32.
    The search ranks candidates with float32 products ``E @ F``, ``F = x_cols`` (P <= D) or the
    Cholesky factor of ``G = x_cols @ x_cols^T`` (P > D); the final choice among the three
    candidates is made in float64.  Cost: about 50 such products and weight quantizations,
    O(K · D · min(D, P)) each (K = 512, D = 4608, P = 2048: several seconds), plus
    O(P · D^2 + D^3) once when P > D.
    """
    wf = _check_fit_input(w, fmt, "fit_apot_output_error")
    if wf.ndim < 2:
        raise QuantError(f"fit_apot_output_error expects weights (K, D); got shape {wf.shape}")
    w2 = wf.reshape(wf.shape[0], -1)
    try:
        xc = np.asarray(x_cols, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QuantError("fit_apot_output_error expects real-valued x_cols; got "
                         f"{type(x_cols).__name__}") from exc
    if xc.ndim != 2 or xc.shape[0] != w2.shape[1] or xc.shape[1] == 0:
        raise QuantError(f"fit_apot_output_error: x_cols must have shape (D, P) = "
                         f"({w2.shape[1]}, P >= 1) for weights of shape {wf.shape}; got "
                         f"{xc.shape}")
    bad = int(np.count_nonzero(~np.isfinite(xc)))
    if bad:
        raise QuantError(f"fit_apot_output_error: x_cols has NaN or inf ({bad} of {xc.size} "
                         "values); expected finite values")
    d, p = xc.shape
    gram = xc @ xc.T if p > d else None
    search_factor = _search_factor(xc, gram)

    def row_errors(alpha_rows: np.ndarray, search: bool = False) -> np.ndarray:
        """Output error per weight row (K,) for alphas per row (K,): float64, or float32
        products for ranking search candidates."""
        scale = (alpha_rows / fmt.level_max)[:, None]
        e = w2 - _nearest_codes(w2, scale, fmt) * scale
        if search:
            y = e.astype(np.float32) @ search_factor
            return np.einsum("kp,kp->k", y, y, dtype=np.float64)
        if gram is None:
            y = e @ xc
            return np.einsum("kp,kp->k", y, y)
        return np.einsum("kd,kd->k", e @ gram, e)

    k = w2.shape[0]
    groups = k if fmt.per_channel else 1

    def per_group(alpha_groups: np.ndarray, search: bool = False) -> np.ndarray:
        alpha_rows = alpha_groups if fmt.per_channel else np.full(k, alpha_groups[0])
        err = row_errors(alpha_rows, search)
        return err if fmt.per_channel else np.array([err.sum()])

    mags = _magnitudes(w2, fmt)
    amax = mags.max(axis=1) if fmt.per_channel else np.array([mags.max()])
    live = amax >= _F32_TINY
    mse_fmt = APoTFormat(bits=fmt.bits, signed=fmt.signed, per_channel=fmt.per_channel,
                         clipping="mse")
    candidates = [np.atleast_1d(fit_apot(w2, mse_fmt).alpha), _to_f32(amax)]
    if np.any(live):
        amax_s = np.where(live, amax, 1.0)

        def objective(alphas: np.ndarray) -> np.ndarray:
            return np.stack([per_group(alphas[:, c], search=True)
                             for c in range(alphas.shape[1])], axis=1)

        found = _search(amax_s, objective, OUTPUT_GRID, OUTPUT_REFINE_POINTS,
                        OUTPUT_REFINE_PASSES)
        candidates.append(np.where(live, _to_f32(found), candidates[1]))
    best = candidates[0]
    best_err = per_group(best)
    for cand in candidates[1:]:
        err = per_group(cand)
        better = err < best_err
        best = np.where(better, cand, best)
        best_err = np.where(better, err, best_err)
    assert best.shape == (groups,)
    return _finish(best, fmt)


# --------------------------------------------------------------------------------------------
# torch straight-through fake quantization
# --------------------------------------------------------------------------------------------

@functools.cache
def _ste_function() -> Any:
    """The autograd Function, built on first use so importing this module never imports torch."""
    import torch

    class _APoTSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, w: torch.Tensor, alpha: torch.Tensor,  # type: ignore[override]
                    fmt: APoTFormat) -> torch.Tensor:
            w64 = w.detach().to(torch.float64)
            a64 = alpha.detach().to(torch.float64)
            a_b = a64.reshape((-1,) + (1,) * (w.dim() - 1)) if a64.dim() == 1 else a64
            scale = a_b / fmt.level_max
            # The same float64 steps as _nearest_codes (u = |w| / scale, table on ceil(2u)), so
            # the forward equals APoTParams.fake_quantize bit for bit before the final cast.
            table = torch.from_numpy(_level_table(fmt.magnitude_bits).copy()).to(w.device)
            u = (w64.abs() if fmt.signed else w64.clamp(min=0.0)) / scale
            idx = torch.ceil(u * 2.0).clamp(0.0, table.shape[0] - 1).to(torch.long)
            codes = table[idx]
            if fmt.signed:
                codes = torch.where(w64 < 0, -codes, codes)
            codes = codes.to(torch.float64)
            ctx.save_for_backward(w64 / a_b, codes / fmt.level_max)   # t = w / alpha, q(t)
            ctx.alpha_dim = a64.dim()
            ctx.alpha_dtype = alpha.dtype
            ctx.signed = fmt.signed
            return (codes * scale).to(w.dtype)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
            t, q = ctx.saved_tensors
            g = grad.to(torch.float64)
            if ctx.signed:
                inside = t.abs() <= 1.0
                outside_val = torch.sign(t)
            else:
                inside = (t >= 0.0) & (t <= 1.0)
                outside_val = (t > 1.0).to(torch.float64)
            grad_w = g * inside.to(torch.float64)
            d_alpha = torch.where(inside, q - t, outside_val)
            per_elem = g * d_alpha
            if ctx.alpha_dim == 1:
                grad_alpha = per_elem.reshape(per_elem.shape[0], -1).sum(dim=1)
            else:
                grad_alpha = per_elem.sum()
            return grad_w.to(grad.dtype), grad_alpha.to(ctx.alpha_dtype), None

    return _APoTSTE


def apot_fake_quant(w: torch.Tensor, alpha: torch.Tensor | float,
                    fmt: APoTFormat) -> torch.Tensor:
    """Straight-through APoT fake quantization with the reparameterized clipping gradient.

    Forward: ``alpha · q(w / alpha)`` with ``q(t) = sign(t) · Proj(|clip(t, -1, 1)|)`` (unsigned:
    ``Proj(clip(t, 0, 1))``), computed with the same float64 steps, levels and tie rule as
    ``APoTParams.quantize``, so it is ``APoTParams(alpha, ...).fake_quantize(w)`` exactly (for
    the same float64 alpha values; fitted alphas are float32-representable), cast to ``w.dtype``.
    ``w``: floating-point tensor, any shape (axis 0 = output channels); ``alpha``: a
    tensor (or number) of shape () or (K,) with K = ``w.shape[0]``, finite and > 0, may require
    grad.

    Backward: ``d out / d w = 1`` for ``|w| <= alpha`` (unsigned: ``0 <= w <= alpha``), else 0;
    ``d out / d alpha = sign(w)`` for ``|w| > alpha`` (unsigned: 1 above alpha, 0 below 0), else
    ``q(w / alpha) - w / alpha``; summed over each channel's elements for (K,) alpha.
    """
    import torch

    if not isinstance(fmt, APoTFormat):
        raise QuantError(f"apot_fake_quant needs an APoTFormat; got {type(fmt).__name__}")
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise QuantError(f"apot_fake_quant expects a floating-point torch.Tensor; got "
                         f"{getattr(w, 'dtype', type(w).__name__)}")
    if not isinstance(alpha, torch.Tensor):
        alpha = torch.tensor(alpha, dtype=w.dtype, device=w.device)
    if alpha.dim() > 1 or (alpha.dim() == 1 and (w.dim() == 0 or alpha.shape[0] != w.shape[0])):
        k = w.shape[0] if w.dim() else "K"
        raise QuantError(f"apot_fake_quant: alpha must have shape () or ({k},) for a tensor of "
                         f"shape {tuple(w.shape)}; got {tuple(alpha.shape)}")
    a = alpha.detach()
    if not bool(torch.all(torch.isfinite(a))) or bool(torch.any(a <= 0)):
        raise QuantError(f"apot_fake_quant: alpha must be finite and > 0; got {a.tolist()}")
    nan = int(torch.isnan(w.detach()).sum())
    if nan:
        raise QuantError(f"apot_fake_quant: cannot quantize a tensor containing NaN ({nan} of "
                         f"{w.numel()} values)")
    return _ste_function().apply(w, alpha, fmt)
