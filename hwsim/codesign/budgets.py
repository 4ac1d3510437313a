"""Budgets for the co-design loop: absolute, or relative to the uniform-base network.

A budget maps a resource of `hwsim.cost.options.RESOURCES` (``latency_cycles`` in cycles,
``compute_cycles``, ``energy_pj`` in pJ, ``dram_bytes``, ``size_bits``, ``bops``) to a limit on
the network's total. The limit is one of:

* a number (int / float, or a numeric string such as ``"2.5e6"``): absolute, in the resource's
  own unit; ``inf`` = unconstrained;
* ``("x", r)`` or the string ``"<r>x"`` (e.g. ``"0.5x"``): ``r`` times the total of the same
  network with every layer at the base option (uniform W8A8 by default) -- that is, the uniform
  network's figure, priced by the same model the allocator uses.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from hwsim.errors import HwsimError

_RELATIVE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[xX]\s*$")


def parse_budget(resource: str, value: Any, base_total: float) -> tuple[float, float | None]:
    """(absolute limit, ratio or None) of one budget; `HwsimError` naming the resource."""
    ratio = None
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "x":
        ratio = value[1]
    elif isinstance(value, str):
        m = _RELATIVE.match(value)
        if m:
            ratio = float(m.group(1))
        else:
            try:
                return float(value), None
            except ValueError:
                raise HwsimError(f"budgets[{resource!r}] = {value!r}: expected a number, "
                                 f"('x', ratio) or a string like '0.5x'") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None
    if ratio is None:
        raise HwsimError(f"budgets[{resource!r}] = {value!r}: expected a number, ('x', ratio) or "
                         f"a string like '0.5x'")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio >= 0 \
            or math.isnan(ratio):
        raise HwsimError(f"budgets[{resource!r}]: ratio {ratio!r}; expected a number >= 0")
    return float(ratio) * base_total, float(ratio)


def absolute_budgets(budgets: Mapping[str, Any], base_totals: Mapping[str, float]
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """(absolute limits, ratios of the relative ones) for every budget; an unknown resource is
    an `HwsimError` listing the known ones."""
    if not isinstance(budgets, Mapping):
        raise HwsimError(f"budgets is a {type(budgets).__name__}; expected a dict resource -> limit")
    out: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for r, v in budgets.items():
        if r not in base_totals:
            raise HwsimError(f"budgets: unknown resource {r!r}; expected one of {sorted(base_totals)}")
        out[r], ratio = parse_budget(r, v, base_totals[r])
        if ratio is not None:
            ratios[r] = ratio
    return out, ratios
