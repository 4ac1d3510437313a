"""The one table of number formats: format type -> name and fitting function.

A new format (binary LS, APoT, multipoint) is added by writing its module and calling
``register_format`` from ``quant/formats/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant.errors import QuantError


@dataclass(frozen=True)
class FormatEntry:
    """A registered format: its name, value type and ``fit(x, fmt) -> params`` function."""

    name: str
    format_type: type
    fit: Callable[[np.ndarray, Any], Any]


_FORMATS: dict[type, FormatEntry] = {}


def register_format(name: str, format_type: type, fit: Callable[[np.ndarray, Any], Any]) -> None:
    """Add a format to the table; names and types must be new."""
    if format_type in _FORMATS or any(e.name == name for e in _FORMATS.values()):
        raise QuantError(f"format {name!r} ({format_type.__name__}) is already registered")
    _FORMATS[format_type] = FormatEntry(name, format_type, fit)


def format_entry(fmt: object) -> FormatEntry:
    """The entry for the type of ``fmt``; an unknown type lists the registered ones."""
    entry = _FORMATS.get(type(fmt))
    if entry is None:
        known = ", ".join(f"{e.name} ({e.format_type.__name__})" for e in _FORMATS.values())
        raise QuantError(f"{type(fmt).__name__} is not a registered format; known: {known}")
    return entry


def registered_formats() -> tuple[str, ...]:
    return tuple(e.name for e in _FORMATS.values())


def fit_params(x: np.ndarray, fmt: object) -> Any:
    """Fit the parameters of any registered format to the tensor ``x``."""
    return format_entry(fmt).fit(x, fmt)
