"""Map a SCALE-Sim v3 ``.cfg`` file onto hwsim's accelerator schema (a raw dict).

Taken from the .cfg (keys case-insensitive as in SCALE-Sim), section ``architecture_presets``:
``ArrayHeight``/``ArrayWidth`` -> compute.rows/cols, ``Dataflow`` -> compute.dataflow,
``IfmapSramSzkB``/``FilterSramSzkB``/``OfmapSramSzkB`` (KiB) -> three buffers, ``Bandwidth``
(first value, words per cycle; SCALE-Sim words are 1 byte) -> DRAM bandwidth in USER mode;
``[general] run_name`` -> name; ``[run_presets] InterfaceBandwidth``:

- ``CALC`` (also when the key is absent: SCALE-Sim's default): SCALE-Sim computes the bandwidth
  the array needs and never stalls on it, so ``Bandwidth`` is ignored and the DRAM bandwidth is
  ``unlimited``: total cycles equal compute cycles, as SCALE-Sim reports them;
- ``USER``: ``Bandwidth`` is the DRAM bandwidth, and stalls appear where it binds.

In both modes the SRAM ports are ``unlimited``: SCALE-Sim's scratchpads serve the array whatever
it asks for each cycle (only the DRAM interface can stall it).

A .cfg has no energies, operand widths or clock; `CFG_DEFAULTS` (below, each with its source)
fills them in, and SRAM energies follow `sram_energy_per_64bit_pj`. Override any of them with
``load_accelerator(path, ["compute.mac_energy_pj=0.25", ...])``.

The .cfg's own values are checked here, in the .cfg's terms (``[architecture_presets]
ArrayHeight: ...``), with the same bounds as hwsim's YAML schema; a .cfg with problems is
reported with those problems only.
"""

from __future__ import annotations

import ast
import configparser
import math
from pathlib import Path
from typing import Any

from hwsim.arch.schema import MAX_COUNT, MAX_NUMBER, show

CFG_DEFAULTS = {
    "clock_mhz": 1000.0,  # 1 GHz
    "act_bits": 8,  # SCALE-Sim's word size is one byte
    "weight_bits": 8,
    "acc_bits": 32,
    # int8 multiply 0.2 pJ + int32 add 0.1 pJ, 45 nm (Horowitz, ISSCC 2014)
    "mac_energy_pj": 0.3,
    "access_bits": 64,
    # DRAM 64-bit access: 1.3-2.6 nJ (Horowitz, ISSCC 2014); the low end
    "dram_energy_pj": 1300.0,
}
#: Largest SRAM size in KiB (the YAML schema's 2^40-byte buffer limit).
MAX_SRAM_KIB = 2**30
#: Smallest USER-mode bandwidth, words (bytes) per cycle (the YAML schema's limit).
MIN_BANDWIDTH = 1e-6
SECTION = "architecture_presets"
BANDWIDTH_MODES = ("CALC", "USER")


def sram_energy_per_64bit_pj(size_bytes: int) -> float:
    """Default SRAM energy per 64-bit access: 10 pJ at 8 KB (Horowitz), scaled by sqrt(size).

    The 8 KB figure is from Horowitz, "Computing's energy problem (and what we can do about
    it)", ISSCC 2014; the square-root scaling with size is this model's assumption (it gives
    ~20 pJ at 32 KB and ~113 pJ at 1 MB).
    """
    return 10.0 * math.sqrt(size_bytes / 8192.0)


def _get(config: configparser.ConfigParser, section: str, key: str,
         errors: list[str]) -> str | None:
    if not config.has_option(section, key):
        errors.append(f"[{section}] {key}: missing in SCALE-Sim .cfg")
        return None
    return config.get(section, key).strip()


def _int(text: str | None, what: str, maximum: int, errors: list[str]) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        errors.append(f"[{SECTION}] {what}: expected an integer, got {show(text)}")
        return None
    if not 1 <= value <= maximum:
        errors.append(f"[{SECTION}] {what}: expected an integer from 1 to {maximum}, got "
                      f"{show(value)}")
        return None
    return value


def _bandwidth_mode(config: configparser.ConfigParser, errors: list[str]) -> str | None:
    if not config.has_option("run_presets", "InterfaceBandwidth"):
        return "CALC"
    mode = config.get("run_presets", "InterfaceBandwidth").strip()
    if mode.upper() not in BANDWIDTH_MODES:
        errors.append(f"[run_presets] InterfaceBandwidth: expected one of "
                      f"{list(BANDWIDTH_MODES)}, got {show(mode)}")
        return None
    return mode.upper()


def _user_bandwidth(config: configparser.ConfigParser, errors: list[str]) -> float | None:
    if not config.has_option(SECTION, "Bandwidth") or not config.get(SECTION, "Bandwidth").strip():
        errors.append(f"[{SECTION}] Bandwidth: missing; InterfaceBandwidth = USER needs the DRAM "
                      f"bandwidth in words per cycle")
        return None
    first = config.get(SECTION, "Bandwidth").split(",")[0].strip()
    try:
        value = float(first)
    except ValueError:
        value = math.nan
    if not MIN_BANDWIDTH <= value <= MAX_NUMBER:  # also refuses nan and inf
        errors.append(f"[{SECTION}] Bandwidth: expected a number of words per cycle from "
                      f"{MIN_BANDWIDTH:g} to {MAX_NUMBER:g}, got {show(first)}")
        return None
    return value


def _parse_problem(exc: configparser.Error) -> str:
    """One line for a configparser error, naming the line (the file is named by the caller)."""
    if isinstance(exc, configparser.DuplicateOptionError):
        return (f"line {exc.lineno}: option {exc.option!r} given twice in section "
                f"[{exc.section}]")
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: section [{exc.section}] given twice"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: expected a [section] header first, got {show(exc.line)}"
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, line = exc.errors[0]
        try:  # configparser keeps repr(line)
            line = ast.literal_eval(line).strip()
        except (ValueError, SyntaxError, AttributeError):
            pass
        more = f" (and {len(exc.errors) - 1} more such lines)" if len(exc.errors) > 1 else ""
        return f"line {lineno}: expected 'key = value', got {show(line)}{more}"
    return " ".join(str(exc).split())


def cfg_to_raw(text: str, path: Path, errors: list[str]) -> dict[str, Any] | None:
    """Parse the text of the SCALE-Sim .cfg `path` into the raw YAML-shaped dict.

    Problems go to `errors` (in the .cfg's terms); returns None if there were any.
    """
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read_string(text, source=str(path))
    except configparser.Error as exc:
        errors.append(f"not a valid SCALE-Sim .cfg: {_parse_problem(exc)}")
        return None
    if not config.has_section(SECTION):
        errors.append(f"[{SECTION}]: missing section")
        return None
    start = len(errors)
    rows = _int(_get(config, SECTION, "ArrayHeight", errors), "ArrayHeight", MAX_COUNT, errors)
    cols = _int(_get(config, SECTION, "ArrayWidth", errors), "ArrayWidth", MAX_COUNT, errors)
    dataflow = _get(config, SECTION, "Dataflow", errors)
    if dataflow is not None and dataflow.lower() not in ("os", "ws", "is"):
        errors.append(f"[{SECTION}] Dataflow: expected one of ['os', 'ws', 'is'], got "
                      f"{show(dataflow)}")
    sizes = {}
    for operand, key in (("ifmap", "IfmapSramSzkB"), ("filter", "FilterSramSzkB"),
                         ("ofmap", "OfmapSramSzkB")):
        kib = _int(_get(config, SECTION, key, errors), key, MAX_SRAM_KIB, errors)
        sizes[operand] = None if kib is None else kib * 1024
    mode = _bandwidth_mode(config, errors)
    dram_bw: Any = "unlimited"
    if mode == "USER":
        dram_bw = _user_bandwidth(config, errors)
    if len(errors) > start:
        return None
    name = path.stem
    if config.has_option("general", "run_name"):
        name = config.get("general", "run_name").strip() or name
    buffers = {}
    for operand, size in sizes.items():
        energy = sram_energy_per_64bit_pj(size)
        buffers[f"{operand}_sram"] = {
            "holds": [operand],
            "size_bytes": size,
            "bandwidth_bytes_per_cycle": "unlimited",
            "access_bits": CFG_DEFAULTS["access_bits"],
            "read_energy_pj": energy,
            "write_energy_pj": energy,
        }
    return {
        "name": name,
        "clock_mhz": CFG_DEFAULTS["clock_mhz"],
        "compute": {
            "kind": "systolic",
            "rows": rows,
            "cols": cols,
            "dataflow": dataflow.lower(),
            "act_bits": CFG_DEFAULTS["act_bits"],
            "weight_bits": CFG_DEFAULTS["weight_bits"],
            "acc_bits": CFG_DEFAULTS["acc_bits"],
            "mac_energy_pj": CFG_DEFAULTS["mac_energy_pj"],
        },
        "memory": {
            "dram": {
                "bandwidth_bytes_per_cycle": dram_bw,
                "access_bits": CFG_DEFAULTS["access_bits"],
                "read_energy_pj": CFG_DEFAULTS["dram_energy_pj"],
                "write_energy_pj": CFG_DEFAULTS["dram_energy_pj"],
            },
            "buffers": buffers,
        },
    }
