"""The ``xnor_popcount`` unit: a FINN-style binary matrix-vector engine (Umuroglu et al., "FINN:
A Framework for Fast, Scalable Binarized Neural Network Inference", FPGA 2017: the
matrix-vector-threshold unit of P processing elements x S SIMD lanes and its folding).

`pe` rows each own a slice of the output channels; `simd` lanes per PE XNOR one bit of the input
vector with one weight bit per cycle, a popcount tree (`popcount_bits` wide) counts the matches,
and an `acc_bits` accumulator per PE adds the popcounts over the reduction folds.

Folding, per conv group (the cost model multiplies by groups and passes)::

    MW = kernel_h * kernel_w * in_channels / groups      (reduction length, ``t``)
    MH = out_channels / groups                           (rows of the weight matrix, ``sc``)
    cycles = output_pixels * ceil(MW / simd) * ceil(MH / pe)

Groups run back to back, each as its own matrix-vector problem, so a depthwise conv (MH = 1)
uses one PE row of `pe` (FINN's separate vector-vector unit is not modelled).

Formats: weights must be of the "binary" family (sums of k scaled sign planes, e.g. the least-
squares formats of Pouransari et al., "Least Squares Binary Quantization of Neural Networks",
CVPR Workshops 2020); activations may be "binary" (binarized into k_a planes) or "int" (their
k_a code bits streamed as bit planes). A uniform "int" weight is not a sum of +-1 planes (a 1-bit
signed int is {-1, 0}), so int weights are refused. Multi-plane formats run as k_a * k_w binary
products: `act_bits`/`weight_bits` in the config are the most planes the unit accepts, a layer's
``act_bits``/``weight_bits`` are its plane counts, and ``passes = k_a * k_w``. Each pass streams
one bit per operand element from the buffers; plane results are combined in the PE accumulator,
so every output leaves the array once.

Compute actions (counts kept apart from energies): ``xnor`` and ``popcount_bit`` (bits entering
a popcount tree) are one per binary product; ``accumulate`` is one per PE per cycle that does
work, i.e. per output per pass per SIMD fold. Idle lanes are assumed clock-gated (not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hwsim.arch.schema import non_negative_number, positive_int
from hwsim.arch.units import (ArrayAccesses, ComputeUnit, Gemm, Operands, UnitKind, _ceil_div,
                              register_unit_kind)


@dataclass(frozen=True)
class XnorPopcount(ComputeUnit):
    """`pe` x `simd` XNOR/popcount matrix-vector unit; energies in pJ per action."""

    pe: int = 1
    simd: int = 1
    popcount_bits: int = 1
    xnor_energy_pj: float = 0.0
    popcount_energy_pj_per_bit: float = 0.0
    accumulate_energy_pj: float = 0.0

    weight_formats: ClassVar[tuple[str, ...] | None] = ("binary",)
    act_formats: ClassVar[tuple[str, ...] | None] = ("binary", "int")

    @property
    def pe_count(self) -> int:
        return self.pe * self.simd

    def compute_cycles(self, g: Gemm, ops: Operands) -> np.ndarray:
        """FINN folding per group and pass: ``sr * ceil(t / simd) * ceil(sc / pe)`` (int64)."""
        sr, sc, t = g.sr, g.sc, g.t
        return sr * _ceil_div(t, self.simd) * _ceil_div(sc, self.pe)

    def array_accesses(self, g: Gemm, ops: Operands) -> ArrayAccesses:
        """Per output pixel: the input vector is re-read for each of the ceil(sc/pe) PE folds,
        every weight is read once, each output is written once (accumulators stay in the PEs)."""
        sr, sc, t = g.sr, g.sc, g.t
        zero = np.zeros_like(sr)
        return ArrayAccesses(ifmap_reads=sr * t * _ceil_div(sc, self.pe), filter_reads=sr * sc * t,
                             ofmap_writes=sr * sc, psum_reads=zero, psum_tile_elems=zero,
                             outputs_are_partial=False)

    def bit_passes(self, ops: Operands) -> np.ndarray:
        """k_a * k_w binary planes per layer."""
        return (np.asarray(ops.act_bits, dtype=np.int64)
                * np.asarray(ops.weight_bits, dtype=np.int64))

    def supports(self, ops: Operands) -> np.ndarray:
        return (self.formats_supported(ops) & (np.asarray(ops.act_bits) <= self.act_bits)
                & (np.asarray(ops.weight_bits) <= self.weight_bits))

    def support_text(self) -> str:
        return (f"{self.formats_text()} with act_bits (planes) <= {self.act_bits} and "
                f"weight_bits (planes) <= {self.weight_bits}")

    def action_counts(self, g: Gemm, passes: np.ndarray, ops: Operands) -> dict[str, np.ndarray]:
        products = g.macs * passes
        return {"xnor": products, "popcount_bit": products,
                "accumulate": g.groups * g.sr * g.sc * _ceil_div(g.t, self.simd) * passes}

    def action_energies_pj(self) -> dict[str, float]:
        return {"xnor": self.xnor_energy_pj, "popcount_bit": self.popcount_energy_pj_per_bit,
                "accumulate": self.accumulate_energy_pj}

    def array_operand_bits(self, ops: Operands) -> tuple[np.ndarray, np.ndarray]:
        one = np.ones_like(np.asarray(ops.act_bits, dtype=np.int64))
        return one, one

    def output_passes(self, passes: np.ndarray) -> np.ndarray:
        return np.ones_like(passes)


def _check(values: dict[str, Any]) -> list[tuple[str, str]]:
    """The popcount of `simd` bits must fit `popcount_bits`, and it must fit the accumulator."""
    problems = []
    simd, width, acc = values.get("simd"), values.get("popcount_bits"), values.get("acc_bits")
    if isinstance(simd, int) and isinstance(width, int) and width < simd.bit_length():
        problems.append(("popcount_bits", f"expected at least {simd.bit_length()} bits to count "
                                          f"{simd} SIMD lanes, got {width}"))
    if isinstance(width, int) and isinstance(acc, int) and acc < width:
        problems.append(("acc_bits", f"expected at least popcount_bits ({width}), got {acc}"))
    return problems


def _build(values: dict[str, Any]) -> XnorPopcount:
    return XnorPopcount(**values)


register_unit_kind(UnitKind(
    kind="xnor_popcount",
    fields=(positive_int("pe"), positive_int("simd"), positive_int("popcount_bits"),
            non_negative_number("xnor_energy_pj"), non_negative_number("popcount_energy_pj_per_bit"),
            non_negative_number("accumulate_energy_pj")),
    build=_build,
    description="FINN-style binary matrix-vector unit: pe rows x simd XNOR lanes + popcount",
    common_fields=(positive_int("act_bits"), positive_int("weight_bits"), positive_int("acc_bits")),
    check=_check,
))
