"""The one table of number formats: each family says, in one entry, everything the rest of the
project needs to know about it.

A family (uniform int, least-squares binary, APoT, ...) is a module under ``quant/formats`` that
defines a frozen format value (what a code can be) and a params value (what fitted codes mean),
and registers one ``FormatEntry`` from ``quant/formats/__init__.py``.  ``QuantizedModel``,
hwsim's lowering and its cost bridge look a format up here; none of them switches on the type of
a particular family.  The entry's ``name`` is the family name the rest of the project uses: the
key of hwsim's lowering table and the ``format`` of a layer in the cost model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant.errors import QuantError


@dataclass(frozen=True)
class FormatEntry:
    """A registered format family.

    Attributes:
        name: family name ("int", "binary", "apot"); what lowering and cost routing key on.
        format_type: the format's value type (e.g. ``IntFormat``).
        fit: ``fit(x, fmt) -> params``: fit the format to a float tensor (weights: axis 0 is the
            output channel).
        encode: ``encode(params, x) -> codes``: the integer codes an integer program stores for
            ``x`` (uniform/APoT: same shape as ``x``; binary: sign planes ``(k, *x.shape)``).
        decode: ``decode(params, codes) -> float64``: the real values the codes stand for.
        storage_bits: ``storage_bits(fmt) -> int``: bits one code takes in memory (binary:
            one per plane).
        code_scale: ``code_scale(params) -> float64 (K,) | None``: the real value of one code
            step per output channel, when the codes are integers on a per-channel grid (a bias
            can then be stored as integer codes of ``s_x * code_scale``); None when they are not
            (binary: a float bias).
        fake_quant: ``fake_quant(x, fmt) -> tensor``: straight-through fake quantization of a
            torch tensor (torch is imported only when called).
        check_weight: ``check_weight(fmt) -> str | None``: why ``fmt`` cannot quantize a weight
            (None: it can).
        weight_only: the format quantizes weights only; activations stay uniform codes.
    """

    name: str
    format_type: type
    fit: Callable[[np.ndarray, Any], Any]
    encode: Callable[[Any, np.ndarray], np.ndarray]
    decode: Callable[[Any, np.ndarray], np.ndarray]
    storage_bits: Callable[[Any], int]
    code_scale: Callable[[Any], np.ndarray | None]
    fake_quant: Callable[[Any, Any], Any]
    check_weight: Callable[[Any], str | None] = lambda fmt: None
    weight_only: bool = True


_FORMATS: dict[type, FormatEntry] = {}


def register_format(entry: FormatEntry) -> FormatEntry:
    """Add a family to the table; its name and format type must be new.  Returns ``entry``."""
    if not isinstance(entry, FormatEntry):
        raise QuantError(f"register_format expects a FormatEntry; got {type(entry).__name__}")
    if entry.format_type in _FORMATS or entry.name in registered_formats():
        raise QuantError(f"format {entry.name!r} ({entry.format_type.__name__}) is already "
                         "registered")
    _FORMATS[entry.format_type] = entry
    return entry


def unregister_format(name: str) -> None:
    """Remove family ``name`` (for tests that register a toy format)."""
    for key, entry in list(_FORMATS.items()):
        if entry.name == name:
            del _FORMATS[key]
            return
    raise QuantError(f"format {name!r} is not registered; known: {list(registered_formats())}")


def format_entry(fmt: object) -> FormatEntry:
    """The entry for the type of ``fmt``; an unknown type lists the registered ones."""
    entry = _FORMATS.get(type(fmt))
    if entry is None:
        known = ", ".join(f"{e.name} ({e.format_type.__name__})" for e in _FORMATS.values())
        raise QuantError(f"{type(fmt).__name__} is not a registered format; known: {known}")
    return entry


def family_entry(name: str) -> FormatEntry:
    """The entry of the family named ``name`` (e.g. "apot"); an unknown name lists the known."""
    for entry in _FORMATS.values():
        if entry.name == name:
            return entry
    raise QuantError(f"{name!r} is not a registered format family; registered: "
                     f"{', '.join(registered_formats())}")


def format_family(fmt: object) -> str:
    """The registered family name of ``fmt`` (e.g. "int")."""
    return format_entry(fmt).name


def registered_formats() -> tuple[str, ...]:
    """Names of the registered families, in registration order."""
    return tuple(e.name for e in _FORMATS.values())


def fit_params(x: np.ndarray, fmt: object) -> Any:
    """Fit the parameters of any registered format to the tensor ``x``."""
    return format_entry(fmt).fit(x, fmt)


def straight_through(x: Any, fmt: object) -> Any:
    """Straight-through fake quantization with any registered family's fit/encode/decode:
    forward ``decode(fit(x), encode(fit(x), x))`` (cast to ``x.dtype``), backward the identity.
    ``x``: a floating-point torch tensor of any shape (weights: axis 0 = output channels)."""
    import torch

    entry = format_entry(fmt)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise QuantError(f"{entry.name} fake quantization expects a floating-point torch tensor; "
                         f"got {type(x).__name__}")
    x_np = x.detach().to("cpu", torch.float64).numpy()
    params = entry.fit(x_np, fmt)
    x_hat = torch.from_numpy(entry.decode(params, entry.encode(params, x_np)))
    x_hat = x_hat.to(device=x.device, dtype=x.dtype)
    return x + (x_hat - x).detach()
