"""A small field-schema checker: each field states what it expects; every problem is collected.

`check_section` never raises: it appends ``"<path>: expected ..., got ..."`` strings to an error
list so the loader can report all problems of a config at once.

Every number a config may hold is bounded, so that no cost figure can overflow (the cost model
checks the per-layer figures too, see hwsim/cost/network.py) and nothing infinite or NaN gets in:

- integer counts (array rows/cols, lanes, PEs, ...; `positive_int`): 1 .. `MAX_COUNT` (2^31);
- bit widths (integer fields whose name ends in ``_bits``): 1 .. `MAX_BITS` (256);
- numbers (`positive_number`, `non_negative_number`: energies, bandwidths, the clock): finite and
  at most `MAX_NUMBER` (1e12) unless a field states tighter bounds.

`load_yaml` is the YAML reader of configs and ``--set`` values: safe types only, a key given twice
in one mapping is an error instead of silently keeping the last value, and exponent notation
without a dot (``1e-3``, ``2e9``) is a number as in YAML 1.2, not a string.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import yaml

_MISSING = object()

MAX_COUNT = 2**31
MAX_BITS = 256
MAX_NUMBER = 1e12


@dataclass(frozen=True)
class Field:
    """One field of a config section: its name, a human description and an acceptance test.

    `accept` checks the type (and sign); `limit`, if given, runs on accepted values and returns a
    problem (e.g. ``"expected at most 2147483648, got 10**30"``) or None.
    """

    name: str
    expected: str
    accept: Callable[[Any], bool]
    required: bool = True
    default: Any = None
    limit: Callable[[Any], str | None] | None = None


def show(value: Any) -> str:
    """`repr(value)` for messages, kept short: huge integers by their size, long text cut."""
    if _is_int(value) and abs(value) >= 10**40:
        return f"an integer of {int(abs(value).bit_length() * math.log10(2)) + 1} digits"
    try:
        text = repr(value)
    except ValueError:  # e.g. an int beyond Python's int-to-str digit limit inside a list
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _at_most(maximum: float, why: str = "") -> Callable[[Any], str | None]:
    reason = f" ({why})" if why else ""

    def limit(value: Any) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {show(value)}"
        if value > maximum:
            return f"expected at most {_fmt(maximum)}{reason}, got {show(value)}"
        return None

    return limit


def _between(minimum: float | None, maximum: float) -> Callable[[Any], str | None]:
    upper = _at_most(maximum)

    def limit(value: Any) -> str | None:
        problem = upper(value)
        if problem is None and minimum is not None and value < minimum:
            problem = f"expected at least {_fmt(minimum)}, got {show(value)}"
        return problem

    return limit


def _fmt(number: float) -> str:
    if isinstance(number, int) or float(number).is_integer() and abs(number) < 1e16:
        return str(int(number))
    return f"{number:g}"


def positive_int(name: str, *, maximum: int | None = None, **kw: Any) -> Field:
    """An integer >= 1; at most `maximum` (default `MAX_BITS` for ``*_bits`` fields, else
    `MAX_COUNT`)."""
    if maximum is None:
        maximum = MAX_BITS if name.endswith("_bits") else MAX_COUNT
    return Field(name, "a positive integer", lambda v: _is_int(v) and v > 0,
                 limit=_at_most(maximum), **kw)


def multiple_of_8(name: str, *, maximum: int, why: str, **kw: Any) -> Field:
    """A positive integer multiple of 8, at most `maximum` (`why` says why multiples of 8)."""
    return Field(name, f"a positive multiple of 8 ({why})",
                 lambda v: _is_int(v) and v > 0 and v % 8 == 0, limit=_at_most(maximum), **kw)


def positive_number(name: str, *, minimum: float | None = None, maximum: float = MAX_NUMBER,
                    **kw: Any) -> Field:
    """A finite number > 0 (and >= `minimum` if given), at most `maximum`."""
    return Field(name, "a positive number", lambda v: _is_number(v) and v > 0,
                 limit=_between(minimum, maximum), **kw)


def non_negative_number(name: str, *, maximum: float = MAX_NUMBER, **kw: Any) -> Field:
    """A finite number >= 0, at most `maximum`."""
    return Field(name, "a non-negative number", lambda v: _is_number(v) and v >= 0,
                 limit=_at_most(maximum), **kw)


def text(name: str, **kw: Any) -> Field:
    return Field(name, "a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()), **kw)


def one_of(name: str, choices: Sequence[str], **kw: Any) -> Field:
    allowed = tuple(choices)
    return Field(name, f"one of {list(allowed)}", lambda v: isinstance(v, str) and v in allowed,
                 **kw)


def format_name(name: str, known: Sequence[str], **kw: Any) -> Field:
    """A number-format family name from `known` (the families registered in quant.formats)."""
    allowed = tuple(known)
    return Field(name, f"a registered number format, one of {list(allowed)}",
                 lambda v: isinstance(v, str) and v in allowed, **kw)


def list_of(name: str, choices: Sequence[str], **kw: Any) -> Field:
    allowed = tuple(choices)

    def accept(value: Any) -> bool:
        return (isinstance(value, list) and bool(value)
                and all(isinstance(v, str) and v in allowed for v in value)
                and len(set(value)) == len(value))

    return Field(name, f"a non-empty list of distinct names from {list(allowed)}", accept, **kw)


def list_of_patterns(name: str, **kw: Any) -> Field:
    def accept(value: Any) -> bool:
        return (isinstance(value, list) and bool(value)
                and all(isinstance(v, str) and bool(v.strip()) for v in value))

    return Field(name, "a non-empty list of name patterns (strings)", accept, **kw)


def join_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def closest(word: str, known: Sequence[str]) -> str | None:
    """The name in `known` closest to `word` (ignoring case), if any is close."""
    by_lower = {str(k).lower(): str(k) for k in known}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def check_section(raw: Any, fields: Sequence[Field], where: str, errors: list[str],
                  *, extra_ok: Sequence[str] = ()) -> dict[str, Any]:
    """Check a mapping against `fields`; return the accepted values (defaults filled in).

    Problems are appended to `errors` as ``"<where>.<field>: ..."``. Keys that are neither a
    field nor in `extra_ok` are reported as unknown, with the closest known name (a misspelled key
    must not vanish silently); a required field that is missing because its name was misspelled
    is reported once, as that unknown key.
    """
    if not isinstance(raw, Mapping):
        errors.append(f"{where or '<top level>'}: expected a mapping, got {type(raw).__name__}")
        return {}
    values: dict[str, Any] = {}
    known = {f.name for f in fields} | set(extra_ok)
    unknown = [key for key in raw if not (isinstance(key, str) and key in known)]
    misspelled = {str(key): closest(str(key), sorted(known)) for key in unknown}
    typo_targets = {m for m in misspelled.values() if m is not None}
    for field in fields:
        value = raw.get(field.name, _MISSING)
        path = join_path(where, field.name)
        if value is _MISSING or value is None:
            if field.required and not (value is _MISSING and field.name in typo_targets):
                errors.append(f"{path}: missing; expected {field.expected}")
            elif not field.required:
                values[field.name] = field.default
            continue
        if not field.accept(value):
            errors.append(f"{path}: expected {field.expected}, got {show(value)}")
            continue
        problem = field.limit(value) if field.limit is not None else None
        if problem is not None:
            errors.append(f"{path}: {problem}")
            continue
        values[field.name] = value
    for key in unknown:
        close = misspelled[str(key)]
        hint = f"did you mean {close!r}? " if close is not None else ""
        errors.append(f"{join_path(where, str(key))}: unknown field; {hint}expected one of "
                      f"{sorted(known)}")
    return values


# YAML ----------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable: the base class reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {show(key)} (first given on line "
                                    f"{first.line + 1}); each key may appear once per mapping",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads 1e-3 or 1e30 as strings; YAML 1.2 and every other reader as numbers.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(source: str) -> Any:
    """Parse YAML text with safe types and unique keys. Raises `ValueError` with a one-line
    message (``"line L, column C: ..."``) for anything that is not valid YAML."""
    try:
        return yaml.load(source, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or type(exc).__name__).split())
        raise ValueError(f"{where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer beyond Python's digit limit
        raise ValueError(" ".join(str(exc).split())) from None
