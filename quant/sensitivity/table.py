"""``SensitivityTable``: the (layers x options) sensitivity matrix an allocator minimizes over.

Torch-free (numpy only), so an allocator can load a saved table without torch.

JSON: ``to_dict()`` gives plain lists / dicts / strings / finite floats; non-finite floats
(``inf`` marks an option a layer cannot take) are written as ``{"__float__": "inf"}`` so the
result passes ``json.dumps(..., allow_nan=False)``; ``from_dict`` undoes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quant.allocate.protocol import Option
from quant.errors import QuantError

METHODS = ("hutchinson", "fisher", "empirical_fisher", "measured")


def encode_json(obj: Any) -> Any:
    """Plain-JSON form of ``obj`` (numpy arrays / scalars, tuples, non-finite floats)."""
    if isinstance(obj, Mapping):
        return {str(k): encode_json(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return encode_json(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [encode_json(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(obj, Option):
        return obj.to_dict()
    if obj is None or isinstance(obj, str):
        return obj
    raise QuantError(f"SensitivityTable: cannot write a {type(obj).__name__} to JSON")


def decode_json(obj: Any) -> Any:
    """Inverse of ``encode_json`` (lists stay lists)."""
    if isinstance(obj, Mapping):
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return {k: decode_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_json(v) for v in obj]
    return obj


@dataclass(frozen=True, eq=False)
class SensitivityTable:
    """Per layer and option, the predicted (or measured) loss increase of that choice.

    Attributes:
        omega: float64 (L, K), read-only; ``omega[l, k]`` for layer ``layer_names[l]`` and
            option ``options[k]``; ``inf`` where the layer cannot take the option (the reason is
            in ``details["infeasible"]``).  For "hutchinson" / "fisher" / "empirical_fisher" the
            reference point is the float model; for "measured" it is the base quantized model
            (``details["reference"]``).  Per layer these differ by a constant, which does not
            change which option an allocator picks (every layer takes exactly one option).
        layer_names: conv2d / linear record names (``quant.LayerGraph`` / ``QuantizedModel``).
        options: the K options (``quant.allocate.Option``).
        method: "hutchinson", "fisher", "empirical_fisher" or "measured".
        details: method-specific diagnostics (JSON-able): probes and standard errors, split
            sizes, per-term matrices, infeasible pairs with their reasons.
    """

    omega: np.ndarray
    layer_names: tuple[str, ...]
    options: tuple[Option, ...]
    method: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        omega = np.array(self.omega, dtype=np.float64)
        names = tuple(str(n) for n in self.layer_names)
        opts = tuple(self.options)
        if omega.shape != (len(names), len(opts)):
            raise QuantError(f"SensitivityTable.omega has shape {omega.shape}; expected "
                             f"({len(names)}, {len(opts)}) (layers, options)")
        if any(not isinstance(o, Option) for o in opts):
            raise QuantError("SensitivityTable.options must be quant.allocate.Option values")
        if self.method not in METHODS:
            raise QuantError(f"SensitivityTable.method must be one of {METHODS}; "
                             f"got {self.method!r}")
        omega.setflags(write=False)
        object.__setattr__(self, "omega", omega)
        object.__setattr__(self, "layer_names", names)
        object.__setattr__(self, "options", opts)
        object.__setattr__(self, "details", dict(self.details))

    def row(self, layer: str) -> np.ndarray:
        """Omega of one layer over the options, (K,)."""
        try:
            return self.omega[self.layer_names.index(layer)]
        except ValueError:
            raise QuantError(f"no layer {layer!r} in the table; e.g. "
                             f"{list(self.layer_names[:3])}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (see module docstring)."""
        return {"method": self.method, "layer_names": list(self.layer_names),
                "options": [o.to_dict() for o in self.options],
                "omega": encode_json(self.omega), "details": encode_json(self.details)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SensitivityTable":
        names = list(raw["layer_names"])
        opts = [Option.from_dict(o) for o in raw["options"]]
        omega = np.array(decode_json(raw["omega"]), dtype=np.float64).reshape(len(names),
                                                                           len(opts))
        return cls(omega, tuple(names), tuple(opts), str(raw["method"]),
                   decode_json(raw.get("details", {})))

    def __repr__(self) -> str:
        return (f"SensitivityTable({self.method}, {len(self.layer_names)} layers x "
                f"{len(self.options)} options)")
