"""Loop-nest analysis of one conv layer on a memory hierarchy of any depth, and a small mapper.

A *hierarchy* is a tuple of `NestLevel`, outermost first (``levels[0]`` is DRAM and holds every
operand). Each operand ("ifmap", "filter", "ofmap") walks the levels that hold it; its *chain* is
those levels innermost first. A `LoopNest` says how the seven conv dims B, K, C, OY, OX, FY, FX
are unrolled over the PE array (``spatial``), the temporal loops innermost first
(``temporal``), and how many of those loops each level of each operand's chain owns
(``levels``). `evaluate` counts the data moved at every (level, operand), in elements, in
accesses of the level's word (``access_bits``) and in pJ, plus a latency estimate.

Counting model (the ZigZag 3.9.1 model of tests/data/zigzag/README.md, except where noted)
-----------------------------------------------------------------------------------------
Notation for operand X, chain level j (0 = innermost): ``T`` = product of all temporal bounds;
``P_j`` = product of the temporal loops owned by levels 0..j (one *period* of level j);
``S_j`` = elements one instance of level j holds (its temporal loops, plus every spatial unroll
if the level is shared); a per-PE level (``per_pe=True``) has one instance per *used* PE and
all spatial unrolls above it, a shared level has one instance and all unrolls below it. Per-PE
levels must be the innermost ones of each chain. ``A_j`` = distinct elements of level j's tile
over all PEs; ``A_-1`` = distinct elements the array uses in one step.

* Each transfer moves, per period and per instance, ``e`` elements; it is rounded up to whole
  words per period and per instance: ``accesses = ceil(e * bits / access_bits) * periods *
  instances``. Energy = reads x read_energy_pj + writes x write_energy_pj, exactly.
* Reads towards the array at level j: ``S_{j-1}`` (per-PE level; ``S_-1`` = 1) or ``A_{j-1}``
  (shared level) every ``P_{j-1}``: spatial multicast and spatial reduction cost nothing.
  Fills from the parent: ``S_j`` every ``P_j``. The top level (DRAM) is never charged for
  receiving the layer's inputs or handing out its final outputs (ZigZag drops these too:
  every layer's operands start and end in DRAM).
* Stationarity: ``P_-1`` of ifmap/filter is the product of the operand-irrelevant loops at the
  bottom of level 0 (the datum stays at the memory's output); the ofmap's innermost level is
  read and written every step. Before counting, the operand-irrelevant loops at the bottom of
  each level j >= 1 move down into level j-1 (ZigZag's ``innermost_stationary_loop_merge_down``;
  tiles do not grow, refills only drop).
* Partial sums: level j *holds psums* when a reduction loop (C, FY, FX with bound > 1) is
  owned by level j or any level above, or a spatial reduction unroll lies above it. Writes into
  and reads back from a psum level use ``psum_bits``; transfers up to a level holding only
  final values use ``ofmap_bits``. **Difference from ZigZag** (default ``psum_reads="exact"``):
  the first accumulation pass of every output reads nothing, both on the read back towards the
  array and on the refill of a psum from the parent level; each of those transfers is charged
  for ``T/P - R`` periods instead of ``T/P``, where ``R`` = product of the ofmap-relevant loops
  above the lower level (the number of distinct tile positions, each seen fresh once).
  ``psum_reads="zigzag"`` counts them symmetrically like ZigZag (e.g. 49 instead of 48 reads
  per output of a 7x7 reduction). ZigZag also truncates ``int()`` the access count in
  bandwidth_max units; hwsim keeps whole words.
* Input tiles: a tile covering ``a`` outputs and ``b`` taps along a spatial axis touches
  ``min(a*b, s*(a-1) + d*(b-1) + 1, in)`` input rows (stride ``s``, dilation ``d``, ``in`` the
  unpadded input size): halos of tiles are counted in full, padded positions included, only
  the whole-layer extent is clipped (ZigZag's rule with ``d = 1``). Sliding-window reuse across
  consecutive tiles is not modelled (a refetch moves the whole tile).
* Partial tiles: a dim whose loop bounds multiply to more than its size (last tile partial,
  ceil division) has its tile extents clipped to the size; traffic is counted as if every tile
  were the clipped size and ``T`` includes the padding iterations (a small overestimate).
  MAC energy is always ``MACs x mac_energy_pj`` with the exact MAC count.

Latency: ``T + stall + onload + offload`` (ZigZag's structure, simplified).
* A level has ``ports`` ports of ``bandwidth_bits_per_cycle`` each (per instance): 1 = one
  port for reads and writes; 2 = a read port and a write port; 4 = one port per direction.
* Each transfer needs ``real = ceil(bits per period / bandwidth)`` cycles per period. It may use
  the whole period if the receiving memory is double-buffered, else only ``period / top_ir``
  (``top_ir`` = the receiver's operand-irrelevant loops at its top). Double buffering: ZigZag's
  rule per operand -- effective tile = tile bits / (fully relevant loops at the level's top),
  the ofmap tile counted at the precision it leaves with (its parent's: ofmap_bits once final);
  if the level's summed effective utilisation is <= 1/2 every operand is double-buffered,
  else operands (ofmap, filter, ifmap order) are while their own utilisation fits in what is left.
  The receiver of a read towards the array / a write from below at level j is level j-1 (the
  array itself is never double-buffered but may take a whole period), of a fill / a read up it
  is level j.
* Stall of one transfer: ``max(0, real - allowed) * (periods - 1)``; of one port: the sum of those
  plus ``max(0, busy - T)`` with ``busy`` = sum over its transfers of ``min(real, allowed) *
  (periods - 1)`` (the port cannot be busier than the computation lasts). Ports work in
  parallel: ``stall`` = the largest port stall. (ZigZag intersects the update windows; hwsim
  takes the whole computation as the window.)
* ``onload``: the first tiles of ifmap and filter, one period of every link DRAM -> ... ->
  array (a link costs the slower of its two ends), summed along the chain, max over the two
  operands; ``offload``: the last ofmap tiles likewise, array -> ... -> DRAM.

Allocation (`allocate_levels`) and the mapper (`map_layer`) are documented on the functions.

The implementation is split by job: hwsim/mapping/loopnest_types.py (inputs and results),
hwsim/mapping/loopnest_eval.py (the counting model: `evaluate`, and the light pricing the
mapper's search uses) and hwsim/mapping/loopnest_mapper.py (candidates, allocation, search).
This module re-exports their public names.
"""

from __future__ import annotations

from hwsim.mapping.loopnest_eval import OBJECTIVES, _ext, evaluate, objective_value
from hwsim.mapping.loopnest_mapper import (ORDERS, _primes, allocate_levels, clear_mapper_cache,
                                           map_layer, mapper_candidates)
from hwsim.mapping.loopnest_types import (ARRAY_DIMS, DIMS, OPERANDS, ConvDims, LevelCost, LoopNest,
                                          NestCost, NestLevel, OperandLevelCost, Precisions,
                                          Transfer)

__all__ = [
    "ARRAY_DIMS", "DIMS", "OBJECTIVES", "OPERANDS", "ORDERS", "ConvDims", "LevelCost", "LoopNest",
    "NestCost", "NestLevel", "OperandLevelCost", "Precisions", "Transfer", "allocate_levels",
    "clear_mapper_cache", "evaluate", "map_layer", "mapper_candidates", "objective_value",
]
