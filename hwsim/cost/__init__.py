"""Analytical cost model: cycles, stalls, memory traffic, energy and utilization per layer."""

from hwsim.cost.energy import EnergyTable, accesses, energy_pj
from hwsim.cost.layer_table import LayerTable
from hwsim.cost.network import NetworkCost, cost_network, cost_table
from hwsim.cost.traffic import Traffic, memory_traffic, transfer_cycles

__all__ = [
    "EnergyTable",
    "LayerTable",
    "NetworkCost",
    "Traffic",
    "accesses",
    "cost_network",
    "cost_table",
    "energy_pj",
    "memory_traffic",
    "transfer_cycles",
]
