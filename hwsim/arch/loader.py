"""Load an accelerator: read (YAML or SCALE-Sim .cfg) -> overrides -> validate all -> build.

Only data that passed validation reaches the builders, and validation reports every problem of
a file in one `ConfigError`, each line naming the file and the field path.

YAML schema (see hw_configs/int8_systolic.yaml, hetero_int8_xnor.yaml and hetero_int8_apot.yaml
for commented examples)::

    name: str                      # optional 'description: str'
    clock_mhz: number > 0
    compute:                       # one unit ...
      kind: systolic               # a registered unit kind (hwsim.arch.units.UNIT_KINDS)
      act_bits, weight_bits, acc_bits: int > 0
      mac_energy_pj: number >= 0   # per MAC at the unit's widths (kinds may replace these
                                   # common fields: see UnitKind.common_fields)
      <kind fields>                # systolic: rows, cols: int > 0; dataflow: os | ws | is
                                   # xnor_popcount: see hwsim/arch/xnor.py
                                   # shift_add: see hwsim/arch/shift_add.py
                                   # bit_fusion: see hwsim/arch/bit_fusion.py
                                   # stripes, loom: see hwsim/arch/bit_serial.py
                                   # spatial_array: see hwsim/arch/spatial.py
    units:                         # ... or several (instead of 'compute')
      <unit name>: {kind: ..., <fields as under compute>}
    assign:                        # required with more than one unit (hwsim/arch/assign.py)
      default: <unit name>
      rules:                       # first match wins; matchers are ANDed, all optional
        - {unit: <unit name>, layers: [<glob>, ...], position: first | last,
           act_bits: int, weight_bits: int,
           format: <family>, act_format: <family>}   # weight / activation number-format
                                   # family, one registered in quant.formats ("int", "binary",
                                   # "apot", ...)
    memory:                        # two levels (SCALE-Sim style; hwsim/cost/traffic.py) ...
      dram:   {bandwidth_bytes_per_cycle, access_bits, read_energy_pj, write_energy_pj}
      buffers:
        <name>: {holds: [ifmap|filter|ofmap, ...], size_bytes, bandwidth_bytes_per_cycle,
                 access_bits, read_energy_pj, write_energy_pj}
    memory:                        # ... or a hierarchy of any depth (loop-nest model,
      levels:                      # hwsim/mapping/loopnest.py), outermost first
        dram: {bandwidth_bytes_per_cycle, access_bits, read_energy_pj, write_energy_pj}
        <name>: {holds: [...], size_bytes, bandwidth_bytes_per_cycle, access_bits,
                 read_energy_pj, write_energy_pj,
                 per_pe: bool,     # one instance in every PE (size_bytes each); default false
                 parent: <level>,  # the level it is filled from; default: the one listed above
                 ports: 1|2|4}     # of bandwidth_bytes_per_cycle each; default 1 (DRAM), 2

Energies are pJ per access of `access_bits` bits. With ``buffers``, every operand must be held
by exactly one buffer. With ``levels``, the first level is DRAM (it holds every operand); every
other level holds at least one operand; following ``parent`` from any level reaches DRAM without
a cycle; each operand's levels lie on one path to DRAM (its chain, innermost first), with at
least one on-chip level; a per-PE level is never the parent of a shared one. A hierarchy needs a
compute unit whose cycles come from the mapping (kind ``spatial_array``).

Bounds (every number is finite; see hwsim/arch/schema.py): clock_mhz 0.001 .. 1e6; integer
counts (rows, cols, lanes, pe, ...) 1 .. 2^31; bit widths (``*_bits``) 1 .. 256; size_bytes
1 .. 2^40; bandwidth_bytes_per_cycle 1e-6 .. 1e12, or ``unlimited`` (the level never stalls the
array: how a SCALE-Sim .cfg in CALC mode is modelled); energies 0 .. 1e12 pJ; access_bits a
multiple of 8 from 8 to 65536 (traffic is counted in whole bytes, so an access moves whole bytes:
``ceil(8 * bytes / access_bits)`` accesses). A unit with the common width fields (act_bits,
weight_bits, acc_bits: e.g. systolic) needs ``acc_bits >= act_bits + weight_bits``: its partial
sums, written to the ofmap buffer at acc_bits, must hold at least one full product.

Input is read as UTF-8 text; a key given twice in one YAML mapping is an error (not "last one
wins"). A problem is reported as one `ConfigError`: its first line names the file (or the
``--set`` override at fault) and the first problem; further problems follow, one per line.

Format names in rules are checked against ``quant.formats.registered_formats()``; ``quant.formats``
is torch-free and is imported only when a rule names a format.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Sequence

from hwsim.arch.accelerator import OPERANDS, Accelerator, MemoryLevel
from hwsim.arch.assign import POSITIONS, AssignRule
from hwsim.arch.overrides import FLAG, apply_overrides
from hwsim.arch.scalesim_cfg import cfg_to_raw
from hwsim.arch.schema import (Field, check_section, format_name, join_path, list_of,
                               list_of_patterns, load_yaml, multiple_of_8, non_negative_number,
                               one_of, positive_int, positive_number, show, text)
from hwsim.arch.units import COMMON_UNIT_FIELDS, UNIT_KINDS
from hwsim.errors import ConfigError
from hwsim.textfile import read_text

MAX_SIZE_BYTES = 2**40
MAX_ACCESS_BITS = 2**16
MIN_BANDWIDTH = 1e-6
UNLIMITED = "unlimited"


def _bandwidth(name: str) -> Field:
    """Bytes per cycle: a number from MIN_BANDWIDTH to schema.MAX_NUMBER, or "unlimited"."""
    number = positive_number(name, minimum=MIN_BANDWIDTH)

    def limit(value: Any) -> str | None:
        return None if value == UNLIMITED else number.limit(value)

    return Field(name, f"a positive number or {UNLIMITED!r}",
                 lambda v: v == UNLIMITED or number.accept(v), limit=limit)


TOP_FIELDS = (text("name"), positive_number("clock_mhz", minimum=1e-3, maximum=1e6),
              text("description", required=False, default=""))
PORT_FIELDS = (_bandwidth("bandwidth_bytes_per_cycle"),
               multiple_of_8("access_bits", maximum=MAX_ACCESS_BITS,
                             why="an access moves whole bytes"),
               non_negative_number("read_energy_pj"), non_negative_number("write_energy_pj"))
BUFFER_FIELDS = (list_of("holds", OPERANDS), positive_int("size_bytes", maximum=MAX_SIZE_BYTES),
                 *PORT_FIELDS)
LEVEL_FIELDS = (*BUFFER_FIELDS,
                Field("per_pe", "true or false", lambda v: isinstance(v, bool), required=False,
                      default=False),
                text("parent", required=False, default=None),
                Field("ports", "1, 2 or 4", lambda v: v in (1, 2, 4) and not isinstance(v, bool),
                      required=False, default=None))
DRAM_LEVEL_FIELDS = (*PORT_FIELDS, LEVEL_FIELDS[-1])
#: unit kinds whose cycles come from the mapping: the ones a memory hierarchy can drive
MAPPED_KINDS = ("spatial_array",)
YAML_SUFFIXES = (".yaml", ".yml")
CFG_SUFFIXES = (".cfg",)


def _read_raw(path: Path, errors: list[str]) -> Any:
    if not path.is_file():
        what = "a directory, not a file" if path.is_dir() else "not found"
        raise ConfigError(f"{path}: accelerator config {what}")
    suffix = path.suffix.lower()
    if suffix not in YAML_SUFFIXES + CFG_SUFFIXES:
        raise ConfigError(f"{path}: unknown accelerator config type {suffix!r}; expected "
                          f"{list(YAML_SUFFIXES + CFG_SUFFIXES)}")
    what = ("a SCALE-Sim .cfg" if suffix in CFG_SUFFIXES else "a YAML") + " accelerator config"
    content = read_text(path, what, ConfigError)
    if suffix in CFG_SUFFIXES:
        return cfg_to_raw(content, path, errors)
    try:
        return load_yaml(content)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _validate_unit(unit_raw: Any, where: str, errors: list[str]) -> dict[str, Any]:
    """One compute-unit section (``compute`` or ``units.<name>``): kind, common and kind fields."""
    kind = unit_raw.get("kind") if isinstance(unit_raw, dict) else None
    entry = UNIT_KINDS.get(kind) if isinstance(kind, str) else None
    kind_field = one_of("kind", sorted(UNIT_KINDS))
    if entry is None:
        other_kind_fields = {f.name for e in UNIT_KINDS.values()
                             for f in (*e.common_fields, *e.fields)}
        return check_section(unit_raw, (kind_field, *COMMON_UNIT_FIELDS), where, errors,
                             extra_ok=tuple(other_kind_fields))
    values = check_section(unit_raw, (kind_field, *entry.common_fields, *entry.fields), where,
                           errors)
    if entry.common_fields is COMMON_UNIT_FIELDS:
        act, wgt, acc = (values.get(k) for k in ("act_bits", "weight_bits", "acc_bits"))
        if all(isinstance(v, int) for v in (act, wgt, acc)) and acc < act + wgt:
            errors.append(f"{join_path(where, 'acc_bits')}: expected at least act_bits + "
                          f"weight_bits ({act + wgt}) so that a partial sum holds one product, "
                          f"got {acc}")
    if entry.check is not None:
        for field, problem in entry.check(values):
            errors.append(f"{join_path(where, field)}: {problem}")
    return values


def _validate_units(raw: dict[str, Any], errors: list[str]) -> tuple[dict[str, dict], Any]:
    """``compute`` (one unit) or ``units`` + ``assign``; returns (units by name, assignment)."""
    if "compute" in raw and "units" in raw:
        errors.append("units: give either 'compute' (one unit) or 'units' (several), not both")
        return {}, None
    if "units" not in raw:
        if raw.get("compute") is None:
            _missing(errors, "compute")
            return {}, None
        if "assign" in raw:
            errors.append("assign: only valid with 'units' (several compute units)")
        return {"": _validate_unit(raw["compute"], "compute", errors)}, None
    units_raw = raw["units"]
    if not isinstance(units_raw, dict) or not units_raw:
        errors.append(f"units: expected a mapping of unit name -> unit, got {units_raw!r}")
        return {}, None
    units = {str(name): _validate_unit(unit_raw, join_path("units", str(name)), errors)
             for name, unit_raw in units_raw.items()}
    names = list(units)
    assign_raw = raw.get("assign")
    if assign_raw is None:
        if len(names) > 1:
            errors.append(f"assign: missing; with several units, expected a mapping with "
                          f"'default' (one of {names}) and optional 'rules'")
        return units, {"default": names[0], "rules": []}
    assign = check_section(assign_raw, (one_of("default", names),), "assign", errors,
                           extra_ok=("rules",))
    rules_raw = assign_raw.get("rules", []) if isinstance(assign_raw, dict) else []
    rules = []
    if not isinstance(rules_raw, list):
        errors.append(f"assign.rules: expected a list of rules, got {rules_raw!r}")
        rules_raw = []
    for i, rule_raw in enumerate(rules_raw):
        rule_fields = (one_of("unit", names), list_of_patterns("layers", required=False),
                       one_of("position", POSITIONS, required=False),
                       positive_int("act_bits", required=False),
                       positive_int("weight_bits", required=False),
                       *_format_fields(rule_raw))
        rules.append(check_section(rule_raw, rule_fields, f"assign.rules[{i}]", errors))
    return units, {"default": assign.get("default"), "rules": rules}


FORMAT_KEYS = ("format", "act_format")


def _format_fields(rule_raw: Any) -> tuple[Field, ...]:
    """The optional format matchers of a rule. The known families come from quant.formats,
    imported (torch-free) only when the rule names a format."""
    if not (isinstance(rule_raw, dict) and any(rule_raw.get(k) is not None for k in FORMAT_KEYS)):
        return tuple(Field(k, "a registered number format", lambda v: True, required=False)
                     for k in FORMAT_KEYS)
    from quant.formats import registered_formats

    known = registered_formats()
    return tuple(format_name(k, known, required=False) for k in FORMAT_KEYS)


def _validate(raw: Any, errors: list[str]) -> dict[str, Any]:
    """Check everything; return the accepted values in the shape the builders need."""
    if raw is None:
        errors.append("<top level>: the config is empty; expected a mapping with name, "
                      "clock_mhz, compute (or units) and memory")
        return {}
    top = check_section(raw, TOP_FIELDS, "", errors,
                        extra_ok=("compute", "units", "assign", "memory"))
    if not isinstance(raw, dict):
        return {}
    units, assignment = _validate_units(raw, errors)

    memory_raw = raw.get("memory")
    if memory_raw is None:
        _missing(errors, "memory")
        return {}
    check_section(memory_raw, (), "memory", errors, extra_ok=("dram", "buffers", "levels"))
    if not isinstance(memory_raw, dict):
        return {}
    if "levels" in memory_raw:
        if "dram" in memory_raw or "buffers" in memory_raw:
            errors.append("memory: give either 'levels' (a hierarchy) or 'dram' and 'buffers', "
                          "not both")
            return {}
        levels = _validate_levels(memory_raw["levels"], errors)
        for name, unit in units.items():
            if unit.get("kind") is not None and unit.get("kind") not in MAPPED_KINDS:
                where = f"units.{name}.kind" if name else "compute.kind"
                errors.append(f"{where}: a memory hierarchy (memory.levels) needs a unit whose "
                              f"cycles come from the mapping, one of {list(MAPPED_KINDS)}; got "
                              f"{unit.get('kind')!r}")
        return {"top": top, "units": units, "assign": assignment, "levels": levels}
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
    return {"top": top, "units": units, "assign": assignment, "dram": dram, "buffers": buffers}


def _validate_levels(raw: Any, errors: list[str]) -> dict[str, dict[str, Any]]:
    """``memory.levels``: DRAM first, then the on-chip levels (see the module docstring)."""
    if not isinstance(raw, dict) or len(raw) < 2:
        errors.append(f"memory.levels: expected a mapping of level name -> level, DRAM first "
                      f"and at least one on-chip level, got {show(raw)}")
        return {}
    names = [str(n) for n in raw]
    levels: dict[str, dict[str, Any]] = {}
    for i, (name, level_raw) in enumerate(raw.items()):
        where = join_path("memory.levels", str(name))
        if i == 0:
            levels[str(name)] = check_section(level_raw, DRAM_LEVEL_FIELDS, where, errors)
            continue
        values = check_section(level_raw, LEVEL_FIELDS, where, errors)
        if values.get("parent") is None:
            values["parent"] = names[i - 1]
        elif values["parent"] not in names or values["parent"] == str(name):
            errors.append(f"{where}.parent: expected another level, one of "
                          f"{[n for n in names if n != str(name)]}, got {values['parent']!r}")
            values["parent"] = None
        levels[str(name)] = values
    if any(v.get("parent") is None for n, v in levels.items() if n != names[0]):
        return levels
    dram = names[0]
    for name in names[1:]:  # every level reaches DRAM without a cycle
        path = [name]
        while path[-1] != dram:
            nxt = levels[path[-1]].get("parent")
            if nxt in path:
                errors.append(f"memory.levels.{name}.parent: the levels form a cycle: "
                              f"{' -> '.join(path + [nxt])}")
                return levels
            path.append(nxt)
    def ancestors(name: str) -> list[str]:
        out = []
        while name != dram:
            name = levels[name]["parent"]
            out.append(name)
        return out
    for name in names[1:]:
        parent = levels[name]["parent"]
        if parent != dram and levels[parent].get("per_pe") and not levels[name].get("per_pe"):
            errors.append(f"memory.levels.{name}.parent: {parent!r} is a per-PE level; a shared "
                          f"level cannot be filled from inside a PE")
    for operand in OPERANDS:
        held = [n for n in names[1:] if operand in (levels[n].get("holds") or [])]
        if not held and all("holds" in levels[n] for n in names[1:]):
            errors.append(f"memory.levels: operand {operand!r} is held by no on-chip level; "
                          f"expected at least one")
        for a, b in itertools.combinations(held, 2):
            if a not in ancestors(b) and b not in ancestors(a):
                errors.append(f"memory.levels: operand {operand!r} is held by {a!r} and {b!r}, "
                              f"which are not on one path to {dram!r}")
    return levels


def _missing(errors: list[str], path: str) -> dict[str, Any]:
    errors.append(f"{path}: missing; expected a mapping")
    return {}


def _build(values: dict[str, Any], source: str) -> Accelerator:
    units = {name: UNIT_KINDS[v["kind"]].build(dict(v)) for name, v in values["units"].items()}
    assignment = values["assign"]
    default = assignment["default"] if assignment else ""
    rules = tuple(AssignRule(unit=r["unit"], layers=tuple(r["layers"] or ()),
                             position=r["position"], act_bits=r["act_bits"],
                             weight_bits=r["weight_bits"], format=r["format"],
                             act_format=r["act_format"])
                  for r in (assignment["rules"] if assignment else []))
    if "levels" in values:
        dram, buffers = _build_levels(values["levels"])
        top = values["top"]
        return Accelerator(name=top["name"], clock_hz=float(top["clock_mhz"]) * 1e6,
                           compute=units[default], dram=dram, buffers=buffers, source=source,
                           compute_name=default,
                           other_units=tuple((n, u) for n, u in units.items() if n != default),
                           rules=rules, hierarchy=True)
    d = values["dram"]
    dram = MemoryLevel(name="dram", size_bytes=None,
                       bandwidth_bytes_per_cycle=_bytes_per_cycle(d["bandwidth_bytes_per_cycle"]),
                       access_bits=d["access_bits"], read_energy_pj=float(d["read_energy_pj"]),
                       write_energy_pj=float(d["write_energy_pj"]), holds=OPERANDS)
    buffers = tuple(
        MemoryLevel(name=name, size_bytes=b["size_bytes"],
                    bandwidth_bytes_per_cycle=_bytes_per_cycle(b["bandwidth_bytes_per_cycle"]),
                    access_bits=b["access_bits"], read_energy_pj=float(b["read_energy_pj"]),
                    write_energy_pj=float(b["write_energy_pj"]), holds=tuple(b["holds"]))
        for name, b in values["buffers"].items()
    )
    top = values["top"]
    return Accelerator(name=top["name"], clock_hz=float(top["clock_mhz"]) * 1e6,
                       compute=units[default], dram=dram, buffers=buffers, source=source,
                       compute_name=default,
                       other_units=tuple((n, u) for n, u in units.items() if n != default),
                       rules=rules)


def _build_levels(levels: dict[str, dict[str, Any]]) -> tuple[MemoryLevel, tuple[MemoryLevel, ...]]:
    names = list(levels)
    d = levels[names[0]]
    dram = MemoryLevel(name=names[0], size_bytes=None,
                       bandwidth_bytes_per_cycle=_bytes_per_cycle(d["bandwidth_bytes_per_cycle"]),
                       access_bits=d["access_bits"], read_energy_pj=float(d["read_energy_pj"]),
                       write_energy_pj=float(d["write_energy_pj"]), holds=OPERANDS,
                       ports=d["ports"])
    on_chip = tuple(
        MemoryLevel(name=name, size_bytes=b["size_bytes"],
                    bandwidth_bytes_per_cycle=_bytes_per_cycle(b["bandwidth_bytes_per_cycle"]),
                    access_bits=b["access_bits"], read_energy_pj=float(b["read_energy_pj"]),
                    write_energy_pj=float(b["write_energy_pj"]), holds=tuple(b["holds"]),
                    per_pe=bool(b["per_pe"]), parent=b["parent"], ports=b["ports"])
        for name, b in list(levels.items())[1:])
    return dram, on_chip


def _bytes_per_cycle(value: Any) -> float:
    return math.inf if value == UNLIMITED else float(value)


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
    if errors:  # the file itself is broken (e.g. a .cfg's own problems): report only those
        _raise_if(errors, source, {})
    applied: dict[str, str] = {}
    raw = apply_overrides(raw, overrides, errors, applied)
    values = _validate(raw, errors)
    _raise_if(errors, source, applied)
    return _build(values, source)


def _origin(error: str, source: str, applied: dict[str, str]) -> str:
    """``"<file or --set override>: <problem>"``: an error on an overridden path names the flag."""
    if error.startswith(FLAG + " "):
        return error
    path, sep, problem = error.partition(": ")
    for key_path, flag in applied.items():
        if sep and path == key_path:
            return f"{flag}: {problem}"
        if sep and path.startswith(key_path + "."):
            return f"{flag}: {error}"
    # a cross-field problem (acc_bits vs act_bits) that names an overridden sibling field
    section = path.rpartition(".")[0]
    near = [flag for key_path, flag in applied.items()
            if sep and section and key_path.rpartition(".")[0] == section
            and key_path.rpartition(".")[2] in problem]
    return f"{source}: {error}" + (f" (after {', '.join(near)})" if near else "")


def _raise_if(errors: list[str], source: str, applied: dict[str, str]) -> None:
    """One `ConfigError`: the first problem on the first line (naming its file or flag) with the
    error count, then one line per further problem."""
    if errors:
        lines = [_origin(e, source, applied) for e in errors]
        count = f"({len(lines)} error{'s' if len(lines) > 1 else ''})"
        raise ConfigError("\n  ".join([f"{lines[0]} {count}", *lines[1:]]))
