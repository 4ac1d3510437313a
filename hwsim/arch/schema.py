"""A small field-schema checker: each field states what it expects; every problem is collected.

`check_section` never raises: it appends ``"<path>: expected ..., got ..."`` strings to an error
list so the loader can report all problems of a config at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One field of a config section: its name, a human description and an acceptance test."""

    name: str
    expected: str
    accept: Callable[[Any], bool]
    required: bool = True
    default: Any = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name: str, **kw: Any) -> Field:
    return Field(name, "a positive integer", lambda v: _is_int(v) and v > 0, **kw)


def positive_number(name: str, **kw: Any) -> Field:
    return Field(name, "a positive number", lambda v: _is_number(v) and v > 0, **kw)


def non_negative_number(name: str, **kw: Any) -> Field:
    return Field(name, "a non-negative number", lambda v: _is_number(v) and v >= 0, **kw)


def text(name: str, **kw: Any) -> Field:
    return Field(name, "a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()), **kw)


def one_of(name: str, choices: Sequence[str], **kw: Any) -> Field:
    allowed = tuple(choices)
    return Field(name, f"one of {list(allowed)}", lambda v: v in allowed, **kw)


def format_name(name: str, known: Sequence[str], **kw: Any) -> Field:
    """A number-format family name from `known` (the families registered in quant.formats)."""
    allowed = tuple(known)
    return Field(name, f"a registered number format, one of {list(allowed)}",
                 lambda v: isinstance(v, str) and v in allowed, **kw)


def list_of(name: str, choices: Sequence[str], **kw: Any) -> Field:
    allowed = tuple(choices)

    def accept(value: Any) -> bool:
        return (isinstance(value, list) and bool(value) and all(v in allowed for v in value)
                and len(set(value)) == len(value))

    return Field(name, f"a non-empty list of distinct names from {list(allowed)}", accept, **kw)


def list_of_patterns(name: str, **kw: Any) -> Field:
    def accept(value: Any) -> bool:
        return (isinstance(value, list) and bool(value)
                and all(isinstance(v, str) and bool(v.strip()) for v in value))

    return Field(name, "a non-empty list of name patterns (strings)", accept, **kw)


def join_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check_section(raw: Any, fields: Sequence[Field], where: str, errors: list[str],
                  *, extra_ok: Sequence[str] = ()) -> dict[str, Any]:
    """Check a mapping against `fields`; return the accepted values (defaults filled in).

    Problems are appended to `errors` as ``"<where>.<field>: ..."``. Keys that are neither a
    field nor in `extra_ok` are reported as unknown (a misspelled key must not vanish silently).
    """
    if not isinstance(raw, Mapping):
        errors.append(f"{where or '<top level>'}: expected a mapping, got {type(raw).__name__}")
        return {}
    values: dict[str, Any] = {}
    known = {f.name for f in fields} | set(extra_ok)
    for field in fields:
        value = raw.get(field.name, _MISSING)
        path = join_path(where, field.name)
        if value is _MISSING or value is None:
            if field.required:
                errors.append(f"{path}: missing; expected {field.expected}")
            else:
                values[field.name] = field.default
            continue
        if not field.accept(value):
            errors.append(f"{path}: expected {field.expected}, got {value!r}")
            continue
        values[field.name] = value
    for key in raw:
        if key not in known:
            errors.append(f"{join_path(where, str(key))}: unknown field; expected one of "
                          f"{sorted(known)}")
    return values
