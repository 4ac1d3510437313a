"""``key.path=value`` overrides (the CLI's ``--set``) applied to a raw config dict before
validation."""

from __future__ import annotations

import copy
from typing import Any, Sequence

from hwsim.arch.schema import closest, load_yaml, show

#: Prefix of every error that an override caused; the loader names the flag instead of the file.
FLAG = "--set"


def apply_overrides(raw: Any, overrides: Sequence[str], errors: list[str],
                    applied: dict[str, str] | None = None) -> Any:
    """Return a deep copy of `raw` with each override applied; problems go to `errors`.

    An override names an existing key by its dotted path (``compute.rows=64``,
    ``memory.buffers.ifmap_sram.size_bytes=65536``); the value is parsed as YAML
    (``64`` -> int, ``ws`` -> str, ``[ifmap, filter]`` -> list). A path that does not exist is an
    error, so a misspelled override cannot silently do nothing. Every problem is reported as
    ``"--set <override>: ..."``. `applied`, if given, receives ``{key path: override}`` for every
    override applied, so that validation errors on those paths can name the flag.
    """
    result = copy.deepcopy(raw)
    for override in overrides:
        if not isinstance(override, str):
            errors.append(f"{FLAG} {show(override)}: expected a 'key.path=value' string")
            continue
        flag = f"{FLAG} {_printable(override)}"
        key_path, sep, text = override.partition("=")
        key_path = key_path.strip()
        if not sep or not key_path:
            errors.append(f"{flag}: expected 'key.path=value'")
            continue
        try:
            value = load_yaml(text) if text.strip() else None
        except ValueError as exc:
            errors.append(f"{flag}: the value is not valid YAML ({exc})")
            continue
        node = result
        keys = key_path.split(".")
        walked: list[str] = []
        for key in keys[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
            walked.append(key)
        last = keys[-1]
        if len(walked) != len(keys) - 1 or not isinstance(node, dict) or last not in node:
            where = ".".join(walked) or "<top level>"
            known = sorted(map(str, node)) if isinstance(node, dict) else []
            close = closest(keys[len(walked)], known)
            hint = f"; did you mean {'.'.join([*walked, close])!r}?" if close else ""
            errors.append(f"{flag}: {key_path} does not exist{hint} (keys at {where}: {known})")
            continue
        node[last] = value
        if applied is not None:
            applied[key_path] = flag
    return result


def _printable(override: str) -> str:
    """The override as typed, escaped if it holds control characters, cut if very long."""
    if not override.strip():
        return repr(override)
    text = override if override.isprintable() else repr(override)[1:-1]
    return text if len(text) <= 100 else text[:97] + "..."
