"""The ``shift_add`` unit: multiplier-free product lanes for Additive Powers-of-Two weights.

APoT (Li, Dong, Wang, "Additive Powers-of-Two Quantization: An Efficient Non-uniform
Discretization for Neural Networks", ICLR 2020) stores a b-bit weight whose integer level is
``w = ±L`` with ``L`` a sum of at most ``n`` powers of two, so ``x * w = ±Σ_t (x << s_t)``: ``n``
shifts and ``n - 1`` additions per product, then one accumulation. Terms per weight, by the
layer's `weight_bits` b (the format's storage bits, b - 1 magnitude bits):

    "apot":  b = 3: 1,  b = 4: 2,  b = 5: 2,  b = 6: 3,  b = 7: 3   (other b: not supported)
    "int":   max(b - 1, 1)   (a signed b-bit integer: up to b - 1 set magnitude bits; this is how
                              the unit runs uniform layers -- the "multiplier datapath" baseline)

Datapath: `lanes` product lanes. Each lane has `shifters_per_lane` (s) shifters feeding an adder
and owns one accumulator; adder and accumulator are `adder_bits` wide (the kernels' "adder
width": every term is added at that width, see hwsim/kernels/reference/shift_add.py). In one
cycle a lane shifts up to s terms of its current product and adds them into its accumulator, so
a product of n terms occupies its lane ``ceil(n / s)`` cycles; the activation and the weight code
stay in lane registers meanwhile.

Mapping (output-stationary, no systolic skew), per conv group and layer: the ``sc`` filters x
``sr`` output pixels of the group are tiled onto the lanes as a grid of ``F = min(sc, lanes)``
filter columns by ``P = lanes // F`` pixel rows; each lane owns one output and reduces its ``t``
products serially. Every product step, each pixel row receives one activation (broadcast to its F
lanes) and each filter column one weight (broadcast to its P lanes)::

    n      = terms per weight (table above; worst case: every weight uses all n terms -- zero
             weights and levels with fewer set bits are not skipped)
    F      = min(sc, lanes),  P = lanes // F
    cycles = ceil(sr / P) * ceil(sc / F) * t * ceil(n / shifters_per_lane)     (one group)

Groups run back to back (the cost model multiplies by groups); there is no bit slicing (passes =
1): layers wider than the unit's `act_bits` / `weight_bits` are refused by `supports`. Buffer
reads per group: ifmap ``sr * t * ceil(sc / F)``, filters ``sc * t * ceil(sr / P)`` at the layer's
code widths (act_bits, weight_bits: a 4-bit APoT weight moves as 4 bits and is decoded to shift
amounts in the lane); each output leaves the array once, at `adder_bits`.

Compute actions (counts kept apart from energies), per layer with ``products = groups * sr * sc
* t``: ``shift = products * n``, ``add = products * (n - 1)``, ``accumulate = products``.
Idle lanes are assumed clock-gated (not counted). Utilization = products per lane-cycle, at most
``1 / ceil(n / s)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hwsim.arch.schema import non_negative_number, positive_int
from hwsim.arch.units import (ArrayAccesses, ComputeUnit, Gemm, Operands, UnitKind, _ceil_div,
                              register_unit_kind)

#: terms per weight of a b-bit APoT weight, indexed by b (0 = unsupported width)
APOT_TERMS = np.array([0, 0, 0, 1, 2, 2, 3, 3], dtype=np.int64)
APOT_BITS = (3, 7)  # supported APoT weight_bits, inclusive (B = b - 1 magnitude bits in 2..6)


def terms_per_weight(weight_format: Any, weight_bits: Any) -> np.ndarray:
    """Shift-add terms of one weight per layer (int64): the APoT table for "apot", ``max(b - 1,
    1)`` for "int", 0 where the format or width has no shift-add form."""
    fmt = np.asarray(weight_format, dtype=str)
    bits = np.asarray(weight_bits, dtype=np.int64)
    apot = APOT_TERMS[np.clip(bits, 0, len(APOT_TERMS) - 1)]
    apot = np.where(bits < len(APOT_TERMS), apot, 0)
    uniform = np.maximum(bits - 1, 1)
    return np.where(fmt == "apot", apot, np.where(fmt == "int", uniform, 0)).astype(np.int64)


@dataclass(frozen=True)
class ShiftAdd(ComputeUnit):
    """`lanes` shift-add lanes with `shifters_per_lane` shifters each; `acc_bits` is the adder /
    accumulator width (config field ``adder_bits``); energies in pJ per action."""

    lanes: int = 1
    shifters_per_lane: int = 1
    shift_energy_pj: float = 0.0
    add_energy_pj: float = 0.0
    accumulate_energy_pj: float = 0.0

    weight_formats: ClassVar[tuple[str, ...] | None] = ("apot", "int")
    act_formats: ClassVar[tuple[str, ...] | None] = ("int", "apot")

    @property
    def pe_count(self) -> int:
        return self.lanes

    @property
    def adder_bits(self) -> int:
        return self.acc_bits

    def _grid(self, sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F filter columns, P pixel rows) of the lane grid per layer."""
        filters = np.minimum(sc, self.lanes)
        return filters, self.lanes // filters

    def cycles_per_product(self, ops: Operands) -> np.ndarray:
        """``ceil(n / shifters_per_lane)`` per layer (int64)."""
        return _ceil_div(terms_per_weight(ops.weight_format, ops.weight_bits),
                         self.shifters_per_lane)

    def compute_cycles(self, g: Gemm, ops: Operands) -> np.ndarray:
        """``ceil(sr / P) * ceil(sc / F) * t * ceil(n / shifters_per_lane)`` per group (int64)."""
        sr, sc, t = g.sr, g.sc, g.t
        filters, pixels = self._grid(sc)
        return (_ceil_div(sr, pixels) * _ceil_div(sc, filters) * t
                * self.cycles_per_product(ops))

    def array_accesses(self, g: Gemm, ops: Operands) -> ArrayAccesses:
        """Per group: each of the ceil(sc/F) filter folds re-reads the ifmap, each of the
        ceil(sr/P) pixel folds re-reads the filters; outputs are written once (final)."""
        sr, sc, t = g.sr, g.sc, g.t
        filters, pixels = self._grid(sc)
        zero = np.zeros_like(sr)
        return ArrayAccesses(ifmap_reads=sr * t * _ceil_div(sc, filters),
                             filter_reads=sc * t * _ceil_div(sr, pixels), ofmap_writes=sr * sc,
                             psum_reads=zero, psum_tile_elems=zero, outputs_are_partial=False)

    def bit_passes(self, ops: Operands) -> np.ndarray:
        """Always 1: no bit slicing (wider layers are refused by `supports`)."""
        return np.ones(np.shape(ops.act_bits), dtype=np.int64)

    def supports(self, ops: Operands) -> np.ndarray:
        bits = np.asarray(ops.weight_bits)
        apot_ok = (bits >= APOT_BITS[0]) & (bits <= APOT_BITS[1])
        width_ok = np.where(np.asarray(ops.weight_format) == "apot", apot_ok, True)
        return (self.formats_supported(ops) & width_ok
                & (np.asarray(ops.act_bits) <= self.act_bits) & (bits <= self.weight_bits))

    def support_text(self) -> str:
        return (f"{self.formats_text()} with act_bits <= {self.act_bits} and weight_bits <= "
                f"{self.weight_bits} (apot weights: {APOT_BITS[0]} <= weight_bits <= "
                f"{APOT_BITS[1]})")

    def action_counts(self, g: Gemm, passes: np.ndarray, ops: Operands) -> dict[str, np.ndarray]:
        products = g.macs * passes
        terms = terms_per_weight(ops.weight_format, ops.weight_bits)
        return {"shift": products * terms, "add": products * (terms - 1),
                "accumulate": products}

    def action_energies_pj(self) -> dict[str, float]:
        return {"shift": self.shift_energy_pj, "add": self.add_energy_pj,
                "accumulate": self.accumulate_energy_pj}

    def output_passes(self, passes: np.ndarray) -> np.ndarray:
        return np.ones_like(passes)


def _check(values: dict[str, Any]) -> list[tuple[str, str]]:
    """The adder must hold one product of the widest operands: act_bits + weight_bits bits (an
    activation shifted left by up to weight_bits - 1, plus a sign)."""
    act, wgt, adder = values.get("act_bits"), values.get("weight_bits"), values.get("adder_bits")
    if all(isinstance(v, int) for v in (act, wgt, adder)) and adder < act + wgt:
        return [("adder_bits", f"expected at least act_bits + weight_bits ({act + wgt}) to hold "
                               f"one product, got {adder}")]
    return []


def _build(values: dict[str, Any]) -> ShiftAdd:
    values = dict(values)
    values["acc_bits"] = values.pop("adder_bits")
    return ShiftAdd(**values)


register_unit_kind(UnitKind(
    kind="shift_add",
    fields=(positive_int("lanes"), positive_int("shifters_per_lane"),
            non_negative_number("shift_energy_pj"), non_negative_number("add_energy_pj"),
            non_negative_number("accumulate_energy_pj")),
    build=_build,
    description="multiplier-free shift-add lanes for APoT (and uniform int) weights",
    common_fields=(positive_int("act_bits"), positive_int("weight_bits"),
                   positive_int("adder_bits")),
    check=_check,
))
