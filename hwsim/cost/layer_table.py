"""Layers as columns of int64 arrays: the vectorized view the cost model computes on.

Building the table is the only per-layer Python loop; everything after it is numpy over layers.
The allocator can price many (layer, option) pairs by building one table and re-pricing it with
`with_bits` / `with_formats` / `take` instead of creating `LayerShape` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property
from operator import attrgetter, itemgetter
from typing import Sequence

import numpy as np

from hwsim.arch.units import Gemm, Operands
from hwsim.errors import WorkloadError
from hwsim.workloads.layer import MAX_BITS, LayerShape, check_convention

_INT_FIELDS = ("in_h", "in_w", "in_channels", "out_channels", "kernel_h", "kernel_w",
               "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right",
               "dilation_h", "dilation_w", "groups", "batch", "act_bits", "weight_bits",
               "weight_scale_bytes")
_GET = attrgetter(*_INT_FIELDS)


def _out_size(size, lo, hi, kernel, stride, dilation, convention: str) -> np.ndarray:
    extent = dilation * (kernel - 1) + 1
    if convention == "torch":
        return (size + lo + hi - extent) // stride + 1
    return -(-(size - extent + stride) // stride)


@dataclass(frozen=True)
class LayerTable:
    """One row per layer; every size column is an int64 array of length ``len(names)``.

    Derived GEMM view per conv group: ``sr`` = out_h * out_w * batch (output pixels),
    ``sc`` = out_channels / groups (filters), ``t`` = kernel_h * kernel_w * in_channels / groups.
    `weight_format` / `act_format` are the number-format family names per row, like `names`.
    `weight_scale_bytes`: constants stored with the weights (`LayerShape.weight_scale_bytes`).
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    weight_format: tuple[str, ...]
    act_format: tuple[str, ...]
    convention: str
    in_h: np.ndarray
    in_w: np.ndarray
    in_channels: np.ndarray
    out_channels: np.ndarray
    kernel_h: np.ndarray
    kernel_w: np.ndarray
    stride_h: np.ndarray
    stride_w: np.ndarray
    pad_top: np.ndarray
    pad_left: np.ndarray
    pad_bottom: np.ndarray
    pad_right: np.ndarray
    dilation_h: np.ndarray
    dilation_w: np.ndarray
    groups: np.ndarray
    batch: np.ndarray
    act_bits: np.ndarray
    weight_bits: np.ndarray
    weight_scale_bytes: np.ndarray
    out_h: np.ndarray
    out_w: np.ndarray

    @classmethod
    def from_layers(cls, layers: Sequence[LayerShape], convention: str = "torch") -> "LayerTable":
        """Tabulate `layers` and compute output sizes under `convention`."""
        check_convention(convention)
        if len(layers) == 0:
            raise WorkloadError("cannot cost an empty workload: no layers given")
        values = np.array([_GET(layer) for layer in layers], dtype=np.int64).reshape(len(layers), -1)
        cols = {name: values[:, i] for i, name in enumerate(_INT_FIELDS)}
        out_h = _out_size(cols["in_h"], cols["pad_top"], cols["pad_bottom"], cols["kernel_h"],
                          cols["stride_h"], cols["dilation_h"], convention)
        out_w = _out_size(cols["in_w"], cols["pad_left"], cols["pad_right"], cols["kernel_w"],
                          cols["stride_w"], cols["dilation_w"], convention)
        bad = np.flatnonzero((out_h <= 0) | (out_w <= 0))
        if bad.size:
            names = [layers[i].name for i in bad[:5]]
            raise WorkloadError(f"layers {names}: output size is not positive under the "
                                f"{convention!r} convention (kernel larger than the input)")
        return cls(names=tuple(l.name for l in layers), kinds=tuple(l.kind for l in layers),
                   weight_format=tuple(l.weight_format for l in layers),
                   act_format=tuple(l.act_format for l in layers),
                   convention=convention, out_h=out_h, out_w=out_w, **cols)

    def __len__(self) -> int:
        return len(self.names)

    def as_float(self) -> "LayerTable":
        """The same table with every size column in float64 (act_bits / weight_bits stay int64):
        the cost model runs its formulas on it once to check that no figure overflows int64."""
        sizes = {f.name: getattr(self, f.name).astype(np.float64) for f in fields(self)
                 if isinstance(getattr(self, f.name), np.ndarray)
                 and f.name not in ("act_bits", "weight_bits")}
        return replace(self, **sizes)

    def row_macs(self, row: int) -> int:
        """MACs of row `row` in Python integers (exact whatever the size)."""
        sc = int(self.out_channels[row]) // int(self.groups[row])
        t = int(self.kernel_h[row]) * int(self.kernel_w[row]) * (
            int(self.in_channels[row]) // int(self.groups[row]))
        sr = int(self.out_h[row]) * int(self.out_w[row]) * int(self.batch[row])
        return int(self.groups[row]) * sr * sc * t

    @cached_property
    def operands(self) -> Operands:
        """Widths and format families per row, as the compute units' hooks take them."""
        return Operands(act_bits=self.act_bits, weight_bits=self.weight_bits,
                        weight_format=np.asarray(self.weight_format, dtype=str),
                        act_format=np.asarray(self.act_format, dtype=str))

    # GEMM view (one group) ---------------------------------------------------------------------
    @property
    def gemm(self) -> Gemm:
        """The GEMM view the compute units' hooks take."""
        taps = self.kernel_h * self.kernel_w
        channels = self.in_channels // self.groups
        return Gemm(sr=self.sr, sc=self.sc, t=taps * channels, taps=taps, channels=channels,
                    groups=self.groups)

    @property
    def sr(self) -> np.ndarray:
        return self.out_h * self.out_w * self.batch

    @property
    def sc(self) -> np.ndarray:
        return self.out_channels // self.groups

    @property
    def t(self) -> np.ndarray:
        return self.kernel_h * self.kernel_w * (self.in_channels // self.groups)

    @property
    def macs(self) -> np.ndarray:
        return self.groups * self.sr * self.sc * self.t

    # Operand sizes -----------------------------------------------------------------------------
    @property
    def ifmap_elems(self) -> np.ndarray:
        """Input activations as stored (unpadded: padding is generated on chip)."""
        return self.batch * self.in_channels * self.in_h * self.in_w

    @property
    def filter_elems(self) -> np.ndarray:
        return self.groups * self.sc * self.t

    @property
    def ofmap_elems(self) -> np.ndarray:
        return self.batch * self.out_channels * self.out_h * self.out_w

    # Re-pricing helpers ------------------------------------------------------------------------
    def with_bits(self, act_bits: np.ndarray | int, weight_bits: np.ndarray | int) -> "LayerTable":
        """The same layers at other operand widths (broadcast to the number of layers)."""
        n = len(self)
        act = np.broadcast_to(np.asarray(act_bits, dtype=np.int64), (n,)).copy()
        wgt = np.broadcast_to(np.asarray(weight_bits, dtype=np.int64), (n,)).copy()
        if (act <= 0).any() or (wgt <= 0).any() or (act > MAX_BITS).any() or (wgt > MAX_BITS).any():
            raise WorkloadError(f"with_bits: act_bits and weight_bits must be integers from 1 to "
                                f"{MAX_BITS}")
        return replace(self, act_bits=act, weight_bits=wgt)

    def with_formats(self, weight_format: str | Sequence[str],
                     act_format: str | Sequence[str] | None = None) -> "LayerTable":
        """The same layers with other format families (a name for every row, or one per row);
        `act_format` None keeps the activation formats. Widths are unchanged: combine with
        `with_bits` to re-price a (format, width) option."""
        return replace(self, weight_format=self._format_column("weight_format", weight_format),
                       act_format=self.act_format if act_format is None
                       else self._format_column("act_format", act_format))

    def _format_column(self, field: str, value: str | Sequence[str]) -> tuple[str, ...]:
        n = len(self)
        column = (value,) * n if isinstance(value, str) else tuple(value)
        if len(column) != n or not all(isinstance(v, str) and v.strip() for v in set(column)):
            raise WorkloadError(f"with_formats: {field} must be a non-empty format family name "
                                f"or one per layer ({n}), got {value!r}")
        return column

    def take(self, indices: Sequence[int] | np.ndarray) -> "LayerTable":
        """Rows `indices` (repeats allowed), e.g. ``take(np.repeat(np.arange(n), k))``."""
        idx = np.asarray(indices, dtype=np.int64)
        arrays = {f.name: getattr(self, f.name)[idx] for f in fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        positions = idx.tolist()
        if len(positions) == 1:
            rows = {name: (getattr(self, name)[positions[0]],)
                    for name in ("names", "kinds", "weight_format", "act_format")}
        else:
            pick = itemgetter(*positions) if positions else (lambda _: ())
            rows = {name: pick(getattr(self, name))
                    for name in ("names", "kinds", "weight_format", "act_format")}
        return replace(self, **rows, **arrays)
