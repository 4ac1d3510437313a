"""Memory traffic per operand and per level, in bytes, vectorized over layers.

Model (documented here, tested in tests/test_cost_traffic.py):

DRAM <-> buffers (one fetch per tile):
  Operand sizes are ``ceil(elements * bits / 8)`` at the layer's code widths (`act_bits`,
  `weight_bits`: a 4-bit APoT weight moves as 4 bits, whatever its decoded integer level);
  the input is unpadded (padding is made on chip), outputs leave at ``act_bits``. Each operand
  may use its buffer's capacity (a buffer holding n operands gives each 1/n). If ifmap or filters fit, both are read from DRAM once. Otherwise the
  cheaper of two loop orders is taken: keep filter chunks resident and re-stream the ifmap once
  per chunk (``W + ceil(W/cap_filter) * I``), or keep ifmap chunks resident and re-stream the
  filters (``I + ceil(I/cap_ifmap) * W``). Outputs are written once.
  ws/is accumulate partial sums over ``ceil(t/rows)`` reduction folds; when the resident psum tile
  (at ``acc_bits``) exceeds the ofmap buffer's capacity, every intermediate partial sum spills:
  written to and read back from DRAM.

Buffers <-> array: the compute unit's `array_accesses` (element counts of one group's GEMM),
  times groups and bit passes; ifmap and filters at the unit's `array_operand_bits` per pass
  (a MAC array or shift-add unit: `act_bits` and `weight_bits`; an XNOR unit: 1 bit per plane),
  partial sums and outputs at `acc_bits` times the unit's `output_passes` (requantization
  happens on the way out to DRAM). Each buffer is also written by its DRAM fills and read by its DRAM drains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.arch.accelerator import OPERANDS, Accelerator
from hwsim.arch.units import ComputeUnit
from hwsim.cost.layer_table import LayerTable


def bits_to_bytes(elements: np.ndarray, bits: np.ndarray | int) -> np.ndarray:
    """``ceil(elements * bits / 8)`` as int64."""
    return -(-(elements * bits) // 8)


@dataclass(frozen=True)
class Traffic:
    """Bytes per layer. ``reads``/``writes`` map a level name to an int64 array."""

    operand_bytes: dict[str, np.ndarray]
    dram_reads_by_operand: dict[str, np.ndarray]
    psum_spill_bytes: np.ndarray
    reads: dict[str, np.ndarray]
    writes: dict[str, np.ndarray]
    passes: np.ndarray


def memory_traffic(accel: Accelerator, table: LayerTable,
                   unit: ComputeUnit | None = None) -> Traffic:
    """Bytes read from and written to every memory level, per layer (see module docstring),
    with every layer run on `unit` (default: the accelerator's default unit)."""
    unit = unit or accel.compute
    ifmap_b = bits_to_bytes(table.ifmap_elems, table.act_bits)
    filter_b = bits_to_bytes(table.filter_elems, table.weight_bits)
    ofmap_b = bits_to_bytes(table.ofmap_elems, table.act_bits)

    cap = {op: accel.buffer_for(op).capacity_per_operand_bytes() for op in OPERANDS}
    n_filter_chunks = np.ceil(filter_b / cap["filter"]).astype(np.int64)
    n_ifmap_chunks = np.ceil(ifmap_b / cap["ifmap"]).astype(np.int64)
    order_filter_outer = filter_b + n_filter_chunks * ifmap_b
    order_ifmap_outer = ifmap_b + n_ifmap_chunks * filter_b
    filter_outer = order_filter_outer <= order_ifmap_outer
    ifmap_dram = np.where(filter_outer, n_filter_chunks * ifmap_b, ifmap_b)
    filter_dram = np.where(filter_outer, filter_b, n_ifmap_chunks * filter_b)

    sr, sc, t, groups = table.sr, table.sc, table.t, table.groups
    acc = unit.array_accesses(sr, sc, t)
    ops = table.operands
    passes = unit.bit_passes(ops)
    reps = groups * passes
    out_reps = groups * unit.output_passes(passes)
    acc_bits = unit.acc_bits
    ifmap_bits, filter_bits = unit.array_operand_bits(ops)
    array_ifmap = bits_to_bytes(reps * acc.ifmap_reads, ifmap_bits)
    array_filter = bits_to_bytes(reps * acc.filter_reads, filter_bits)
    array_out_writes = bits_to_bytes(out_reps * acc.ofmap_writes, acc_bits)
    array_psum_reads = bits_to_bytes(out_reps * acc.psum_reads, acc_bits)

    if acc.outputs_are_partial:
        tile_b = bits_to_bytes(acc.psum_tile_elems, acc_bits)
        spill = np.where(tile_b > cap["ofmap"], array_psum_reads, 0)
    else:
        spill = np.zeros_like(ofmap_b)

    per_operand_reads = {"ifmap": array_ifmap, "filter": array_filter,
                         "ofmap": array_psum_reads + ofmap_b + spill}
    per_operand_writes = {"ifmap": ifmap_dram, "filter": filter_dram,
                          "ofmap": array_out_writes + spill}
    reads: dict[str, np.ndarray] = {"dram": ifmap_dram + filter_dram + spill}
    writes: dict[str, np.ndarray] = {"dram": ofmap_b + spill}
    for buffer in accel.buffers:
        reads[buffer.name] = sum((per_operand_reads[op] for op in buffer.holds),
                                 np.zeros_like(ofmap_b))
        writes[buffer.name] = sum((per_operand_writes[op] for op in buffer.holds),
                                  np.zeros_like(ofmap_b))
    return Traffic(
        operand_bytes={"ifmap": ifmap_b, "filter": filter_b, "ofmap": ofmap_b},
        dram_reads_by_operand={"ifmap": ifmap_dram, "filter": filter_dram},
        psum_spill_bytes=spill, reads=reads, writes=writes, passes=passes,
    )


def transfer_cycles(accel: Accelerator, traffic: Traffic) -> dict[str, np.ndarray]:
    """Cycles each level needs to move its traffic, per layer (float64).

    DRAM has one shared interface (reads + writes); an on-chip buffer has a read port and a
    write port, each `bandwidth_bytes_per_cycle` wide (max of reads and writes).
    """
    cycles = {}
    for level in accel.levels:
        r, w = traffic.reads[level.name], traffic.writes[level.name]
        moved = r + w if level.is_dram else np.maximum(r, w)
        cycles[level.name] = moved / level.bandwidth_bytes_per_cycle
    return cycles
