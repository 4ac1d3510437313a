"""scikit-learn-style parameter checks: one message template, raised as QuantError.

Message: "The 'bits' parameter of IntFormat must be an int in [2, 16]. Got 0 instead."
"""

from __future__ import annotations

from collections.abc import Collection

from quant.errors import QuantError


def _fail(param: str, owner: str, expected: str, value: object) -> None:
    raise QuantError(
        f"The {param!r} parameter of {owner} must be {expected}. Got {value!r} instead."
    )


def check_int(value: object, param: str, owner: str, lo: int, hi: int) -> int:
    """Return ``value`` if it is an int (not bool) in ``[lo, hi]``, else raise QuantError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        _fail(param, owner, f"an int in [{lo}, {hi}]", value)
    return value


def check_bool(value: object, param: str, owner: str) -> bool:
    if not isinstance(value, bool):
        _fail(param, owner, "a bool", value)
    return value


def check_float(value: object, param: str, owner: str, lo: float, hi: float,
                lo_open: bool = False) -> float:
    """Return ``value`` if it is a real number in ``[lo, hi]`` (``(lo, hi]`` if lo_open)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        _fail(param, owner, f"a float in {bracket}{lo}, {hi}]", value)
    return float(value)  # type: ignore[arg-type]


def check_choice(value: object, param: str, owner: str, choices: Collection[str]) -> str:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        _fail(param, owner, f"a str among {{{options}}}", value)
    return value  # type: ignore[return-value]
