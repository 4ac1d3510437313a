"""Lookup tables of exactly rounded element-wise functions over integer codes: the tables of an
``activation_lut`` node with ``arithmetic`` "exact" (what quant's ``pointwise`` records lower to).

For every input code c in [qmin_x, qmax_x]:

    T[c - qmin_x] = clamp(round_half_even(fn((c - zp_x) · s_x) / s_y) + zp_y, qmin_y, qmax_y)

where the real value fn(x) / s_y is computed exactly, not in floating point (the float64 scales
are exact binary fractions):

- hardsigmoid(x) = min(max(x + 3, 0), 6) / 6 and hardswish(x) = x · hardsigmoid(x) (torch's
  definitions) in rational arithmetic (``fractions.Fraction``), so their ties are exact;
- sigmoid(x) = 1 / (1 + e^-x), silu(x) = x · sigmoid(x) and tanh(x) = (e^2x - 1) / (e^2x + 1) in
  decimal arithmetic (``decimal``) at ``START_DIGITS`` significant digits, doubled while the
  quotient was rounded somewhere and lies within 10^-(digits / 2) of a tie (an integer + 1/2).
  A quotient computed without any rounding (x = 0) is exact, so a genuine tie rounds half to
  even; e^x at a rational x != 0 is transcendental, so those outputs are never ties.

So a table depends on no float library or CPU: quant's fake-quant model (``quant.pointwise``)
computes the same tables independently, and its outputs equal the integer program's. The table
(``exact_activation_table``) is what a node carries; ``exact_activation_code`` is the
definition the int64 reference recomputes from the node's attributes.
"""

from __future__ import annotations

import decimal
from fractions import Fraction
from functools import lru_cache

import numpy as np

from hwsim.errors import KernelError

EXACT_FNS = ("sigmoid", "hardsigmoid", "hardswish", "silu", "tanh")
RATIONAL_FNS = ("hardsigmoid", "hardswish")
START_DIGITS = 60
MAX_DIGITS = 7680
MAX_TABLE_SIZE = 1 << 16  # input codes of at most 16 bits


def _rational(fn: str, x: Fraction) -> Fraction:
    hs = min(max(x + 3, Fraction(0)), Fraction(6)) / 6
    return hs if fn == "hardsigmoid" else x * hs


def _decimal(fn: str, x: decimal.Decimal) -> decimal.Decimal:
    if fn == "tanh":
        e = (2 * x).exp()
        return (e - 1) / (e + 1)
    s = 1 / (1 + (-x).exp())
    return s if fn == "sigmoid" else x * s


def _round_half_even_decimal(fn: str, code: int, x_scale: float, x_zero_point: int,
                             y_scale: float) -> int:
    digits = START_DIGITS
    while True:
        ctx = decimal.Context(prec=digits, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                              traps=[decimal.InvalidOperation, decimal.DivisionByZero])
        with decimal.localcontext(ctx) as c:
            x = decimal.Decimal(code - x_zero_point) * decimal.Decimal(x_scale)
            v = _decimal(fn, x) / decimal.Decimal(y_scale)
            inexact = bool(c.flags[decimal.Inexact])
            rounded = int(v.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
            near_tie = abs(abs(v - v.to_integral_value(rounding=decimal.ROUND_FLOOR))
                           - decimal.Decimal("0.5")) <= decimal.Decimal(10) ** -(digits // 2)
        if not inexact or not near_tie:
            return rounded
        if digits >= MAX_DIGITS:  # pragma: no cover - needs |x| beyond ~10^4 at a tie
            raise KernelError(f"exact_activation_code: {fn} at code {code} is within "
                              f"10^-{digits // 2} of a rounding tie; cannot decide it")
        digits *= 2


def exact_activation_code(code: int, fn: str, *, x_scale: float, x_zero_point: int,
                          y_scale: float, y_zero_point: int, qmin: int, qmax: int) -> int:
    """One table entry (module docstring): the output code, in [qmin, qmax], of input code
    ``code``. Scales are the float values as stored (exact binary fractions)."""
    if fn not in EXACT_FNS:
        raise KernelError(f"exact activation tables: fn must be one of {EXACT_FNS}; got {fn!r}.")
    if fn in RATIONAL_FNS:
        x = Fraction(int(code) - int(x_zero_point)) * Fraction(float(x_scale))
        q = round(_rational(fn, x) / Fraction(float(y_scale)))  # Fraction rounds half to even
    else:
        q = _round_half_even_decimal(fn, int(code), float(x_scale), int(x_zero_point),
                                     float(y_scale))
    return min(max(int(q) + int(y_zero_point), int(qmin)), int(qmax))


@lru_cache(maxsize=256)
def _table(fn: str, x_scale: float, x_zero_point: int, x_qmin: int, x_qmax: int,
           y_scale: float, y_zero_point: int, y_qmin: int, y_qmax: int) -> np.ndarray:
    out = np.array([exact_activation_code(c, fn, x_scale=x_scale, x_zero_point=x_zero_point,
                                          y_scale=y_scale, y_zero_point=y_zero_point,
                                          qmin=y_qmin, qmax=y_qmax)
                    for c in range(x_qmin, x_qmax + 1)], dtype=np.int64)
    out.setflags(write=False)
    return out


def exact_activation_table(fn: str, *, x_scale: float, x_zero_point: int, x_range: tuple,
                           y_scale: float, y_zero_point: int, y_range: tuple) -> np.ndarray:
    """The table (x_qmax - x_qmin + 1,) of output codes, int64: entry i is the output code of
    input code x_qmin + i (module docstring). ``x_range`` / ``y_range``: (qmin, qmax) of the
    input and output codes (input codes of at most 16 bits)."""
    x_lo, x_hi = (int(v) for v in x_range)
    y_lo, y_hi = (int(v) for v in y_range)
    if fn not in EXACT_FNS:
        raise KernelError(f"exact activation tables: fn must be one of {EXACT_FNS}; got {fn!r}.")
    if not 1 < x_hi - x_lo + 1 <= MAX_TABLE_SIZE or y_lo > y_hi:
        raise KernelError(f"exact activation tables: input codes must span 2 .. {MAX_TABLE_SIZE} "
                          f"values and the output range must be non-empty; got x_range "
                          f"[{x_lo}, {x_hi}], y_range [{y_lo}, {y_hi}].")
    for name, s in (("x_scale", x_scale), ("y_scale", y_scale)):
        if not (np.isfinite(float(s)) and float(s) > 0):
            raise KernelError(f"exact activation tables: {name} must be finite and > 0; got {s}.")
    return _table(fn, float(x_scale), int(x_zero_point), x_lo, x_hi, float(y_scale),
                  int(y_zero_point), y_lo, y_hi).copy()
