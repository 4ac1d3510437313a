"""Shared builders for the cost-model tests (not a test module)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from hwsim.arch import Accelerator, load_accelerator
from hwsim.workloads import LayerShape

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "hw_configs" / "int8_systolic.yaml"
_BASE = load_accelerator(BASE_CONFIG)


def accel_with(rows: int = 32, cols: int = 32, dataflow: str = "os", *,
               buffer_bytes: int | None = None, dram_bw: float | None = None,
               sram_bw: float | None = None) -> Accelerator:
    """The base config with another array / buffer sizes / bandwidths."""
    accel = replace(_BASE, compute=replace(_BASE.compute, rows=rows, cols=cols, dataflow=dataflow))
    if buffer_bytes is not None or sram_bw is not None:
        accel = replace(accel, buffers=tuple(
            replace(b, size_bytes=buffer_bytes if buffer_bytes is not None else b.size_bytes,
                    bandwidth_bytes_per_cycle=sram_bw if sram_bw is not None else b.bandwidth_bytes_per_cycle)
            for b in accel.buffers))
    if dram_bw is not None:
        accel = replace(accel, dram=replace(accel.dram, bandwidth_bytes_per_cycle=dram_bw))
    return accel


def conv(name: str = "c", **kw) -> LayerShape:
    base = dict(name=name, kind="conv", in_h=14, in_w=14, in_channels=64, out_channels=64,
                kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    base.update(kw)
    return LayerShape(**base)


def reference_cycles(dataflow: str, rows: int, cols: int, sr: int, sc: int, t: int) -> int:
    """SCALE-Sim v3 compute cycles (Samajdar et al., ISPASS 2020) in plain Python integers."""
    c = math.ceil
    if dataflow == "os":
        return c(sr / rows) * c(sc / cols) * (t + rows + cols - 2) - 1
    if dataflow == "ws":
        return c(t / rows) * c(sc / cols) * (sr + 2 * rows + cols - 2) - 1
    return c(t / rows) * c(sr / cols) * (sc + 2 * rows + cols - 2) - 1


def write_config_variant(tmp_path: Path, base: Path, edit) -> Path:
    """A copy of the YAML config `base`, changed in place by `edit(raw_dict)`, in tmp_path."""
    raw = yaml.safe_load(base.read_text())
    edit(raw)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def assert_memory_energy_exact(accel: Accelerator, frame) -> None:
    """Per layer and level: accesses == ceil(bytes*8 / access_bits), energy == accesses x
    per-access energies exactly, and the total == compute + every level."""
    for level in accel.levels:
        n = level.name
        for _, row in frame.iterrows():
            reads = math.ceil(row[f"{n}_read_bytes"] * 8 / level.access_bits)
            writes = math.ceil(row[f"{n}_write_bytes"] * 8 / level.access_bits)
            assert row[f"{n}_read_accesses"] == reads
            assert row[f"{n}_write_accesses"] == writes
            assert row[f"energy_{n}_pj"] == reads * level.read_energy_pj + writes * level.write_energy_pj
    parts = frame["energy_compute_pj"] + sum(frame[f"energy_{lvl.name}_pj"] for lvl in accel.levels)
    np.testing.assert_allclose(frame["energy_total_pj"], parts, rtol=1e-13)
