"""Price every (layer, precision option) pair in one vectorized call: the allocator's cost tables.

An option is a choice of weight / activation number-format families and widths. Each (layer,
option) pair is routed to the unit the accelerator's assignment rules give it (rules may match
on format and widths, so different options of one layer can land on different units) and priced
there with the same model as `cost_network`. A pair whose unit cannot run it (a width the unit
does not have, a format it does not run) is **infeasible**: its costs are ``inf`` and
`OptionCosts.infeasible_reason` says why, instead of an error.

Resources, each an (L, K) float64 array (L layers, K options; exact integers up to 2^53):

    latency_cycles  total cycles (compute plus memory stalls) at the accelerator clock
    compute_cycles  compute cycles alone
    energy_pj       total energy (compute and every memory level), pJ
    dram_bytes      DRAM bytes read and written
    size_bits       stored weight codes, filter elements x weight_bits (no scales)
    bops            bit operations, MACs x act_bits x weight_bits (the proxy others allocate with)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hwsim.arch.accelerator import Accelerator
from hwsim.arch.assign import assign_units
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.hierarchy import priced_nests
from hwsim.cost.network import unit_costs
from hwsim.mapping.buffers import DEFAULT_OBJECTIVE
from hwsim.errors import WorkloadError
from hwsim.workloads.layer import MAX_BITS, LayerShape

RESOURCES = ("latency_cycles", "compute_cycles", "energy_pj", "dram_bytes", "size_bits", "bops")


def __getattr__(name: str) -> Any:
    """``PrecisionOption`` is `quant.allocate.Option` (one quantization choice for a layer:
    widths and format families), imported on first use: importing the cost model does not
    import quant."""
    if name == "PrecisionOption":
        from quant.allocate import Option

        return Option
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_options(options: Sequence[PrecisionOption]) -> tuple[PrecisionOption, ...]:
    from quant.allocate import Option as PrecisionOption

    options = tuple(options)
    if not options:
        raise WorkloadError("price_options: no options given; expected at least one "
                            "PrecisionOption")
    for i, opt in enumerate(options):
        if not isinstance(opt, PrecisionOption):
            raise WorkloadError(f"price_options: option {i} is {type(opt).__name__}, expected a "
                                f"PrecisionOption")
        for field in ("weight_bits", "act_bits"):
            value = getattr(opt, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 1 <= value <= MAX_BITS:
                raise WorkloadError(f"price_options: option {i} ({opt.label}): {field} must be "
                                    f"an integer from 1 to {MAX_BITS}, got {value!r}")
        for field in ("weight_format", "act_format"):
            value = getattr(opt, field)
            if not isinstance(value, str) or not value.strip():
                raise WorkloadError(f"price_options: option {i}: {field} must be a format "
                                    f"family name, got {value!r}")
    return options


@dataclass(frozen=True)
class OptionCosts:
    """Costs of every (layer, option) pair; arrays are (layers, options).

    ``unit`` names the unit each pair is routed to (also for infeasible pairs: the unit that
    refused it); ``feasible`` is False where that unit cannot run the pair, and there every
    resource is ``inf``.
    """

    layer_names: tuple[str, ...]
    options: tuple[PrecisionOption, ...]
    unit: np.ndarray
    feasible: np.ndarray
    resources: dict[str, np.ndarray]
    support_text: dict[str, str]
    #: (layer, option) -> why no mapping fits the memory hierarchy (hierarchy configs only)
    unfit: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.feasible.shape

    def __getitem__(self, resource: str) -> np.ndarray:
        """The (layers, options) array of `resource` (one of `RESOURCES`)."""
        try:
            return self.resources[resource]
        except KeyError:
            raise KeyError(f"unknown resource {resource!r}; known: {list(self.resources)}") \
                from None

    def infeasible_reason(self, layer: int, option: int) -> str | None:
        """Why pair (layer, option) cannot run, or None if it can."""
        if self.feasible[layer, option]:
            return None
        if (layer, option) in self.unfit:
            return self.unfit[layer, option]
        unit = self.unit[layer, option]
        return (f"layer {self.layer_names[layer]!r}, option {self.options[option].label}: unit "
                f"{unit!r} supports {self.support_text[unit]}")

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (layer, option) with the unit, feasibility and resources."""
        n_layers, n_options = self.shape
        return pd.DataFrame({
            "layer": np.repeat(np.asarray(self.layer_names, dtype=object), n_options),
            "option": [o.label for o in self.options] * n_layers,
            "unit": self.unit.ravel(), "feasible": self.feasible.ravel(),
            **{name: values.ravel() for name, values in self.resources.items()}})


def price_options(accel: Accelerator, layers: Sequence[LayerShape] | LayerTable,
                  options: Sequence[PrecisionOption], *, convention: str = "torch") -> OptionCosts:
    """Price every layer of `layers` under every option of `options` on `accel` (one vectorized
    pass per unit used). Layers keep their shapes; each option replaces their widths and format
    families."""
    opts = _check_options(options)
    base = layers if isinstance(layers, LayerTable) else LayerTable.from_layers(layers, convention)
    n_layers, n_options = len(base), len(opts)
    table = base.take(np.repeat(np.arange(n_layers), n_options)).with_bits(
        np.tile([o.act_bits for o in opts], n_layers),
        np.tile([o.weight_bits for o in opts], n_layers)).with_formats(
        [o.weight_format for o in opts] * n_layers, [o.act_format for o in opts] * n_layers)
    ops = table.operands
    routed = assign_units(accel.rules, accel.default_unit, table.names, ops)
    feasible = np.zeros(len(table), dtype=bool)
    for name, unit in accel.units.items():
        rows = np.flatnonzero(routed == name)
        if rows.size:
            feasible[rows] = unit.supports(ops.take(rows))
    resources = {name: np.full(len(table), np.inf) for name in RESOURCES}
    unfit: dict[int, str] = {}
    for name in accel.units:
        rows = np.flatnonzero(feasible & (routed == name))
        if not rows.size:
            continue
        priced = table if rows.size == len(table) else table.take(rows)
        if accel.hierarchy:
            costs, fits, problems = priced_nests(accel, name, accel.unit(name), priced, None,
                                                 DEFAULT_OBJECTIVE, accel.source)
            for row, problem in zip(rows[~fits].tolist(), np.asarray(problems, dtype=object)[~fits]):
                unfit[row] = problem
            feasible[rows[~fits]] = False
            costs, priced, rows = costs.take(np.flatnonzero(fits)), priced.take(
                np.flatnonzero(fits)), rows[fits]
        else:
            costs = unit_costs(accel, name, priced)
        dram = costs.levels[accel.dram.name]
        resources["latency_cycles"][rows] = costs.total_cycles
        resources["compute_cycles"][rows] = costs.compute_cycles
        resources["energy_pj"][rows] = costs.energy_total_pj
        resources["dram_bytes"][rows] = dram.read_bytes + dram.write_bytes
        resources["size_bits"][rows] = priced.filter_elems * priced.weight_bits
        resources["bops"][rows] = costs.macs.astype(np.float64) * priced.act_bits * priced.weight_bits
    shape = (n_layers, n_options)
    return OptionCosts(
        layer_names=base.names, options=opts, unit=routed.astype(str).reshape(shape),
        feasible=feasible.reshape(shape),
        resources={name: values.reshape(shape) for name, values in resources.items()},
        support_text={name: unit.support_text() for name, unit in accel.units.items()},
        unfit={divmod(row, n_options): text for row, text in unfit.items()})
