"""hwsim's accelerator model as the allocator's cost model (`quant.allocate.CostModel`).

`AcceleratorCosts(accel, layers)` prices options of the workload's layers with
`hwsim.cost.price_options`: each (layer, option) pair is routed to the unit the accelerator's
rules give it and priced there (cycles including memory stalls, energy of compute and every
memory level, DRAM bytes, weight storage, BOPs); pairs no unit can run are ``inf``. These are
the same figures `cost_network` reports for a network quantized with the chosen options, so an
allocation's predicted totals equal the simulated ones wherever the model is analytical.

Multipoint options (``Option(b, a, "multipoint", weight_points=p)``; Liu et al., "Post-training
Quantization with Multiple Points: Mixed Precision without Mixed Precision", AAAI 2021): a layer
of K output channels runs as its integer form, one ordinary b-bit layer with
``R = option.rows(K) = K + round((p - 1) K)`` weight rows. The pair is priced as
`hwsim.workloads.multipoint.rows_layer_shape(layer, R)` under ``Option(b, a, "int", ...)``:
routed to the unit the accelerator gives b-bit int weights and priced there, exactly as
`cost_network` prices the lowered multipoint node. Grouped convs: depthwise ones become a
depthwise conv of R channels (exact); other grouped convs are priced with ``ceil(R / groups)``
rows in every group (their groups run back to back as equal GEMMs), which the realization
matches by sharing the extra points evenly over the groups (`quant.calibrate.multipoint.
points_for_count`). The layers given here must have one row per channel (a workload read from
a program without multipoint layers, e.g. the uniform base network's).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from hwsim.arch.accelerator import Accelerator
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.options import OptionCosts, price_options
from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape
from hwsim.workloads.multipoint import rows_layer_shape
from quant.allocate import Option


class AcceleratorCosts:
    """Prices options of `layers` (one `LayerShape` per layer the allocator chooses for) on
    `accel`. Satisfies `quant.allocate.CostModel`; `last` keeps the latest `OptionCosts` (units
    per pair, infeasibility reasons; its ``options`` are the options asked for)."""

    def __init__(self, accel: Accelerator, layers: Sequence[LayerShape],
                 convention: str = "torch") -> None:
        self.accel = accel
        self.layers = tuple(layers)
        self.convention = convention
        self.table = LayerTable.from_layers(self.layers, convention)
        self._row = {name: i for i, name in enumerate(self.table.names)}
        self.last: OptionCosts | None = None

    def price(self, layers: Sequence[str], options: Sequence[Option]) -> Mapping[str, np.ndarray]:
        """Per resource, a (len(layers), len(options)) float64 array (``inf``: infeasible)."""
        missing = [name for name in layers if name not in self._row]
        if missing:
            raise WorkloadError(f"AcceleratorCosts.price: layers {missing[:5]} are not in the "
                                f"workload (its layers: {list(self.table.names)[:6]}...)")
        rows = [self._row[name] for name in layers]
        options = tuple(options)
        multi = [k for k, o in enumerate(options) if isinstance(o, Option)
                 and o.weight_format == "multipoint"]
        if not multi:
            self.last = price_options(self.accel, self.table.take(rows), options)
            return self.last.resources
        columns: dict[int, OptionCosts] = {}
        plain = [k for k in range(len(options)) if k not in multi]
        if plain:
            priced = price_options(self.accel, self.table.take(rows), [options[k] for k in plain])
            for j, k in enumerate(plain):
                columns[k] = _column(priced, j)
        for k in multi:
            o = options[k]
            shapes = [rows_layer_shape(self.layers[r], o.rows(self.layers[r].out_channels))
                      for r in rows]
            as_int = Option(o.weight_bits, o.act_bits, "int", o.act_format)
            columns[k] = price_options(self.accel, shapes, [as_int], convention=self.convention)
        self.last = _merge([columns[k] for k in range(len(options))], options)
        return self.last.resources


def _column(costs: OptionCosts, j: int) -> OptionCosts:
    """Option ``j`` of ``costs`` as a one-option `OptionCosts`."""
    return OptionCosts(
        layer_names=costs.layer_names, options=(costs.options[j],),
        unit=costs.unit[:, j:j + 1], feasible=costs.feasible[:, j:j + 1],
        resources={r: v[:, j:j + 1] for r, v in costs.resources.items()},
        support_text=costs.support_text,
        unfit={(l, 0): t for (l, k), t in costs.unfit.items() if k == j})


def _merge(columns: Sequence[OptionCosts], options: tuple[Option, ...]) -> OptionCosts:
    """One-option `OptionCosts` side by side, as the costs of ``options``."""
    first = columns[0]
    return OptionCosts(
        layer_names=first.layer_names, options=options,
        unit=np.concatenate([c.unit for c in columns], axis=1),
        feasible=np.concatenate([c.feasible for c in columns], axis=1),
        resources={r: np.concatenate([c.resources[r] for c in columns], axis=1)
                   for r in first.resources},
        support_text={u: t for c in columns for u, t in c.support_text.items()},
        unfit={(l, k): t for k, c in enumerate(columns) for (l, _), t in c.unfit.items()})
