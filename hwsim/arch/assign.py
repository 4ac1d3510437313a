"""Which compute unit runs which layer on a heterogeneous accelerator.

Rules are checked in config order; the first rule whose every given matcher holds picks the unit;
a layer no rule matches runs on the default unit. Matchers (all optional, combined with AND):

- ``layers``: glob patterns on the layer name (``fnmatch``: ``layer*.conv?``, ``fc``);
- ``position``: ``first`` / ``last`` — the layer named like the first / last row of the workload
  (matching by name keeps a re-priced table, with rows repeated per option, assigned the same);
- ``act_bits`` / ``weight_bits``: the layer's operand width equals this value;
- ``format`` / ``act_format``: the layer's weight / activation number-format family equals this
  name (a family registered in ``quant.formats``: "int", "binary", "apot", ...; the loader checks
  the name, matching here is plain string equality).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Sequence

import numpy as np

from hwsim.arch.units import Operands

POSITIONS = ("first", "last")


@dataclass(frozen=True)
class AssignRule:
    """One rule: run matching layers on `unit`. ``None`` / ``()`` matchers match everything."""

    unit: str
    layers: tuple[str, ...] = ()
    position: str | None = None
    act_bits: int | None = None
    weight_bits: int | None = None
    format: str | None = None
    act_format: str | None = None

    def matches(self, names: Sequence[str], ops: Operands) -> np.ndarray:
        """Boolean mask over layers (rows), shape ``(len(names),)``."""
        mask = np.ones(len(names), dtype=bool)
        if self.layers:
            mask &= np.array([any(fnmatchcase(n, p) for p in self.layers) for n in names],
                             dtype=bool)
        if self.position is not None and len(names):
            anchor = names[0] if self.position == "first" else names[-1]
            mask &= np.array([n == anchor for n in names], dtype=bool)
        if self.act_bits is not None:
            mask &= np.asarray(ops.act_bits) == self.act_bits
        if self.weight_bits is not None:
            mask &= np.asarray(ops.weight_bits) == self.weight_bits
        if self.format is not None:
            mask &= np.asarray(ops.weight_format) == self.format
        if self.act_format is not None:
            mask &= np.asarray(ops.act_format) == self.act_format
        return mask


def assign_units(rules: Sequence[AssignRule], default: str, names: Sequence[str],
                 ops: Operands) -> np.ndarray:
    """Unit name per layer (object array of str, shape ``(len(names),)``)."""
    out = np.full(len(names), default, dtype=object)
    todo = np.ones(len(names), dtype=bool)
    for rule in rules:
        hit = todo & rule.matches(names, ops)
        out[hit] = rule.unit
        todo &= ~hit
    return out
