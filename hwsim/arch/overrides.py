"""``key.path=value`` overrides applied to a raw config dict before validation."""

from __future__ import annotations

import copy
from typing import Any, Sequence

import yaml


def apply_overrides(raw: Any, overrides: Sequence[str], errors: list[str]) -> Any:
    """Return a deep copy of `raw` with each override applied; problems go to `errors`.

    An override names an existing key by its dotted path (``compute.rows=64``,
    ``memory.buffers.ifmap_sram.size_bytes=65536``); the value is parsed as YAML
    (``64`` -> int, ``ws`` -> str, ``[ifmap, filter]`` -> list). A path that does not exist is an
    error, so a misspelled override cannot silently do nothing.
    """
    result = copy.deepcopy(raw)
    for override in overrides:
        key_path, sep, text = override.partition("=")
        key_path = key_path.strip()
        if not sep or not key_path:
            errors.append(f"override {override!r}: expected 'key.path=value'")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            errors.append(f"override {override!r}: value is not valid YAML ({exc.__class__.__name__})")
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
            errors.append(f"override {override!r}: {key_path} does not exist "
                          f"(keys at {where}: {known})")
            continue
        node[last] = value
    return result
