"""Map a SCALE-Sim v3 ``.cfg`` file onto hwsim's accelerator schema (a raw dict).

Taken from the .cfg (section ``architecture_presets``, keys case-insensitive as in SCALE-Sim):
``ArrayHeight``/``ArrayWidth`` -> compute.rows/cols, ``Dataflow`` -> compute.dataflow,
``IfmapSramSzkB``/``FilterSramSzkB``/``OfmapSramSzkB`` (KiB) -> three buffers,
``Bandwidth`` (first value, words per cycle; SCALE-Sim words are 1 byte) -> DRAM bandwidth,
``[general] run_name`` -> name.

A .cfg has no energies, operand widths or clock; `CFG_DEFAULTS` (below, each with its source)
fills them in, and SRAM energies follow `sram_energy_per_64bit_pj`. Override any of them with
``load_accelerator(path, ["compute.mac_energy_pj=0.25", ...])``.
"""

from __future__ import annotations

import configparser
import math
from pathlib import Path
from typing import Any

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
    # used when the .cfg has no Bandwidth (SCALE-Sim CALC mode)
    "dram_bandwidth_bytes_per_cycle": 10.0,
}


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


def _int(text: str | None, what: str, errors: list[str]) -> Any:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        errors.append(f"[architecture_presets] {what}: expected an integer, got {text!r}")
        return text  # keep the bad value so schema validation reports it too


def cfg_to_raw(path: Path, errors: list[str]) -> dict[str, Any]:
    """Parse a SCALE-Sim .cfg into the raw YAML-shaped dict; problems go to `errors`."""
    config = configparser.ConfigParser()
    try:
        config.read_string(path.read_text())
    except configparser.Error as exc:
        errors.append(f"not a valid SCALE-Sim .cfg ({exc.__class__.__name__}: {exc})")
        return {}
    section = "architecture_presets"
    if not config.has_section(section):
        errors.append(f"[{section}]: missing section")
        return {}
    rows = _int(_get(config, section, "ArrayHeight", errors), "ArrayHeight", errors)
    cols = _int(_get(config, section, "ArrayWidth", errors), "ArrayWidth", errors)
    dataflow = _get(config, section, "Dataflow", errors)
    sizes = {}
    for operand, key in (("ifmap", "IfmapSramSzkB"), ("filter", "FilterSramSzkB"),
                         ("ofmap", "OfmapSramSzkB")):
        kib = _int(_get(config, section, key, errors), key, errors)
        sizes[operand] = kib * 1024 if isinstance(kib, int) else kib
    dram_bw: Any = CFG_DEFAULTS["dram_bandwidth_bytes_per_cycle"]
    if config.has_option(section, "Bandwidth") and config.get(section, "Bandwidth").strip():
        first = config.get(section, "Bandwidth").split(",")[0].strip()
        try:
            dram_bw = float(first)
        except ValueError:
            errors.append(f"[{section}] Bandwidth: expected a number, got {first!r}")
    name = path.stem
    if config.has_option("general", "run_name"):
        name = config.get("general", "run_name").strip() or name
    # SCALE-Sim's CALC mode feeds the array from SRAM at whatever rate it needs; model that as a
    # port wide enough for one element per edge PE per cycle (twice for the psum traffic).
    edge = max(rows, cols) if isinstance(rows, int) and isinstance(cols, int) else 1
    buffers = {}
    for operand, size in sizes.items():
        energy = (sram_energy_per_64bit_pj(size) if isinstance(size, int) and size > 0 else 0.0)
        buffers[f"{operand}_sram"] = {
            "holds": [operand],
            "size_bytes": size,
            "bandwidth_bytes_per_cycle": float(edge * (8 if operand == "ofmap" else 1)),
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
            "dataflow": dataflow,
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
