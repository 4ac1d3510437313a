"""The ``bit_fusion`` unit: a Bit Fusion array of bit-level composable Fusion Units (Sharma et al.,
"Bit Fusion: Bit-Level Dynamically Composable Architecture for Accelerating Deep Neural
Networks", ISCA 2018).

A Fusion Unit is 16 BitBricks, each a 2-bit x 2-bit multiplier; the bricks fuse at run time into
Fused-PEs matched to the layer's operand widths: one 8b x 8b product per cycle, or four at
8b x 2b / 4b x 4b / 2b x 8b, or sixteen at 2b x 2b. The unit adds its Fused-PEs' products into one
sum, so at narrow widths one Fusion Unit reduces several input channels per cycle. The array is
`rows` (N, along the input-channel reduction) x `cols` (M, along the output channels) Fusion
Units; activations are broadcast along a row to all M columns, every column adds the N units'
sums into the partial sum of one output channel.

Precision factor (products per Fusion Unit per cycle), per layer with a = act_bits and
w = weight_bits, for a variant of width ``P`` built of ``p``-bit bricks::

    pf = floor(P / max(a, p)) * floor(P / max(w, p))

    fusible_8b_2b (the paper's Fusion Unit): P = 8, p = 2  ->  pf in {1, 2, 4, 8, 16}
    fusible_4b_2b:                            P = 4, p = 2  ->  pf in {1, 2, 4}
    fixed_<P> (P = 2, 4, 8, 16):              p = P         ->  pf = 1

Bricks fuse in powers of two, so a 3-bit operand takes a 4-bit Fused-PE and 5..7 bits an 8-bit
one; ``floor(P / max(a, p))`` is exactly that count. A 1-bit operand runs at 2-bit speed (the
narrowest brick). Widths above P are refused by `supports` (there is no bit slicing: passes = 1),
never priced.

Cycles of one conv group (the cost model multiplies by groups), no fill/drain, the loop nest of
the paper's analytical model (and of its released simulator, github.com/hsharma35/bitfusion,
``Accelerator.get_compute_cycles``)::

    K = filters per group (sc), C = input channels per group, KH*KW = taps (Gemm.taps)
    cycles = ceil(K / M) * OH*OW*batch * KH*KW * ceil(C / (N * pf))
           = ceil(sc / cols) * sr * taps * ceil(channels / (rows * pf))

The reduction over C is spread over N units of pf products each; taps are walked in time. Once
``ceil(C / (N * pf)) = 1`` a layer is saturated: fewer bits give identical cycles.
Linear layers have taps = 1 and C = in_features. Grouped and depthwise convs run group after
group, each its own GEMM: a depthwise conv has C = 1 and K = 1 per group, so one Fusion Unit
(row 0, column 0) and one of its pf Fused-PEs is busy, ``sr * taps`` cycles per group whatever
the widths -- utilization 1 / (N * M * pf) (1/512 at 8 bits on a 16 x 32 array, 1/8192 at
2 bits). That is what the formula implies (the paper's networks have no depthwise layers); on
MobileNet-style networks the depthwise layers dominate the cycles and precision barely helps.

Utilization's denominator (`peak_macs_per_cycle`) is ``rows * cols * pf``: the array's
parallelism at the layer's widths.

Number formats: uniform "int" weights and activations at any width up to P. "binary" (sums of
k scaled sign planes, see hwsim/arch/xnor.py) only with k = 1 plane: a +-1 sign is a 2-bit signed
integer, so a 1-plane operand runs on the bricks as an int at 2-bit speed (its scale is applied
at requantization, as for "int"); k > 1 planes have real per-plane scales, not one integer code,
and would need k_a * k_w plane passes with scaled accumulation the unit does not have -- refused.
"apot" is refused: an APoT code is not the integer the unit multiplies (a b-bit code decodes to
a level ``+-L`` with ``L_max`` = 4, 10, 48, 100, 448 for b = 3..7, i.e. b + 1 .. b + 3 bits), so
pricing it at its storage width would undercount and decoding it is not part of the unit; route
APoT layers to a ``shift_add`` unit. Other families are refused.

Compute actions and energy: one action, ``fusion_unit_cycle`` = one busy Fusion Unit for one
cycle, priced at `cycle_energy_pj`: the synthesized unit's power at 500 MHz divided by the
clock (the paper's 45 nm synthesis of one unit per design). The synthesized unit includes its
bricks' shift-add tree and the adder that adds the unit's sum into the column's partial sum, so
there is no separate accumulate action (the one accumulator register per column, at the bottom,
is not priced apart either):

    design          area um^2   power uW   pJ per unit-cycle (= uW / 500 MHz)
    fixed_8          687.6       171.8      0.3436
    fusible_8b_2b   1733.1       344.3      0.6886
    fixed_4          282.2        67.9      0.1358
    fusible_4b_2b    431.5        92.0      0.1840
    fixed_2          124.9        31.6      0.0632
    fixed_16        2203.2       542.7      1.0854

A config may set `unit_cycle_energy_pj` to override the table (e.g. another node or clock;
dynamic energy per cycle is taken as clock-independent). Idle Fusion Units are assumed clock-
gated (cost nothing; leakage is not modelled), and a busy unit costs a full unit-cycle even when
only some of its Fused-PEs have channels (the synthesis figure is at full activity). Busy
unit-cycles per group, summed exactly over the folds: the column folds use sc columns in all
(full folds M, the last the rest), the channel folds ``ceil(channels / pf)`` rows in all (full
folds N rows of pf channels, the last ``ceil(rest / pf)``), each for ``sr * taps`` cycles::

    fusion_unit_cycle = groups * sr * taps * sc * ceil(channels / pf)
                      <= groups * cycles * rows * cols       (every unit every cycle: no gating)

Buffer accesses per group (element counts; bits at the layer's code widths), for the loop order
above (column fold, output pixel, tap, channel fold -- the reduction innermost):
  ifmap:   each activation of the sr x t im2col view is read once per column fold and broadcast
           along its row: ``sr * t * ceil(sc / cols)``;
  filter:  the paper gives each Fusion Unit its own weight-buffer bank; weights are not held in
           brick registers across output pixels, so each weight is read from its bank once per
           output pixel: ``sr * sc * t``;
  outputs: accumulated at the bottom of each column across the taps x channel folds, written
           once, final, at `acc_bits`: ``sr * sc`` (no partial sums leave the array).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hwsim.arch.schema import non_negative_number, one_of, positive_int
from hwsim.arch.units import (ArrayAccesses, ComputeUnit, Gemm, Operands, UnitKind, _ceil_div,
                              register_unit_kind)
from hwsim.errors import ConfigError

#: Clock of the paper's synthesis: power / this clock = energy per unit-cycle (uW / MHz = pJ).
SYNTHESIS_CLOCK_MHZ = 500.0


@dataclass(frozen=True)
class FusionVariant:
    """One synthesized Fusion Unit design: widest operand `max_bits` (P), narrowest brick
    `brick_bits` (p; = P for a fixed design), area and power at 45 nm, 500 MHz."""

    name: str
    max_bits: int
    brick_bits: int
    area_um2: float
    power_uw: float

    @property
    def cycle_energy_pj(self) -> float:
        """pJ per unit-cycle: power / 500 MHz."""
        return self.power_uw / SYNTHESIS_CLOCK_MHZ


#: The paper's 45 nm synthesis results per Fusion Unit design (area um^2, power uW at 500 MHz).
VARIANTS: dict[str, FusionVariant] = {v.name: v for v in (
    FusionVariant("fusible_8b_2b", 8, 2, 1733.1, 344.3),
    FusionVariant("fixed_8", 8, 8, 687.6, 171.8),
    FusionVariant("fixed_4", 4, 4, 282.2, 67.9),
    FusionVariant("fusible_4b_2b", 4, 2, 431.5, 92.0),
    FusionVariant("fixed_2", 2, 2, 124.9, 31.6),
    FusionVariant("fixed_16", 16, 16, 2203.2, 542.7),
)}
DEFAULT_VARIANT = "fusible_8b_2b"


def precision_factor(variant: str, act_bits: Any, weight_bits: Any) -> np.ndarray:
    """Products per Fusion Unit per cycle per layer (int64): ``floor(P / max(a, p)) *
    floor(P / max(w, p))``; 0 where a width exceeds the variant's P (not runnable)."""
    v = VARIANTS[variant]
    a = np.asarray(act_bits, dtype=np.int64)
    w = np.asarray(weight_bits, dtype=np.int64)
    pf = (v.max_bits // np.maximum(a, v.brick_bits)) * (v.max_bits // np.maximum(w, v.brick_bits))
    return np.where((a <= v.max_bits) & (w <= v.max_bits), pf, 0).astype(np.int64)


@dataclass(frozen=True)
class BitFusion(ComputeUnit):
    """`rows` x `cols` Fusion Units of design `variant`; `act_bits` / `weight_bits` are the
    variant's width, `acc_bits` the column accumulator / output width. `unit_cycle_energy_pj`
    (None: the variant's synthesis figure) prices one busy Fusion Unit for one cycle."""

    rows: int = 1
    cols: int = 1
    variant: str = DEFAULT_VARIANT
    unit_cycle_energy_pj: float | None = None

    weight_formats: ClassVar[tuple[str, ...] | None] = ("int", "binary")
    act_formats: ClassVar[tuple[str, ...] | None] = ("int", "binary")

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"bit_fusion: unknown variant {self.variant!r}; expected one of "
                              f"{list(VARIANTS)}")
        width = VARIANTS[self.variant].max_bits
        if (self.act_bits, self.weight_bits) != (width, width):
            raise ConfigError(f"bit_fusion: variant {self.variant!r} runs operands up to {width} "
                              f"bits: act_bits and weight_bits must be {width}, got "
                              f"{self.act_bits} and {self.weight_bits}")

    @property
    def pe_count(self) -> int:
        return self.rows * self.cols

    @property
    def design(self) -> FusionVariant:
        return VARIANTS[self.variant]

    @property
    def cycle_energy_pj(self) -> float:
        """pJ per busy Fusion Unit per cycle: the config's override or the synthesis table."""
        if self.unit_cycle_energy_pj is not None:
            return float(self.unit_cycle_energy_pj)
        return self.design.cycle_energy_pj

    def precision_factor(self, ops: Operands) -> np.ndarray:
        """pf per layer (int64); 0 for widths the variant cannot run."""
        return precision_factor(self.variant, ops.act_bits, ops.weight_bits)

    def _pf(self, ops: Operands) -> np.ndarray:
        # The cost model only prices layers `supports` accepted (pf >= 1); the floor keeps a
        # direct call on a refused layer from dividing by zero.
        return np.maximum(self.precision_factor(ops), 1)

    def compute_cycles(self, g: Gemm, ops: Operands) -> np.ndarray:
        """``ceil(sc / cols) * sr * taps * ceil(channels / (rows * pf))`` per group."""
        return (_ceil_div(g.sc, self.cols) * g.sr * g.taps
                * _ceil_div(g.channels, self.rows * self._pf(ops)))

    def peak_macs_per_cycle(self, ops: Operands) -> np.ndarray:
        """``rows * cols * pf`` (float64)."""
        return float(self.rows * self.cols) * self._pf(ops).astype(np.float64)

    def array_accesses(self, g: Gemm, ops: Operands) -> ArrayAccesses:
        """Per group: ifmap ``sr * t * ceil(sc / cols)``, filters ``sr * sc * t`` (each weight
        once per output pixel, from its unit's bank), outputs ``sr * sc`` (final)."""
        sr, sc, t = g.sr, g.sc, g.t
        zero = np.zeros_like(sr)
        return ArrayAccesses(ifmap_reads=sr * t * _ceil_div(sc, self.cols),
                             filter_reads=sr * sc * t, ofmap_writes=sr * sc, psum_reads=zero,
                             psum_tile_elems=zero, outputs_are_partial=False)

    def bit_passes(self, ops: Operands) -> np.ndarray:
        """Always 1: no bit slicing (wider layers are refused by `supports`)."""
        return np.ones(np.shape(ops.act_bits), dtype=np.int64)

    def output_passes(self, passes: np.ndarray) -> np.ndarray:
        return np.ones_like(passes)

    def supports(self, ops: Operands) -> np.ndarray:
        act = np.asarray(ops.act_bits)
        wgt = np.asarray(ops.weight_bits)
        one_plane = (np.where(np.asarray(ops.weight_format) == "binary", wgt == 1, True)
                     & np.where(np.asarray(ops.act_format) == "binary", act == 1, True))
        return (self.formats_supported(ops) & one_plane & (act <= self.act_bits)
                & (wgt <= self.weight_bits))

    def support_text(self) -> str:
        return (f"{self.formats_text()} with act_bits <= {self.act_bits} and weight_bits <= "
                f"{self.weight_bits} (variant {self.variant!r}; 'binary' operands: 1 plane)")

    def action_counts(self, g: Gemm, passes: np.ndarray, ops: Operands) -> dict[str, np.ndarray]:
        """Busy Fusion-Unit cycles (idle units clock-gated): ``groups * sr * taps * sc *
        ceil(channels / pf)`` per pass (see the module docstring)."""
        busy = g.sr * g.taps * g.sc * _ceil_div(g.channels, self._pf(ops))
        return {"fusion_unit_cycle": g.groups * busy * passes}

    def action_energies_pj(self) -> dict[str, float]:
        return {"fusion_unit_cycle": self.cycle_energy_pj}

    def energy_source(self) -> str:
        if self.unit_cycle_energy_pj is not None:
            return "unit-cycle energy from the config's unit_cycle_energy_pj"
        return (f"unit-cycle energy from Bit Fusion's 45 nm synthesis (Sharma et al., ISCA "
                f"2018): {self.variant} {self.design.power_uw} uW / {SYNTHESIS_CLOCK_MHZ:g} MHz")


def _check(values: dict[str, Any]) -> list[tuple[str, str]]:
    """act_bits / weight_bits are the variant's width; acc_bits holds one full product."""
    problems = []
    variant = values.get("variant")
    if variant in VARIANTS:
        width = VARIANTS[variant].max_bits
        for field in ("act_bits", "weight_bits"):
            value = values.get(field)
            if isinstance(value, int) and value != width:
                problems.append((field, f"expected {width} (the operand width of variant "
                                        f"{variant!r}), got {value}"))
    act, wgt, acc = (values.get(k) for k in ("act_bits", "weight_bits", "acc_bits"))
    if all(isinstance(v, int) for v in (act, wgt, acc)) and acc < act + wgt:
        problems.append(("acc_bits", f"expected at least act_bits + weight_bits ({act + wgt}) "
                                     f"so that an output holds one product, got {acc}"))
    return problems


def _build(values: dict[str, Any]) -> BitFusion:
    return BitFusion(**values)


register_unit_kind(UnitKind(
    kind="bit_fusion",
    fields=(positive_int("rows"), positive_int("cols"),
            one_of("variant", tuple(VARIANTS), required=False, default=DEFAULT_VARIANT),
            non_negative_number("unit_cycle_energy_pj", required=False, default=None)),
    build=_build,
    description="Bit Fusion: rows x cols fusion units of 2-bit bit-bricks, precision-scaled",
    common_fields=(positive_int("act_bits"), positive_int("weight_bits"),
                   positive_int("acc_bits")),
    check=_check,
))
