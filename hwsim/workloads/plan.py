"""Per-layer precision plans: which widths and number formats each layer is priced at.

A plan file (YAML, or JSON, which YAML reads) names layers -- exact names or ``fnmatch`` globs,
first matching entry wins -- and gives each a precision; an optional ``default`` applies to
every layer no entry matches::

    default: {weight_bits: 8, act_bits: 8}
    layers:
      conv1: {weight_bits: 8, act_bits: 8}
      "layer*.conv2": {weight_bits: 4, act_bits: 4}
      fc: {weight_bits: 4, weight_format: apot}

Fields of a precision (each optional; an omitted one keeps the layer's value): ``weight_bits``,
``act_bits`` (integers 1..256), ``weight_format``, ``act_format`` (number-format families
registered in ``quant.formats``: "int", "binary", "apot", ...) and ``weight_points``: for
``weight_format: multipoint`` (Liu et al., AAAI 2021), the average number of points per output
channel, a finite number >= 1 (above 1 only in an entry that says ``weight_format:
multipoint``): a layer of K output channels gets ``K + round((weight_points - 1) K)`` weight rows
(`quant.allocate.Option.rows`), the multipoint plans ``hwsim allocate`` writes. An entry that
matches no layer of
the workload is an error (a misspelled name must not be silently ignored). A plan written by
the allocator (``hwsim allocate --out``) has this form too, plus an informative ``allocation``
section (the solver's record: objective, totals, budgets), which is not applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from hwsim.arch.schema import (MAX_BITS, MAX_NUMBER, Field, check_section, format_name,
                               positive_int, show)
from hwsim.errors import WorkloadError
from hwsim.textfile import read_yaml
from hwsim.workloads.globs import first_matches
from hwsim.workloads.layer import LayerShape


@dataclass(frozen=True)
class Precision:
    """Widths and format families to apply to a layer; None keeps the layer's own value."""

    weight_bits: int | None = None
    act_bits: int | None = None
    weight_format: str | None = None
    act_format: str | None = None
    #: multipoint weights: points per output channel on average (None: not given)
    weight_points: float | None = None

    def apply(self, layer: LayerShape) -> LayerShape:
        """`layer` at these widths and formats (``weight_points`` is not a layer field: see
        `weight_rows`)."""
        changes = {k: v for k, v in self.__dict__.items()
                   if v is not None and k != "weight_points"}
        return replace(layer, **changes) if changes else layer

    def weight_rows(self, channels: int) -> int | None:
        """Weight rows of a multipoint layer of ``channels`` output channels at
        ``weight_points`` (`quant.allocate.Option.rows`); None when the points are not given."""
        if self.weight_points is None:
            return None
        from quant.allocate import Option  # torch-free

        return Option(1, 1, "multipoint", weight_points=self.weight_points).rows(int(channels))


@dataclass(frozen=True)
class PrecisionPlan:
    """Ordered (pattern, precision) entries plus a default; `source` names the file."""

    entries: tuple[tuple[str, Precision], ...] = ()
    default: Precision = Precision()
    source: str = "<plan>"
    #: an allocator's plan names every layer it allocated: a workload layer without an entry
    #: means the plan was made for another model
    complete: bool = False

    def apply(self, layers: Sequence[LayerShape]) -> list[LayerShape]:
        """`layers` with each one's precision replaced by its first matching entry (or the
        default). Raises `WorkloadError` naming the file and every entry that matches no
        layer, and, for an allocator's plan, the layers it has no entry for."""
        return [p.apply(layer) for layer, p in zip(layers, self.resolve([l.name for l in layers]))]

    def resolve(self, names: Sequence[str]) -> list[Precision]:
        """Per layer name, its first matching entry's precision (or the default); the checks
        of `apply`."""
        which = first_matches([pattern for pattern, _ in self.entries], list(names), self.source)
        missing = [name for name, i in zip(names, which) if i is None]
        if self.complete and missing:
            raise WorkloadError(f"{self.source}: the allocation has no entry for layers "
                                f"{missing[:6]}{' ...' if len(missing) > 6 else ''} "
                                f"({len(missing)} of {len(names)}); it was made for another "
                                f"model or workload")
        return [self.default if i is None else self.entries[i][1] for i in which]


def _precision_fields(known_formats: Sequence[str]) -> tuple[Field, ...]:
    return (positive_int("weight_bits", maximum=MAX_BITS, required=False),
            positive_int("act_bits", maximum=MAX_BITS, required=False),
            format_name("weight_format", known_formats, required=False),
            format_name("act_format", known_formats, required=False),
            Field("weight_points", "a finite number >= 1 (multipoint weight points per output "
                  "channel, on average)", lambda v: isinstance(v, (int, float))
                  and not isinstance(v, bool), required=False, limit=_at_least_one))


def _at_least_one(value: Any) -> str | None:
    if not math.isfinite(value) or value > MAX_NUMBER:
        return f"expected a finite number >= 1, got {show(value)}"
    if value < 1:
        return f"expected a number >= 1 (points per output channel), got {show(value)}"
    return None


def _precision(values: dict[str, Any], where: str, errors: list[str]) -> Precision:
    """A checked section's values as a `Precision`; ``weight_points`` above 1 only with
    ``weight_format: multipoint`` in the same section."""
    points = values.get("weight_points")
    if points is not None:
        values = {**values, "weight_points": float(points)}
        if float(points) != 1.0 and values.get("weight_format") != "multipoint":
            fmt = values.get("weight_format")
            errors.append(f"{where}.weight_points: {float(points):g} points per channel apply to "
                          f"weight_format multipoint only (its extra points are extra weight "
                          f"rows); this entry's weight_format is "
                          f"{'not given' if fmt is None else repr(fmt)}")
    return Precision(**values)


#: at most this many problems are listed in a plan error; past it, the first and the count
MAX_LISTED_PROBLEMS = 3


def _known_formats() -> tuple[str, ...]:
    from quant.formats import registered_formats  # torch-free

    return tuple(registered_formats())


def plan_from_dict(raw: Any, source: str = "<plan>") -> PrecisionPlan:
    """Validate a parsed plan; every problem is reported at once, each naming its field."""
    errors: list[str] = []
    fields = _precision_fields(_known_formats())
    top = check_section(raw, (Field("layers", "a mapping of layer names or globs to "
                                    "precisions", lambda v: isinstance(v, Mapping),
                                    required=False, default={}),
                              Field("default", "a precision mapping", lambda v: isinstance(
                                  v, Mapping), required=False, default={}),
                              Field("allocation", "the allocation that made the plan (kept as "
                                    "written; not applied)", lambda v: isinstance(v, Mapping),
                                    required=False, default=None)), "", errors)
    default = _precision(check_section(top.get("default") or {}, fields, "default", errors),
                         "default", errors)
    entries = []
    for pattern, spec in (top.get("layers") or {}).items():
        if not isinstance(pattern, str) or not pattern:
            errors.append(f"layers: {pattern!r}: expected a layer name or glob")
            continue
        where = f"layers.{pattern}"
        if spec is None or (isinstance(spec, Mapping) and not spec):
            errors.append(f"{where}: empty; expected at least one of weight_bits, act_bits, "
                          f"weight_format, act_format, weight_points")
            continue
        entries.append((pattern, _precision(check_section(spec, fields, where, errors), where,
                                            errors)))
    if not top.get("layers") and not top.get("default") and not errors:
        errors.append("expected 'layers' and/or 'default'; the plan changes nothing")
    if errors:
        if len(errors) == 1:
            raise WorkloadError(f"{source}: {errors[0]}")
        if len(errors) <= MAX_LISTED_PROBLEMS:
            raise WorkloadError(f"{source}: {len(errors)} problems: {'; '.join(errors)}")
        raise WorkloadError(f"{source}: {len(errors)} problems; the first: {errors[0]} (and "
                            f"{len(errors) - 1} more)")
    return PrecisionPlan(tuple(entries), default, source,
                         complete=top.get("allocation") is not None)


def load_plan(path: str | Path) -> PrecisionPlan:
    """Read and validate a plan file (YAML or JSON)."""
    path = Path(path)
    raw = read_yaml(path, "a precision plan (YAML or JSON)", WorkloadError)
    return plan_from_dict(raw, str(path))
