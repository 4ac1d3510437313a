"""Load an accelerator: read (YAML or SCALE-Sim .cfg) -> overrides -> validate all -> build.

Only data that passed validation reaches the builders, and validation reports every problem of
a file in one `ConfigError`, each line naming the file and the field path.

YAML schema (see hw_configs/int8_systolic.yaml for a commented example)::

    name: str                      # optional 'description: str'
    clock_mhz: number > 0
    compute:
      kind: systolic               # a registered unit kind (hwsim.arch.units.UNIT_KINDS)
      act_bits, weight_bits, acc_bits: int > 0
      mac_energy_pj: number >= 0   # per MAC at the unit's widths
      <kind fields>                # systolic: rows, cols: int > 0; dataflow: os | ws | is
    memory:
      dram:   {bandwidth_bytes_per_cycle, access_bits, read_energy_pj, write_energy_pj}
      buffers:
        <name>: {holds: [ifmap|filter|ofmap, ...], size_bytes, bandwidth_bytes_per_cycle,
                 access_bits, read_energy_pj, write_energy_pj}

Energies are pJ per access of `access_bits` bits. Every operand must be held by exactly one
buffer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

from hwsim.arch.accelerator import OPERANDS, Accelerator, MemoryLevel
from hwsim.arch.overrides import apply_overrides
from hwsim.arch.scalesim_cfg import cfg_to_raw
from hwsim.arch.schema import (check_section, join_path, list_of, non_negative_number,
                               one_of, positive_int, positive_number, text)
from hwsim.arch.units import COMMON_UNIT_FIELDS, UNIT_KINDS
from hwsim.errors import ConfigError

TOP_FIELDS = (text("name"), positive_number("clock_mhz"),
              text("description", required=False, default=""))
PORT_FIELDS = (positive_number("bandwidth_bytes_per_cycle"), positive_int("access_bits"),
               non_negative_number("read_energy_pj"), non_negative_number("write_energy_pj"))
BUFFER_FIELDS = (list_of("holds", OPERANDS), positive_int("size_bytes"), *PORT_FIELDS)
YAML_SUFFIXES = (".yaml", ".yml")
CFG_SUFFIXES = (".cfg",)


def _read_raw(path: Path, errors: list[str]) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: accelerator config not found")
    suffix = path.suffix.lower()
    if suffix in CFG_SUFFIXES:
        return cfg_to_raw(path, errors)
    if suffix not in YAML_SUFFIXES:
        raise ConfigError(f"{path}: unknown accelerator config type {suffix!r}; expected "
                          f"{list(YAML_SUFFIXES + CFG_SUFFIXES)}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _validate(raw: Any, errors: list[str]) -> dict[str, Any]:
    """Check everything; return the accepted values in the shape the builders need."""
    top = check_section(raw, TOP_FIELDS, "", errors, extra_ok=("compute", "memory"))
    if not isinstance(raw, dict):
        return {}
    compute_raw = raw.get("compute")
    kind = compute_raw.get("kind") if isinstance(compute_raw, dict) else None
    entry = UNIT_KINDS.get(kind) if isinstance(kind, str) else None
    kind_field = one_of("kind", sorted(UNIT_KINDS))
    unit_fields = (kind_field, *COMMON_UNIT_FIELDS, *(entry.fields if entry else ()))
    other_kind_fields = {f.name for e in UNIT_KINDS.values() for f in e.fields}
    if compute_raw is None:
        compute = _missing(errors, "compute")
    else:
        compute = check_section(compute_raw, unit_fields, "compute", errors,
                                extra_ok=() if entry else tuple(other_kind_fields))

    memory_raw = raw.get("memory")
    if memory_raw is None:
        _missing(errors, "memory")
        return {}
    check_section(memory_raw, (), "memory", errors, extra_ok=("dram", "buffers"))
    if not isinstance(memory_raw, dict):
        return {}
    if memory_raw.get("dram") is None:
        dram = _missing(errors, "memory.dram")
    else:
        dram = check_section(memory_raw["dram"], PORT_FIELDS, "memory.dram", errors)
    buffers_raw = memory_raw.get("buffers")
    buffers: dict[str, dict[str, Any]] = {}
    if not isinstance(buffers_raw, dict) or not buffers_raw:
        errors.append("memory.buffers: expected a mapping of buffer name -> buffer, got "
                      f"{buffers_raw!r}")
    else:
        for name, buf_raw in buffers_raw.items():
            where = join_path("memory.buffers", str(name))
            if str(name) == "dram":
                errors.append(f"{where}: the name 'dram' is reserved for memory.dram")
            buffers[str(name)] = check_section(buf_raw, BUFFER_FIELDS, where, errors)
        for operand in OPERANDS:
            owners = [n for n, b in buffers.items() if operand in (b.get("holds") or [])]
            if len(owners) != 1 and all("holds" in b for b in buffers.values()):
                errors.append(f"memory.buffers: operand {operand!r} must be held by exactly one "
                              f"buffer, found {owners or 'none'}")
    return {"top": top, "compute": compute, "dram": dram, "buffers": buffers}


def _missing(errors: list[str], path: str) -> dict[str, Any]:
    errors.append(f"{path}: missing; expected a mapping")
    return {}


def _build(values: dict[str, Any], source: str) -> Accelerator:
    compute_values = dict(values["compute"])
    entry = UNIT_KINDS[compute_values["kind"]]
    unit = entry.build(compute_values)
    d = values["dram"]
    dram = MemoryLevel(name="dram", size_bytes=None,
                       bandwidth_bytes_per_cycle=float(d["bandwidth_bytes_per_cycle"]),
                       access_bits=d["access_bits"], read_energy_pj=float(d["read_energy_pj"]),
                       write_energy_pj=float(d["write_energy_pj"]), holds=OPERANDS)
    buffers = tuple(
        MemoryLevel(name=name, size_bytes=b["size_bytes"],
                    bandwidth_bytes_per_cycle=float(b["bandwidth_bytes_per_cycle"]),
                    access_bits=b["access_bits"], read_energy_pj=float(b["read_energy_pj"]),
                    write_energy_pj=float(b["write_energy_pj"]), holds=tuple(b["holds"]))
        for name, b in values["buffers"].items()
    )
    top = values["top"]
    return Accelerator(name=top["name"], clock_hz=float(top["clock_mhz"]) * 1e6, compute=unit,
                       dram=dram, buffers=buffers, source=source)


def accelerator_from_dict(raw: Any, source: str = "<dict>",
                          overrides: Sequence[str] = ()) -> Accelerator:
    """Validate and build an accelerator from a YAML-shaped dict (see the module docstring)."""
    return _finish(raw, [], overrides, source)


def load_accelerator(path: str | Path, overrides: Sequence[str] = ()) -> Accelerator:
    """Load a YAML accelerator config or a SCALE-Sim v3 ``.cfg``.

    `overrides` are ``key.path=value`` strings applied before validation (for a .cfg, to the
    mapped dict, e.g. ``compute.mac_energy_pj=0.25``). Raises one `ConfigError` listing every
    problem, each naming the file and the field path.
    """
    path = Path(path)
    errors: list[str] = []
    raw = _read_raw(path, errors)
    return _finish(raw, errors, overrides, str(path))


def _finish(raw: Any, errors: list[str], overrides: Sequence[str], source: str) -> Accelerator:
    raw = apply_overrides(raw, overrides, errors)
    values = _validate(raw, errors)
    _raise_if(errors, source)
    return _build(values, source)


def _raise_if(errors: list[str], source: str) -> None:
    if errors:
        lines = "\n".join(f"  {source}: {e}" for e in errors)
        raise ConfigError(f"invalid accelerator config {source} ({len(errors)} "
                          f"error{'s' if len(errors) > 1 else ''}):\n{lines}")
