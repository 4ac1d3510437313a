"""The ``spatial_array`` unit: a `rows` x `cols` array of integer MAC PEs whose schedule is the
layer's mapping (a loop nest), the way Timeloop and ZigZag model Eyeriss- and TPU-like arrays.

With a memory hierarchy (``memory.levels``), the cost model takes every figure but the MACs
from the layer's loop nest (hwsim/mapping/loopnest.py): compute cycles are the product of its
temporal loop bounds (spatial under-use shows as more cycles), and no systolic fill or drain is
added. The hooks below are the unit's figures WITHOUT a mapping (on a two-level ``memory:
{dram, buffers}`` config), for its default mapping: filters on the columns, the reduction
(taps x channels) on the rows, output pixels in time (weight stationary, no fill/drain)::

    cycles = ceil(sc / cols) * ceil(t / rows) * sr           (one group, one bit pass)

Buffer reads of that default (per group): each weight once per fold of rows (``t * sc``), each
ifmap element of the im2col view once per column fold (``sr * t * ceil(sc / cols)``), partial
sums written once per reduction fold and read back for all but the first (like the systolic
``ws`` dataflow). Operands wider than the datapath are bit-sliced (passes, as for `systolic`).
One ``mac`` action per multiply-accumulate per pass, at `mac_energy_pj`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.arch.schema import positive_int
from hwsim.arch.units import (ArrayAccesses, ComputeUnit, Gemm, Operands, UnitKind, _ceil_div,
                              register_unit_kind)


@dataclass(frozen=True)
class SpatialArray(ComputeUnit):
    """`rows` x `cols` MAC PEs (ZigZag's D2 x D1); `mac_energy_pj` per MAC at the unit's widths."""

    rows: int = 1
    cols: int = 1

    @property
    def pe_count(self) -> int:
        return self.rows * self.cols

    def compute_cycles(self, g: Gemm, ops: Operands) -> np.ndarray:
        """Cycles of the default (weight-stationary) mapping, one group and pass:
        ``ceil(sc / cols) * ceil(t / rows) * sr``; with a hierarchy, the loop nest's instead."""
        return _ceil_div(g.sc, self.cols) * _ceil_div(g.t, self.rows) * g.sr

    def array_accesses(self, g: Gemm, ops: Operands) -> ArrayAccesses:
        """Per group, the default mapping's buffer traffic (module docstring)."""
        folds = _ceil_div(g.t, self.rows)
        return ArrayAccesses(
            ifmap_reads=g.sr * g.t * _ceil_div(g.sc, self.cols), filter_reads=g.t * g.sc,
            ofmap_writes=g.sr * g.sc * folds, psum_reads=g.sr * g.sc * (folds - 1),
            psum_tile_elems=g.sr * np.minimum(g.sc, self.cols), outputs_are_partial=True)


register_unit_kind(UnitKind(
    kind="spatial_array",
    fields=(positive_int("rows"), positive_int("cols")),
    build=lambda v: SpatialArray(**v),
    description="rows x cols MAC PEs scheduled by the layer's loop nest (Timeloop/ZigZag style)",
))
