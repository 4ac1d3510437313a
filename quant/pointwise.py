"""Element-wise nonlinearities of ``pointwise`` records as lookup tables over integer codes.

A quantized network computes y = fn(x) of a per-tensor quantized x the way integer hardware
does: every input code c has one output code, read from a table. The table is the exactly
rounded function of the dequantized input:

    T[c - qmin_x] = clamp(round_half_even(fn((c - zp_x) · s_x) / s_y) + zp_y, qmin_y, qmax_y)

The real value fn(x) / s_y is computed exactly from the float64 scales (exact binary
fractions), not in floating point:

- hardsigmoid(x) = relu6(x + 3) / 6 and hardswish(x) = x · relu6(x + 3) / 6 (torch's
  definitions) in rational arithmetic, so an output exactly halfway between two codes is
  recognised and rounds to the even one;
- sigmoid(x) = 1 / (1 + e^-x), silu(x) = x · sigmoid(x), tanh(x) = (e^2x - 1) / (e^2x + 1) in
  decimal arithmetic with at least 60 significant digits, more while a rounded result lies too
  near a tie to decide (e^x at a rational x != 0 is transcendental: these are never ties, except
  at x = 0 where the decimal arithmetic is exact).

So the table depends on no float library or CPU; the fake-quant model applies it to the input
codes, and an integer program that loads the same table (hwsim lowers a ``pointwise`` record
to a table lookup computed the same way) gives the same codes, bit for bit.

numpy only (no torch): usable wherever the number formats are.
"""

from __future__ import annotations

import decimal
from fractions import Fraction
from functools import lru_cache

import numpy as np

from quant.errors import QuantError
from quant.formats import QuantParams
from quant.graph import POINTWISE_FNS

_FIRST_DIGITS = 60
_LAST_DIGITS = 7680
MAX_TABLE_CODES = 1 << 16


def _exact_rational(fn: str, x: Fraction) -> Fraction:
    relu6 = min(max(x + 3, Fraction(0)), Fraction(6))
    return relu6 / 6 if fn == "hardsigmoid" else x * relu6 / 6


def _exp_based(fn: str, x: decimal.Decimal) -> decimal.Decimal:
    if fn == "sigmoid":
        return 1 / (1 + (-x).exp())
    if fn == "silu":
        return x / (1 + (-x).exp())
    e2x = (x + x).exp()
    return (e2x - 1) / (e2x + 1)


def _quotient_code(fn: str, centred: int, s_x: float, s_y: float) -> int:
    """round_half_even(fn(centred · s_x) / s_y) for the exponential fns."""
    digits = _FIRST_DIGITS
    half = decimal.Decimal(1) / 2
    while True:
        ctx = decimal.Context(prec=digits, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
        with decimal.localcontext(ctx) as c:
            q = _exp_based(fn, decimal.Decimal(centred) * decimal.Decimal(s_x)) \
                / decimal.Decimal(s_y)
            rounded_somewhere = bool(c.flags[decimal.Inexact])
            code = q.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)
            distance = abs(abs(q - q.to_integral_value(rounding=decimal.ROUND_DOWN)) - half)
            undecided = distance <= decimal.Decimal(10) ** (-(digits // 2))
        if not (rounded_somewhere and undecided):
            return int(code)
        if digits >= _LAST_DIGITS:
            raise QuantError(f"{fn} lookup table: the output of code offset {centred} is within "
                             f"10^-{digits // 2} of a rounding tie; cannot decide it")
        digits *= 2


def _code(fn: str, c: int, s_x: float, zp_x: int, s_y: float, zp_y: int, lo: int,
          hi: int) -> int:
    if fn in ("hardsigmoid", "hardswish"):
        x = Fraction(c - zp_x) * Fraction(s_x)
        q = round(_exact_rational(fn, x) / Fraction(s_y))  # Fraction: half to even
    else:
        q = _quotient_code(fn, c - zp_x, s_x, s_y)
    return min(max(q + zp_y, lo), hi)


@lru_cache(maxsize=512)
def _cached(fn: str, s_x: float, zp_x: int, x_lo: int, x_hi: int, s_y: float, zp_y: int,
            y_lo: int, y_hi: int) -> np.ndarray:
    table = np.array([_code(fn, c, s_x, zp_x, s_y, zp_y, y_lo, y_hi)
                      for c in range(x_lo, x_hi + 1)], dtype=np.int64)
    table.setflags(write=False)
    return table


def _per_tensor(p: QuantParams, what: str) -> tuple[float, int, int, int]:
    if p.per_channel:
        raise QuantError(f"lookup_table: the {what} must be quantized per tensor")
    return (float(np.asarray(p.scale).reshape(())), int(np.asarray(p.zero_point).reshape(())),
            int(p.fmt.qmin), int(p.fmt.qmax))


def lookup_table(fn: str, x_params: QuantParams, y_params: QuantParams) -> np.ndarray:
    """The table of ``fn`` (module docstring): int64 (qmax_x - qmin_x + 1,), read-only; entry i
    is the output code of input code qmin_x + i. Per-tensor parameters; input codes of at most
    16 bits."""
    if fn not in POINTWISE_FNS:
        raise QuantError(f"lookup_table: fn must be one of {POINTWISE_FNS}; got {fn!r}")
    s_x, zp_x, x_lo, x_hi = _per_tensor(x_params, "input")
    s_y, zp_y, y_lo, y_hi = _per_tensor(y_params, "output")
    if x_hi - x_lo + 1 > MAX_TABLE_CODES:
        raise QuantError(f"lookup_table: a table over {x_hi - x_lo + 1} input codes; at most "
                         f"{MAX_TABLE_CODES} (16-bit inputs)")
    return _cached(fn, s_x, zp_x, x_lo, x_hi, s_y, zp_y, y_lo, y_hi)


__all__ = ["MAX_TABLE_CODES", "lookup_table"]
