"""The result of a bit allocation (`Allocation`), its JSON form, and the allocator's error.

JSON form (``Allocation.to_json``): one object with ``"format": "quant.allocation"`` and
``"version": 1``; every field of `Allocation` under its own name; floats as JSON numbers written
with Python's shortest round-tripping ``repr`` (so ``from_json(to_json())`` gives back equal
floats, bit for bit); non-finite floats (an unconstrained budget is ``inf``, a missing bound can
be ``inf``) as the *strings* ``"inf"``, ``"-inf"`` or ``"nan"``, so the text is strict JSON
(``allow_nan=False``); a missing ``lp_bound`` as ``null``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from quant.errors import QuantError

_FORMAT = "quant.allocation"
_VERSION = 1


class AllocationError(QuantError, ValueError):
    """Bad allocator input, or a request no allocation can meet (an infeasible budget, a layer
    without a feasible option). A `ValueError` too; messages are one line naming the argument,
    the layer (index and name) or the budget at fault and what was expected."""


def _enc(x: float | None) -> float | str | None:
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _dec(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise AllocationError(f"allocation JSON: {what} is {x!r}; expected a number or 'inf'/'-inf'/'nan'")
    if isinstance(x, str) and x not in ("inf", "-inf", "nan"):
        raise AllocationError(f"allocation JSON: {what} is {x!r}; expected a number or 'inf'/'-inf'/'nan'")
    return float(x)


@dataclass(frozen=True)
class Allocation:
    """One option per layer, with what it costs and how good it is proven to be.

    Attributes:
        choice: option index per layer (into ``option_labels``).
        objective: sum over layers of ``omega[l, choice[l]]`` (``math.fsum``, exact rounding).
        totals: per resource of the cost table (budgeted or not), the sum over layers of the
            chosen costs.
        budgets: the limits the allocation was solved under (``inf``: unconstrained).
        method: ``"milp"``, ``"greedy"`` or ``"dp"``.
        status: ``"optimal"`` (proven: ``gap_bound == 0``), ``"feasible"`` (a heuristic or
            discretized answer; ``gap_bound`` bounds its distance to the optimum) or
            ``"time_limit"`` (the MILP stopped at ``time_limit_s`` with a feasible allocation).
        gap_bound: ``objective - lp_bound`` clipped at 0: the optimum is no lower than
            ``objective - gap_bound``. 0 for an exact method that proved optimality.
        lp_bound: a proven lower bound on the optimal objective, if known: the MILP's dual
            bound, the greedy's LP relaxation (Sinha & Zoltners 1979), or the DP's
            rounded-down relaxation.
        time_s: wall time of the solve (validation included), seconds.
        layer_names, option_labels: the names the allocation was solved with.
        ties: groups of layer indices that were constrained to the same option.
    """

    choice: tuple[int, ...]
    objective: float
    totals: Mapping[str, float] = field(hash=False)
    budgets: Mapping[str, float] = field(hash=False)
    method: str
    status: str
    gap_bound: float
    lp_bound: float | None
    time_s: float
    layer_names: tuple[str, ...]
    option_labels: tuple[str, ...]
    ties: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        # normalize to plain Python types so equality survives a JSON round trip
        set_ = object.__setattr__
        set_(self, "choice", tuple(int(k) for k in self.choice))
        set_(self, "objective", float(self.objective))
        set_(self, "totals", {str(k): float(v) for k, v in self.totals.items()})
        set_(self, "budgets", {str(k): float(v) for k, v in self.budgets.items()})
        set_(self, "gap_bound", float(self.gap_bound))
        set_(self, "lp_bound", None if self.lp_bound is None else float(self.lp_bound))
        set_(self, "time_s", float(self.time_s))
        set_(self, "layer_names", tuple(str(n) for n in self.layer_names))
        set_(self, "option_labels", tuple(str(n) for n in self.option_labels))
        set_(self, "ties", tuple(tuple(int(i) for i in g) for g in self.ties))
        if len(self.choice) != len(self.layer_names):
            raise AllocationError(f"Allocation: {len(self.choice)} choices for "
                                  f"{len(self.layer_names)} layer names; expected one per layer")
        bad = [k for k in self.choice if not 0 <= k < len(self.option_labels)]
        if bad:
            raise AllocationError(f"Allocation: choice {bad[0]} is out of range; expected "
                                  f"0..{len(self.option_labels) - 1}")

    def choice_labels(self) -> tuple[str, ...]:
        """The chosen option's label, per layer."""
        return tuple(self.option_labels[k] for k in self.choice)

    def as_dict(self) -> dict[str, str]:
        """Layer name -> chosen option label."""
        return dict(zip(self.layer_names, self.choice_labels()))

    # --- JSON -------------------------------------------------------------------------------
    def to_json(self, indent: int | None = 1) -> str:
        """Strict JSON text (see the module docstring for how non-finite floats are written)."""
        doc = {
            "format": _FORMAT, "version": _VERSION,
            "method": self.method, "status": self.status,
            "objective": _enc(self.objective), "gap_bound": _enc(self.gap_bound),
            "lp_bound": _enc(self.lp_bound), "time_s": _enc(self.time_s),
            "budgets": {k: _enc(v) for k, v in self.budgets.items()},
            "totals": {k: _enc(v) for k, v in self.totals.items()},
            "layer_names": list(self.layer_names), "option_labels": list(self.option_labels),
            "choice": list(self.choice), "ties": [list(g) for g in self.ties],
        }
        return json.dumps(doc, indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Allocation":
        """Inverse of `to_json`."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise AllocationError(f"allocation JSON: not JSON ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise AllocationError(f"allocation JSON: expected an object with \"format\": \"{_FORMAT}\"")
        if doc.get("version") != _VERSION:
            raise AllocationError(f"allocation JSON: version {doc.get('version')!r}; expected {_VERSION}")
        need = ("method", "status", "objective", "gap_bound", "lp_bound", "time_s", "budgets",
                "totals", "layer_names", "option_labels", "choice")
        missing = [k for k in need if k not in doc]
        if missing:
            raise AllocationError(f"allocation JSON: missing key {missing[0]!r}")
        return cls(
            choice=tuple(doc["choice"]),
            objective=_dec(doc["objective"], "objective"),
            totals={k: _dec(v, f"totals[{k!r}]") for k, v in doc["totals"].items()},
            budgets={k: _dec(v, f"budgets[{k!r}]") for k, v in doc["budgets"].items()},
            method=str(doc["method"]), status=str(doc["status"]),
            gap_bound=_dec(doc["gap_bound"], "gap_bound"),
            lp_bound=None if doc["lp_bound"] is None else _dec(doc["lp_bound"], "lp_bound"),
            time_s=_dec(doc["time_s"], "time_s"),
            layer_names=tuple(doc["layer_names"]), option_labels=tuple(doc["option_labels"]),
            ties=tuple(tuple(g) for g in doc.get("ties", ())),
        )

    def save(self, path: str | Path) -> None:
        """Write `to_json` to ``path`` (UTF-8)."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Allocation":
        """Read a file written by `save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
