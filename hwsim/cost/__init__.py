"""Analytical cost model: cycles, stalls, memory traffic, energy and utilization per layer."""

from hwsim.cost.energy import EnergyTable, accesses, energy_pj
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.network import NetworkCost, cost_network, cost_table
from hwsim.cost.options import RESOURCES, OptionCosts, price_options
from hwsim.cost.result import LayerCosts, LevelCosts
from hwsim.cost.traffic import Traffic, memory_traffic, transfer_cycles

__all__ = [
    "EnergyTable",
    "LayerCosts",
    "LayerTable",
    "LevelCosts",
    "NetworkCost",
    "OptionCosts",
    "PrecisionOption",
    "RESOURCES",
    "Traffic",
    "accesses",
    "cost_network",
    "cost_table",
    "energy_pj",
    "memory_traffic",
    "price_options",
    "transfer_cycles",
]



def __getattr__(name: str):
    """``PrecisionOption`` is loaded on first use (see hwsim/cost/options.py)."""
    if name == "PrecisionOption":
        from hwsim.cost import options

        return options.PrecisionOption
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
