"""Memory traffic per operand and per level, in bytes, vectorized over layers.

Model (documented here, tested in tests/test_cost_traffic.py):

DRAM <-> buffers (one fetch per tile):
  Operand sizes are ``ceil(elements * bits / 8)`` at the layer's code widths (`act_bits`,
  `weight_bits`: a 4-bit APoT weight moves as 4 bits, whatever its decoded integer level),
  the filters with the constants stored beside their codes (`weight_scale_bytes`: group-wise
  weights' per-(channel, group) multipliers); the input is unpadded (padding is made on
  chip), outputs leave at ``act_bits``. The layer's mapping (`BufferColumns`;
  hwsim/mapping/buffers.py for the per-layer value) gives each operand a resident tile (by
  default an even share of its buffer: a buffer holding n operands gives each 1/n) and a loop
  order. If the ifmap or the filters fit their tile, both are read from
  DRAM once. Otherwise the loop order decides: filters outer keeps filter chunks resident and
  re-streams the ifmap once per chunk (``W + ceil(W/tile_filter) * I``); ifmap outer keeps
  ifmap chunks and re-streams the filters (``I + ceil(I/tile_ifmap) * W``). Without a mapping,
  the order with fewer DRAM bytes is taken (filters outer on a tie). Outputs are written once.
  ws/is accumulate partial sums over ``ceil(t/rows)`` reduction folds; when the resident psum tile
  (at ``acc_bits``) exceeds the ofmap tile, every intermediate partial sum spills:
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
from hwsim.mapping.buffers import BufferColumns, even_tiles


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


def operand_bytes(table: LayerTable) -> dict[str, np.ndarray]:
    """Bytes of each operand as stored (ifmap unpadded, at the code widths; filters with
    their stored constants, `weight_scale_bytes`)."""
    return {"ifmap": bits_to_bytes(table.ifmap_elems, table.act_bits),
            "filter": bits_to_bytes(table.filter_elems, table.weight_bits)
            + table.weight_scale_bytes,
            "ofmap": bits_to_bytes(table.ofmap_elems, table.act_bits)}


def default_columns(accel: Accelerator, table: LayerTable) -> BufferColumns:
    """Even buffer shares and, per layer, the loop order that reads fewer DRAM bytes (filters
    outer on a tie): the closed-form choice, used when no mapping is given."""
    tiles = even_tiles(accel, len(table))
    sizes = operand_bytes(table)
    n_filter = np.ceil(sizes["filter"] / tiles["filter"]).astype(sizes["filter"].dtype)
    n_ifmap = np.ceil(sizes["ifmap"] / tiles["ifmap"]).astype(sizes["ifmap"].dtype)
    outer = _filter_outer_is_cheaper(sizes["ifmap"], sizes["filter"], n_ifmap, n_filter)
    return BufferColumns(np.asarray(outer, dtype=bool), tiles)


@dataclass(frozen=True)
class ArrayTraffic:
    """Bytes between the buffers and the array per layer, which no two-level mapping changes:
    ifmap / filter reads, output (or partial-sum) writes, partial-sum read-backs, and the
    resident partial-sum tile (bytes) of dataflows whose outputs are partial."""

    passes: np.ndarray
    ifmap_reads: np.ndarray
    filter_reads: np.ndarray
    out_writes: np.ndarray
    psum_reads: np.ndarray
    psum_tile_bytes: np.ndarray | None


def array_traffic(table: LayerTable, unit: ComputeUnit) -> ArrayTraffic:
    """The unit's `array_accesses` times groups and bit passes, in bytes (module docstring)."""
    ops = table.operands
    acc = unit.array_accesses(table.gemm, ops)
    passes = unit.bit_passes(ops)
    reps = table.groups * passes
    out_reps = table.groups * unit.output_passes(passes)
    ifmap_bits, filter_bits = unit.array_operand_bits(ops)
    return ArrayTraffic(
        passes=passes,
        ifmap_reads=bits_to_bytes(reps * acc.ifmap_reads, ifmap_bits),
        filter_reads=bits_to_bytes(reps * acc.filter_reads, filter_bits),
        out_writes=bits_to_bytes(out_reps * acc.ofmap_writes, unit.acc_bits),
        psum_reads=bits_to_bytes(out_reps * acc.psum_reads, unit.acc_bits),
        psum_tile_bytes=(bits_to_bytes(acc.psum_tile_elems, unit.acc_bits)
                         if acc.outputs_are_partial else None))


def memory_traffic(accel: Accelerator, table: LayerTable, unit: ComputeUnit | None = None,
                   mapping: BufferColumns | None = None,
                   array: ArrayTraffic | None = None) -> Traffic:
    """Bytes read from and written to every memory level, per layer (see module docstring),
    with every layer run on `unit` (default: the accelerator's default unit) under `mapping`
    (default: `default_columns`). `array` reuses an `array_traffic` of the same table and unit."""
    unit = unit or accel.compute
    mapping = mapping if mapping is not None else default_columns(accel, table)
    array = array if array is not None else array_traffic(table, unit)
    sizes = operand_bytes(table)
    ifmap_b, filter_b, ofmap_b = sizes["ifmap"], sizes["filter"], sizes["ofmap"]
    cap = mapping.tile_bytes
    n_filter_chunks = np.ceil(filter_b / cap["filter"]).astype(filter_b.dtype)
    n_ifmap_chunks = np.ceil(ifmap_b / cap["ifmap"]).astype(ifmap_b.dtype)
    # If either operand fits its tile, both are read once whatever the order.
    fits = (n_filter_chunks <= 1) | (n_ifmap_chunks <= 1)
    filter_outer = mapping.filter_outer
    ifmap_dram = np.where(fits | ~filter_outer, ifmap_b, n_filter_chunks * ifmap_b)
    filter_dram = np.where(fits | filter_outer, filter_b, n_ifmap_chunks * filter_b)

    if array.psum_tile_bytes is not None:
        spill = np.where(array.psum_tile_bytes > cap["ofmap"], array.psum_reads, 0)
    else:
        spill = np.zeros_like(ofmap_b)

    per_operand_reads = {"ifmap": array.ifmap_reads, "filter": array.filter_reads,
                         "ofmap": array.psum_reads + ofmap_b + spill}
    per_operand_writes = {"ifmap": ifmap_dram, "filter": filter_dram,
                          "ofmap": array.out_writes + spill}
    reads: dict[str, np.ndarray] = {"dram": ifmap_dram + filter_dram + spill}
    writes: dict[str, np.ndarray] = {"dram": ofmap_b + spill}
    for buffer in accel.buffers:
        reads[buffer.name] = sum((per_operand_reads[op] for op in buffer.holds),
                                 np.zeros_like(ofmap_b))
        writes[buffer.name] = sum((per_operand_writes[op] for op in buffer.holds),
                                  np.zeros_like(ofmap_b))
    return Traffic(
        operand_bytes=sizes,
        dram_reads_by_operand={"ifmap": ifmap_dram, "filter": filter_dram},
        psum_spill_bytes=spill, reads=reads, writes=writes, passes=array.passes,
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
