"""Bit-serial units: ``stripes`` (activations serial) and ``loom`` (activations and weights serial).

Stripes: Judd et al., "Stripes: Bit-Serial Deep Neural Network Computing", MICRO 2016. Loom:
Sharify et al., "Loom: Exploiting Weight and Activation Precisions to Accelerate Convolutional
Neural Networks", DAC 2018. Both extend a DaDianNao-like tiled inner-product engine (Chen et
al., "DaDianNao: A Machine-Learning Supercomputer", MICRO 2014) whose bit-parallel lanes take
one P-bit x P-bit product per cycle (P = `baseline_bits`, 16 in both papers).

Array (both kinds): `tiles` x `filters` filter lanes (F = tiles * filters; every tile takes its
own filters, all tiles see the same activations), `windows` (W) output pixels at once, and per
(filter, window) one serial inner-product unit (SIP) over `terms` (T) input channels of one
kernel tap. Activation "bricks" of T consecutive input channels of one tap are the reduction
unit, as in DaDianNao, so a layer with fewer than T channels per group (the first layer, a
depthwise conv) leaves SIP inputs idle.

- stripes: each SIP multiplies T activation bits (one bit of each activation per cycle, most
  significant first) by T bit-parallel weights of up to `weight_bits`, adds them and
  shift-accumulates: a product takes ``a`` cycles (a = the layer's act_bits), whatever the
  layer's weight width (up to `weight_bits`).
- loom: each SIP ANDs T activation bits with T weight bits per cycle (one bit of each); a
  product takes ``a * w`` cycles (w = the layer's weight_bits).

Folding, per conv group and layer (``sr`` output pixels x batch, ``sc`` filters, ``taps`` =
kernel_h * kernel_w, ``ch`` = input channels per group; the cost model multiplies by groups;
bit passes are 1: the serial cycles ARE the precision)::

    folds  = ceil(sr / W) * ceil(sc / F) * taps * ceil(ch / T)        (independent of widths)
    stripes cycles = folds * a          loom cycles = folds * a * w

Output pixels go on the windows, filters on the filter lanes, input channels on the SIP inputs;
taps and the remaining channel bricks run one after another. A fold lasts the same for every
SIP (no per-activation precision trimming: the papers' dynamic per-group precision is not
modelled). There is no fully-connected special case: a layer with one output pixel (a linear
layer at batch 1) uses 1 of the W windows.

Parallelism: F * W * T SIP inputs; `peak_macs_per_cycle` is F * W * T / a (stripes) or
F * W * T / (a * w) (loom) products finished per cycle at the layer's widths.

The bit-parallel baseline of the same lanes (``mode: bit_parallel``; default ``serial``): the
same config with P-bit x P-bit MAC lanes in place of the SIPs, as many as the serial array's
equivalent: F_b * T lanes with F_b = F * W / P (stripes: the P-fold window parallelism makes
up for the P-cycle product) or F * W / P**2 (loom), one output pixel per cycle::

    bit_parallel cycles = sr * ceil(sc / F_b) * taps * ceil(ch / T)     (any width <= P)

so a P-bit layer (stripes; P x P-bit for loom) whose sr and sc fill the folds runs in the same
cycles in both modes and the ideal speedup is P / a (stripes), P**2 / (a * w) (loom). The
baseline's lanes hold their weights for W consecutive output pixels (weight registers, as the
SIPs hold theirs for a fold), so both modes read the same weights from the buffer and the ratio
is the datapath's; DaDianNao as published re-reads the weights every cycle, which would only
make the baseline costlier. Its MAC is priced at `mac_energy_pj` (P x P bits, whatever the
layer's widths: the baseline does not narrow its datapath); peak = F_b * T.

Buffer reads per group (element counts; bytes = elements x the layer's act_bits / weight_bits,
the bits really moved: a serial operand's a bits leave the buffer once over a cycles, not as a
bit planes of full width; the SIP registers hold what a fold reuses)::

    ifmap   = sr * taps * ch * ceil(sc / F)       (bit_parallel: ceil(sc / F_b))
    filters = sc * taps * ch * ceil(sr / W)       (both modes)
    outputs = sr * sc, written once at acc_bits (final sums: the SIP accumulators hold them)

Compute actions (counts kept apart from energies; idle SIP inputs are clock-gated, not
counted), with ``products = groups * sr * sc * taps * ch`` and ``sip_steps = groups * sr * sc *
taps * ceil(ch / T)`` (one per output per channel brick):

- stripes: ``serial_bit_mac = products * a`` (one activation bit x one bit-parallel weight
  term into the SIP adder tree), ``accumulate = sip_steps * a`` (the SIP's shift-and-add of its
  adder-tree sum into the output accumulator, once per cycle);
- loom: ``serial_bit_step = products * a * w`` (one 1 x 1-bit AND and its share of the adder
  tree), ``accumulate = sip_steps * a * w``;
- bit_parallel (either kind): ``mac = products``.

Energy = counts x the per-action fields (``serial_bit_mac_energy_pj`` / ``serial_bit_step_
energy_pj``, ``accumulate_energy_pj``, ``mac_energy_pj``), pJ per action.

Formats: "int" weights and activations only (fixed-point codes whose bits are the operand's
bits); layers wider than the unit (serial: act_bits / weight_bits fields; bit_parallel:
baseline_bits) are refused by `supports`, never bit-sliced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hwsim.arch.schema import Field, non_negative_number, one_of, positive_int
from hwsim.arch.units import (COMMON_UNIT_FIELDS, ArrayAccesses, ComputeUnit, Gemm, Operands,
                              UnitKind, _ceil_div, register_unit_kind)

MODES = ("serial", "bit_parallel")
#: Cap on a lane count used in int64 array arithmetic (ceil(sc / lanes) is the same for any
#: lanes >= sc, and sc < 2^62 always).
_LANE_CAP = 2**62


@dataclass(frozen=True)
class _BitSerial(ComputeUnit):
    """Shared geometry, folding and traffic of the bit-serial kinds (see the module docstring).

    `act_bits` / `weight_bits`: the widest activation / weight the serial array accepts;
    `baseline_bits`: P, the width of the bit-parallel baseline's lanes; `acc_bits`: the output
    accumulator width (outputs leave the array at it); `mac_energy_pj`: pJ per P x P-bit MAC
    of the bit_parallel mode.
    """

    tiles: int = 1
    filters: int = 1
    windows: int = 1
    terms: int = 1
    baseline_bits: int = 16
    mode: str = "serial"
    accumulate_energy_pj: float = 0.0

    weight_formats: ClassVar[tuple[str, ...] | None] = ("int",)
    act_formats: ClassVar[tuple[str, ...] | None] = ("int",)
    #: 1 for stripes (activations serial), 2 for loom (both serial): the baseline has
    #: F * W / P**serial_operands filter lanes.
    serial_operands: ClassVar[int] = 1

    # geometry --------------------------------------------------------------------------------
    @property
    def filter_lanes(self) -> int:
        """F = tiles * filters."""
        return self.tiles * self.filters

    @property
    def baseline_filter_lanes(self) -> int:
        """F_b = F * W / P**k (k = 1 stripes, 2 loom): the bit-parallel baseline's filter lanes."""
        return self.filter_lanes * self.windows // self.baseline_bits ** self.serial_operands

    @property
    def equivalent_lanes(self) -> int:
        """F_b * T: the P x P-bit MAC lanes of the bit-parallel baseline of the same array."""
        return self.baseline_filter_lanes * self.terms

    @property
    def serial(self) -> bool:
        return self.mode == "serial"

    @property
    def pe_count(self) -> int:
        """SIP inputs (F * W * T) in serial mode, MAC lanes (F_b * T) in bit_parallel mode."""
        if self.serial:
            return self.filter_lanes * self.windows * self.terms
        return self.equivalent_lanes

    # per-kind serial factor ------------------------------------------------------------------
    def serial_steps(self, ops: Operands) -> np.ndarray:  # pragma: no cover - kinds override
        """Cycles one product occupies a SIP at each layer's widths (int64)."""
        raise NotImplementedError

    def _steps(self, ops: Operands) -> np.ndarray:
        """serial_steps in serial mode, 1 in bit_parallel mode (int64)."""
        if self.serial:
            return self.serial_steps(ops)
        return np.ones(np.shape(ops.act_bits), dtype=np.int64)

    # hooks -----------------------------------------------------------------------------------
    def folds(self, g: Gemm) -> np.ndarray:
        """Array folds of one group per layer, independent of the operand widths: serial
        ``ceil(sr / W) * ceil(sc / F) * taps * ceil(ch / T)``, bit_parallel ``sr * ceil(sc /
        F_b) * taps * ceil(ch / T)``."""
        bricks = g.taps * _ceil_div(g.channels, self.terms)
        if self.serial:
            return (_ceil_div(g.sr, self.windows)
                    * _ceil_div(g.sc, min(self.filter_lanes, _LANE_CAP)) * bricks)
        return g.sr * _ceil_div(g.sc, min(self.baseline_filter_lanes, _LANE_CAP)) * bricks

    def compute_cycles(self, g: Gemm, ops: Operands) -> np.ndarray:
        """Compute cycles of one conv group per layer: array folds (output pixels on the
        windows, filters on the filter lanes, channel bricks of `terms` x taps in sequence)
        times the cycles per product at the layer's widths (see hwsim/arch/bit_serial.py)."""
        return self.folds(g) * self._steps(ops)

    def array_accesses(self, g: Gemm, ops: Operands) -> ArrayAccesses:
        """Per group: the ifmap is re-read once per filter fold, the filters once per window
        block of W output pixels; outputs are written once (final)."""
        sr, sc, t = g.sr, g.sc, g.t
        lanes = self.filter_lanes if self.serial else self.baseline_filter_lanes
        zero = np.zeros_like(sr)
        return ArrayAccesses(ifmap_reads=sr * t * _ceil_div(sc, min(lanes, _LANE_CAP)),
                             filter_reads=sc * t * _ceil_div(sr, self.windows),
                             ofmap_writes=sr * sc, psum_reads=zero, psum_tile_elems=zero,
                             outputs_are_partial=False)

    def peak_macs_per_cycle(self, ops: Operands) -> np.ndarray:
        """Products the array finishes per cycle at each layer's widths (float64): its SIP
        inputs over the cycles per product (bit_parallel: its MAC lanes)."""
        return float(self.pe_count) / self._steps(ops).astype(np.float64)

    def bit_passes(self, ops: Operands) -> np.ndarray:
        """Always 1: the serial cycles are the precision (wider layers are refused)."""
        return np.ones(np.shape(ops.act_bits), dtype=np.int64)

    def output_passes(self, passes: np.ndarray) -> np.ndarray:
        return np.ones_like(passes)

    def width_limits(self) -> tuple[int, int]:
        """(widest activation, widest weight) the unit runs in its mode."""
        if self.serial:
            return self.act_bits, self.weight_bits
        return self.baseline_bits, self.baseline_bits

    def supports(self, ops: Operands) -> np.ndarray:
        act, wgt = self.width_limits()
        return (self.formats_supported(ops) & (np.asarray(ops.act_bits) <= act)
                & (np.asarray(ops.weight_bits) <= wgt))

    def support_text(self) -> str:
        act, wgt = self.width_limits()
        how = "" if self.serial else f" (mode bit_parallel: {self.baseline_bits}-bit MAC lanes)"
        return f"{self.formats_text()} with act_bits <= {act} and weight_bits <= {wgt}{how}"

    def sip_steps(self, g: Gemm) -> np.ndarray:
        """SIP cycles that do work per layer (all groups) for one bit step: one per output per
        channel brick, ``groups * sr * sc * taps * ceil(ch / T)``."""
        return g.groups * g.sr * g.sc * g.taps * _ceil_div(g.channels, self.terms)


@dataclass(frozen=True)
class Stripes(_BitSerial):
    """Activations bit-serial, weights bit-parallel: a product takes ``a`` cycles."""

    serial_bit_mac_energy_pj: float = 0.0

    serial_operands: ClassVar[int] = 1

    def serial_steps(self, ops: Operands) -> np.ndarray:
        """``a`` (the layer's act_bits) per layer, whatever its weight width."""
        return np.asarray(ops.act_bits, dtype=np.int64)

    def action_counts(self, g: Gemm, passes: np.ndarray, ops: Operands) -> dict[str, np.ndarray]:
        """Per layer: ``serial_bit_mac = products * a`` (one activation bit x one bit-parallel
        weight), ``accumulate = groups * sr * sc * taps * ceil(ch / T) * a`` (SIP shift-adds);
        bit_parallel mode: ``mac = products``."""
        if not self.serial:
            return {"mac": g.macs * passes}
        a = self.serial_steps(ops) * passes
        return {"serial_bit_mac": g.macs * a, "accumulate": self.sip_steps(g) * a}

    def action_energies_pj(self) -> dict[str, float]:
        if not self.serial:
            return {"mac": self.mac_energy_pj}
        return {"serial_bit_mac": self.serial_bit_mac_energy_pj,
                "accumulate": self.accumulate_energy_pj}


@dataclass(frozen=True)
class Loom(_BitSerial):
    """Activations and weights bit-serial: a product takes ``a * w`` cycles."""

    serial_bit_step_energy_pj: float = 0.0

    serial_operands: ClassVar[int] = 2

    def serial_steps(self, ops: Operands) -> np.ndarray:
        """``a * w`` (the layer's act_bits x weight_bits) per layer."""
        return (np.asarray(ops.act_bits, dtype=np.int64)
                * np.asarray(ops.weight_bits, dtype=np.int64))

    def action_counts(self, g: Gemm, passes: np.ndarray, ops: Operands) -> dict[str, np.ndarray]:
        """Per layer: ``serial_bit_step = products * a * w`` (one 1 x 1-bit AND into the SIP
        adder tree), ``accumulate = groups * sr * sc * taps * ceil(ch / T) * a * w``;
        bit_parallel mode: ``mac = products``."""
        if not self.serial:
            return {"mac": g.macs * passes}
        steps = self.serial_steps(ops) * passes
        return {"serial_bit_step": g.macs * steps, "accumulate": self.sip_steps(g) * steps}

    def action_energies_pj(self) -> dict[str, float]:
        if not self.serial:
            return {"mac": self.mac_energy_pj}
        return {"serial_bit_step": self.serial_bit_step_energy_pj,
                "accumulate": self.accumulate_energy_pj}


def _check_for(serial_operands: int):
    """Cross-field rule: the bit-parallel baseline of the same lanes must have whole filter
    lanes, i.e. tiles * filters * windows a multiple of baseline_bits**serial_operands."""
    power = "" if serial_operands == 1 else f"**{serial_operands}"

    def check(values: dict[str, Any]) -> list[tuple[str, str]]:
        geometry = [values.get(k) for k in ("tiles", "filters", "windows", "baseline_bits")]
        if not all(isinstance(v, int) for v in geometry):
            return []
        tiles, filters, windows, p = geometry
        product = tiles * filters * windows
        if product % p ** serial_operands:
            return [("windows", f"expected tiles x filters x windows ({product}) to be a "
                                f"multiple of baseline_bits{power} ({p ** serial_operands}) so "
                                f"that the bit-parallel baseline of the same lanes has whole "
                                f"filter lanes, got windows {windows}")]
        return []

    return check


_GEOMETRY: tuple[Field, ...] = (
    positive_int("tiles"), positive_int("filters"), positive_int("windows"),
    positive_int("terms"), positive_int("baseline_bits"),
    one_of("mode", MODES, required=False, default="serial"),
    non_negative_number("accumulate_energy_pj"),
)

register_unit_kind(UnitKind(
    kind="stripes",
    fields=(*_GEOMETRY, non_negative_number("serial_bit_mac_energy_pj")),
    build=lambda v: Stripes(**v),
    description="Stripes (MICRO 2016): bit-serial activations x bit-parallel weights, "
                "tiles x filters x windows serial inner-product units of `terms` inputs",
    common_fields=COMMON_UNIT_FIELDS,
    check=_check_for(1),
))

register_unit_kind(UnitKind(
    kind="loom",
    fields=(*_GEOMETRY, non_negative_number("serial_bit_step_energy_pj")),
    build=lambda v: Loom(**v),
    description="Loom (DAC 2018): bit-serial activations x bit-serial weights, "
                "tiles x filters x windows serial inner-product units of `terms` inputs",
    common_fields=COMMON_UNIT_FIELDS,
    check=_check_for(2),
))
