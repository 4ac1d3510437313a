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

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Option:
    """One quantization choice for a layer: its weights' and activations' widths and number-
    format families (names registered in ``quant.formats``: "int", "binary", "apot", ...)."""

    weight_bits: int
    act_bits: int
    weight_format: str = "int"
    act_format: str = "int"

    @property
    def label(self) -> str:
        """Short name, e.g. ``int w4a8`` or ``apot w4 / int a8``."""
        if self.weight_format == self.act_format:
            return f"{self.weight_format} w{self.weight_bits}a{self.act_bits}"
        return f"{self.weight_format} w{self.weight_bits} / {self.act_format} a{self.act_bits}"

    def to_dict(self) -> dict[str, object]:
        return {"weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "weight_format": self.weight_format, "act_format": self.act_format}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> "Option":
        return cls(int(raw["weight_bits"]), int(raw["act_bits"]),  # type: ignore[arg-type]
                   str(raw.get("weight_format", "int")), str(raw.get("act_format", "int")))


@runtime_checkable
class CostModel(Protocol):
    """Prices options on some hardware (or any other cost)."""

    def price(self, layers: Sequence[str], options: Sequence[Option]) -> Mapping[str, np.ndarray]:
        """Per resource name, an (len(layers), len(options)) float64 array; ``inf`` where the
        option cannot run on that layer."""
        ...
