"""Mapping files: the mapping of every layer saved as YAML/JSON, and read back as overrides.

    accelerator: int8_systolic_os_32x32      # informative: which config it was made for
    objective: energy                        # informative: what the mapper minimized
    layers:                                  # layer name or fnmatch glob -> mapping; first wins
      conv1: {loop_order: ifmap_outer, dataflow: ws, tiles_bytes: {filter: 65536}}
      "layer4.*": {loop_order: filter_outer}

On a memory hierarchy (``memory.levels``) each entry is a loop nest instead: ``{spatial: {cols:
[[dim, factor], ...], rows: [...]}, temporal: [[dim, bound], ...] (innermost first), levels:
{operand: [loops per level, innermost level first]}}`` (hwsim/mapping/loopnest.py).

A layer no entry names is mapped by the default mapper; an entry matching no layer (or only
layers an earlier entry took) is an error. `save_mappings` writes every layer's mapping in this
form (``hwsim simulate --mapping-out``), so a user can edit it and pass it back (``--mapping``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from hwsim.errors import ConfigError
from hwsim.mapping.buffers import BufferMapping
from hwsim.textfile import read_yaml
from hwsim.workloads.globs import first_matches

TOP_KEYS = ("accelerator", "objective", "layers")


def mappings_from_dict(raw: Any, names: Sequence[str], source: str = "<mappings>", *,
                       hierarchy: bool = False) -> list[Any]:
    """Per layer in `names`, its given mapping (None: not given): `BufferMapping`s for a
    two-level config, `LoopNest`s (spatial, temporal, levels) for a hierarchy."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("layers"), Mapping) \
            or not raw["layers"]:
        raise ConfigError(f"{source}: expected a mapping with 'layers' (layer name or glob -> "
                          f"mapping)")
    unknown = sorted(str(k) for k in raw if k not in TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown field; expected one of "
                          f"{list(TOP_KEYS)}")
    patterns = [str(p) for p in raw["layers"]]
    values = [_parse(spec, f"{source}: layers.{p}", hierarchy)
              for p, spec in raw["layers"].items()]
    which = first_matches(patterns, list(names), source)
    return [None if i is None else values[i] for i in which]


def _parse(spec: Any, where: str, hierarchy: bool) -> Any:
    if not hierarchy:
        return BufferMapping.from_dict(spec, where)
    from hwsim.mapping.loopnest import LoopNest

    try:
        return LoopNest.from_dict(spec)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_mappings(path: str | Path, names: Sequence[str], *,
                  hierarchy: bool = False) -> list[Any]:
    """Read a mapping file (YAML or JSON) for the layers `names` (`hierarchy`: of loop nests)."""
    path = Path(path)
    raw = read_yaml(path, "a mapping file (YAML or JSON)", ConfigError)
    return mappings_from_dict(raw, names, str(path), hierarchy=hierarchy)


def mappings_document(accelerator: str, objective: str, names: Sequence[str],
                      mappings: Sequence[Any]) -> dict[str, Any]:
    """The file's content for these layers (layers without a mapping are left out)."""
    return {"accelerator": accelerator, "objective": objective,
            "layers": {name: m.to_dict() for name, m in zip(names, mappings) if m is not None}}


def dump_mappings(document: dict[str, Any], suffix: str) -> str:
    """YAML (default) or JSON text of a mappings document, by the file suffix."""
    if suffix.lower() == ".json":
        import json

        return json.dumps(document, indent=1) + "\n"
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)
