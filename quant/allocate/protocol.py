"""What an allocator needs from hardware: options, and a cost model that prices them.

`quant` never imports `hwsim`: this module defines the small protocol, and hwsim's accelerator
model satisfies it (``hwsim.codesign.AcceleratorCosts``; any other cost model can too). An
allocation chooses, for every layer, one `Option` out of K; a `CostModel` prices every
(layer, option) pair at once and answers, per resource, an (L, K) float64 array in which ``inf``
marks a pair the hardware cannot run.

Resource names are free-form strings; the ones hwsim answers: ``latency_cycles``,
``compute_cycles``, ``energy_pj``, ``dram_bytes``, ``size_bits`` (stored weight codes),
``bops`` (MACs x act_bits x weight_bits, the usual proxy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from quant.errors import QuantError


@dataclass(frozen=True)
class Option:
    """One quantization choice for a layer: its weights' and activations' widths and number-
    format families (names registered in ``quant.formats``: "int", "binary", "apot", ...).

    ``weight_points``: for ``weight_format == "multipoint"`` (Liu et al., "Post-training
    Quantization with Multiple Points: Mixed Precision without Mixed Precision", AAAI 2021),
    the average number of ``weight_bits``-bit points per output channel: a layer of K output
    channels gets ``rows(K) = K + round((weight_points - 1) K)`` weight rows (its first points
    plus the extra ones, given to the channels by output error).  A finite number >= 1; above 1
    only for "multipoint" (every other family has one row per channel).  Default 1.0.
    """

    weight_bits: int
    act_bits: int
    weight_format: str = "int"
    act_format: str = "int"
    weight_points: float = 1.0

    def __post_init__(self) -> None:
        p = self.weight_points
        if isinstance(p, (bool, np.bool_)) or not isinstance(
                p, (int, float, np.integer, np.floating)) or not math.isfinite(float(p)) \
                or float(p) < 1:
            raise QuantError(f"Option.weight_points must be a finite number >= 1 (weight rows "
                             f"per output channel, on average); got {p!r}")
        if float(p) != 1.0 and self.weight_format != "multipoint":
            raise QuantError(f"Option.weight_points = {float(p):g} applies to weight_format "
                             f"'multipoint' only (its extra points are extra weight rows); "
                             f"weight_format is {self.weight_format!r}")
        object.__setattr__(self, "weight_points", float(p))

    @property
    def label(self) -> str:
        """Short name, e.g. ``int w4a8``, ``apot w4 / int a8`` or ``multipoint w4x1.25 / int
        a8`` (4-bit points, 1.25 per output channel on average)."""
        w = f"w{self.weight_bits}"
        if self.weight_format == "multipoint":
            w += f"x{self.weight_points:g}"
        if self.weight_format == self.act_format:
            return f"{self.weight_format} {w}a{self.act_bits}"
        return f"{self.weight_format} {w} / {self.act_format} a{self.act_bits}"

    def rows(self, channels: int) -> int:
        """Weight rows of a layer of ``channels`` output channels at this option:
        ``channels + round((weight_points - 1) x channels)``, rounding half up (``channels``
        for every family but multipoint)."""
        if isinstance(channels, (bool, np.bool_)) or not isinstance(
                channels, (int, np.integer)) or channels < 1:
            raise QuantError(f"Option.rows: channels must be an int >= 1; got {channels!r}")
        extra = math.floor((self.weight_points - 1.0) * int(channels) + 0.5 + 1e-9)
        return int(channels) + int(extra)

    def to_dict(self) -> dict[str, object]:
        """The fields; ``weight_points`` for multipoint options only (so plans of the one-row
        families are unchanged, and a multipoint layer always says how many points it has: a
        reader that does not know the field refuses the plan instead of guessing)."""
        out: dict[str, object] = {"weight_bits": self.weight_bits, "act_bits": self.act_bits,
                                  "weight_format": self.weight_format,
                                  "act_format": self.act_format}
        if self.weight_format == "multipoint" or self.weight_points != 1.0:
            out["weight_points"] = self.weight_points
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> "Option":
        points = raw.get("weight_points", 1.0)
        if isinstance(points, str):
            raise QuantError(f"Option.weight_points must be a number; got {points!r}")
        return cls(int(raw["weight_bits"]), int(raw["act_bits"]),  # type: ignore[arg-type]
                   str(raw.get("weight_format", "int")), str(raw.get("act_format", "int")),
                   points)  # type: ignore[arg-type]


@runtime_checkable
class CostModel(Protocol):
    """Prices options on some hardware (or any other cost)."""

    def price(self, layers: Sequence[str], options: Sequence[Option]) -> Mapping[str, np.ndarray]:
        """Per resource name, an (len(layers), len(options)) float64 array; ``inf`` where the
        option cannot run on that layer."""
        ...
