"""hwsim's accelerator model as the allocator's cost model (`quant.allocate.CostModel`).

`AcceleratorCosts(accel, layers)` prices options of the workload's layers with
`hwsim.cost.price_options`: each (layer, option) pair is routed to the unit the accelerator's
rules give it and priced there (cycles including memory stalls, energy of compute and every
memory level, DRAM bytes, weight storage, BOPs); pairs no unit can run are ``inf``. These are
the same figures `cost_network` reports for a network quantized with the chosen options, so an
allocation's predicted totals equal the simulated ones wherever the model is analytical.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from hwsim.arch.accelerator import Accelerator
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.options import OptionCosts, price_options
from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape
from quant.allocate import Option


class AcceleratorCosts:
    """Prices options of `layers` (one `LayerShape` per layer the allocator chooses for) on
    `accel`. Satisfies `quant.allocate.CostModel`; `last` keeps the latest `OptionCosts` (units
    per pair, infeasibility reasons)."""

    def __init__(self, accel: Accelerator, layers: Sequence[LayerShape],
                 convention: str = "torch") -> None:
        self.accel = accel
        self.table = LayerTable.from_layers(layers, convention)
        self._row = {name: i for i, name in enumerate(self.table.names)}
        self.last: OptionCosts | None = None

    def price(self, layers: Sequence[str], options: Sequence[Option]) -> Mapping[str, np.ndarray]:
        """Per resource, a (len(layers), len(options)) float64 array (``inf``: infeasible)."""
        missing = [name for name in layers if name not in self._row]
        if missing:
            raise WorkloadError(f"AcceleratorCosts.price: layers {missing[:5]} are not in the "
                                f"workload (its layers: {list(self.table.names)[:6]}...)")
        rows = [self._row[name] for name in layers]
        self.last = price_options(self.accel, self.table.take(rows), options)
        return self.last.resources
