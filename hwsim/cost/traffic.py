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

Arithmetic: the functions here work on int64 columns (exact; the cost model first checks, in a
float64 pass over the same formulas, that every figure of every layer stays below 2^53, see
hwsim/cost/network.py) and equally on float64 columns (that check). No int64 intermediate grows
beyond a small multiple of a checked figure: byte and access conversions divide before they
multiply, and the loop-order choice compares in float64 where the rejected order would not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.arch.accelerator import OPERANDS, Accelerator
from hwsim.arch.units import ComputeUnit
from hwsim.cost.layer_table import LayerTable


#: Largest int64 value the loop-order comparison evaluates exactly (beyond: in float64).
_EXACT_ORDER = 2.0**62


def bits_to_bytes(elements: np.ndarray, bits: np.ndarray | int) -> np.ndarray:
    """``ceil(elements * bits / 8)``: exact for int64 `elements`, without forming ``elements *
    bits``; a float64 estimate for float64 `elements` (the overflow check's pass)."""
    if np.asarray(elements).dtype.kind == "f":
        return np.ceil(elements * bits / 8.0)
    return (elements // 8) * bits + -(-((elements % 8) * bits) // 8)


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
    n_filter_chunks = np.ceil(filter_b / cap["filter"]).astype(filter_b.dtype)
    n_ifmap_chunks = np.ceil(ifmap_b / cap["ifmap"]).astype(ifmap_b.dtype)
    filter_outer = _filter_outer_is_cheaper(ifmap_b, filter_b, n_ifmap_chunks, n_filter_chunks)
    ifmap_dram = np.where(filter_outer, n_filter_chunks * ifmap_b, ifmap_b)
    filter_dram = np.where(filter_outer, filter_b, n_ifmap_chunks * filter_b)

    groups = table.groups
    ops = table.operands
    acc = unit.array_accesses(table.gemm, ops)
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


def _filter_outer_is_cheaper(ifmap_b: np.ndarray, filter_b: np.ndarray, n_ifmap: np.ndarray,
                             n_filter: np.ndarray) -> np.ndarray:
    """``W + n_filter * I <= I + n_ifmap * W`` per layer: exact where both sides fit int64
    comfortably, in float64 elsewhere (there the cheaper order is far below the other one or
    the layer is refused as too large anyway)."""
    as_float = filter_b + n_filter.astype(np.float64) * ifmap_b, \
        ifmap_b + n_ifmap.astype(np.float64) * filter_b
    fits = (as_float[0] < _EXACT_ORDER) & (as_float[1] < _EXACT_ORDER)
    zero = np.zeros_like(n_filter)
    exact = (filter_b + np.where(fits, n_filter, zero) * ifmap_b
             <= ifmap_b + np.where(fits, n_ifmap, zero) * filter_b)
    return np.where(fits, exact, as_float[0] <= as_float[1])


def transfer_cycles(accel: Accelerator, traffic: Traffic) -> dict[str, np.ndarray]:
    """Cycles each level needs to move its traffic, per layer (float64).

    DRAM has one shared interface (reads + writes); an on-chip buffer has a read port and a
    write port, each `bandwidth_bytes_per_cycle` wide (max of reads and writes). An
    ``unlimited`` level (bandwidth inf) takes 0 cycles.
    """
    cycles = {}
    for level in accel.levels:
        r, w = traffic.reads[level.name], traffic.writes[level.name]
        moved = r + w if level.is_dram else np.maximum(r, w)
        cycles[level.name] = moved / level.bandwidth_bytes_per_cycle
    return cycles
